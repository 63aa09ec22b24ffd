"""The children writes of a reconcile: stage Jobs and their headless Services, the export Job, TensorBoard."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from im2txt_operator import children, logs, names, tensorboard
from im2txt_operator.controller.cache import Entry, newer, owned_by
from im2txt_operator.controller.context import Context
from im2txt_operator.decisions import CreateJob, Decision, DeleteJob, Problem
from im2txt_operator.kube import ApiException
from im2txt_operator.pods import Owner
from im2txt_operator.rejections import is_refusal, not_owned, rejected
from im2txt_operator.spec import Settings

log = logging.getLogger("im2txt_operator")


def _owner_body(owner: Owner) -> dict[str, Any]:
    return {"metadata": {"uid": owner.uid}}


async def act(ctx: Context, entry: Entry, owner: Owner, settings: Settings | None,
              decision: Decision) -> bool | Problem:
    """Carry out the decision's actions. True: an existing Job of this training was adopted (decide again);
    a Problem: the API refused the Job, or a Job of that name belongs to something else (report it)."""
    kube, writes = ctx.kube, ctx.metrics.writes
    for action in decision.actions:
        assert settings is not None
        if isinstance(action, CreateJob):
            role = names.stage_role(action.stage)
            *services, manifest = children.desired(owner, settings, ran=(action.stage,))[role]
            for service in services:  # the workers' names resolve through it from their first lookup
                await kube.create_or_patch("/api/v1", "services", service)
                writes.labels(kind="service").inc()
            try:
                created = await kube.create_job(owner.namespace, manifest)
            except ApiException as e:
                if is_refusal(e.status, e.message):  # the API refused what the spec made: a spec problem
                    log.warning("%s/%s: Job %s refused: %s", owner.namespace, owner.name,
                                manifest["metadata"]["name"], e.message[:500],
                                extra=logs.about(owner.namespace, owner.name, action.stage,
                                                 (entry.body or {}).get("metadata", {}).get("generation")))
                    return rejected(manifest, e.message, e.details)
                if e.status != 409:
                    raise
                # Already there (a restart, or the watch had not shown it yet): adopt it if it is this training's.
                existing = await kube.get_job(owner.namespace, manifest["metadata"]["name"])
                if not owned_by(existing, _owner_body(owner)):
                    return not_owned(existing, owner.name, owner.namespace)
                entry.jobs[role] = newer(entry.jobs.get(role), existing)
                return True
            writes.labels(kind="job").inc()
            entry.remember(created)
            entry.jobs[role] = newer(entry.jobs.get(role), created)
        elif isinstance(action, DeleteJob):
            # The watch brings the Job marked deleted, then gone; the decision waits for that before a re-create.
            await kube.delete_job(owner.namespace, names.stage_job(owner.name, action.stage), action.uid)
            writes.labels(kind="job").inc()
    return False


async def create_export(ctx: Context, entry: Entry, owner: Owner, settings: Settings, image_size: int | None) -> bool:
    """Create the export Job (at the image size stage 2 was stamped with); False when a Job of that name is not this
    training's (it is left alone)."""
    (manifest,) = children.desired(owner, settings, image_size, ran=(2,))[names.EXPORT]
    try:
        created = await ctx.kube.create_job(owner.namespace, manifest)
    except ApiException as e:
        if e.status != 409:
            raise
        created = await ctx.kube.get_job(owner.namespace, manifest["metadata"]["name"])
        if not owned_by(created, _owner_body(owner)):
            log.warning("%s/%s: Job %s is not this training's; no export", owner.namespace, owner.name,
                        manifest["metadata"]["name"], extra=logs.about(owner.namespace, owner.name, "export"))
            return False
    else:
        ctx.metrics.writes.labels(kind="job").inc()
        entry.remember(created)
    entry.jobs[names.EXPORT] = newer(entry.jobs.get(names.EXPORT), created)
    return True


async def keep_tensorboard(ctx: Context, entry: Entry, owner: Owner, settings: Settings, generation: int | None,
                           status: Mapping[str, Any]) -> str | None:
    """Keep the training's TensorBoard as its spec says: written once per generation while enabled (a restart
    writes it again: create, or merge-patch what exists), deleted when disabled. Returns status.tensorboard."""
    kube, tb_name = ctx.kube, names.tensorboard(owner.name)
    if settings.tensorboard.enabled:
        if entry.tensorboard != generation:
            deployment, service = children.desired(owner, settings)[names.TENSORBOARD]
            await kube.create_or_patch("/apis/apps/v1", "deployments", deployment)
            await kube.create_or_patch("/api/v1", "services", service)
            ctx.metrics.writes.labels(kind="tensorboard").inc(2)
            entry.tensorboard = generation
        return tensorboard.address(owner)
    if entry.tensorboard is not None or status.get("tensorboard"):
        await kube.delete_if_present("/apis/apps/v1", "deployments", owner.namespace, tb_name)
        await kube.delete_if_present("/api/v1", "services", owner.namespace, tb_name)
        ctx.metrics.writes.labels(kind="tensorboard").inc(2)
        entry.tensorboard = None
    return None
