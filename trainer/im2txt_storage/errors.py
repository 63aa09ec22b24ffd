"""What a failed UFile operation says: the error types, and messages without secrets (every message and log line
goes through `redact`, which removes the key values, Authorization credentials and URL signatures)."""

from __future__ import annotations

import re
import threading


# -- errors ------------------------------------------------------------------------------------------
class StorageError(Exception):
    """A UFile operation failed; the message names the operation and the object, never a secret."""

    retryable = False

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(redact(message))
        self.status = status


class TransientError(StorageError):
    """Worth retrying: HTTP 5xx/408/429, timeouts, resets, truncated bodies."""

    retryable = True


class IntegrityError(TransientError):
    """A transfer finished but size or ETag do not match (retried from scratch)."""


class DeadlineError(StorageError):
    """The process-wide deadline passed before the operation succeeded (not retried)."""


class AuthError(StorageError):
    """UFile refused the key pair or its signature (HTTP 401/403)."""


class NotFoundError(StorageError):
    """The object does not exist (HTTP 404)."""


class ConfigError(ValueError):
    """Bad settings or environment (missing keys, malformed suffix)."""


class PlainHTTPRefused(StorageError):
    """A request was about to leave over plain HTTP although HTTPS is required (never retried)."""


# -- secrets and redaction ---------------------------------------------------------------------------
_secrets: set[str] = set()
_secrets_lock = threading.Lock()
_PATTERNS = [
    (re.compile(r"UCloud\s+[^\s:\"']+:[A-Za-z0-9+/=_-]*"), "UCloud <redacted>"),
    (re.compile(r"(UCloudPublicKey|Signature|Authorization)=[^&\s'\"]*"), r"\1=<redacted>"),
]


def register_secret(value: str) -> None:
    if len(value) >= 6:  # real UCloud keys are long; redacting one letter would shred every message
        with _secrets_lock:
            _secrets.add(value)


def redact(text: str) -> str:
    """Remove key values, Authorization credentials and URL signatures from `text`."""
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    with _secrets_lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        text = text.replace(secret, "<redacted>")
    return text

