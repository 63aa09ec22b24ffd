"""The children writes of a reconcile: stage Jobs (with a headless Service and a NetworkPolicy on several nodes),
the export Job, TensorBoard.

Every create, patch and delete of a child goes through controller/owned.py (only this training's objects are
touched). Whatever stops a write is returned as a Problem for the status patch, never raised past it: a foreign
object of that name, a refusal of the spec, or a failure the next try may not meet (rejections.write_failed).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from im2txt_operator import children, logs, names, tensorboard
from im2txt_operator.controller import owned
from im2txt_operator.controller.cache import Entry, newer
from im2txt_operator.controller.context import Context
from im2txt_operator.decisions import CreateJob, Decision, Problem, SetJobSuspend
from im2txt_operator.kube import ApiException
from im2txt_operator.pods import Owner
from im2txt_operator.rejections import is_refusal, not_owned, rejected, write_failed
from im2txt_operator.spec import Settings

log = logging.getLogger("im2txt_operator")


async def write(ctx: Context, owner: Owner, child: dict[str, Any], field: str,
                *, update: bool = True) -> tuple[dict[str, Any], bool] | Problem:
    """owned.ensure, with what stops it as a Problem naming ``field`` (the spec field that asks for the child)."""
    try:
        return await owned.ensure(ctx.kube, child, owner.uid, update=update)
    except owned.NotOwned as e:
        return not_owned(e.obj, owner.name, owner.namespace)
    except ApiException as e:
        return write_failed(child, field, e)


async def act(ctx: Context, entry: Entry, owner: Owner, settings: Settings | None,
              decision: Decision) -> bool | Problem:
    """Carry out the decision's actions. True: an existing Job of this training was adopted (decide again);
    a Problem: the API refused or failed a child, or one of its names belongs to something else (report it)."""
    kube, writes = ctx.kube, ctx.metrics.writes
    for action in decision.actions:
        assert settings is not None
        if isinstance(action, CreateJob):
            role = names.stage_role(action.stage)
            *workers, manifest = children.desired(owner, settings, ran=(action.stage,))[role]
            for child in workers:  # before the Job: names that resolve, a port only its workers reach
                done = await write(ctx, owner, child, "spec.numNodes")
                if isinstance(done, Problem):
                    return done
                writes.labels(kind=child["kind"].lower()).inc()
            try:
                created, new = await owned.ensure(kube, manifest, owner.uid, update=False)
            except owned.NotOwned as e:
                return not_owned(e.obj, owner.name, owner.namespace)
            except ApiException as e:
                if not is_refusal(e.status, e.message):
                    return write_failed(manifest, "spec", e)
                # The API refused what the spec made: a spec problem, not asked again until the spec changes.
                log.warning("%s/%s: Job %s refused: %s", owner.namespace, owner.name,
                            manifest["metadata"]["name"], e.message[:500],
                            extra=logs.about(owner.namespace, owner.name, action.stage,
                                             (entry.body or {}).get("metadata", {}).get("generation")))
                return rejected(manifest, e.message, e.details)
            entry.jobs[role] = newer(entry.jobs.get(role), created)
            if not new:  # already there (a restart, or the watch had not shown it yet): adopted, decide again
                return True
            writes.labels(kind="job").inc()
            entry.remember(created)
        elif isinstance(action, SetJobSuspend):
            role = names.stage_role(action.stage)
            job = names.stage_job(owner.name, action.stage)
            try:
                patched = await kube.patch_job(owner.namespace, job, {"spec": {"suspend": action.suspend}})
            except ApiException as e:
                return write_failed({"kind": "Job", "metadata": {"name": job}}, "spec.suspend", e)
            writes.labels(kind="job").inc()
            entry.remember(patched)
            entry.jobs[role] = newer(entry.jobs.get(role), patched)
    return False


async def create_export(ctx: Context, entry: Entry, owner: Owner, settings: Settings,
                        image_size: int | None) -> Problem | None:
    """Create the export Job (at the image size stage 2 was stamped with); a Problem when that cannot be done (a
    Job of that name that is not this training's is left alone)."""
    (manifest,) = children.desired(owner, settings, image_size, ran=(2,))[names.EXPORT]
    done = await write(ctx, owner, manifest, "spec.export", update=False)
    if isinstance(done, Problem):
        log.warning("%s/%s: no export: %s", owner.namespace, owner.name, done.message,
                    extra=logs.about(owner.namespace, owner.name, "export"))
        return done
    created, new = done
    if new:
        ctx.metrics.writes.labels(kind="job").inc()
        entry.remember(created)
    entry.jobs[names.EXPORT] = newer(entry.jobs.get(names.EXPORT), created)
    return None


async def keep_tensorboard(ctx: Context, entry: Entry, owner: Owner, settings: Settings, generation: int | None,
                           status: Mapping[str, Any]) -> tuple[str | None, Problem | None]:
    """Keep the training's TensorBoard as its spec says: written once per generation while enabled (a restart
    writes it again: create, or patch its own), deleted when disabled. Returns (status.tensorboard, what stopped
    it); a failed write is tried again by the next reconcile."""
    tb_name = names.tensorboard(owner.name)
    if settings.tensorboard.enabled:
        url = tensorboard.address(owner)
        if entry.tensorboard != generation:
            for child in children.desired(owner, settings)[names.TENSORBOARD]:
                done = await write(ctx, owner, child, "spec.tensorboard")
                if isinstance(done, Problem):
                    return url, done
                ctx.metrics.writes.labels(kind="tensorboard").inc()
            entry.tensorboard = generation
        return url, None
    if entry.tensorboard is not None or status.get("tensorboard"):
        for kind in ("Deployment", "Service"):
            try:
                await owned.remove(ctx.kube, kind, owner.namespace, tb_name, owner.uid)
            except owned.NotOwned as e:  # someone else's object of that name: ours is gone, theirs stays
                log.info("%s/%s: %s; not deleted", owner.namespace, owner.name, e,
                         extra=logs.about(owner.namespace, owner.name))
                continue
            except ApiException as e:
                return None, write_failed({"kind": kind, "metadata": {"name": tb_name}}, "spec.tensorboard", e)
            ctx.metrics.writes.labels(kind="tensorboard").inc()
        entry.tensorboard = None
    return None, None
