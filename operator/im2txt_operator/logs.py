"""The fields of a log line about one training.

kopf's formatters know ``k8s_ref``: with ``--log-format json`` it becomes the line's ``object`` field
(apiVersion, kind, namespace, name), as on kopf's own lines; the other keys become fields of their own. In text
the message itself names the training, as it always did.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from im2txt_operator.api_errors import ApiException
from im2txt_operator.spec import GROUP, KIND, VERSION


def about(namespace: str, name: str, stage: Any = None, generation: Any = None) -> dict[str, Any]:
    """``extra=`` for a line about this training (``namespace`` and ``training`` also at the top, for queries).
    ``stage`` is the stage the line is about, or the child it is about where that is not a stage (export,
    tensorboard, evaluation)."""
    return {"k8s_ref": {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "namespace": namespace, "name": name},
            "namespace": namespace, "training": name, "stage": stage, "generation": generation}


def of(namespace: str, name: str, body: Mapping[str, Any] | None) -> dict[str, Any]:
    """``about`` with the stage and generation of the training's last known ``body``: the stage it runs
    (status.stage), else the one it starts at (spec.stage); None where even that is unknown (a training never read)."""
    body = body or {}
    stage = (body.get("status") or {}).get("stage") or (body.get("spec") or {}).get("stage")
    return about(namespace, name, stage, (body.get("metadata") or {}).get("generation"))


def short(e: Exception) -> str:
    """An error in a few words for a log line (an API answer: its code, reason and the start of its message)."""
    if isinstance(e, ApiException):
        return f"HTTP {e.status} {e.reason}: {e.message[:200]}"
    return f"{type(e).__name__}: {e}"
