"""The children writes of a reconcile: stage Jobs (with a headless Service and a NetworkPolicy on several nodes),
the export Job, TensorBoard, the evaluation.

Every create, patch and delete of a child goes through controller/owned.py (only this training's objects are
touched). Whatever stops a write is returned as a Problem for the status patch, never raised past it: a foreign
object of that name, a refusal of the spec, or a failure the next try may not meet (rejections.write_failed).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from im2txt_operator import children, logs, names, tensorboard
from im2txt_operator.api_errors import ApiException
from im2txt_operator.controller import owned
from im2txt_operator.controller.cache import Entry, newer
from im2txt_operator.controller.context import Context
from im2txt_operator.decisions import CreateJob, Decision, DeleteJob, Problem
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
                            extra={**logs.of(owner.namespace, owner.name, entry.body), "stage": action.stage})
                return rejected(manifest, e.message, e.details)
            entry.jobs[role] = newer(entry.jobs.get(role), created)
            if not new:  # already there (a restart, or the watch had not shown it yet): adopted, decide again
                return True
            writes.labels(kind="job").inc()
            entry.remember(created)
        elif isinstance(action, DeleteJob):
            # The watch brings the Job marked deleted, then gone; the decision waits for that before a re-create.
            job = names.stage_job(owner.name, action.stage)
            try:
                await kube.delete_job(owner.namespace, job, action.uid)
            except ApiException as e:
                return write_failed({"kind": "Job", "metadata": {"name": job}}, "spec.suspend", e)
            writes.labels(kind="job").inc()
    return False


async def create_export(ctx: Context, entry: Entry, owner: Owner, settings: Settings,
                        image_size: int | None) -> Problem | None:
    """Create the export Job (at the image size stage 2 was stamped with); a Problem when that cannot be done (a
    Job of that name that is not this training's is left alone)."""
    (manifest,) = children.desired(owner, settings, image_size, ran=(2,))[names.EXPORT]
    done = await write(ctx, owner, manifest, "spec.export", update=False)
    if isinstance(done, Problem):
        log.warning("%s/%s: no export: %s", owner.namespace, owner.name, done.message,
                    extra={**logs.of(owner.namespace, owner.name, entry.body), "stage": "export"})
        return done
    created, new = done
    if new:
        ctx.metrics.writes.labels(kind="job").inc()
        entry.remember(created)
    entry.jobs[names.EXPORT] = newer(entry.jobs.get(names.EXPORT), created)
    return None


# The long-lived children of a role (not Jobs): their kinds.
_KINDS = {names.TENSORBOARD: ("Deployment", "Service"), names.EVALUATION: ("Deployment",)}
ABSENT = 0  # Entry.evaluation: known to have no evaluation Deployment (generations start at 1)


async def _keep(ctx: Context, owner: Owner, settings: Settings, role: str, field: str, written: int | None,
                generation: int | None, enabled: bool, present: bool) -> tuple[int | None, Problem | None]:
    """Keep a role's long-lived children as the spec (``field``) says: written once per generation while enabled
    (unless ``written`` is this generation: create, or patch its own), deleted when disabled and ``present`` (they
    may exist). Returns (the generation they are written for, None when not written; what stopped it); a failed
    write is tried again by the next reconcile."""
    if enabled:
        if written == generation:
            return written, None
        for child in children.desired(owner, settings)[role]:
            done = await write(ctx, owner, child, field)
            if isinstance(done, Problem):
                return written, done
            ctx.metrics.writes.labels(kind=role).inc()
        return generation, None
    name = names.child(owner.name, role)
    for kind in _KINDS[role] if present else ():
        try:
            await owned.remove(ctx.kube, kind, owner.namespace, name, owner.uid)
        except owned.NotOwned as e:  # someone else's object of that name: ours is gone, theirs stays
            log.info("%s/%s: %s; not deleted", owner.namespace, owner.name, e,
                     extra=logs.about(owner.namespace, owner.name, role, generation))
            continue
        except ApiException as e:
            return written, write_failed({"kind": kind, "metadata": {"name": name}}, field, e)
        ctx.metrics.writes.labels(kind=role).inc()
    return None, None


async def keep_tensorboard(ctx: Context, entry: Entry, owner: Owner, settings: Settings, generation: int | None,
                           status: Mapping[str, Any]) -> tuple[str | None, Problem | None]:
    """The training's TensorBoard Deployment and Service as its spec says (``_keep``; a restart writes them again).
    Returns (status.tensorboard, what stopped it)."""
    enabled = settings.tensorboard.enabled
    entry.tensorboard, problem = await _keep(ctx, owner, settings, names.TENSORBOARD, "spec.tensorboard",
                                             entry.tensorboard, generation, enabled,
                                             entry.tensorboard is not None or bool(status.get("tensorboard")))
    return (tensorboard.address(owner) if enabled else None), problem


async def keep_evaluation(ctx: Context, entry: Entry, owner: Owner, settings: Settings, generation: int | None,
                          status: Mapping[str, Any], *, trained: bool) -> tuple[int | None, Problem | None]:
    """The training's evaluation Deployment as its spec says (``_keep``), made once the training has ``trained``
    (evaluation.due). Returns (the generation it is written for, which status.evaluation.generation records so
    that a restarted operator does not write it again; what stopped it). status.evaluation's figures stay when it
    is turned off (they were measured)."""
    enabled = settings.evaluation.enabled
    recorded = (status.get("evaluation") or {}).get("generation")
    written = entry.evaluation if entry.evaluation is not None else recorded
    if enabled and written in (None, ABSENT) and not trained:
        return None, None  # nothing to evaluate yet: no evaluator pod beside a queued or starting training
    kept, problem = await _keep(ctx, owner, settings, names.EVALUATION, "spec.evaluation", written, generation,
                                enabled, written not in (None, ABSENT))
    entry.evaluation = kept if enabled or problem else ABSENT
    return kept, problem
