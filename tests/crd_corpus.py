"""Im2txtTraining resources the API server must refuse (BAD) or accept (GOOD_CASES), for every check of the CRD.

Each resource is complete (apiVersion, kind, metadata.name), so it can be POSTed as is. Users:
- tests/operator/test_crd.py: the offline validator (tools/crd_validate.py) refuses every BAD entry naming
  its field, and accepts every GOOD case;
- tests/operator/test_spec.py: the operator's parse_spec refuses every BAD spec naming the same field (the
  operator must never act on a spec the API server would refuse), and accepts every GOOD case;
- tests/cluster/test_cluster_crd.py: a real kube-apiserver does the same.

`field` is the field path the API server names in its error causes (checked against kube-apiserver v1.36 with
`?fieldValidation=Strict&dryRun=All`): `spec.dataPath` (also for a missing required field: `Required value`),
`spec.tolerations[0].operator`, `spec.nodeSelector.<key>` for a map value, `metadata.name` for the name's
length (a CEL rule with that fieldPath). An unknown field is refused with 400 and no causes, the message saying
`strict decoding error: unknown field "spec.numberOfStep"`: there `field` is what the message quotes.

The entries with a `status` (STATUS_BAD, also in BAD) are refused only when written through the `/status`
subresource: a create drops `status` (the status subresource is on), so create the rest first, then PUT status.

OPERATOR_ONLY holds specs the CRD accepts (the check would cost the API server too much CEL: quantities are
int-or-string; or it depends on the operator's configuration: the UFile domains) but the operator refuses, naming
the field.
"""

from __future__ import annotations

import copy
from typing import Any

GOOD: dict[str, Any] = {"apiVersion": "im2txt.dev/v1alpha1", "kind": "Im2txtTraining",
                        "metadata": {"name": "coco"},
                        "spec": {"dataPath": "ufile://im2txt-data/coco/", "outputPath": "ufile://im2txt-out/run1/",
                                 "credentialsSecret": "ufile-keys"}}


def _with(spec: dict[str, Any] | None = None, drop: tuple[str, ...] = (), **top: Any) -> dict[str, Any]:
    """GOOD with `spec` merged into its spec, the `drop` spec fields removed and `top` fields replaced."""
    obj = copy.deepcopy(GOOD)
    obj["spec"].update(copy.deepcopy(spec or {}))
    for key in drop:
        del obj["spec"][key]
    obj.update(copy.deepcopy(top))
    return obj


def _pvc(**spec: Any) -> dict[str, Any]:
    """pvc:// paths and no Secret, plus `spec`."""
    return _with({"dataPath": "pvc://data/coco", "outputPath": "pvc://out/run1/", **spec}, drop=("credentialsSecret",))


_RESERVED_ABBREVIATIONS = ["--train_d=/tmp", "--number_of_st=5", "--train", "--inc=x.ckpt", "--i", "--input_file",
                           "--train_incep=False", "--n=3", "--t"]

# (id, resource, field): refused on the status subresource (a create or update of the resource drops status).
STATUS_BAD: list[tuple[str, dict[str, Any], str]] = [
    ("status phase unknown", _with(status={"phase": "Done"}), "status.phase"),
    ("status condition without type", _with(status={"conditions": [{"status": "True"}]}), "status.conditions[0].type"),
    ("status condition status unknown", _with(status={"conditions": [{"type": "Ready", "status": "Yes"}]}),
     "status.conditions[0].status"),
    ("status stage entry outcome unknown", _with(status={"stages": [{"stage": 1, "outcome": "Done"}]}),
     "status.stages[0].outcome"),
    ("status evaluation of a stage 3", _with(status={"evaluation": {"stages": [{"stage": 3, "perplexity": 9.5}]}}),
     "status.evaluation.stages[0].stage"),
    ("status evaluation step not a number", _with(status={"evaluation": {"step": "late"}}), "status.evaluation.step"),
]

# (id, resource, field the API server names)
BAD: list[tuple[str, dict[str, Any], str]] = [
    # required and unknown fields
    ("missing dataPath", _with(drop=("dataPath",)), "spec.dataPath"),
    ("missing outputPath", _with(drop=("outputPath",)), "spec.outputPath"),
    ("unknown field", _with({"numberOfStep": 10}), "spec.numberOfStep"),
    ("unknown ufile field", _with({"ufile": {"uploadSufix": ".x.com"}}), "spec.ufile.uploadSufix"),
    ("unknown toleration field", _with({"tolerations": [{"key": "k", "operater": "Exists"}]}),
     "spec.tolerations[0].operater"),
    ("unknown resources field", _with({"resources": {"claims": {}}}), "spec.resources.claims"),
    # paths: ufile://<bucket>/<prefix>/ or pvc://<claim>/<sub/path>
    ("s3 path", _with({"dataPath": "s3://bucket/x/"}), "spec.dataPath"),
    ("ufile prefix without slash", _with({"outputPath": "ufile://bucket/x"}), "spec.outputPath"),
    ("ufile without a slash after the bucket", _with({"outputPath": "ufile://bucket"}), "spec.outputPath"),
    ("ufile bucket with a dot", _with({"dataPath": "ufile://my.bucket/x/"}), "spec.dataPath"),
    ("ufile bucket too short", _with({"outputPath": "ufile://ab/x/"}), "spec.outputPath"),
    ("ufile key with a percent sign", _with({"outputPath": "ufile://bucket/50%/"}), "spec.outputPath"),
    ("ufile prefix with '..'", _with({"outputPath": "ufile://bucket/../x/"}), "spec.outputPath"),
    ("ufile prefix with '.'", _with({"dataPath": "ufile://bucket/a/./"}), "spec.dataPath"),
    ("output equal to data", _with({"outputPath": "ufile://im2txt-data/coco/"}), "spec.outputPath"),
    ("output inside data", _with({"outputPath": "ufile://im2txt-data/coco/run1/"}), "spec.outputPath"),
    ("output inside a whole-bucket data path", _with({"dataPath": "ufile://im2txt-data/",
                                                      "outputPath": "ufile://im2txt-data/out/"}), "spec.outputPath"),
    ("pvc output equal to data, one without a slash", _with({"dataPath": "pvc://shared/coco/", "outputPath":
                                                             "pvc://shared/coco"}, drop=("credentialsSecret",)),
     "spec.outputPath"),
    ("pvc output inside the data claim's root", _with({"dataPath": "pvc://shared", "outputPath": "pvc://shared/out"},
                                                      drop=("credentialsSecret",)), "spec.outputPath"),
    ("ufile prefix with an empty part", _with({"dataPath": "ufile://bucket/a//b/"}), "spec.dataPath"),
    ("ufile prefix with a space", _with({"dataPath": "ufile://bucket/my data/"}), "spec.dataPath"),
    ("ufile prefix with a trailing newline", _with({"dataPath": "ufile://bucket/data/\n"}), "spec.dataPath"),
    ("pvc claim upper case", _with({"dataPath": "pvc://Claim/x"}), "spec.dataPath"),
    ("pvc sub path with '..' (a volumeMount subPath the Pod API refuses)", _pvc(dataPath="pvc://im2txt/../../etc/"),
     "spec.dataPath"),
    ("pvc sub path ending in '..'", _pvc(outputPath="pvc://out/run1/.."), "spec.outputPath"),
    ("pvc sub path with '.'", _pvc(dataPath="pvc://data/./coco"), "spec.dataPath"),
    ("pvc sub path with an empty part", _pvc(outputPath="pvc://out//run1"), "spec.outputPath"),
    ("pvc sub path with a backslash", _pvc(dataPath="pvc://data/a\\..\\b"), "spec.dataPath"),
    # scalars
    ("stage 3", _with({"stage": 3}), "spec.stage"),
    ("steps zero", _with({"numberOfSteps": 0}), "spec.numberOfSteps"),
    ("steps as string", _with({"numberOfSteps": "1000"}), "spec.numberOfSteps"),
    ("gpus 17", _with({"gpus": 17}), "spec.gpus"),
    ("backoffLimit negative", _with({"backoffLimit": -1}), "spec.backoffLimit"),
    ("runAsUser root", _with({"runAsUser": 0}), "spec.runAsUser"),
    ("runAsGroup root", _with({"runAsGroup": 0}), "spec.runAsGroup"),
    ("runAsUser too large", _with({"runAsUser": 2_147_483_648}), "spec.runAsUser"),
    ("checkpoint interval too short", _with({"checkpointIntervalSeconds": 1}), "spec.checkpointIntervalSeconds"),
    ("maxRunSeconds zero", _with({"maxRunSeconds": 0}), "spec.maxRunSeconds"),
    ("autoAdvance string", _with({"autoAdvance": "yes"}), "spec.autoAdvance"),
    ("secret name invalid", _with({"credentialsSecret": "Keys_1"}), "spec.credentialsSecret"),
    ("tensorboard secret name invalid", _with({"tensorboard": {"enabled": True, "credentialsSecret": "RO_keys"}}),
     "spec.tensorboard.credentialsSecret"),
    ("pattern with a slash", _with({"inputFilePattern": "a/train-*"}), "spec.inputFilePattern"),
    ("suffix without dot", _with({"ufile": {"uploadSuffix": "cn-bj.ufileos.com"}}), "spec.ufile.uploadSuffix"),
    # Plain HTTP to UFile is the cluster admin's choice (the operator's --ufile-insecure-http), never the spec's.
    ("ufile plain http asked by the spec", _with({"ufile": {"insecureHttp": True}}), "spec.ufile.insecureHttp"),
    ("queue name with space", _with({"queueName": "gpu queue"}), "spec.queueName"),
    ("cache size not a quantity", _with({"dataCacheSize": "big"}), "spec.dataCacheSize"),
    ("cache size with suffix K (only k, Ki)", _with({"dataCacheSize": "100K"}), "spec.dataCacheSize"),
    ("cache size negative", _with({"dataCacheSize": -1}), "spec.dataCacheSize"),
    # nodeSelector: label names to label values
    ("nodeSelector key with a space", _with({"nodeSelector": {"gpu type": "a100"}}), "spec.nodeSelector"),
    ("nodeSelector key with an upper-case prefix", _with({"nodeSelector": {"Example.com/gpu": "a100"}}),
     "spec.nodeSelector"),
    ("nodeSelector key name of 64", _with({"nodeSelector": {"g" * 64: "a100"}}), "spec.nodeSelector"),
    ("nodeSelector key prefix of 254", _with({"nodeSelector": {"p" * 254 + "/gpu": "a100"}}), "spec.nodeSelector"),
    ("nodeSelector key with an empty name", _with({"nodeSelector": {"example.com/": "a100"}}), "spec.nodeSelector"),
    ("nodeSelector value with a space", _with({"nodeSelector": {"gpu": "a 100"}}), "spec.nodeSelector.gpu"),
    ("nodeSelector value of 64", _with({"nodeSelector": {"gpu": "a" * 64}}), "spec.nodeSelector.gpu"),
    ("nodeSelector value ending in '-'", _with({"nodeSelector": {"gpu": "a100-"}}), "spec.nodeSelector.gpu"),
    ("nodeSelector of 33 labels", _with({"nodeSelector": {f"l{i}": "x" for i in range(33)}}), "spec.nodeSelector"),
    # tolerations, as the Pod API checks them
    ("toleration operator", _with({"tolerations": [{"operator": "Maybe"}]}), "spec.tolerations[0].operator"),
    ("toleration Exists with a value", _with({"tolerations": [{"key": "gpu", "operator": "Exists", "value": "x"}]}),
     "spec.tolerations[0].value"),
    ("toleration without key and operator", _with({"tolerations": [{"effect": "NoSchedule"}]}),
     "spec.tolerations[0].operator"),
    ("toleration with empty key and Equal",
     _with({"tolerations": [{"key": "", "operator": "Equal", "value": "x"}]}), "spec.tolerations[0].operator"),
    ("toleration seconds with NoSchedule",
     _with({"tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 60}]}),
     "spec.tolerations[0].tolerationSeconds"),
    ("toleration seconds without effect", _with({"tolerations": [{"key": "gpu", "tolerationSeconds": 60}]}),
     "spec.tolerations[0].tolerationSeconds"),
    ("toleration key with a space", _with({"tolerations": [{"key": "gpu node", "operator": "Exists"}]}),
     "spec.tolerations[0].key"),
    ("toleration key prefix of 254", _with({"tolerations": [{"key": "p" * 254 + "/gpu", "operator": "Exists"}]}),
     "spec.tolerations[0].key"),
    ("toleration value with a space", _with({"tolerations": [{"key": "gpu", "value": "a b"}]}),
     "spec.tolerations[0].value"),
    ("toleration effect unknown", _with({"tolerations": [{"operator": "Exists", "effect": "Evict"}]}),
     "spec.tolerations[0].effect"),
    ("second toleration Exists with a value",
     _with({"tolerations": [{"operator": "Exists"}, {"key": "a", "operator": "Exists", "value": "b"}]}),
     "spec.tolerations[1].value"),
    ("33 tolerations", _with({"tolerations": [{"operator": "Exists"}] * 33}), "spec.tolerations"),
    # resources, as the Pod API checks a container's
    ("resource name not a container resource", _with({"resources": {"limits": {"gpu": 1}}}), "spec.resources.limits"),
    ("resource name pods", _with({"resources": {"requests": {"pods": 1}}}), "spec.resources.requests"),
    ("resource name with an upper-case domain", _with({"resources": {"limits": {"Example.com/fpga": 1}}}),
     "spec.resources.limits"),
    ("resource name with the requests. prefix", _with({"resources": {"limits": {"requests.example.com/fpga": 1}}}),
     "spec.resources.limits"),
    ("resource name with a domain of 245", _with({"resources": {"limits": {"d" * 245 + "/fpga": 1}}}),
     "spec.resources.limits"),
    ("hugepages (not supported here)", _with({"resources": {"limits": {"hugepages-2Mi": "1Gi", "memory": "1Gi"}}}),
     "spec.resources.limits"),
    ("nvidia.com/gpu in limits (spec.gpus sets it)", _with({"resources": {"limits": {"nvidia.com/gpu": 2}}}),
     "spec.resources.limits"),
    ("extended resource in requests", _with({"resources": {"requests": {"example.com/fpga": 1}}}),
     "spec.resources.requests"),
    ("quantity not a quantity", _with({"resources": {"requests": {"cpu": "lots"}}}), "spec.resources.requests.cpu"),
    ("quantity with suffix K", _with({"resources": {"limits": {"memory": "1K"}}}), "spec.resources.limits.memory"),
    ("quantity negative string", _with({"resources": {"requests": {"cpu": "-1"}}}), "spec.resources.requests.cpu"),
    ("quantity negative integer", _with({"resources": {"requests": {"memory": -1}}}),
     "spec.resources.requests.memory"),
    ("quantity with a bare exponent", _with({"resources": {"requests": {"cpu": "1e"}}}),
     "spec.resources.requests.cpu"),
    ("quantity with a 10-digit exponent (hangs the API server's Job create)",
     _with({"resources": {"limits": {"cpu": "1e3000000000"}}}), "spec.resources.limits.cpu"),
    ("quantity with a space", _with({"resources": {"requests": {"memory": "32 Gi"}}}),
     "spec.resources.requests.memory"),
    ("quantity a list", _with({"resources": {"requests": {"cpu": [4]}}}), "spec.resources.requests.cpu"),
    ("17 resources", _with({"resources": {"limits": {f"example.com/r{i}": 1 for i in range(17)}}}),
     "spec.resources.limits"),
    # extraArgs: --flag or --flag=value, never one the operator sets, not even abbreviated
    ("extra arg without dashes", _with({"extraArgs": ["image_size=75"]}), "spec.extraArgs[0]"),
    ("extra arg with a newline", _with({"extraArgs": ["--note=a\nb"]}), "spec.extraArgs[0]"),
    ("extraArgs overrides train_dir", _with({"extraArgs": ["--train_dir=/tmp"]}), "spec.extraArgs[0]"),
    ("extraArgs overrides train_inception", _with({"extraArgs": ["--x=1", "--train_inception"]}),
     "spec.extraArgs[1]"),
    *[(f"extraArgs abbreviates a reserved flag: {arg}", _with({"extraArgs": ["--log_every_n_steps=10", arg]}),
       "spec.extraArgs[1]") for arg in _RESERVED_ABBREVIATIONS],
    ("65 extraArgs", _with({"extraArgs": ["--x=1"] * 65}), "spec.extraArgs"),
    # CEL rules across fields
    ("stage 2 target not above stage 1", _with({"numberOfSteps": 3000000}), "spec.stage2NumberOfSteps"),
    ("stage 2 target equal after defaults", _with({"stage2NumberOfSteps": 1000000}), "spec.stage2NumberOfSteps"),
    ("ufile without secret", _with(drop=("credentialsSecret",)), "spec.credentialsSecret"),
    ("ufile output only without secret", _with({"dataPath": "pvc://data/"}, drop=("credentialsSecret",)),
     "spec.credentialsSecret"),
    ("name too long for the children's names", _with(metadata={"name": "n" * 52}), "metadata.name"),
    ("name with a dot (no Service can carry it)", _with(metadata={"name": "coco.v2"}), "metadata.name"),
    ("name starting with a digit (not a DNS-1035 label)", _with(metadata={"name": "2coco"}), "metadata.name"),
    # spec.evaluation
    ("unknown evaluation field", _with({"evaluation": {"enable": True}}), "spec.evaluation.enable"),
    ("evaluation enabled not a boolean", _with({"evaluation": {"enabled": "yes"}}), "spec.evaluation.enabled"),
    ("evaluation pattern with a folder", _with({"evaluation": {"filePattern": "val/val-*"}}),
     "spec.evaluation.filePattern"),
    ("evaluation every 10 seconds", _with({"evaluation": {"intervalSeconds": 10}}), "spec.evaluation.intervalSeconds"),
    ("evaluation of no examples", _with({"evaluation": {"numExamples": 0}}), "spec.evaluation.numExamples"),
    ("evaluation BLEU on no images", _with({"evaluation": {"bleuImages": 0}}), "spec.evaluation.bleuImages"),
    ("evaluation cpu not a quantity", _with({"evaluation": {"resources": {"requests": {"cpu": "lots"}}}}),
     "spec.evaluation.resources.requests.cpu"),
    *STATUS_BAD,
]

# (id, resource): the API server accepts each, and so does the operator.
GOOD_CASES: list[tuple[str, dict[str, Any]]] = [
    ("minimal ufile", _with()),
    ("tensorboard with a read-only key pair", _with({"tensorboard": {"enabled": True,
                                                                     "credentialsSecret": "ufile-read-only"}})),
    ("pvc paths need no secret", _pvc()),
    ("another uid and gid", _with({"runAsUser": 65532, "runAsGroup": 2000})),
    ("pvc claim roots", _pvc(dataPath="pvc://data", outputPath="pvc://out/")),
    ("pvc parts that start with dots", _pvc(dataPath="pvc://data/.cache/..v2/...", outputPath="pvc://out/a.b/c..")),
    ("ufile whole bucket and dotted parts", _with({"dataPath": "ufile://im2txt-data/",
                                                    "outputPath": "ufile://im2txt-out/v1.2/.ckpt/"})),
    ("ufile key characters", _with({"dataPath": "ufile://im2txt-data/coco+2014/(train)=é/"})),
    ("output beside data with a longer name", _pvc(dataPath="pvc://shared/coco", outputPath="pvc://shared/coco2")),
    ("output beside data in one bucket", _with({"dataPath": "ufile://im2txt-data/coco/",
                                                 "outputPath": "ufile://im2txt-data/coco-out/"})),
    ("the same prefix in another bucket", _with({"outputPath": "ufile://im2txt-out/coco/"})),
    ("name of 51", _with(metadata={"name": "n" * 51})),
    ("targets 10 and 11", _with({"numberOfSteps": 10, "stage2NumberOfSteps": 11})),
    ("extra args that are not reserved flags",
     _with({"extraArgs": ["--train_dir_suffix=x", "--log_every_n_steps=10", "--trainer=x", "--number_of_steps_x",
                          "--input_file_pattern2=y", "--inception_checkpoint_file_v2", "--train_inception_lr=0.1",
                          "--note=a=b c", "--x"]})),
    ("tolerations the Pod API accepts", _with({"tolerations": [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"operator": "Exists"},
        {"key": "", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 0},
        {"key": "cloud.example.com/spot", "operator": "Equal", "value": "true", "effect": "NoExecute",
         "tolerationSeconds": 300},
        {"key": "dedicated", "value": "ml-team_1.a"},
        {"key": "empty-value", "operator": "Equal", "value": ""},
        {"key": "p" * 253 + "/" + "n" * 63, "operator": "Exists"},
    ]})),
    ("32 tolerations", _with({"tolerations": [{"operator": "Exists"}] * 32})),
    ("node selector label names and values", _with({"nodeSelector": {
        "kubernetes.io/arch": "amd64", "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB", "pool": "",
        "p" * 253 + "/" + "n" * 63: "v" * 63, "UPPER_and.dots-9": "Value_1.x"}})),
    ("32 node selector labels", _with({"nodeSelector": {f"l{i}": "x" for i in range(32)}})),
    ("resources the Pod API accepts", _with({"resources": {
        "requests": {"cpu": "500m", "memory": "32Gi", "ephemeral-storage": "10G"},
        "limits": {"cpu": 8, "memory": "48Gi", "ephemeral-storage": "1e11", "example.com/fpga": 2,
                   "d" * 244 + "/x": "1"}}})),
    ("quantity forms", _with({"resources": {
        "requests": {"cpu": ".5", "memory": "+1.5Gi", "ephemeral-storage": "2."},
        "limits": {"cpu": "1.5", "memory": "2E", "ephemeral-storage": "1e+3", "example.com/x": "1e999"}},
        "dataCacheSize": "1e3"})),
    ("integer quantities", _with({"resources": {"requests": {"cpu": 4, "memory": 0}}, "dataCacheSize": 100})),
    ("gpus 0 and CPU limits", _with({"gpus": 0, "resources": {"limits": {"cpu": "16"}}})),
    # Every list and map at its bound, every string the rules read at its longest: the CEL rules' runtime cost
    # stays within the API server's budget.
    ("largest resource the schema allows", _with({
        "extraArgs": [f"--flag_{i:02d}=" + "v" * 1014 for i in range(64)],
        "tolerations": [{"key": f"{i:02d}" + "p" * 251 + "/" + "n" * 63, "operator": "Equal", "value": "v" * 63,
                         "effect": "NoExecute", "tolerationSeconds": 1} for i in range(32)],
        "nodeSelector": {f"{i:02d}" + "p" * 251 + "/" + "n" * 63: "v" * 63 for i in range(32)},
        "resources": {"requests": {"cpu": "1", "memory": "1Gi", "ephemeral-storage": "1Gi"},
                      "limits": {"cpu": "2", "memory": "2Gi", "ephemeral-storage": "2Gi",
                                 **{f"{i:02d}" + "d" * 242 + "/" + "n" * 63: 1 for i in range(13)}}},
    })),
]

GOOD_CASES += [
    ("evaluation off", _with({"evaluation": {"enabled": False}})),
    ("evaluation in full", _pvc(evaluation={"enabled": True, "filePattern": "test-?????-of-00008",
                                            "intervalSeconds": 3600, "numExamples": 500, "bleu": True,
                                            "bleuImages": 100, "resources": {"requests": {"cpu": "4"}, "limits": {
                                                "memory": "8Gi", "nvidia.com/gpu": 1}}})),
]

# (id, resource, field): accepted by the API server, refused by the operator (and by the Pod API).
OPERATOR_ONLY: list[tuple[str, dict[str, Any], str]] = [
    ("cpu request above its limit", _with({"resources": {"requests": {"cpu": "4"}, "limits": {"cpu": "2000m"}}}),
     "spec.resources.requests.cpu"),
    ("memory request above its limit",
     _with({"resources": {"requests": {"memory": "2Gi"}, "limits": {"memory": "2G"}}}),
     "spec.resources.requests.memory"),
    ("extended resource not a whole number", _with({"resources": {"limits": {"example.com/fpga": "0.5"}}}),
     "spec.resources.limits.example.com/fpga"),
    # The cluster admin's list (run --ufile-domains), which no CRD can know; by default UCloud's own domains.
    ("UFile upload host outside the allowed domains", _with({"ufile": {"uploadSuffix": ".metadata.internal"}}),
     "spec.ufile.uploadSuffix"),
    ("UFile download host in a look-alike domain", _with({"ufile": {"downloadSuffix": ".cn-bj.ufileos.com.evil.io"}}),
     "spec.ufile.downloadSuffix"),
    ("evaluation cpu request above its limit",
     _with({"evaluation": {"resources": {"requests": {"cpu": "4"}, "limits": {"cpu": "2"}}}}),
     "spec.evaluation.resources.requests.cpu"),
    ("evaluation resource name that is none", _with({"evaluation": {"resources": {"limits": {"gpu!": 1}}}}),
     "spec.evaluation.resources.limits"),
]
