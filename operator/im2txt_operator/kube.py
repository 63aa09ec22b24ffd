"""Thin async API access: only the calls the operator's RBAC allows.

Connection settings (server, CA, client certificates, token and its refresh) come from the official kubernetes
client's loaders: in-cluster service account, else $KUBECONFIG read at start-up (not at import). Requests go over
aiohttp on kopf's own event loop. Why not the client's generated API classes: they are synchronous (a thread per
call) and validate every body with pydantic; in the benchmark that made each call about twice as expensive and put
the event loop behind a thread pool. Bodies stay plain dicts, which is what the pure core produces and consumes.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib import parse

import aiohttp
import kubernetes

from im2txt_operator import watch_stream
from im2txt_operator.api_budget import ANY, RETRIES_ON_429, TokenBucket, fresh, retry_after
from im2txt_operator.api_errors import ApiException, Fenced, api_exception
from im2txt_operator.kube_config import load_configuration, ssl_context
from im2txt_operator.spec import GROUP, PLURAL, VERSION
from im2txt_operator.workloads import JOB_UID_LABEL

MERGE_PATCH = "application/merge-patch+json"
# Lists of metadata only (the API server's PartialObjectMetadataList), with full JSON as the fallback.
PARTIAL_METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
FIELD_MANAGER = "im2txt-operator"
AUTH_TTL = 10.0  # seconds an Authorization header is reused before the configuration is asked again


def quote(segment: str) -> str:
    """One path segment, '/' included: a name never reaches another path (names are API-checked, but a read of a
    name a tenant wrote must not depend on that)."""
    return parse.quote(segment, safe="")


class Kube:
    def __init__(self, config: kubernetes.client.Configuration | None = None,
                 fence: Callable[[], float] | None = None, limit: TokenBucket | None = None) -> None:
        """``fence``: the seconds this process may still write, i.e. the leader's time left on its Lease (None:
        not leader-elected). A write is refused when none is left and never outlasts what is left: a leader that was
        paused (SIGSTOP, a long GC, a frozen VM) past its Lease cannot write over what the new leader wrote.
        ``limit``: the client-side rate limit every request waits for (None: none, as for the Lease's own client,
        whose renewals must never queue behind a burst of writes)."""
        self.fence = fence
        self.limit = limit
        self.config = config or load_configuration()
        self.base = self.config.host.rstrip("/")
        self._ssl = ssl_context(self.config)
        self._session: aiohttp.ClientSession | None = None
        self._auth: tuple[float, str | None] | None = None  # (when read, the Authorization header)
        self.clock: Callable[[], float] = time.monotonic

    def _authorization(self) -> str | None:
        """The Authorization header, asked of the client's configuration at most every AUTH_TTL seconds: that call
        runs its refresh hook (rotated service-account tokens, exec plugins), which re-reads the proxy settings from
        the environment each time (a tenth of the operator's CPU when asked per request)."""
        now = self.clock()
        if self._auth is None or now - self._auth[0] >= AUTH_TTL:
            token = self.config.get_api_key_with_prefix("BearerToken", alias="authorization")
            if not token and self.config.username:
                token = self.config.get_basic_auth_token()
            self._auth = (now, token or None)
        return self._auth[1]

    def _headers(self, content_type: str | None = None, accept: str = "application/json") -> dict[str, str]:
        headers = {"Accept": accept}
        if token := self._authorization():
            headers["Authorization"] = token
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    async def _request(self, method: str, path: str, *, body: Any = None, params: dict[str, Any] | None = None,
                       content_type: str = "application/json", text: bool = False,
                       accept: str = "application/json") -> Any:
        """One API call. A 429 (API Priority and Fairness) is sent again after its Retry-After, up to
        RETRIES_ON_429 times and never past the fence; anything else >= 400 is an ApiException."""
        if method in ("POST", "PUT", "PATCH"):
            # One named field manager on every write, so managedFields tell our fields from another controller's.
            params = {**(params or {}), "fieldManager": FIELD_MANAGER}
        data = None if body is None else json.dumps(body)
        headers = self._headers(content_type if body is not None else None, accept)
        for attempt in range(RETRIES_ON_429 + 1):
            if self.limit is not None:
                await self.limit.take()
            status, wait, payload, reason = await self._send(method, path, data, params, headers)
            if status < 400:
                return payload.decode("utf-8", "replace") if text else json.loads(payload)
            if status == 401:
                self._auth = None  # a rotated token: the next request asks the configuration again
            if status != 429 or wait is None or attempt == RETRIES_ON_429 or (
                    self.fence is not None and method != "GET" and self.fence() <= wait):
                raise api_exception(status, reason, payload)
            await asyncio.sleep(wait)
        raise AssertionError("unreachable")

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl, limit=32),
                timeout=aiohttp.ClientTimeout(total=60))
        return self._session

    async def _send(self, method: str, path: str, data: str | None, params: dict[str, Any] | None,
                    headers: dict[str, str]) -> tuple[int, float | None, bytes, str]:
        """(status, a 429's Retry-After in seconds, body, HTTP reason) of one request."""
        session = self._client()
        timeout = None
        if self.fence is not None and method != "GET":
            left = self.fence()
            if left <= 0:
                raise Fenced(f"{method} {path} not sent: the Lease may have passed to another replica")
            timeout = aiohttp.ClientTimeout(total=min(60.0, left))
        async with session.request(method, self.base + path, data=data, params=params,
                                   headers=headers, timeout=timeout or session.timeout) as resp:
            payload = await resp.read()
            wait = retry_after(resp.headers.get("Retry-After")) if resp.status == 429 else None
            return resp.status, wait, payload, resp.reason or "Error"

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    @staticmethod
    def _jobs(namespace: str | None, name: str | None = None) -> str:
        """The Jobs of a namespace (None: of every namespace), or one of them."""
        path = f"/apis/batch/v1/namespaces/{quote(namespace)}/jobs" if namespace is not None else "/apis/batch/v1/jobs"
        return f"{path}/{quote(name)}" if name else path

    async def list_jobs(self, namespace: str | None, selector: str, page: str | None = None,
                        limit: int = 500) -> dict[str, Any]:
        """One page of the Jobs with these labels (``namespace`` None: in every namespace), a consistent read; the
        list's ``metadata`` holds its resourceVersion and the next page's ``continue``."""
        params = {"labelSelector": selector, "limit": str(limit)} | ({"continue": page} if page else {})
        return await self._request("GET", self._jobs(namespace), params=params)  # type: ignore[no-any-return]

    async def watch_jobs(self, namespace: str | None, selector: str, resource_version: str,
                         timeout_s: int) -> AsyncIterator[dict[str, Any]]:
        """The watch events of the Jobs with these labels after ``resource_version``, bookmarks included, until the
        server ends the watch (after ``timeout_s``). Not rate-limited: one long request, not one per event. A refused
        watch (410 Gone: that version is compacted away) is an ApiException."""
        params = {"labelSelector": selector, "watch": "true", "resourceVersion": resource_version,
                  "allowWatchBookmarks": "true", "timeoutSeconds": str(timeout_s)}
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=timeout_s + 30)
        async with self._client().get(self.base + self._jobs(namespace), params=params, headers=self._headers(),
                                     timeout=timeout) as resp:
            if resp.status >= 400:
                if resp.status == 401:
                    self._auth = None
                raise api_exception(resp.status, resp.reason or "Error", await resp.read())
            async for line in watch_stream.lines(resp.content.iter_any()):
                yield json.loads(line)

    async def server_version(self) -> dict[str, Any]:
        """The API server's /version (readable by every authenticated user: no RBAC rule needed)."""
        return await self._request("GET", "/version")

    @staticmethod
    def _namespaced(api: str, plural: str, namespace: str, name: str | None = None) -> str:
        path = f"{api}/namespaces/{quote(namespace)}/{plural}"
        return f"{path}/{quote(name)}" if name else path

    async def create(self, api: str, plural: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST a namespaced object; ``api`` is "/api/v1" or "/apis/<group>/<version>". A 409 means the name is
        taken: who holds it is for the caller to check (controller/owned.py), never assumed."""
        return await self._request("POST", self._namespaced(api, plural, body["metadata"]["namespace"]), body=body)

    async def read(self, api: str, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        """GET a namespaced object; None when there is none."""
        return await self._get_or_none(self._namespaced(api, plural, namespace, name))

    async def merge_patch(self, api: str, plural: str, namespace: str, name: str,
                          patch: dict[str, Any]) -> dict[str, Any]:
        """JSON-merge-patch an object. A ``metadata.uid`` in the patch makes it apply only to that object (the
        server refuses to change a uid: 422), a ``metadata.resourceVersion`` only to that version (409)."""
        return await self._request("PATCH", self._namespaced(api, plural, namespace, name), body=patch,
                                   content_type=MERGE_PATCH)

    async def delete(self, api: str, plural: str, namespace: str, name: str, uid: str) -> bool:
        """Delete the object of that name only while it is the one with ``uid`` (a precondition: 409 when another
        object took the name since it was read); False when it was not there."""
        try:
            await self._request("DELETE", self._namespaced(api, plural, namespace, name),
                                body={"propagationPolicy": "Background", "preconditions": {"uid": uid}})
        except ApiException as e:
            if e.status == 404:
                return False
            raise
        return True

    @staticmethod
    def _lease(namespace: str, name: str | None = None) -> str:
        path = f"/apis/coordination.k8s.io/v1/namespaces/{quote(namespace)}/leases"
        return f"{path}/{quote(name)}" if name else path

    async def _get_or_none(self, path: str) -> dict[str, Any] | None:
        try:
            return await self._request("GET", path)
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    async def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._get_or_none(self._lease(namespace, name))

    async def create_lease(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._request("POST", self._lease(namespace), body=body)

    async def replace_lease(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        """PUT with the resourceVersion read before: a concurrent writer makes it answer 409."""
        return await self._request("PUT", self._lease(namespace, body["metadata"]["name"]), body=body)

    def _training(self, namespace: str, name: str) -> str:
        return f"/apis/{GROUP}/{VERSION}/namespaces/{quote(namespace)}/{PLURAL}/{quote(name)}"

    async def get_training(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._get_or_none(self._training(namespace, name))

    async def training_uids(self, namespace: str, not_older_than: str | None = None) -> dict[str, str] | None:
        """name -> uid of every training in the namespace (metadata only); None when the CRD is gone."""
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{quote(namespace)}/{PLURAL}"
        try:
            result = await self._request("GET", path, accept=PARTIAL_METADATA_LIST, params=fresh(not_older_than))
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        return {i["metadata"]["name"]: i["metadata"].get("uid", "") for i in result.get("items") or ()}

    async def patch_training_status(self, namespace: str, name: str, status: dict[str, Any],
                                    resource_version: str | None = None) -> dict[str, Any]:
        """Merge-patch the status subresource (never the spec); with ``resource_version``, only that version of the
        training (409 Conflict when it changed since)."""
        body: dict[str, Any] = {"status": status}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        return await self._request("PATCH", self._training(namespace, name) + "/status", body=body,
                                   content_type=MERGE_PATCH)

    async def claim_exists(self, namespace: str, name: str) -> bool | None:
        """Whether a PersistentVolumeClaim exists; None when the operator may not look (RBAC without
        ``persistentvolumeclaims: get``): the check is then skipped and the pod shows the problem."""
        try:
            await self._request("GET", f"/api/v1/namespaces/{quote(namespace)}/persistentvolumeclaims/{quote(name)}")
        except ApiException as e:
            if e.status == 404:
                return False
            if e.status == 403:
                return None
            raise
        return True

    async def list_pods(self, namespace: str, job_name: str, not_older_than: str | None = ANY) -> list[dict[str, Any]]:
        return await self.list_pods_labelled(namespace, f"job-name={job_name}", not_older_than)

    async def list_pods_labelled(self, namespace: str, selector: str,
                                 not_older_than: str | None = ANY) -> list[dict[str, Any]]:
        result = await self._request("GET", f"/api/v1/namespaces/{quote(namespace)}/pods",
                                     params={"labelSelector": selector, **fresh(not_older_than)})
        return list(result.get("items") or [])

    async def failed_creates(self, namespace: str, job_name: str) -> list[dict[str, Any]]:
        """The Job controller's FailedCreate Events on a Job (why it could not create its pods)."""
        result = await self._request("GET", f"/api/v1/namespaces/{quote(namespace)}/events", params={
            "fieldSelector": f"involvedObject.kind=Job,involvedObject.name={job_name},reason=FailedCreate",
            **fresh(ANY)})
        return list(result.get("items") or [])

    async def read_log(self, namespace: str, pod: str, container: str, tail_lines: int) -> str:
        return await self._request("GET", f"/api/v1/namespaces/{quote(namespace)}/pods/{quote(pod)}/log",
                                   params={"container": container, "tailLines": str(tail_lines)}, text=True)

    async def delete_job(self, namespace: str, name: str, uid: str) -> None:
        """Delete one Job (that uid only: never a newer one of the same name), its pods first (foreground: the Job
        stays, marked deleted, until its pods are gone, so a new Job of that name never runs beside them)."""
        try:
            await self._request("DELETE", self._jobs(namespace, name),
                                body={"propagationPolicy": "Foreground", "preconditions": {"uid": uid}})
        except ApiException as e:
            if e.status not in (404, 409):  # gone already, or another Job of that name now
                raise

    async def list_workloads(self, namespace: str, job_uid: str) -> list[dict[str, Any]] | None:
        """Kueue's Workloads of one Job (Kueue labels them with its uid); None where Kueue's API is not installed
        or the operator may not read it (then nothing tells why a Job waits but its own suspend)."""
        try:
            result = await self._request("GET", f"/apis/kueue.x-k8s.io/v1beta2/namespaces/{quote(namespace)}/workloads",
                                         params={"labelSelector": f"{JOB_UID_LABEL}={job_uid}", **fresh(ANY)})
        except ApiException as e:
            if e.status in (403, 404):
                return None
            raise
        return list(result.get("items") or [])
