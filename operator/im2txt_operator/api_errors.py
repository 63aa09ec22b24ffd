"""The API's error answers as exceptions, and the one a leader raises instead of writing when its Lease may be gone."""

from __future__ import annotations

import json
from typing import Any


class ApiException(Exception):
    """An API error answer: ``status`` (HTTP code), ``reason`` (the Status reason), ``message``, and the Status
    ``details`` (for 422 Invalid: ``causes``, each with the ``field`` the server blames)."""

    def __init__(self, status: int, reason: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(f"HTTP {status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.details = details or {}


def api_exception(status: int, http_reason: str, payload: bytes) -> ApiException:
    """The API's Status answer as an exception (a proxy's HTML page: its first 200 bytes as the message)."""
    details = None
    try:
        answer = json.loads(payload)
        reason, message = answer.get("reason") or http_reason, answer.get("message") or ""
        details = answer.get("details") if isinstance(answer.get("details"), dict) else None
    except (ValueError, AttributeError):
        reason, message = http_reason, payload[:200].decode(errors="replace")
    return ApiException(status, str(reason), message, details)


class Fenced(Exception):
    """A write not sent: this process can no longer be sure it holds the Lease (see leader.py)."""
