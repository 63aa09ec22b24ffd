"""The API emulator behaves like the real API server where the operator can tell the difference."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
from harness import JOBS, PODS, TRAININGS, emulator, new_training

from im2txt_standins.kube_api import KubeAPI, label_matcher

NS = "/apis/im2txt.dev/v1alpha1/namespaces/default/im2txttrainings"
JOBS_URL = "/apis/batch/v1/namespaces/default/jobs"


async def _req(api: KubeAPI, method: str, path: str, body: Any = None,
               ctype: str = "application/json") -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s, s.request(
            method, api.url + path, data=None if body is None else json.dumps(body),
            headers={"Content-Type": ctype}) as r:
        text = await r.text()
        try:
            return r.status, json.loads(text)
        except ValueError:
            return r.status, text


def _training(name: str = "t") -> dict[str, Any]:
    return {"apiVersion": "im2txt.dev/v1alpha1", "kind": "Im2txtTraining", "metadata": {"name": name},
            "spec": {"dataPath": "pvc://d/", "outputPath": "pvc://o/"}, "status": {"phase": "Forged"}}


async def test_create_sets_metadata_and_refuses_duplicates(tmp_path: Path) -> None:
    async with emulator(tmp_path) as api:
        code, obj = await _req(api, "POST", NS, _training())
        assert code == 201
        meta = obj["metadata"]
        assert meta["uid"] and meta["resourceVersion"] and meta["generation"] == 1 and meta["creationTimestamp"]
        assert "status" not in obj  # status only via the subresource
        code, err = await _req(api, "POST", NS, _training())
        assert (code, err["reason"]) == (409, "AlreadyExists")
        code, obj = await _req(api, "POST", NS, {**_training(), "metadata": {"generateName": "gen-"}})
        assert code == 201 and obj["metadata"]["name"].startswith("gen-")


async def test_status_is_a_subresource(tmp_path: Path) -> None:
    async with emulator(tmp_path) as api:
        new_training(api, "t")
        merge = "application/merge-patch+json"
        code, obj = await _req(api, "PATCH", f"{NS}/t/status", {"status": {"phase": "Running"}, "spec": {"stage": 2}},
                               merge)
        assert code == 200 and obj["status"] == {"phase": "Running"} and "stage" not in obj["spec"]
        assert obj["metadata"]["generation"] == 1
        code, obj = await _req(api, "PATCH", f"{NS}/t", {"status": {"phase": "Failed"}, "spec": {"stage": 2}}, merge)
        assert obj["status"] == {"phase": "Running"} and obj["spec"]["stage"] == 2
        assert obj["metadata"]["generation"] == 2


async def test_stale_resource_version_conflicts(tmp_path: Path) -> None:
    async with emulator(tmp_path) as api:
        obj = new_training(api, "t")
        api.patch_object(TRAININGS, "default", "t", {"spec": {"gpus": 2}})
        code, err = await _req(api, "PUT", f"{NS}/t", obj)
        assert (code, err["reason"]) == (409, "Conflict")
        code, err = await _req(api, "PATCH", f"{NS}/t", {"metadata": {"resourceVersion": obj["metadata"][
            "resourceVersion"]}, "spec": {"gpus": 3}}, "application/merge-patch+json")
        assert code == 409


async def test_json_patch_test_failure_is_422(tmp_path: Path) -> None:
    async with emulator(tmp_path) as api:
        new_training(api, "t")
        ops = [{"op": "test", "path": "/spec/dataPath", "value": "pvc://other/"},
               {"op": "replace", "path": "/spec/dataPath", "value": "pvc://x/"}]
        code, err = await _req(api, "PATCH", f"{NS}/t", ops, "application/json-patch+json")
        assert (code, err["reason"]) == (422, "Invalid")
        ops[0]["value"] = "pvc://coco-data/mscoco"
        code, obj = await _req(api, "PATCH", f"{NS}/t", ops, "application/json-patch+json")
        assert code == 200 and obj["spec"]["dataPath"] == "pvc://x/"
        code, _ = await _req(api, "PATCH", f"{NS}/t", {}, "application/apply-patch+yaml")
        assert code == 415


async def test_job_template_is_immutable(tmp_path: Path) -> None:
    async with emulator(tmp_path) as api:
        api.create_object(JOBS, {"metadata": {"name": "j", "namespace": "default"},
                                 "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "a"}]}}}})
        patch = {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "b"}]}}}}
        code, _ = await _req(api, "PATCH", f"{JOBS_URL}/j", patch, "application/merge-patch+json")
        assert code == 422
        code, obj = await _req(api, "PATCH", f"{JOBS_URL}/j", {"spec": {"suspend": True}},
                               "application/merge-patch+json")
        assert code == 200 and obj["spec"]["suspend"] is True


async def test_watch_replays_only_after_the_resource_version(tmp_path: Path) -> None:
    async with emulator(tmp_path) as api:
        new_training(api, "old")
        _code, listing = await _req(api, "GET", NS)
        rv = listing["metadata"]["resourceVersion"]
        seen: list[tuple[str, str]] = []

        async def watch(params: str) -> None:
            async with aiohttp.ClientSession() as s, s.get(f"{api.url}{NS}?watch=true&{params}") as r:
                async for line in r.content:
                    event = json.loads(line)
                    seen.append((event["type"], event["object"]["metadata"]["name"]))

        task = asyncio.create_task(watch(f"resourceVersion={rv}&timeoutSeconds=1"))
        await asyncio.sleep(0.2)
        new_training(api, "new")
        api.patch_object(TRAININGS, "default", "new", {"spec": {"gpus": 2}})
        await asyncio.wait_for(task, 5)
        assert seen == [("ADDED", "new"), ("MODIFIED", "new")]
        seen.clear()
        await watch("timeoutSeconds=1")  # no resourceVersion: synthetic ADDED for what exists
        assert sorted(seen) == [("ADDED", "new"), ("ADDED", "old")]


async def test_label_selectors(tmp_path: Path) -> None:
    async with emulator(tmp_path) as api:
        for name, labels in (("a", {"app": "x", "tier": "1"}), ("b", {"app": "y"}), ("c", {})):
            api.create_object(JOBS, {"metadata": {"name": name, "namespace": "default", "labels": labels},
                                     "spec": {"template": {}}})
        for selector, names in (("app=x", ["a"]), ("app!=x", ["b", "c"]), ("app", ["a", "b"]), ("!app", ["c"]),
                                ("app in (x,y),tier", ["a"]), ("app notin (x)", ["b", "c"])):
            _, listing = await _req(api, "GET", f"{JOBS_URL}?labelSelector={selector}")
            assert [i["metadata"]["name"] for i in listing["items"]] == names, selector
    assert label_matcher("a=1,b==2")({"a": "1", "b": "2"})


async def test_garbage_collection_follows_owner_references(tmp_path: Path) -> None:
    async with emulator(tmp_path) as api:
        owner = new_training(api, "t")
        ref = {"apiVersion": "im2txt.dev/v1alpha1", "kind": "Im2txtTraining", "name": "t",
               "uid": owner["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}
        job = api.create_object(JOBS, {"metadata": {"name": "t-stage1", "namespace": "default",
                                                    "ownerReferences": [ref]}, "spec": {"template": {}}})
        api.create_object(PODS, {"metadata": {"name": "p", "namespace": "default", "ownerReferences": [
            {"kind": "Job", "name": "t-stage1", "uid": job["metadata"]["uid"]}]}, "spec": {}})
        code, _ = await _req(api, "DELETE", f"{NS}/t")
        assert code == 200
        await asyncio.sleep(0.1)
        assert api.list_objects(JOBS) == [] and api.list_objects(PODS) == []
        # An object created for an owner that is already gone is collected too.
        api.create_object(JOBS, {"metadata": {"name": "late", "namespace": "default", "ownerReferences": [ref]},
                                 "spec": {"template": {}}})
        await asyncio.sleep(0.1)
        assert api.list_objects(JOBS) == []


async def test_orphan_propagation_keeps_dependents(tmp_path: Path) -> None:
    async with emulator(tmp_path) as api:
        owner = new_training(api, "t")
        api.create_object(JOBS, {"metadata": {"name": "j", "namespace": "default", "ownerReferences": [
            {"kind": "Im2txtTraining", "name": "t", "uid": owner["metadata"]["uid"]}]}, "spec": {"template": {}}})
        await _req(api, "DELETE", f"{NS}/t?propagationPolicy=Orphan")
        await asyncio.sleep(0.1)
        jobs = api.list_objects(JOBS)
        assert len(jobs) == 1 and "ownerReferences" not in jobs[0]["metadata"]


async def test_pod_logs_and_namespaces(tmp_path: Path) -> None:
    async with emulator(tmp_path) as api:
        api.create_object(PODS, {"metadata": {"name": "p", "namespace": "ml"},
                                 "spec": {"containers": [{"name": "trainer"}, {"name": "other"}]}})
        api.set_log("ml", "p", "trainer", "one\ntwo\nthree\n")
        code, text = await _req(api, "GET", "/api/v1/namespaces/ml/pods/p/log?container=trainer&tailLines=2")
        assert (code, text) == (200, "two\nthree\n")
        code, _err = await _req(api, "GET", "/api/v1/namespaces/ml/pods/p/log")
        assert code == 400  # two containers: the name is required
        code, listing = await _req(api, "GET", "/api/v1/namespaces")
        assert {"default", "ml"} <= {n["metadata"]["name"] for n in listing["items"]}


async def test_discovery_lists_the_crd(tmp_path: Path) -> None:
    async with emulator(tmp_path) as api:
        code, body = await _req(api, "GET", "/apis/im2txt.dev/v1alpha1")
        assert code == 200
        names = {r["name"]: r for r in body["resources"]}
        assert names["im2txttrainings"]["kind"] == "Im2txtTraining" and names["im2txttrainings"]["namespaced"]
        assert "im2txttrainings/status" in names
        _code, body = await _req(api, "GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions")
        assert [c["metadata"]["name"] for c in body["items"]] == ["im2txttrainings.im2txt.dev"]


async def test_cli_serves_and_writes_a_kubeconfig(tmp_path: Path) -> None:
    import sys

    import yaml
    from harness import free_port

    port = free_port()
    root = Path(__file__).parents[2]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "im2txt_standins.kube_api", "--port", str(port), "--kubeconfig",
        str(tmp_path / "kc"), "--crd", str(root / "crds" / "im2txt.dev_im2txttrainings.yaml"),
        cwd=root / "standins", stdout=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 20)
        assert f"http://127.0.0.1:{port}" in line.decode()
        server = yaml.safe_load((tmp_path / "kc").read_text())["clusters"][0]["cluster"]["server"]
        async with aiohttp.ClientSession() as s, s.get(f"{server}/apis/im2txt.dev/v1alpha1") as r:
            assert r.status == 200
    finally:
        proc.terminate()
        await proc.wait()


async def test_table_output_uses_the_printer_columns(tmp_path: Path) -> None:
    async with emulator(tmp_path) as api:
        new_training(api, "t")
        api.patch_object(TRAININGS, "default", "t", {"status": {"stage": 1, "phase": "Running", "step": 5,
                                                                 "loss": 2.5, "progress": 5.0, "eta": "1h",
                                                                 "evaluation": {"step": 4, "perplexity": 31.5}}},
                         status=True)
        headers = {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"}
        async with aiohttp.ClientSession() as s, s.get(api.url + NS, headers=headers) as r:
            table = await r.json()
        assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Stage", "Phase", "Step", "Uploaded",
                                                                   "Loss", "Progress", "ETA", "Age", "Nodes", "GPUs",
                                                                   "PPL", "Message"]
        assert [c["priority"] for c in table["columnDefinitions"]][-4:] == [1, 1, 1, 1]
        assert table["rows"][0]["cells"][-2] == 31.5
        assert table["rows"][0]["cells"][:8] == ["t", 1, "Running", 5, None, 2.5, 5.0, "1h"]


async def test_crd_metadata_schema_is_refused_as_the_real_server_does(tmp_path: Path) -> None:
    """A kube-apiserver refuses a CRD whose metadata schema says more than name/generateName (seen on v1.36)."""
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "things.example.com"},
           "spec": {"group": "example.com", "scope": "Namespaced",
                    "names": {"kind": "Thing", "plural": "things", "singular": "thing"},
                    "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                        "type": "object", "properties": {"metadata": {"type": "object",
                                                                      "description": "Standard object metadata."}}}}}]}}
    async with emulator(tmp_path) as api:
        code, err = await _req(api, "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
        assert code == 422 and "properties[metadata]: Forbidden" in err["message"]
        del crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["metadata"]["description"]
        code, _ = await _req(api, "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
        assert code == 201
