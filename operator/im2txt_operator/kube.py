"""Thin async API access: only the calls the operator's RBAC allows.

Connection settings (server, CA, client certificates, token and its refresh) come from the official
kubernetes client's loaders: in-cluster service account, else $KUBECONFIG read at start-up (not at import).
Requests go over aiohttp on kopf's own event loop. Why not the client's generated API classes: they are
synchronous (a thread per call) and validate every body with pydantic; in the benchmark that made each
call about twice as expensive and put the event loop behind a thread pool. Bodies stay plain dicts, which
is what the pure core produces and consumes.
"""

from __future__ import annotations

import json
import os
import ssl
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import aiohttp
import kubernetes

from im2txt_operator.spec import GROUP, PLURAL, VERSION
from im2txt_operator.workloads import JOB_UID_LABEL

MERGE_PATCH = "application/merge-patch+json"
# Lists of metadata only (the API server's PartialObjectMetadataList), with full JSON as the fallback.
PARTIAL_METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"


FIELD_MANAGER = "im2txt-operator"


class ApiException(Exception):
    """An API error answer: ``status`` (HTTP code), ``reason`` (the Status reason), ``message``, and the Status
    ``details`` (for 422 Invalid: ``causes``, each with the ``field`` the server blames)."""

    def __init__(self, status: int, reason: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(f"HTTP {status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.details = details or {}


def load_configuration() -> kubernetes.client.Configuration:
    """In-cluster config when running in a pod, else $KUBECONFIG (read now, not at import time)."""
    config = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_incluster_config(client_configuration=config)
    except kubernetes.config.ConfigException:
        path = os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
        kubernetes.config.load_kube_config(config_file=path.split(os.pathsep)[0], client_configuration=config)
    return config


def _ssl_context(config: kubernetes.client.Configuration) -> ssl.SSLContext | bool:
    if not config.host.startswith("https"):
        return False
    context = ssl.create_default_context(cafile=config.ssl_ca_cert)
    if config.cert_file:
        context.load_cert_chain(config.cert_file, config.key_file)
    if not config.verify_ssl:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class Fenced(Exception):
    """A write not sent: this process can no longer be sure it holds the Lease (see leader.py)."""


class Kube:
    def __init__(self, config: kubernetes.client.Configuration | None = None,
                 fence: Callable[[], float] | None = None) -> None:
        """``fence``: the seconds this process may still write, i.e. the leader's time left on its Lease (None:
        not leader-elected). A write is refused when none is left and never outlasts what is left: a leader that was
        paused (SIGSTOP, a long GC, a frozen VM) past its Lease cannot write over what the new leader wrote."""
        self.fence = fence
        self.config = config or load_configuration()
        self.base = self.config.host.rstrip("/")
        self._ssl = _ssl_context(self.config)
        self._session: aiohttp.ClientSession | None = None

    def _headers(self, content_type: str | None = None, accept: str = "application/json") -> dict[str, str]:
        headers = {"Accept": accept}
        # Calls the refresh hook (rotated service-account tokens, exec plugins) like the client does.
        token = self.config.get_api_key_with_prefix("BearerToken", alias="authorization")
        if token:
            headers["Authorization"] = token
        elif self.config.username:
            headers["Authorization"] = self.config.get_basic_auth_token()
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    async def _request(self, method: str, path: str, *, body: Any = None, params: dict[str, Any] | None = None,
                       content_type: str = "application/json", text: bool = False,
                       accept: str = "application/json") -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl, limit=32),
                timeout=aiohttp.ClientTimeout(total=60))
        timeout = None
        if self.fence is not None and method != "GET":
            left = self.fence()
            if left <= 0:
                raise Fenced(f"{method} {path} not sent: the Lease may have passed to another replica")
            timeout = aiohttp.ClientTimeout(total=min(60.0, left))
        if method in ("POST", "PUT", "PATCH"):
            # One named field manager on every write, so managedFields tell our fields from another controller's.
            params = {**(params or {}), "fieldManager": FIELD_MANAGER}
        data = None if body is None else json.dumps(body)
        headers = self._headers(content_type if body is not None else None, accept)
        async with self._session.request(method, self.base + path, data=data, params=params,
                                         headers=headers, timeout=timeout or self._session.timeout) as resp:
            payload = await resp.read()
            if resp.status >= 400:
                details = None
                try:
                    status = json.loads(payload)
                    reason, message = status.get("reason") or resp.reason, status.get("message") or ""
                    details = status.get("details") if isinstance(status.get("details"), dict) else None
                except ValueError:
                    reason, message = resp.reason or "Error", payload[:200].decode(errors="replace")
                raise ApiException(resp.status, str(reason), message, details)
            return payload.decode("utf-8", "replace") if text else json.loads(payload)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    @staticmethod
    def _jobs(namespace: str, name: str | None = None) -> str:
        path = f"/apis/batch/v1/namespaces/{quote(namespace)}/jobs"
        return f"{path}/{quote(name)}" if name else path

    async def create_job(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._request("POST", self._jobs(namespace), body=body)

    async def get_job(self, namespace: str, name: str) -> dict[str, Any]:
        return await self._request("GET", self._jobs(namespace, name))

    async def server_version(self) -> dict[str, Any]:
        """The API server's /version (readable by every authenticated user: no RBAC rule needed)."""
        return await self._request("GET", "/version")

    @staticmethod
    def _namespaced(api: str, plural: str, namespace: str, name: str | None = None) -> str:
        path = f"{api}/namespaces/{quote(namespace)}/{plural}"
        return f"{path}/{quote(name)}" if name else path

    async def create_or_patch(self, api: str, plural: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create an object the operator owns; if it exists, merge-patch it to ``body`` (same labels, owner and
        spec). ``api`` is "/api/v1" or "/apis/<group>/<version>"."""
        meta = body["metadata"]
        try:
            return await self._request("POST", self._namespaced(api, plural, meta["namespace"]), body=body)
        except ApiException as e:
            if e.status != 409:
                raise
        return await self._request("PATCH", self._namespaced(api, plural, meta["namespace"], meta["name"]),
                                   body={"metadata": {"labels": meta.get("labels") or {}}, "spec": body["spec"]},
                                   content_type=MERGE_PATCH)

    async def delete_if_present(self, api: str, plural: str, namespace: str, name: str) -> bool:
        """Delete an object; False when it was not there."""
        try:
            await self._request("DELETE", self._namespaced(api, plural, namespace, name),
                                body={"propagationPolicy": "Background"})
        except ApiException as e:
            if e.status == 404:
                return False
            raise
        return True

    @staticmethod
    def _lease(namespace: str, name: str | None = None) -> str:
        path = f"/apis/coordination.k8s.io/v1/namespaces/{quote(namespace)}/leases"
        return f"{path}/{quote(name)}" if name else path

    async def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await self._request("GET", self._lease(namespace, name))
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    async def create_lease(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._request("POST", self._lease(namespace), body=body)

    async def replace_lease(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        """PUT with the resourceVersion read before: a concurrent writer makes it answer 409."""
        return await self._request("PUT", self._lease(namespace, body["metadata"]["name"]), body=body)

    def _training(self, namespace: str, name: str) -> str:
        return f"/apis/{GROUP}/{VERSION}/namespaces/{quote(namespace)}/{PLURAL}/{quote(name)}"

    async def get_training(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await self._request("GET", self._training(namespace, name))
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    async def training_uids(self, namespace: str) -> dict[str, str] | None:
        """name -> uid of every training in the namespace (metadata only); None when the CRD is gone."""
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{quote(namespace)}/{PLURAL}"
        try:
            result = await self._request("GET", path, accept=PARTIAL_METADATA_LIST)
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        return {i["metadata"]["name"]: i["metadata"].get("uid", "") for i in result.get("items") or ()}

    async def patch_training_status(self, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        """Merge-patch the status subresource (never the spec)."""
        return await self._request("PATCH", self._training(namespace, name) + "/status", body={"status": status},
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

    async def list_pods(self, namespace: str, job_name: str) -> list[dict[str, Any]]:
        result = await self._request("GET", f"/api/v1/namespaces/{quote(namespace)}/pods",
                                     params={"labelSelector": f"job-name={job_name}"})
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
                                         params={"labelSelector": f"{JOB_UID_LABEL}={job_uid}"})
        except ApiException as e:
            if e.status in (403, 404):
                return None
            raise
        return list(result.get("items") or [])
