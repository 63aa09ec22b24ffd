"""cluster_checks: claims of pvc:// paths must exist; found ones are cached for a TTL, missing ones never."""

from __future__ import annotations

from im2txt_operator.cluster_checks import ClusterChecks
from im2txt_operator.spec import parse_spec

SPEC = parse_spec({"dataPath": "pvc://data/coco/", "outputPath": "pvc://runs/coco/"})


class Claims:
    """An in-memory stand-in for the API's claim lookup that counts the calls."""

    def __init__(self, existing: set[str], allowed: bool = True) -> None:
        self.existing, self.allowed, self.calls = existing, allowed, 0

    async def __call__(self, namespace: str, claim: str) -> bool | None:
        self.calls += 1
        return (claim in self.existing) if self.allowed else None


async def test_a_missing_claim_names_the_field_and_is_looked_up_every_time() -> None:
    now = [0.0]
    checks, claims = ClusterChecks(ttl=60, clock=lambda: now[0]), Claims({"data"})
    problem = await checks.problem(claims, "ml", SPEC)
    assert problem is not None and (problem.field, problem.reason) == ("spec.outputPath", "ClaimNotFound")
    assert problem.message == ("spec.outputPath: PersistentVolumeClaim 'runs' not found in namespace 'ml'; expected "
                               "an existing claim for pvc://runs/coco")
    assert await checks.problem(claims, "ml", SPEC) is not None and claims.calls == 3  # data cached, runs asked again
    claims.existing.add("runs")
    assert await checks.problem(claims, "ml", SPEC) is None and claims.calls == 4  # the fix is seen at once


async def test_found_claims_are_cached_for_the_ttl_then_pruned() -> None:
    now = [0.0]
    checks, claims = ClusterChecks(ttl=60, clock=lambda: now[0]), Claims({"data", "runs"})
    for _ in range(5):
        assert await checks.problem(claims, "ml", SPEC) is None
    assert claims.calls == 2  # one lookup per claim for a burst
    now[0] = 61.0
    checks.prune()
    assert checks.seen == {}
    assert await checks.problem(claims, "ml", SPEC) is None and claims.calls == 4
    assert await checks.problem(claims, "other", SPEC) is None and claims.calls == 6  # per namespace


async def test_no_right_to_look_skips_the_check() -> None:
    claims = Claims(set(), allowed=False)  # RBAC without persistentvolumeclaims get: the pod shows the problem
    assert await ClusterChecks().problem(claims, "ml", SPEC) is None
    assert await ClusterChecks().problem(claims, "ml", parse_spec({"dataPath": "ufile://b-1/d/",
                                                                   "outputPath": "ufile://b-1/o/",
                                                                   "credentialsSecret": "k"})) is None
    assert claims.calls == 2
