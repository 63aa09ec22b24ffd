"""Leader election on a coordination.k8s.io/v1 Lease, the way client-go's leaderelection package does it.

Why not kopf's peering: it needs its own KopfPeering resources and, by design, pauses lower-priority peers
rather than electing one leader on a Lease; the Lease is what Kubernetes' own controllers use and what
`kubectl get lease` shows. Only the leader runs the operator; a standby waits. Expiry is judged on this
process's monotonic clock from when the record last changed (as client-go does), never from the timestamps in
the record, so clock skew between nodes cannot shorten a lease. A leader that cannot renew within
``renew_deadline`` (shorter than the lease) stops acting before anyone may take over.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from im2txt_operator.api_errors import ApiException
from im2txt_operator.kube import Kube

log = logging.getLogger("im2txt_operator.leader")


@dataclass(frozen=True)
class Timing:
    lease_seconds: float = 8.0  # a standby takes over this long after the leader's last renewal
    renew_deadline: float = 6.0  # a leader that could not renew for this long stops (< lease_seconds)
    retry_period: float = 1.0  # how often the leader renews and a standby looks

    def __post_init__(self) -> None:
        if not 0 < self.retry_period < self.renew_deadline < self.lease_seconds:
            raise ValueError("need 0 < retry period < renew deadline < lease duration, got "
                             f"{self.retry_period} / {self.renew_deadline} / {self.lease_seconds}")


def micro_time(now: datetime.datetime | None = None) -> str:
    """A Lease's MicroTime: RFC 3339 with microseconds."""
    return (now or datetime.datetime.now(datetime.UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _record(lease: Mapping[str, Any] | None) -> tuple[Any, ...] | None:
    """What changes when the holder renews (the part a standby watches for expiry)."""
    if lease is None:
        return None
    spec = lease.get("spec") or {}
    return (spec.get("holderIdentity"), spec.get("renewTime"), spec.get("leaseTransitions"))


def holder(lease: Mapping[str, Any] | None) -> str:
    return str(((lease or {}).get("spec") or {}).get("holderIdentity") or "")


def claimed(lease: Mapping[str, Any] | None, name: str, identity: str, lease_seconds: float,
            now: str) -> dict[str, Any]:
    """The Lease body that makes ``identity`` the holder: a renewal keeps acquireTime and the transition count."""
    old = dict(lease or {})
    spec = dict(old.get("spec") or {})
    renewing = spec.get("holderIdentity") == identity
    transitions = int(spec.get("leaseTransitions") or 0) + (0 if renewing or lease is None else 1)
    spec.update({"holderIdentity": identity, "leaseDurationSeconds": max(1, round(lease_seconds)),
                 "renewTime": now, "leaseTransitions": transitions,
                 "acquireTime": spec.get("acquireTime") if renewing and spec.get("acquireTime") else now})
    metadata = dict(old.get("metadata") or {"name": name})
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": spec}


class LeaderElector:
    """``await acquire()`` returns once this process holds the Lease; ``hold()`` renews it and returns when it
    is lost; ``release()`` hands it over at once (on a clean shutdown)."""

    def __init__(self, kube: Kube, namespace: str, name: str, identity: str, timing: Timing = Timing()) -> None:
        self.kube, self.namespace, self.name, self.identity, self.timing = kube, namespace, name, identity, timing
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self._lease: dict[str, Any] | None = None
        self._read_at: float | None = None  # monotonic time of the last Lease read that the API answered
        self._error = ""  # why the last attempt failed ("" after a good one)
        self._observed_before: tuple[Any, ...] | None = None  # the record read by the last attempt, before it wrote
        # Until when this process may act as the leader: renew_deadline after it SENT its last successful write of
        # the Lease. A standby takes over only lease_seconds after it SAW that write, so this ends first.
        self._leading_until = 0.0

    def _expired(self, now: float, lease: Mapping[str, Any] | None) -> bool:
        """Whether the holder let ``leaseDurationSeconds`` (the holder's promise; ours by default) pass since this
        process last saw the record change."""
        duration = ((lease or {}).get("spec") or {}).get("leaseDurationSeconds") or self.timing.lease_seconds
        return now - self._observed_at >= float(duration)

    async def _try(self) -> bool:
        """One attempt to acquire or renew; True when this process holds the Lease afterwards."""
        lease = await self.kube.get_lease(self.namespace, self.name)
        now = self._read_at = time.monotonic()
        self._error = ""
        record = _record(lease)
        self._observed_before = record
        if record != self._observed:
            self._observed, self._observed_at = record, now
        current = holder(lease)
        if lease is not None and current not in ("", self.identity) and not self._expired(now, lease):
            return False  # someone else holds it and has renewed recently
        body = claimed(lease, self.name, self.identity, self.timing.lease_seconds, micro_time())
        sent = time.monotonic()
        try:
            if lease is None:
                self._lease = await self.kube.create_lease(self.namespace, body)
            else:
                self._lease = await self.kube.replace_lease(self.namespace, body)
        except ApiException as e:
            if e.status in (404, 409):  # another candidate was faster, or the Lease went: look again
                return False
            raise
        self._observed, self._observed_at = _record(self._lease), time.monotonic()
        self._leading_until = sent + self.timing.renew_deadline
        return True

    def time_left(self) -> float:
        """Seconds this process may still act as the leader (<= 0: stop writing). The operator's API client asks
        it before every write (kube.Kube's fence)."""
        return self._leading_until - time.monotonic()

    def standby_health(self) -> tuple[bool, str]:
        """Whether a standby could take over now: the API answered its last Lease read, within one lease
        duration. The reason says who leads, or what went wrong."""
        if self._read_at is None or time.monotonic() - self._read_at > self.timing.lease_seconds:
            why = self._error or "no answer yet"
            return False, f"standby: cannot read the Lease {self.namespace}/{self.name}: {why}"
        return True, f"standby: Lease {self.namespace}/{self.name} is held by {holder_or(self._observed) or 'nobody'}"

    async def acquire(self) -> None:
        """Wait until this process holds the Lease. Logs once what it waits for (another holder, or an API that
        does not answer: then each new kind of error once), and how it got the Lease: taken over from another
        holder, or taken back from a previous run of this same identity (a container restarted after SIGKILL keeps
        its pod name, and the Lease still names it)."""
        announced, last_error = "", ""
        while True:
            try:
                if await self._try():
                    was = holder_or(self._observed_before)
                    if was == self.identity:
                        log.info("became the leader: took the Lease %s/%s back (it still named %s: this pod's "
                                 "previous run ended without releasing it)", self.namespace, self.name, self.identity)
                    else:
                        log.info("became the leader (Lease %s/%s, was %r)", self.namespace, self.name, was or None)
                    return
            except Exception as e:  # the API is unreachable or refuses: keep trying
                self._error = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
                if self._error != last_error:
                    log.warning("standby: cannot read or claim the Lease %s/%s (%s); trying again every %.0f s",
                                self.namespace, self.name, self._error, self.timing.retry_period)
                    last_error = self._error
                await asyncio.sleep(self.timing.retry_period)
                continue
            current = holder_or(self._observed)
            if current and current != announced:
                log.info("standby: Lease %s/%s is held by %r", self.namespace, self.name, current)
                announced = current
            last_error = ""
            await asyncio.sleep(self.timing.retry_period)

    async def hold(self) -> None:
        """Renew every retry period; return when the Lease could not be renewed within the renew deadline, or
        another process holds it. Each renewal may take only the time left (a hung request must not outlast it)."""
        while True:
            await asyncio.sleep(self.timing.retry_period)
            if self.time_left() > 0:
                try:
                    if await asyncio.wait_for(self._try(), timeout=self.time_left()):
                        continue
                    log.error("lost the Lease %s/%s to %r", self.namespace, self.name, holder_or(self._observed))
                    return
                except TimeoutError:
                    log.warning("renewing the Lease %s/%s took longer than the time left on it", self.namespace,
                                self.name)
                except Exception as e:
                    log.warning("renewing the Lease %s/%s failed: %s", self.namespace, self.name, e)
            if self.time_left() <= 0:
                log.error("could not renew the Lease %s/%s within %.0f s; stopping", self.namespace, self.name,
                          self.timing.renew_deadline)
                return

    async def release(self) -> None:
        """Give the Lease up (holder cleared, 1 s duration) so that a standby need not wait for it to expire.
        Read afresh: a renewal cancelled in flight may have written a newer version than the one remembered."""
        if self._lease is None:
            return
        for _attempt in range(3):
            try:
                lease = await self.kube.get_lease(self.namespace, self.name)
                if holder(lease) != self.identity:
                    return  # not ours (any more): nothing to give up
                body = claimed(lease, self.name, self.identity, 1, micro_time())
                body["spec"]["holderIdentity"] = ""
                await self.kube.replace_lease(self.namespace, body)
                log.info("released the Lease %s/%s", self.namespace, self.name)
                return
            except ApiException as e:
                if e.status != 409:
                    log.warning("releasing the Lease %s/%s failed: %s", self.namespace, self.name, e)
                    return
            except Exception as e:  # best effort: it expires anyway
                log.warning("releasing the Lease %s/%s failed: %s", self.namespace, self.name, e)
                return


def holder_or(record: tuple[Any, ...] | None) -> str | None:
    return record[0] if record else None
