"""Helpers shared by the storage tests and the storage benchmark."""

from __future__ import annotations

import os
from pathlib import Path

from im2txt_standins.ufile_server import UFileServer
from im2txt_storage import owners
from im2txt_storage.client import ClientSettings, Credentials

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "im2txt-test"
SUFFIX = ".cn-bj.ufileos.com"

FAST = ClientSettings(
    connect_timeout=2.0, read_timeout=1.0, attempts=5, backoff=0.01, backoff_max=0.05,
    multipart_threshold=5 * 1024 * 1024, list_limit=1000,
)


def storage_env(server: UFileServer, creds: Credentials, **extra: str) -> dict[str, str]:
    """Environment for `python -m im2txt_storage` subprocesses: keys only here, never in argv."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower() and k != "REQUESTS_CA_BUNDLE"}
    env.update(server.client_env())
    env.update({
        "UFILE_PUBLIC_KEY": creds.public_key,
        "UFILE_PRIVATE_KEY": creds.private_key,
        "UFILE_UPLOAD_SUFFIX": SUFFIX,
        "UFILE_DOWNLOAD_SUFFIX": SUFFIX,
        "PYTHONPATH": os.pathsep.join(str(ROOT / p) for p in ("trainer", "standins")),
    })
    env.update(extra)
    return env


def write_checkpoint(folder: Path, step: int, *, shards: int = 1, size: int = 20_000, latest_only: bool = False,
                     keep: list[int] | None = None, owner: str | None = None) -> dict[str, bytes]:
    """A fake TF checkpoint `model.ckpt-<step>` (index, data shards, meta) plus the `checkpoint` index,
    written like TensorFlow does: data first, index file last (atomically). ``owner``: recorded in the ownership
    ledger first, as our trainer does (im2txt_storage.owners); None: a bundle no ledger names (another tool's)."""
    folder.mkdir(parents=True, exist_ok=True)
    if owner is not None:
        owners.record(folder, f"model.ckpt-{step}", owner)
    files: dict[str, bytes] = {}
    prefix = f"model.ckpt-{step}"
    for i in range(shards):
        files[f"{prefix}.data-{i:05d}-of-{shards:05d}"] = os.urandom(size)
    files[f"{prefix}.index"] = os.urandom(300)
    files[f"{prefix}.meta"] = os.urandom(500)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    steps = [step] if latest_only or keep is None else [*keep, step]
    text = f'model_checkpoint_path: "{prefix}"\n' + "".join(
        f'all_model_checkpoint_paths: "model.ckpt-{s}"\n' for s in steps
    )
    tmp = folder / "checkpoint.tmp1234"
    tmp.write_text(text)
    os.replace(tmp, folder / "checkpoint")
    files["checkpoint"] = text.encode()
    return files
