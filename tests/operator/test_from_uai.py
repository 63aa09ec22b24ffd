"""from-uai: UAI Train jobs and the guide's start commands become one Im2txtTraining; nothing dropped in silence."""

from __future__ import annotations

import io
import json
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from operator_support import ROOT

from im2txt_operator import cli
from im2txt_operator.from_uai import FromUAIError, convert, parse_command

# UAI Train's im2txt guide, its two start commands byte for byte, and its layout in a bucket.
GUIDE_STAGE1 = ("/data/train.py --input_file_pattern=/data/data/train-?????-of-00256 "
                "--inception_checkpoint_file=/data/data/inception_v3.ckpt --train_dir=/data/output/ "
                "--number_of_steps=1000000")
GUIDE_STAGE2 = ("/data/train.py --input_file_pattern=/data/data/train-?????-of-00256 --train_dir=/data/output/ "
                "--number_of_steps=3000000 --train_inception=True")
DATA = "http://my-bucket.cn-bj.ufileos.com/uai/im2txt/data/"
OUTPUT = "http://my-bucket.cn-bj.ufileos.com/uai/im2txt/output/"


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(["from-uai", *args])
    out, err = capsys.readouterr()
    return code, out, err


def _trainer_commands(training: dict[str, Any], tmp_path: Path) -> list[list[str]]:
    """What `render` puts in each stage Job's trainer container: command + args."""
    path = tmp_path / "training.yaml"
    path.write_text(yaml.safe_dump(training))
    out = io.StringIO()
    assert cli.render([str(path)], out) == 0
    commands = []
    for job in yaml.safe_load_all(out.getvalue()):
        if job["kind"] == "Job" and job["metadata"]["name"].endswith(("-stage1", "-stage2")):
            (trainer,) = [c for c in job["spec"]["template"]["spec"]["containers"] if c["name"] == "trainer"]
            commands.append(trainer["command"] + trainer["args"])
    return commands


def test_the_guides_two_commands_render_as_the_same_two_jobs(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                              ) -> None:
    code, out, err = _cli(["--cmd", GUIDE_STAGE1, "--cmd", GUIDE_STAGE2, "--data-path", DATA, "--output-path", OUTPUT,
                           "--name", "im2txt-train"], capsys)
    assert code == 0, err
    training = yaml.safe_load(out)
    assert training["spec"] == {"dataPath": "ufile://my-bucket/uai/im2txt/data/",
                                "outputPath": "ufile://my-bucket/uai/im2txt/output/",
                                "credentialsSecret": "ufile-keys", "stage": 1, "numberOfSteps": 1000000,
                                "stage2NumberOfSteps": 3000000}
    assert _trainer_commands(training, tmp_path) == [shlex.split(GUIDE_STAGE1), shlex.split(GUIDE_STAGE2)]


def _make_from_uai(uai: str) -> subprocess.CompletedProcess[str]:
    """`make -s from-uai UAI=...` as the README shows it (the real command line, another process)."""
    return subprocess.run(["make", "-s", "--no-print-directory", "from-uai", f"UAI={uai}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)


def test_make_from_uai_reads_yaml_jobs_and_the_guides_command_line(tmp_path: Path) -> None:
    """The README's two ways through make: the stage-1 and stage-2 CreateUAITrainJob requests as YAML documents,
    and the guide's commands as --cmd; both print the training whose render runs the guide's two commands."""
    jobs = [{"TrainJobName": "im2txt-train", "DataUfilePath": DATA, "OutputUfilePath": OUTPUT, "DockerCmd": cmd,
             "MaxExecuteTime": 48, "NodeType": "1-P40"} for cmd in (GUIDE_STAGE1, GUIDE_STAGE2)]
    path = tmp_path / "uai-jobs.yaml"
    path.write_text(yaml.safe_dump_all(jobs))
    from_yaml = _make_from_uai(str(path))
    assert from_yaml.returncode == 0, from_yaml.stderr
    training = yaml.safe_load(from_yaml.stdout)
    assert (training["metadata"]["name"], training["spec"]["gpus"], training["spec"]["maxRunSeconds"]) == (
        "im2txt-train", 1, 48 * 3600)
    assert _trainer_commands(training, tmp_path) == [shlex.split(GUIDE_STAGE1), shlex.split(GUIDE_STAGE2)]
    from_cmd = _make_from_uai(f"--name im2txt-train --data-path {DATA} --output-path {OUTPUT} "
                              f"--cmd '{GUIDE_STAGE1}' --cmd '{GUIDE_STAGE2}'")
    assert from_cmd.returncode == 0, from_cmd.stderr
    assert _trainer_commands(yaml.safe_load(from_cmd.stdout), tmp_path) == [shlex.split(GUIDE_STAGE1),
                                                                          shlex.split(GUIDE_STAGE2)]
    refused = _make_from_uai(f"--data-path {DATA} --output-path {OUTPUT} --cmd 'bash run.sh'")
    assert refused.returncode != 0 and "from-uai: DockerCmd: expected the guide's command" in refused.stderr


def test_a_create_uai_train_job_request_maps_every_field_and_never_copies_the_keys(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = {"TrainJobName": "IM2TXT_train", "CodeUhubPath": "uhub.ucloud.cn/my-rep/im2txt-train-gpu:test",
           "DataUfilePath": DATA.replace("cn-bj", "cn-sh2"), "OutputUfilePath": OUTPUT.replace("cn-bj", "cn-sh2"),
           "DockerCmd": f"cd /data && python {GUIDE_STAGE1} --batch_size=64", "MaxExecuteTime": 72,
           "NodeType": "4-P40", "TrainWorkAmount": 2, "TrainJobMemo": "coco run 3",
           "TrainPublicKey": "pub-SECRET-1", "TrainPrivateKey": "priv-SECRET-2", "TrainModeId": 2,
           "InputDataBackendId": 1, "OutputDataBackendId": 1, "Region": "cn-sh2"}
    stage2 = {**job, "DockerCmd": GUIDE_STAGE2 + " --batch_size=64"}
    path = tmp_path / "jobs.json"
    path.write_text(json.dumps([job, stage2]))
    code, out, err = _cli([str(path), "--namespace", "ml"], capsys)
    assert code == 0, err
    training = yaml.safe_load(out)
    assert training["metadata"] == {"name": "im2txt-train", "namespace": "ml",
                                    "annotations": {"im2txt.dev/uai-trainjobmemo": "coco run 3"}}
    assert training["spec"] == {
        "dataPath": "ufile://my-bucket/uai/im2txt/data/", "outputPath": "ufile://my-bucket/uai/im2txt/output/",
        "credentialsSecret": "ufile-keys",
        "ufile": {"uploadSuffix": ".cn-sh2.ufileos.com", "downloadSuffix": ".cn-sh2.ufileos.com"},
        "image": "uhub.ucloud.cn/my-rep/im2txt-train-gpu:test", "stage": 1, "numberOfSteps": 1000000,
        "stage2NumberOfSteps": 3000000, "extraArgs": ["--batch_size=64"], "numNodes": 2, "gpus": 4,
        "maxRunSeconds": 72 * 3600}
    assert "SECRET" not in out + err
    assert "TrainPublicKey, TrainPrivateKey: not copied" in err and "kubectl create secret generic ufile-keys" in err
    assert "TrainModeId: implied by TrainWorkAmount" in err and "Region: where UCloud would run it" in err


def test_one_stage_is_what_was_asked_for() -> None:
    only1 = convert([{"TrainJobName": "a", "DataUfilePath": DATA, "OutputUfilePath": OUTPUT,
                      "DockerCmd": GUIDE_STAGE1}])
    assert only1.training["spec"]["autoAdvance"] is False and any("only stage 1" in n for n in only1.notes)
    only2 = convert([{"TrainJobName": "a", "DataUfilePath": DATA, "OutputUfilePath": OUTPUT,
                      "DockerCmd": GUIDE_STAGE2}])
    assert only2.training["spec"]["stage"] == 2 and only2.training["spec"]["stage2NumberOfSteps"] == 3000000


@pytest.mark.parametrize(("change", "message"), [
    ({"TrainJobNmae": "x"}, "TrainJobNmae: not a CreateUAITrainJob field this tool knows"),
    ({"DataUfilePath": "10.0.0.1:/ufs-abc/data/"}, "DataUfilePath: expected a UFile URL"),
    ({"OutputUfilePath": OUTPUT.replace("cn-bj", "hk")}, "OutputUfilePath: in another region than DataUfilePath"),
    ({"TrainWorkId": 1127}, "TrainWorkId: 1127 is UCloud's id of a node type"),
    ({"NodeType": "P40"}, "NodeType: expected <GPUs>-<card>"),
    ({"MaxExecuteTime": -1}, "MaxExecuteTime: expected a whole number >= 1"),
    ({"DistAIFrame": "tensorflow-ps"}, "DistAIFrame: 'tensorflow-ps' names UAI's parameter-server framework"),
    ({"TrainJobName": "___"}, "TrainJobName: '___' does not make a training name"),
    ({"DockerCmd": GUIDE_STAGE1.replace("/data/output/", "/tmp/out/")}, "DockerCmd: --train_dir must be /data/output/"),
    ({"DockerCmd": GUIDE_STAGE1.replace("/data/data/train", "/data/other/train")},
     "DockerCmd: --input_file_pattern must name files in /data/data/"),
    ({"DockerCmd": "bash run.sh"}, "DockerCmd: expected the guide's command"),
    ({"DockerCmd": GUIDE_STAGE1.replace(" --inception_checkpoint_file=/data/data/inception_v3.ckpt", "")},
     "DockerCmd: stage 1 needs --inception_checkpoint_file"),
    ({"DockerCmd": GUIDE_STAGE1 + " --number_of_steps=x"}, "DockerCmd: expected --number_of_steps=N"),
    ({"DockerCmd": GUIDE_STAGE1 + " --number_of=5"},  # argparse reads an abbreviation as --number_of_steps
     "the training it makes is not valid: spec.extraArgs"),
])
def test_what_cannot_be_carried_over_is_an_error_naming_the_field(change: dict[str, Any], message: str) -> None:
    job = {"TrainJobName": "a", "DataUfilePath": DATA, "OutputUfilePath": OUTPUT, "DockerCmd": GUIDE_STAGE1, **change}
    with pytest.raises(FromUAIError) as e:
        convert([job])
    assert str(e.value).startswith(message) or message in str(e.value), str(e.value)


def test_two_jobs_must_be_one_training() -> None:
    base = {"TrainJobName": "a", "DataUfilePath": DATA, "OutputUfilePath": OUTPUT}
    with pytest.raises(FromUAIError, match=r"^DockerCmd: expected stage 1 then stage 2"):
        convert([{**base, "DockerCmd": GUIDE_STAGE2}, {**base, "DockerCmd": GUIDE_STAGE1}])
    with pytest.raises(FromUAIError, match=r"^CodeUhubPath: the two jobs differ"):
        convert([{**base, "DockerCmd": GUIDE_STAGE1, "CodeUhubPath": "a:1"},
                 {**base, "DockerCmd": GUIDE_STAGE2, "CodeUhubPath": "a:2"}])
    with pytest.raises(FromUAIError, match=r"^DockerCmd: the two commands differ"):
        convert([{**base, "DockerCmd": GUIDE_STAGE1}, {**base, "DockerCmd": GUIDE_STAGE2 + " --batch_size=8"}])


def test_parse_command_reads_the_guides_spellings() -> None:
    assert parse_command(GUIDE_STAGE2).stage == 2
    assert parse_command(GUIDE_STAGE2.replace("=True", "=true")).stage == 2
    assert parse_command(GUIDE_STAGE1 + " --train_inception=False").stage == 1
    assert parse_command(f"/usr/bin/python {GUIDE_STAGE1}").steps == 1000000


def test_cli_errors_go_to_stderr_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _cli(["--cmd", GUIDE_STAGE1], capsys)
    assert code == 2 and out == ""
    assert err.startswith("from-uai: --data-path and --output-path: required with --cmd")
