"""Status patches on the version of the training they were decided from.

The patch carries the training's resourceVersion as it was read, so the API server applies it only to that version
(409 Conflict otherwise). A writer that decided from an old read (a leader that was paused or slow, or a read from
before a user's edit) loses instead of writing over what it did not see: the training is read again and decided
again from what is there now.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from im2txt_operator import logs
from im2txt_operator.api_errors import ApiException
from im2txt_operator.controller.cache import Entry, Key
from im2txt_operator.controller.context import Context

log = logging.getLogger("im2txt_operator")


async def write_status(ctx: Context, key: Key, entry: Entry, read: Mapping[str, Any], patch: dict[str, Any]) -> bool:
    """Patch status on ``read``'s resourceVersion. False: the training changed since (or is gone); the entry now
    holds what the API server has, and nothing was written."""
    version = (read.get("metadata") or {}).get("resourceVersion")
    try:
        entry.wrote(await ctx.kube.patch_training_status(*key, patch, version))
    except ApiException as e:
        if e.status not in (404, 409):
            raise
        fresh = await ctx.kube.get_training(*key)
        log.info("%s/%s: status not written: the training changed since it was read (%s)", *key,
                 "re-read" if fresh else "gone", extra=logs.of(*key, entry.body))
        if fresh is not None and fresh["metadata"].get("uid") == entry.uid():
            ctx.cache.saw(key, fresh)
        return False
    ctx.metrics.writes.labels(kind="status").inc()
    return True
