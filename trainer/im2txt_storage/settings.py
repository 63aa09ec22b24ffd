"""The client's settings: the key pair and the endpoints from the environment, timeouts, retries, the scheme."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError

DEFAULT_SUFFIX = ".cn-bj.ufileos.com"
ENV_PUBLIC = "UFILE_PUBLIC_KEY"
ENV_PRIVATE = "UFILE_PRIVATE_KEY"
ENV_UPLOAD_SUFFIX = "UFILE_UPLOAD_SUFFIX"
ENV_DOWNLOAD_SUFFIX = "UFILE_DOWNLOAD_SUFFIX"


# -- settings ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Credentials:
    public_key: str = field(repr=False)
    private_key: str = field(repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Credentials:
        env = os.environ if env is None else env
        values = {}
        for name in (ENV_PUBLIC, ENV_PRIVATE):
            value = env.get(name, "").strip()
            if not value:
                raise ConfigError(
                    f"environment variable {name} is not set (the UFile API key pair comes from the "
                    "training's Secret, keys publicKey/privateKey)"
                )
            values[name] = value
        return cls(values[ENV_PUBLIC], values[ENV_PRIVATE])


def _check_suffix(value: str, name: str) -> str:
    if not re.fullmatch(r"\.[A-Za-z0-9.-]+", value):
        raise ConfigError(f"{name}={value!r} is not a UFile domain suffix; expected e.g. {DEFAULT_SUFFIX!r}")
    return value


@dataclass(frozen=True)
class ClientSettings:
    upload_suffix: str = DEFAULT_SUFFIX
    download_suffix: str = DEFAULT_SUFFIX
    connect_timeout: float = 10.0
    read_timeout: float = 120.0
    attempts: int = 6
    backoff: float = 0.5  # first retry delay; doubles each time, with jitter
    backoff_max: float = 30.0
    multipart_threshold: int = 16 * 1024 * 1024  # files this big or bigger go multipart (4 MiB parts)
    part_threads: int = 4
    list_limit: int = 1000
    # HTTPS unless the cluster admin opted in to plain HTTP (the operator's --ufile-insecure-http passes the
    # commands --insecure-http): certificates are checked against the system's CAs or REQUESTS_CA_BUNDLE.
    https: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> ClientSettings:
        env = os.environ if env is None else env
        up = _check_suffix(env.get(ENV_UPLOAD_SUFFIX) or DEFAULT_SUFFIX, ENV_UPLOAD_SUFFIX)
        down = _check_suffix(env.get(ENV_DOWNLOAD_SUFFIX) or DEFAULT_SUFFIX, ENV_DOWNLOAD_SUFFIX)
        return cls(upload_suffix=up, download_suffix=down, **overrides)


@dataclass(frozen=True)
class RemoteObject:
    key: str
    size: int
    etag: str

