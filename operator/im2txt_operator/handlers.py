"""kopf handlers: the imperative shell around the pure core.

Event-driven and level-triggered: every event of a training or of one of its Jobs leads to one
``reconcile`` of that training, which reads the cached objects, asks ``lifecycle.decide`` what to do,
does it (create or patch a Job), merge-patches only the changed status fields, and posts one Event per
transition. Handlers are ``on.event`` handlers, so kopf writes nothing of its own to the trainings (no
finalizers, no progress annotations): a stage transition costs at most three writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import kopf

from im2txt_operator import children, lifecycle, logs, names, tensorboard
from im2txt_operator import conditions as cond
from im2txt_operator import export as exporting
from im2txt_operator.cluster_checks import ClusterChecks
from im2txt_operator.kube import ApiException, Kube
from im2txt_operator.lifecycle import CreateJob, Decision, Problem, SetJobSuspend, decide, job_state, status_patch
from im2txt_operator.loss import LossUpdate, loss_patch
from im2txt_operator.metrics import CONTROLLER, Metrics
from im2txt_operator.paths import UFilePath
from im2txt_operator.pod_problems import REASONS as POD_REASONS
from im2txt_operator.pod_problems import pod_problem
from im2txt_operator.pod_reads import PodReads, observed_fields, read_pods
from im2txt_operator.pods import LABEL_MANAGED_BY, LABEL_TRAINING, MANAGED_BY, Owner
from im2txt_operator.progress import eta, percent
from im2txt_operator.rejections import is_refusal, not_owned, rejected
from im2txt_operator.shared_outputs import output_in_use
from im2txt_operator.spec import GROUP, KIND, PLURAL, UFILE_DOMAINS, VERSION, Settings, SpecError, parse_spec

log = logging.getLogger("im2txt_operator")

PROGRESS_INTERVAL = 30.0  # seconds; IM2TXT_PROGRESS_INTERVAL, read at startup, overrides it (tests, the demo)
RETRY_DELAYS = (1, 2, 5, 10, 30, 60)


def _rv(obj: Mapping[str, Any] | None) -> int | None:
    try:
        return int((obj or {}).get("metadata", {}).get("resourceVersion"))
    except (TypeError, ValueError):
        return None


def newer(cached: dict[str, Any] | None, incoming: dict[str, Any]) -> dict[str, Any]:
    """Keep the fresher of two versions of an object (watch events and our own write responses race).

    resourceVersions are opaque by contract but are etcd revisions (integers) on every real server; when
    they are not integers, the incoming one wins.
    """
    a, b = _rv(cached), _rv(incoming)
    if cached is not None and a is not None and b is not None and a > b:
        return cached
    return incoming


@dataclass
class Entry:
    """What the operator remembers about one training (rebuilt from the watches after a restart)."""

    body: dict[str, Any] | None = None
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)  # by role (names.ROLES)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    retry: asyncio.Task[None] | None = None
    failures: int = 0
    sample: tuple[int, float] | None = None  # (step, monotonic time) for the ETA without sec/step
    # The API refused this generation's Job (422, or an admission denial): not tried again until the spec changes.
    rejected: tuple[int | None, Problem] | None = None
    # The running stage's pod cannot start (its Job's name, the problem), from the pod's status: a missing Secret.
    pod_problem: tuple[str, Problem] | None = None
    # Whether pod_problem was read from the pods since this operator started (False: nothing is known yet).
    pods_read: bool = False
    # The generation whose TensorBoard Deployment and Service were last written (None: none written).
    tensorboard: int | None = None
    # resourceVersions our own writes produced: their watch events bring nothing new, so they are not
    # reconciled again (half the work in a burst). Anything else, or a restart, reconciles as usual.
    own: set[str] = field(default_factory=set)

    def remember(self, obj: Mapping[str, Any]) -> None:
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        if rv:
            self.own.add(rv)
            if len(self.own) > 16:
                self.own.clear()

    def is_own(self, obj: Mapping[str, Any]) -> bool:
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        if rv in self.own:
            self.own.discard(rv)
            return True
        return False


@dataclass
class State:
    kube: Kube | None = None
    entries: dict[tuple[str, str], Entry] = field(default_factory=dict)
    loop_task: asyncio.Task[None] | None = None
    interval: float = PROGRESS_INTERVAL
    checks: ClusterChecks = field(default_factory=ClusterChecks)
    index: Any = None  # kopf.Index of our Jobs by (namespace, training)
    ufile_domains: tuple[str, ...] = UFILE_DOMAINS  # the hosts spec.ufile may name (run --ufile-domains)
    waiting: int = 0  # reconciles asked for that wait for their training's lock (the queue's depth, with retries)

    def entry(self, key: tuple[str, str]) -> Entry:
        return self.entries.setdefault(key, Entry())


STATE = State()
METRICS = Metrics(lambda: [(e.body or {}).get("status") or {} for e in list(STATE.entries.values()) if e.body],
                  lambda: [e.body for e in list(STATE.entries.values()) if e.body],
                  lambda: STATE.waiting + sum(1 for e in list(STATE.entries.values())
                                              if e.retry is not None and not e.retry.done()))


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # Watch only our own Jobs, filtered by the API server: memory stays flat beside unrelated Jobs.
    settings.watching.label_selectors["batch", "jobs"] = f"{LABEL_MANAGED_BY}={MANAGED_BY}"
    # Our transitions are posted with kopf.event(); kopf's own "Handler succeeded" lines stay out of Events.
    settings.posting.level = logging.WARNING
    settings.posting.reporting_component = "im2txt-operator"
    settings.batching.batch_window = 0.02  # react quickly; events are level-triggered anyway
    settings.watching.server_timeout = 600
    STATE.kube = Kube(fence=memo.get("fence"))  # leader-elected: no write once the Lease may be gone
    METRICS.leader.set(1)  # the operator runs: standalone, or this process holds the Lease
    STATE.interval = float(os.environ.get("IM2TXT_PROGRESS_INTERVAL") or PROGRESS_INTERVAL)
    STATE.ufile_domains = tuple(memo.get("ufile_domains") or UFILE_DOMAINS)  # run --ufile-domains
    port = int(memo.get("metrics_port", 9090))  # from `run --metrics-port` (cli); 0: no metrics endpoint
    if port:
        try:
            METRICS.serve(port)
        except OSError as e:  # metrics are auxiliary: never keep the operator from running
            log.warning("metrics endpoint on port %s not started: %s", port, e)


def _ensure_loop() -> None:
    """Start the periodic loop from inside a handler: its task then inherits kopf's context (kopf.event()
    needs the operator's settings and event queue, which a task started at startup does not see)."""
    if STATE.loop_task is None:
        STATE.loop_task = asyncio.create_task(_periodic(STATE.interval), name="im2txt-progress")


@kopf.on.cleanup()
async def cleanup(**_: Any) -> None:
    if STATE.loop_task is not None:
        STATE.loop_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await STATE.loop_task
    for entry in STATE.entries.values():
        if entry.retry is not None:
            entry.retry.cancel()
    if STATE.kube is not None:
        await STATE.kube.close()


@kopf.on.event(GROUP, VERSION, PLURAL)
async def training_event(event: Mapping[str, Any], training_jobs: kopf.Index[Any, Any], **_: Any) -> None:
    STATE.index = training_jobs
    _ensure_loop()
    obj = dict(event["object"])
    key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
    if event.get("type") == "DELETED":
        # The Jobs are owned by the training: the garbage collector deletes them. The data stays.
        forget(key)
        log.info("training %s/%s deleted; its Jobs go with it (ownerReferences)", *key, extra=logs.about(*key))
        return
    entry = STATE.entry(key)
    if entry.body is not None and entry.body["metadata"].get("uid") != obj["metadata"].get("uid"):
        STATE.entries[key] = entry = Entry()  # deleted and re-created under the same name
    entry.body = newer(entry.body, obj)
    if not entry.is_own(obj):
        await reconcile(key)


def forget(key: tuple[str, str]) -> None:
    entry = STATE.entries.pop(key, None)
    if entry is not None and entry.retry is not None:
        entry.retry.cancel()


def _job_key(body: Mapping[str, Any]) -> tuple[tuple[str, str], str] | None:
    """(the training's key, the Job's role) of a Job of ours."""
    meta = body.get("metadata") or {}
    labels = meta.get("labels") or {}
    training, role = labels.get(LABEL_TRAINING), children.role_of(labels)
    if not training or role is None:
        return None
    return (meta.get("namespace", ""), training), role


@kopf.index("batch", "v1", "jobs", labels={LABEL_MANAGED_BY: MANAGED_BY})
def training_jobs(body: kopf.Body, **_: Any) -> dict[tuple[str, str], dict[str, Any]] | None:
    """Our Jobs by training. kopf fills all indexes before any handler runs, so after a restart the first
    reconcile of a training already sees its Jobs (no create attempts that would only answer 409)."""
    found = _job_key(body)
    return {found[0]: dict(body)} if found else None


@kopf.on.event("batch", "v1", "jobs", labels={LABEL_MANAGED_BY: MANAGED_BY})
async def job_event(event: Mapping[str, Any], training_jobs: kopf.Index[Any, Any], **_: Any) -> None:
    STATE.index = training_jobs
    _ensure_loop()
    obj = dict(event["object"])
    meta = obj["metadata"]
    found = _job_key(obj)
    if found is None:
        return
    key, role = found
    entry = STATE.entries.get(key)
    if event.get("type") == "DELETED":
        if entry is not None and entry.jobs.get(role, {}).get("metadata", {}).get("uid") == meta.get("uid"):
            del entry.jobs[role]
            # The garbage collector deletes Jobs after their training; the two watches are not ordered, so ask
            # the API whether the training still exists before re-creating a deleted Job.
            assert STATE.kube is not None
            try:
                current = await STATE.kube.get_training(*key)
            except Exception as e:  # the API is unreachable: decide later, with the backoff of reconcile
                log.warning("reading training %s/%s failed (%s); retrying", *key, _short(e), extra=logs.about(*key))
                _schedule_retry(key, entry, RETRY_DELAYS[0])
                return
            if current is None or current["metadata"].get("uid") != (entry.body or {}).get("metadata", {}).get("uid"):
                STATE.entries.pop(key, None)
                return
            entry.body = newer(entry.body, current)
            await reconcile(key)
        return
    if entry is None:
        # No training seen under that key (not yet, or gone): its own event reconciles it, reading the Jobs from
        # the index. Making an entry here would bring a gone training's Jobs back into the cache until they go.
        return
    entry.jobs[role] = newer(entry.jobs.get(role), obj)
    if not entry.is_own(obj):
        await reconcile(key)


def _observed_jobs(key: tuple[str, str], entry: Entry) -> None:
    """Fold the index (complete after a restart) into the entry's own view (fresher after our writes)."""
    if STATE.index is None:
        return
    for job in STATE.index.get(key, ()):
        found = _job_key(job)
        if found is not None and found[1] not in entry.jobs:
            entry.jobs[found[1]] = job


def _owned_by(job: Mapping[str, Any], body: Mapping[str, Any]) -> bool:
    uid = body["metadata"].get("uid")
    return any(ref.get("uid") == uid and ref.get("kind") == KIND
               for ref in job.get("metadata", {}).get("ownerReferences") or ())


async def reconcile(key: tuple[str, str]) -> None:
    entry = STATE.entries.get(key)
    if entry is None:
        return
    METRICS.queue_adds.labels(name=CONTROLLER).inc()
    STATE.waiting += 1
    started: float | None = None
    try:
        async with entry.lock:
            STATE.waiting -= 1
            started = time.monotonic()
            await _reconcile_locked(key, entry)
        entry.failures = 0
        METRICS.reconciled(time.monotonic() - started, ok=True)
    except Exception as e:  # any API failure: log, retry with backoff
        delay = RETRY_DELAYS[min(entry.failures, len(RETRY_DELAYS) - 1)]
        entry.failures += 1
        METRICS.reconciled(time.monotonic() - (started or time.monotonic()), ok=False)
        log.warning("reconcile of %s/%s failed (%s); retrying in %ss", *key, _short(e), delay,
                    extra=logs.about(*key))
        _schedule_retry(key, entry, delay)
    finally:
        if started is None:  # never got the lock (an error or a cancel while waiting)
            STATE.waiting -= 1


def _short(e: Exception) -> str:
    if isinstance(e, ApiException):
        return f"HTTP {e.status} {e.reason}: {e.message[:200]}"
    return f"{type(e).__name__}: {e}"


def _schedule_retry(key: tuple[str, str], entry: Entry, delay: float) -> None:
    if entry.retry is not None and not entry.retry.done():
        return

    METRICS.queue_retries.labels(name=CONTROLLER).inc()

    async def later() -> None:
        await asyncio.sleep(delay)
        entry.retry = None
        await reconcile(key)

    entry.retry = asyncio.create_task(later())


async def _reconcile_locked(key: tuple[str, str], entry: Entry) -> None:
    kube = STATE.kube
    body = entry.body
    if kube is None or body is None or body["metadata"].get("deletionTimestamp"):
        return
    namespace, name = key
    meta = body["metadata"]
    generation = meta.get("generation")
    status = body.get("status") or {}
    owner = Owner(name=name, namespace=namespace, uid=meta.get("uid", ""))
    problem: Problem | None = None
    settings: Settings | None
    try:
        settings = parse_spec(body.get("spec"), STATE.ufile_domains)
        names.check(name)  # the name must leave room for every child's suffix
    except SpecError as e:
        settings, problem = None, Problem(e.field, "InvalidSpec", str(e))
    if problem is None and entry.rejected is not None and entry.rejected[0] == generation:
        problem = entry.rejected[1]  # the API refused this spec's Job: say so again, do not ask again
    if not entry.pods_read and _ready_reason(status) in POD_REASONS and status.get("jobName"):
        # Status holds a problem a pod showed before this operator started: read the pod again before status is
        # written, so that a problem that still exists is never reported fixed.
        _set_pod_problem(entry, status["jobName"], await kube.list_pods(namespace, status["jobName"]))
    if problem is None and entry.pod_problem is not None and entry.pod_problem[0] == status.get("jobName"):
        problem = entry.pod_problem[1]  # the stage's pod cannot start (e.g. its Secret is missing)
    _observed_jobs(key, entry)
    failures: dict[int, Any] = {}

    def observe() -> dict[int, lifecycle.JobState]:
        # Jobs of another object with this name (an earlier training) are not ours to drive.
        return {s: replace(job_state(j, s), failure=failures.get(s)) for role, j in entry.jobs.items()
                if (s := names.stage_number(role)) is not None and _owned_by(j, body)}

    jobs = observe()
    # A stage that just ended: its pods once more, for why it failed and the step, loss and upload it ended with.
    observed: dict[str, Any] = {}
    for s, reads in (await _stage_ends(kube, namespace, settings, status, jobs)).items():
        failures[s] = reads.failure
        observed |= observed_fields(reads, final=True)
    jobs = observe()
    status_in = {**status, "step": observed["step"]} if "step" in observed else status

    decision = decide(name, settings, problem, generation, status_in, jobs, _now())
    creating = any(isinstance(a, CreateJob) for a in decision.actions)
    if problem is None and settings is not None and (creating or (
            status.get("phase") != "Failed" and not cond.is_true(status.get("conditions"), "Ready"))):
        problem = await STATE.checks.problem(kube.claim_exists, namespace, settings) or output_in_use(
            body, (e.body for k, e in list(STATE.entries.items()) if k != key and e.body))
        if problem is not None or not creating:
            decision = decide(name, settings, problem, generation, status_in, jobs, _now())

    for _attempt in range(3):
        outcome = await _act(kube, entry, owner, settings, decision)
        if outcome is False:
            break
        if isinstance(outcome, Problem):
            problem = outcome
            if outcome.reason == "JobRejected":
                entry.rejected = (generation, outcome)
        jobs = observe()
        decision = decide(name, settings, problem, generation, status_in, jobs, _now())
        if problem is not None:
            break

    patch = status_patch(status, decision.status)
    patch |= status_patch(status, {k: v for k, v in observed.items() if k not in decision.status})
    export_event = None
    if settings is not None and problem is None:
        jobs = observe()
        stage2_done = cond.is_true(decision.status.get("conditions"), "Stage2Complete")
        export_job = entry.jobs.get(names.EXPORT)
        exported = exporting.decide(settings, name, stage2_done, job_state(export_job, None) if export_job is not None
                                    and _owned_by(export_job, body) else None, status.get("export"))
        stage2 = jobs.get(2)
        if exported.create and not await _create_export(kube, entry, owner, settings,
                                                        stage2.image_size if stage2 else None):
            exported = exporting.ExportDecision(False, status.get("export"))
        if exported.status != status.get("export"):
            patch["export"] = exported.status
        export_event = exported.event
    if settings is not None:
        url = await _tensorboard(kube, entry, owner, settings, generation, status)
        if status.get("tensorboard") != url:
            patch["tensorboard"] = url
    if patch:
        updated = await kube.patch_training_status(namespace, name, patch)
        METRICS.writes.labels(kind="status").inc()
        entry.remember(updated)
        entry.body = newer(entry.body, updated)
    if decision.event is not None:
        kopf.event(body, type=decision.event.type, reason=decision.event.reason, message=decision.event.message)
        METRICS.writes.labels(kind="event").inc()
        METRICS.record_event(decision.event.reason, decision.status)
        log.info("%s/%s: %s: %s", namespace, name, decision.event.reason, decision.event.message,
                 extra=logs.about(namespace, name, decision.status.get("stage"), generation))
    if export_event is not None:
        kopf.event(body, type=export_event.type, reason=export_event.reason, message=export_event.message)
        METRICS.writes.labels(kind="event").inc()
        log.info("%s/%s: %s: %s", namespace, name, export_event.reason, export_event.message,
                 extra=logs.about(namespace, name, "export", generation))


async def _stage_ends(kube: Kube, namespace: str, settings: Settings | None, status: Mapping[str, Any],
                      jobs: Mapping[int, lifecycle.JobState]) -> dict[int, PodReads]:
    """The pods of each stage whose Job ended since status last recorded it (once per stage: then it is recorded)."""
    recorded = {e.get("stage"): e.get("outcome") for e in status.get("stages") or ()}
    syncs = settings is not None and isinstance(settings.output_path, UFilePath)
    return {s: await read_pods(kube, namespace, job.name, syncs=syncs) for s, job in jobs.items()
            if s in (1, 2) and (job.succeeded or job.failed) and recorded.get(s) not in ("Succeeded", "Failed")}


async def _create_export(kube: Kube, entry: Entry, owner: Owner, settings: Settings, image_size: int | None) -> bool:
    """Create the export Job (at the image size stage 2 was stamped with); False when a Job of that name is not this
    training's (it is left alone)."""
    (manifest,) = children.desired(owner, settings, image_size, ran=(2,))[names.EXPORT]
    try:
        created = await kube.create_job(owner.namespace, manifest)
    except ApiException as e:
        if e.status != 409:
            raise
        created = await kube.get_job(owner.namespace, manifest["metadata"]["name"])
        if not _owned_by(created, {"metadata": {"uid": owner.uid}}):
            log.warning("%s/%s: Job %s is not this training's; no export", owner.namespace, owner.name,
                        manifest["metadata"]["name"], extra=logs.about(owner.namespace, owner.name, "export"))
            return False
    else:
        METRICS.writes.labels(kind="job").inc()
        entry.remember(created)
    entry.jobs[names.EXPORT] = newer(entry.jobs.get(names.EXPORT), created)
    return True


async def _tensorboard(kube: Kube, entry: Entry, owner: Owner, settings: Settings, generation: int | None,
                       status: Mapping[str, Any]) -> str | None:
    """Keep the training's TensorBoard as its spec says: written once per generation while enabled (a restart
    writes it again: create, or merge-patch what exists), deleted when disabled. Returns status.tensorboard."""
    tb_name = names.tensorboard(owner.name)
    if settings.tensorboard.enabled:
        if entry.tensorboard != generation:
            deployment, service = children.desired(owner, settings)[names.TENSORBOARD]
            await kube.create_or_patch("/apis/apps/v1", "deployments", deployment)
            await kube.create_or_patch("/api/v1", "services", service)
            METRICS.writes.labels(kind="tensorboard").inc(2)
            entry.tensorboard = generation
        return tensorboard.address(owner)
    if entry.tensorboard is not None or status.get("tensorboard"):
        await kube.delete_if_present("/apis/apps/v1", "deployments", owner.namespace, tb_name)
        await kube.delete_if_present("/api/v1", "services", owner.namespace, tb_name)
        METRICS.writes.labels(kind="tensorboard").inc(2)
        entry.tensorboard = None
    return None


async def _act(kube: Kube, entry: Entry, owner: Owner, settings: Settings | None,
               decision: Decision) -> bool | Problem:
    """Carry out the decision's actions. True: an existing Job of this training was adopted (decide again);
    a Problem: the API refused the Job, or a Job of that name belongs to something else (report it)."""
    for action in decision.actions:
        assert settings is not None
        if isinstance(action, CreateJob):
            role = names.stage_role(action.stage)
            *services, manifest = children.desired(owner, settings, ran=(action.stage,))[role]
            for service in services:  # the workers' names resolve through it from their first lookup
                await kube.create_or_patch("/api/v1", "services", service)
                METRICS.writes.labels(kind="service").inc()
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
                if not _owned_by(existing, {"metadata": {"uid": owner.uid}}):
                    return not_owned(existing, owner.name, owner.namespace)
                entry.jobs[role] = newer(entry.jobs.get(role), existing)
                return True
            METRICS.writes.labels(kind="job").inc()
            entry.remember(created)
            entry.jobs[role] = newer(entry.jobs.get(role), created)
        elif isinstance(action, SetJobSuspend):
            name = names.stage_job(owner.name, action.stage)
            patched = await kube.patch_job(owner.namespace, name, {"spec": {"suspend": action.suspend}})
            METRICS.writes.labels(kind="job").inc()
            entry.remember(patched)
            entry.jobs[names.stage_role(action.stage)] = newer(entry.jobs.get(names.stage_role(action.stage)),
                                                               patched)
    return False


async def _periodic(interval: float) -> None:
    """One loop for all trainings: step progress of running stages, and re-checks of spec problems.

    (A kopf timer would put a finalizer on every training; this loop needs none.)
    """
    sem = asyncio.Semaphore(8)

    async def one(key: tuple[str, str], entry: Entry) -> None:
        async with sem:
            body = entry.body or {}
            status = body.get("status") or {}
            try:
                if entry.pod_problem is not None:
                    await refresh_progress(key, entry)  # the pod's status says when the problem is gone
                elif status.get("phase") != "Failed" and not cond.is_true(status.get("conditions"), "Ready"):
                    await reconcile(key)
                elif status.get("phase") == "Running":
                    await refresh_progress(key, entry)
            except Exception as exc:  # best effort; the next tick retries
                log.debug("progress of %s/%s: %s", *key, _short(exc))

    while True:
        await asyncio.sleep(interval)
        try:
            await prune()
        except Exception as exc:  # best effort; the next tick retries
            log.debug("pruning the cache: %s", _short(exc))
        await asyncio.gather(*(one(k, e) for k, e in list(STATE.entries.items())))


def _uid(entry: Entry | None) -> str | None:
    return ((entry.body if entry is not None else None) or {}).get("metadata", {}).get("uid")


async def prune() -> None:
    """Forget what the API no longer has. A training deleted while a watch re-lists (410 Gone) or with its CRD
    brings no DELETED event; one metadata-only list per namespace and tick finds it. Expired claim checks go."""
    STATE.checks.prune()
    kube = STATE.kube
    if kube is None:
        return
    snapshot = {key: _uid(entry) for key, entry in list(STATE.entries.items())}
    for namespace in sorted({ns for ns, _ in snapshot}):
        listed = await kube.training_uids(namespace)  # read after the snapshot: holds every training still there
        for key, uid in snapshot.items():
            if key[0] != namespace or (listed is not None and key[1] in listed and uid in (None, listed[key[1]])):
                continue
            if _uid(STATE.entries.get(key)) == uid:  # unchanged since the snapshot (no newer event came)
                forget(key)
                log.info("training %s/%s is gone from the API; forgotten", *key, extra=logs.about(*key))


def _ready_reason(status: Mapping[str, Any]) -> str | None:
    ready = cond.find(status.get("conditions"), "Ready")
    return ready.get("reason") if ready else None


def _set_pod_problem(entry: Entry, job_name: str, pods: list[dict[str, Any]]) -> bool:
    """What keeps the stage's newest pod from starting, from these pods; True when that changed."""
    body = entry.body or {}
    secret = (body.get("spec") or {}).get("credentialsSecret")
    namespace = body.get("metadata", {}).get("namespace", "")
    found = pod_problem(pods, secret if isinstance(secret, str) else None, namespace)
    entry.pods_read = True
    if found == (entry.pod_problem[1] if entry.pod_problem else None):
        return False
    entry.pod_problem = (job_name, found) if found else None
    return True


async def refresh_progress(key: tuple[str, str], entry: Entry) -> None:
    """status.step/progress/eta/loss from the trainer's log, uploadedStep/uploadError from the sync sidecar's: one
    pod list + one or two log reads (+ one patch). The same pod list tells whether the stage's pod cannot start
    (pod_problems); a change of that reconciles."""
    kube = STATE.kube
    body = entry.body
    if kube is None or body is None:
        return
    namespace, name = key
    status = body.get("status") or {}
    job_name, target = status.get("jobName"), status.get("target")
    if not job_name or not isinstance(target, int):
        return
    pods = await kube.list_pods(namespace, job_name)
    if _set_pod_problem(entry, job_name, pods):
        await reconcile(key)
        return
    output = str((body.get("spec") or {}).get("outputPath") or "")
    reads = await read_pods(kube, namespace, job_name, syncs=output.startswith("ufile://"), pods=pods)
    sample = reads.sample
    new: dict[str, Any] = observed_fields(reads, final=False)
    if sample is None:
        sample_patch: dict[str, Any] = {}
    else:
        now = time.monotonic()
        sample_patch = {"step": sample.step, "progress": percent(sample.step, target),
                        "eta": eta(sample.step, target, sample.sec_per_step, entry.sample, now)}
        if entry.sample is None or entry.sample[0] != sample.step:
            entry.sample = (sample.step, now)
    new |= {k: v for k, v in sample_patch.items() if v is not None}
    async with entry.lock:
        current = (entry.body or {}).get("status") or {}
        if current.get("phase") != "Running" or current.get("jobName") != job_name:
            return
        patch = status_patch(current, new)
        diverged = loss_patch(current, sample, (entry.body or {}).get("metadata", {}).get("generation"),
                              _now()) if sample is not None else LossUpdate({})
        patch |= diverged.patch
        if patch:
            updated = await kube.patch_training_status(namespace, name, patch)
            entry.remember(updated)
            entry.body = newer(entry.body, updated)
        if diverged.event is not None:
            kopf.event(entry.body, type=diverged.event.type, reason=diverged.event.reason,
                       message=diverged.event.message)
            METRICS.writes.labels(kind="event").inc()
            log.warning("%s/%s: %s: %s", namespace, name, diverged.event.reason, diverged.event.message,
                        extra=logs.about(namespace, name, current.get("stage"),
                                         (entry.body or {}).get("metadata", {}).get("generation")))
