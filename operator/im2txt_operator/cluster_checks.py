"""What only the cluster can tell before a Job exists: the claims of pvc:// paths must exist (with a TTL cache).

Claims found in the last ``ttl`` seconds are not looked up again (a burst of new trainings on one claim costs one
lookup); what is missing is looked up every time, so a fix is seen at once. The credentials Secret is not read (no
RBAC on Secrets): a missing one shows in the pod's status, see pod_problems.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from im2txt_operator.decisions import Problem
from im2txt_operator.paths import PvcPath
from im2txt_operator.spec import Settings

ClaimLookup = Callable[[str, str], Awaitable[bool | None]]  # (namespace, claim) -> exists; None: may not look


@dataclass
class ClusterChecks:
    """The checks and their cache: one per operator (in its context), none at module level."""

    ttl: float = 60.0
    clock: Callable[[], float] = time.monotonic
    seen: dict[tuple[str, str], float] = field(default_factory=dict)  # (namespace, claim) -> when found

    async def problem(self, claim_exists: ClaimLookup, namespace: str, settings: Settings) -> Problem | None:
        for field_name, path in (("dataPath", settings.data_path), ("outputPath", settings.output_path)):
            if not isinstance(path, PvcPath):
                continue
            key = (namespace, path.claim)
            if self.clock() - self.seen.get(key, -self.ttl) < self.ttl:
                continue
            found = await claim_exists(namespace, path.claim)
            if found:
                self.seen[key] = self.clock()
            elif found is False:
                return Problem(f"spec.{field_name}", "ClaimNotFound",
                               f"spec.{field_name}: PersistentVolumeClaim {path.claim!r} not found in namespace "
                               f"{namespace!r}; expected an existing claim for {path.url}")
        return None

    def prune(self) -> None:
        """Forget what expired (the periodic loop calls it)."""
        now = self.clock()
        for key, at in list(self.seen.items()):
            if now - at >= self.ttl:
                del self.seen[key]
