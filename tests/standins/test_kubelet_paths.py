"""The local kubelet's container-path mapping (the only liberty it takes with a Job's command)."""

from pathlib import Path

from im2txt_standins.kubelet import PathMap


def make_map(tmp_path: Path) -> PathMap:
    return PathMap({"/data/data": tmp_path / "vol-data", "/data/output": tmp_path / "vol-out"}, tmp_path / "img")


def test_mounts_win_over_the_image(tmp_path: Path) -> None:
    pmap = make_map(tmp_path)
    assert pmap.host("/data/train.py") == str(tmp_path / "img" / "train.py")
    assert pmap.host("/data/data/train-00000-of-00256") == str(tmp_path / "vol-data" / "train-00000-of-00256")
    assert pmap.host("/data/output/") == str(tmp_path / "vol-out")
    assert pmap.host("/data") == str(tmp_path / "img")
    assert pmap.host("/etc/hosts") == "/etc/hosts"


def test_flag_values_and_lists_are_mapped_other_args_kept(tmp_path: Path) -> None:
    pmap = make_map(tmp_path)
    assert pmap.arg("--train_dir=/data/output/") == f"--train_dir={tmp_path / 'vol-out'}"
    assert pmap.arg("--input_file_pattern=/data/data/train-?????-of-00256") == (
        f"--input_file_pattern={tmp_path / 'vol-data'}/train-?????-of-00256")
    assert pmap.arg("/data/data/a,/data/output/b") == f"{tmp_path / 'vol-data'}/a,{tmp_path / 'vol-out'}/b"
    assert pmap.arg("--number_of_steps=1000000") == "--number_of_steps=1000000"
    assert pmap.arg("--data-url=ufile://bucket/uai/im2txt/data/") == "--data-url=ufile://bucket/uai/im2txt/data/"
    assert pmap.arg("/data/outputs-elsewhere") == str(tmp_path / "img" / "outputs-elsewhere")
