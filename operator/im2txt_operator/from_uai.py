"""UAI Train jobs -> one Im2txtTraining: ``python -m im2txt_operator from-uai``.

Input: the parameters of UCloud's ``CreateUAITrainJob`` API (as uai-sdk sends them: TrainJobName, CodeUhubPath,
DataUfilePath, OutputUfilePath, DockerCmd, MaxExecuteTime, TrainWorkAmount, ...), as JSON or YAML, one job or a
list of two (stage 1 and stage 2); or just the start command(s) of UAI's im2txt guide with the two paths. Output:
the Im2txtTraining that runs the same command(s), checked by the operator's own spec parser.

Nothing is dropped in silence: a field or flag that has no place in the training is an error that names it. The
UCloud key pair (TrainPublicKey, TrainPrivateKey) is never copied: the training names a Secret instead.
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from im2txt_operator import names
from im2txt_operator.spec import DEFAULTS, GROUP, KIND, UFILE_SUFFIX_DEFAULT, VERSION, SpecError, parse_spec

# uai-sdk's UFile path pattern (uai/utils/databackend_utils.py): http(s)://<bucket>.<region>.ufileos.com/<prefix>/
# or the older http(s)://<bucket>.ufile.ucloud.com.cn/<prefix>/.
_UFILE_URL = re.compile(r"https?://(?P<bucket>[\w-]+)(?P<suffix>\.ufile\.ucloud\.com\.cn|\.[\w-]+\.ufileos\.com)"
                        r"/(?P<prefix>.*)")
_DATA, _OUTPUT = "/data/data/", "/data/output/"
_SCRIPT = "/data/train.py"
# Fields UCloud resolves from its own catalogue; what they say is already in the fields that are mapped.
_IMPLIED = {
    "InputDataBackendId": "implied by DataUfilePath (a UFile URL)",
    "OutputDataBackendId": "implied by OutputUfilePath (a UFile URL)",
    "TrainModeId": "implied by TrainWorkAmount (1: stand-alone, more: distributed)",
    "Action": "the API call's name",
}
_SECRETS = ("TrainPublicKey", "TrainPrivateKey", "PublicKey", "PrivateKey")
_LOCATION = ("ProjectId", "Region", "Zone")
_LOCATION_NOTE = "where UCloud would run it; here the cluster's scheduler decides"
_MAPPED = {"TrainJobName", "CodeUhubPath", "DataUfilePath", "OutputUfilePath", "DockerCmd", "MaxExecuteTime",
           "TrainWorkAmount", "NodeType", "TrainWorkId", "DistAIFrame", "TrainJobMemo", "BusinessGroup"}


class FromUAIError(ValueError):
    """A field that cannot be carried over; the message starts with the field."""


@dataclass
class Result:
    training: dict[str, Any]
    notes: list[str] = field(default_factory=list)  # for stderr: what was not copied and why (never secret values)


@dataclass(frozen=True)
class Command:
    """One guide start command: the stage it runs and the flags it passes."""

    stage: int
    steps: int
    input_file_pattern: str
    inception_checkpoint_file: str | None
    extra_args: tuple[str, ...]


def parse_command(cmd: str, where: str = "DockerCmd") -> Command:
    """``/data/train.py --input_file_pattern=/data/data/... --train_dir=/data/output/ --number_of_steps=N ...``
    (optionally after ``python``/``python3`` and ``cd /data &&``)."""
    try:
        words = shlex.split(cmd)
    except ValueError as e:
        raise FromUAIError(f"{where}: cannot split the command: {e}") from e
    if words[:3] == ["cd", "/data", "&&"]:
        words = words[3:]
    if words and re.fullmatch(r"(/usr/bin/)?python3?(\.\d+)?", words[0]):
        words = words[1:]
    if not words or words[0] not in (_SCRIPT, "train.py", "./train.py"):
        raise FromUAIError(f"{where}: expected the guide's command, /data/train.py --flag=value ..., got {cmd!r}")
    flags: dict[str, str] = {}
    extra: list[str] = []
    for word in words[1:]:
        if not word.startswith("--"):
            raise FromUAIError(f"{where}: expected --flag=value, got {word!r}")
        name, eq, value = word[2:].partition("=")
        if name in ("input_file_pattern", "inception_checkpoint_file", "train_dir", "number_of_steps",
                    "train_inception"):
            flags[name] = value if eq else "True"
        else:
            extra.append(word)
    pattern = flags.get("input_file_pattern")
    if pattern is None or not pattern.startswith(_DATA) or "/" in pattern[len(_DATA):]:
        raise FromUAIError(f"{where}: --input_file_pattern must name files in {_DATA} (the data path), got "
                           f"{pattern!r}")
    if flags.get("train_dir", "").rstrip("/") + "/" != _OUTPUT:
        raise FromUAIError(f"{where}: --train_dir must be {_OUTPUT} (the output path), got {flags.get('train_dir')!r}")
    inception = flags.get("inception_checkpoint_file")
    if inception is not None and (not inception.startswith(_DATA) or "/" in inception[len(_DATA):]):
        raise FromUAIError(f"{where}: --inception_checkpoint_file must be a file in {_DATA}, got {inception!r}")
    steps = flags.get("number_of_steps")
    if steps is None or not steps.isdigit() or int(steps) < 1:
        raise FromUAIError(f"{where}: expected --number_of_steps=N with N >= 1, got {steps!r}")
    train_inception = flags.get("train_inception", "False").lower()
    if train_inception not in ("true", "false", "1", "0", "yes", "no", "t", "f", "y", "n"):
        raise FromUAIError(f"{where}: --train_inception expects True or False, got {flags['train_inception']!r}")
    return Command(stage=2 if train_inception in ("true", "1", "yes", "t", "y") else 1, steps=int(steps),
                   input_file_pattern=pattern[len(_DATA):],
                   inception_checkpoint_file=inception[len(_DATA):] if inception else None, extra_args=tuple(extra))


def ufile_path(url: str, where: str) -> tuple[str, str]:
    """A UAI UFile URL -> (ufile://bucket/prefix/, host suffix)."""
    m = _UFILE_URL.fullmatch(url.strip())
    if m is None:
        raise FromUAIError(f"{where}: expected a UFile URL such as http://<bucket>.cn-bj.ufileos.com/uai/im2txt/data/ "
                           f"(a UFS path has no place in a training), got {url!r}")
    prefix = m["prefix"] if not m["prefix"] or m["prefix"].endswith("/") else m["prefix"] + "/"
    return f"ufile://{m['bucket']}/{prefix}", m["suffix"]


def _name(raw: str) -> str:
    """UAI names allow capitals and underscores; a Kubernetes name does not."""
    name = re.sub(r"[^a-z0-9-]+", "-", raw.lower()).strip("-")
    try:
        names.check(name)
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name):
            raise ValueError("not a DNS label")
    except Exception as e:
        raise FromUAIError(f"TrainJobName: {raw!r} does not make a training name ({e}); give --name") from e
    return name


def _int(job: Mapping[str, Any], key: str, minimum: int) -> int | None:
    value = job.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not str(value).strip().isdigit() or int(value) < minimum:
        raise FromUAIError(f"{key}: expected a whole number >= {minimum}, got {value!r}")
    return int(value)


def _gpus(job: Mapping[str, Any], gpus: int | None) -> int | None:
    """NodeType is uai-sdk's --node_type ("1-P40": GPUs per node, then the card); TrainWorkId is UCloud's id for
    it, which only UCloud's catalogue resolves."""
    node_type = job.get("NodeType")
    if node_type is not None:
        m = re.fullmatch(r"(\d+)-(\w+)", str(node_type))
        if m is None or int(m[1]) < 1:
            raise FromUAIError(f"NodeType: expected <GPUs>-<card> such as 1-P40, got {node_type!r}")
        if gpus is not None and gpus != int(m[1]):
            raise FromUAIError(f"NodeType: {node_type!r} says {m[1]} GPUs, --gpus says {gpus}")
        return int(m[1])
    if "TrainWorkId" in job and gpus is None:
        raise FromUAIError(f"TrainWorkId: {job['TrainWorkId']!r} is UCloud's id of a node type, which only its "
                           "catalogue resolves; give NodeType (e.g. 1-P40) or --gpus N instead")
    return gpus


def convert(jobs: Sequence[Mapping[str, Any]], *, name: str | None = None, secret: str = "ufile-keys",
            namespace: str | None = None, gpus: int | None = None) -> Result:
    """One or two UAI Train jobs (the guide's stage 1 and stage 2) -> one Im2txtTraining."""
    if not 1 <= len(jobs) <= 2:
        raise FromUAIError(f"expected one UAI Train job, or two (stage 1 and stage 2), got {len(jobs)}")
    notes: list[str] = []
    for i, job in enumerate(jobs):
        if not isinstance(job, Mapping):
            raise FromUAIError(f"job {i + 1}: expected an object with CreateUAITrainJob's fields, got {job!r}")
        for key in job:
            if key in _SECRETS:
                note = (f"{', '.join(k for k in _SECRETS if k in job)}: not copied (a key pair never goes in a "
                        f"training); the training reads the Secret {secret!r}: kubectl create secret generic "
                        f"{secret} --from-literal=publicKey=... --from-literal=privateKey=...")
                if note not in notes:
                    notes.append(note)
            elif key in _IMPLIED and f"{key}: {_IMPLIED[key]}" not in notes:
                notes.append(f"{key}: {_IMPLIED[key]}")
            elif key in _LOCATION and f"{key}: {_LOCATION_NOTE}" not in notes:
                notes.append(f"{key}: {_LOCATION_NOTE}")
            elif key not in (*_MAPPED, *_IMPLIED, *_LOCATION):
                raise FromUAIError(f"{key}: not a CreateUAITrainJob field this tool knows; expected one of "
                                   f"{', '.join(sorted(_MAPPED | set(_IMPLIED) | set(_SECRETS) | set(_LOCATION)))}")
    commands = [parse_command(str(j.get("DockerCmd") or ""), "DockerCmd" if len(jobs) == 1 else f"job {i + 1}: "
                              "DockerCmd") for i, j in enumerate(jobs)]
    stages = [c.stage for c in commands]
    if len(jobs) == 2 and stages != [1, 2]:
        raise FromUAIError(f"DockerCmd: expected stage 1 then stage 2 (--train_inception=True), got stages {stages}")

    def same(key: str) -> Any:
        values = [j.get(key) for j in jobs]
        if any(v != values[0] for v in values):
            raise FromUAIError(f"{key}: the two jobs differ ({values[0]!r}, {values[1]!r}); one training has one")
        return values[0]

    for key in ("CodeUhubPath", "DataUfilePath", "OutputUfilePath", "TrainWorkAmount", "NodeType", "TrainWorkId"):
        same(key)
    if any(c.input_file_pattern != commands[0].input_file_pattern or c.extra_args != commands[0].extra_args
           for c in commands):
        raise FromUAIError("DockerCmd: the two commands differ beyond --number_of_steps, --train_inception and "
                           "--inception_checkpoint_file; one training passes the same flags to both stages")
    job = jobs[0]
    spec: dict[str, Any] = {}
    suffixes = set()
    for key, target in (("DataUfilePath", "dataPath"), ("OutputUfilePath", "outputPath")):
        if not job.get(key):
            raise FromUAIError(f"{key}: required (the UFile URL of the {target[:-4]} path)")
        spec[target], suffix = ufile_path(str(job[key]), key)
        suffixes.add(suffix)
    if len(suffixes) > 1:
        raise FromUAIError(f"OutputUfilePath: in another region than DataUfilePath ({sorted(suffixes)}); a training "
                           "reads and writes through one UFile endpoint")
    spec["credentialsSecret"] = secret
    if (suffix := suffixes.pop()) != UFILE_SUFFIX_DEFAULT:
        spec["ufile"] = {"uploadSuffix": suffix, "downloadSuffix": suffix}
    if job.get("CodeUhubPath"):
        spec["image"] = str(job["CodeUhubPath"])
    first = commands[0]
    spec["stage"] = first.stage
    if first.stage == 1:
        spec["numberOfSteps"] = first.steps
        if len(commands) == 2:
            spec["stage2NumberOfSteps"] = commands[1].steps
        else:
            spec["autoAdvance"] = False
            notes.append("only stage 1 was given: autoAdvance is false (give the stage-2 command too, or set "
                         "autoAdvance: true, and the operator runs stage 2 by itself)")
    else:
        spec["stage2NumberOfSteps"] = first.steps
    if first.input_file_pattern != DEFAULTS["inputFilePattern"]:
        spec["inputFilePattern"] = first.input_file_pattern
    inception = first.inception_checkpoint_file
    if first.stage == 1 and inception is None:
        raise FromUAIError("DockerCmd: stage 1 needs --inception_checkpoint_file=/data/data/<file> (the guide's "
                           "inception_v3.ckpt)")
    if inception is not None and inception != DEFAULTS["inceptionCheckpointFile"]:
        spec["inceptionCheckpointFile"] = inception
    if first.extra_args:
        spec["extraArgs"] = list(first.extra_args)
    nodes = _int(job, "TrainWorkAmount", 1)
    if nodes is not None and nodes > 1:
        spec["numNodes"] = nodes
    node_gpus = _gpus(job, gpus)
    if node_gpus is not None:
        spec["gpus"] = node_gpus
    if job.get("DistAIFrame") not in (None, "", 0, "0"):
        raise FromUAIError(f"DistAIFrame: {job['DistAIFrame']!r} names UAI's parameter-server framework; the "
                           "trainer distributes itself (spec.numNodes), remove it")
    hours = same("MaxExecuteTime")
    if hours is not None:
        spec["maxRunSeconds"] = (_int({"MaxExecuteTime": hours}, "MaxExecuteTime", 1) or 0) * 3600
    if name is not None:
        if _name(name) != name:
            raise FromUAIError(f"--name: {name!r} is not a training name; expected lower-case letters, digits and "
                               f"'-', e.g. {_name(name)!r}")
    elif not (name := same("TrainJobName")):
        raise FromUAIError("TrainJobName: required (or give --name)")
    metadata: dict[str, Any] = {"name": _name(str(name))}
    if namespace:
        metadata["namespace"] = namespace
    annotations = {f"{GROUP}/uai-{k.lower()}": str(job[k]) for k in ("TrainJobMemo", "BusinessGroup") if job.get(k)}
    if annotations:
        metadata["annotations"] = annotations
    try:
        parse_spec(spec)
    except SpecError as e:  # the operator would refuse it: say so now, with the training's field
        raise FromUAIError(f"the training it makes is not valid: {e}") from e
    return Result({"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "metadata": metadata, "spec": spec}, notes)


def from_commands(commands: Sequence[str], data_path: str | None, output_path: str | None) -> list[dict[str, Any]]:
    """The guide's start commands with the two UFile URLs, as the jobs they were typed into."""
    if not data_path or not output_path:
        raise FromUAIError("--data-path and --output-path: required with --cmd (the UFile URLs of the job's data "
                           "input and output, e.g. http://<bucket>.cn-bj.ufileos.com/uai/im2txt/data/)")
    return [{"DockerCmd": c, "DataUfilePath": data_path, "OutputUfilePath": output_path} for c in commands]


def main(args: argparse.Namespace, out: Any = None) -> int:
    """``from-uai``: the training on stdout, notes and errors on stderr (exit 2 on an error)."""
    try:
        if args.cmd and args.files:
            raise FromUAIError("give job files or --cmd, not both")
        if args.cmd:
            jobs = from_commands(args.cmd, args.data_path, args.output_path)
        else:
            jobs = []
            for path in args.files or ["-"]:
                with sys.stdin if path == "-" else open(path, encoding="utf-8") as f:
                    for doc in yaml.safe_load_all(f):  # JSON is YAML
                        jobs += doc if isinstance(doc, list) else [doc] if doc is not None else []
        result = convert(jobs, name=args.name, secret=args.secret, namespace=args.namespace, gpus=args.gpus)
    except (FromUAIError, OSError, yaml.YAMLError) as e:
        print(f"from-uai: {e}", file=sys.stderr)
        return 2
    for note in result.notes:
        print(f"# {note}", file=sys.stderr)
    yaml.safe_dump(result.training, out or sys.stdout, sort_keys=False, default_flow_style=False, allow_unicode=True)
    return 0
