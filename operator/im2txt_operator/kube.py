"""Thin async wrapper over the official kubernetes client: only the calls the operator's RBAC allows.

Responses are read as plain dicts (``_preload_content=False``): the core works on dicts, and skipping the
client's model deserialisation keeps CPU and memory low with many trainings. Blocking calls run in a small
thread pool so kopf's event loop never waits on the network.
"""

from __future__ import annotations

import asyncio
import json
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kubernetes
from kubernetes.client.rest import ApiException

from im2txt_operator.spec import GROUP, PLURAL, VERSION

MERGE_PATCH = "application/merge-patch+json"

__all__ = ["ApiException", "Kube"]


def load_configuration() -> kubernetes.client.Configuration:
    """In-cluster config when running in a pod, else $KUBECONFIG (read now, not at import time)."""
    config = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_incluster_config(client_configuration=config)
    except kubernetes.config.ConfigException:
        path = os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
        kubernetes.config.load_kube_config(config_file=path.split(os.pathsep)[0], client_configuration=config)
    return config


class Kube:
    def __init__(self, config: kubernetes.client.Configuration | None = None, workers: int = 16) -> None:
        config = config or load_configuration()
        config.connection_pool_maxsize = workers
        self.client = kubernetes.client.ApiClient(config)
        self.batch = kubernetes.client.BatchV1Api(self.client)
        self.core = kubernetes.client.CoreV1Api(self.client)
        self.custom = kubernetes.client.CustomObjectsApi(self.client)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kube")
        self.writes = 0  # API writes made (for the benchmark and metrics)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.client.close()

    async def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        resp = await loop.run_in_executor(self._pool, lambda: fn(*args, _preload_content=False, **kwargs))
        return resp.data

    async def _json(self, fn: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return json.loads(await self._call(fn, *args, **kwargs))

    async def create_job(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        self.writes += 1
        return await self._json(self.batch.create_namespaced_job, namespace, body)

    async def get_job(self, namespace: str, name: str) -> dict[str, Any]:
        return await self._json(self.batch.read_namespaced_job, name, namespace)

    async def patch_job(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        self.writes += 1
        return await self._json(self.batch.patch_namespaced_job, name, namespace, patch,
                                _content_type=MERGE_PATCH)

    async def patch_training_status(self, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        """Merge-patch the status subresource (never the spec)."""
        self.writes += 1
        return await self._json(self.custom.patch_namespaced_custom_object_status, GROUP, VERSION, namespace,
                                PLURAL, name, {"status": status}, _content_type=MERGE_PATCH)

    async def get_training(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await self._json(self.custom.get_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, name)
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    async def secret_keys(self, namespace: str, name: str) -> set[str] | None:
        """The key names of a Secret, or None when it does not exist. Values are dropped at once."""
        try:
            secret = await self._json(self.core.read_namespaced_secret, name, namespace)
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        return set(secret.get("data") or {}) | set(secret.get("stringData") or {})

    async def list_pods(self, namespace: str, job_name: str) -> list[dict[str, Any]]:
        result = await self._json(self.core.list_namespaced_pod, namespace, label_selector=f"job-name={job_name}")
        return list(result.get("items") or [])

    async def read_log(self, namespace: str, pod: str, container: str, tail_lines: int) -> str:
        data = await self._call(self.core.read_namespaced_pod_log, pod, namespace, container=container,
                                tail_lines=tail_lines)
        return data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
