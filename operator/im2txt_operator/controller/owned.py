"""Every write to a training's children goes through here: the one place that decides whose object a name holds.

Create; on 409 read the object that has the name, and act on it only when its controller ownerReference is this
training's uid. A Job, Service, Deployment or NetworkPolicy that a tenant or another controller made is never
patched, adopted or deleted: ``NotOwned`` carries it, and the training's status names it (rejections.not_owned).
A patch carries the object's uid and a delete a uid precondition, so an object that replaced the one read (deleted
and made again in between) is not touched either: the server refuses to change a uid.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from im2txt_operator.api_errors import ApiException
from im2txt_operator.kube import Kube
from im2txt_operator.pods import LABEL_TRAINING
from im2txt_operator.spec import KIND

# kind -> (API prefix, plural) of every kind of child a training has.
APIS = {"Job": ("/apis/batch/v1", "jobs"), "Service": ("/api/v1", "services"),
        "Deployment": ("/apis/apps/v1", "deployments"),
        "NetworkPolicy": ("/apis/networking.k8s.io/v1", "networkpolicies")}


class NotOwned(Exception):
    """An object with a child's name whose controller is not this training: left as it is."""

    def __init__(self, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        super().__init__(f"{obj.get('kind')} {meta.get('namespace')}/{meta.get('name')} is not this training's")
        self.obj = obj


class Unsettled(Exception):
    """A child write did not go through: status says why, and the work queue tries again with backoff."""


def controlled_by(obj: Mapping[str, Any], uid: str) -> bool:
    """Whether the object's controller ownerReference is the training with this uid."""
    return any(ref.get("controller") and ref.get("uid") == uid and ref.get("kind") == KIND
               for ref in (obj.get("metadata") or {}).get("ownerReferences") or ())


def controlled_by_a_training(obj: Mapping[str, Any]) -> bool:
    """Whether the object's controller ownerReference is a training named as its im2txt.dev/training label says."""
    meta = obj.get("metadata") or {}
    name = (meta.get("labels") or {}).get(LABEL_TRAINING)
    return any(ref.get("controller") and ref.get("kind") == KIND and ref.get("name") == name
               for ref in meta.get("ownerReferences") or ())


async def ensure(kube: Kube, body: dict[str, Any], uid: str, *, update: bool = True) -> tuple[dict[str, Any], bool]:
    """(the object, whether it was created now). An existing object of this training is patched to ``body``'s labels
    and spec when ``update`` (a Job, ADOPTED, is taken as it is); one of anybody else raises NotOwned. API errors
    are raised as they come."""
    api, plural = APIS[body["kind"]]
    meta = body["metadata"]
    try:
        return await kube.create(api, plural, body), True
    except ApiException as e:
        if e.status != 409:
            raise
    existing = await kube.read(api, plural, meta["namespace"], meta["name"])
    if existing is None:  # deleted between the create and the read: the next try creates it
        raise ApiException(409, "Conflict", f"{body['kind']} {meta['name']} was deleted while it was being made")
    existing.setdefault("kind", body["kind"])
    if not controlled_by(existing, uid):
        raise NotOwned(existing)
    if not update or body["kind"] in ADOPTED:
        return existing, False
    patch = {"metadata": {"uid": existing["metadata"]["uid"], "labels": meta.get("labels") or {}},
             "spec": body["spec"]}
    return await kube.merge_patch(api, plural, meta["namespace"], meta["name"], patch), False


# Kinds taken as they are when they exist already, never patched: a Job's pod template is immutable, and its
# spec.suspend is Kueue's where it queues the Job (RBAC: no patch on Jobs).
ADOPTED = ("Job",)
# The only kinds deleted through here (a disabled TensorBoard or evaluation); a suspended stage's Job is deleted by
# Kube.delete_job, NetworkPolicies go with their training (GC). tests/manifests/test_manifests_rbac_used.py holds
# the RBAC to exactly this.
REMOVABLE = ("Deployment", "Service")


async def remove(kube: Kube, kind: str, namespace: str, name: str, uid: str) -> bool:
    """Delete this training's child of that name; False when there is none. Anybody else's raises NotOwned."""
    if kind not in REMOVABLE:
        raise ValueError(f"the operator never deletes a {kind}")
    api, plural = APIS[kind]
    existing = await kube.read(api, plural, namespace, name)
    if existing is None:
        return False
    existing.setdefault("kind", kind)
    if not controlled_by(existing, uid):
        raise NotOwned(existing)
    return await kube.delete(api, plural, namespace, name, existing["metadata"]["uid"])
