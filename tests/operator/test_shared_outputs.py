"""shared_outputs.output_in_use: of two trainings present whose output folders overlap, the younger one waits."""

from __future__ import annotations

from typing import Any

from im2txt_operator.shared_outputs import OutputFolders, output_in_use


def _t(name: str, output: str, created: str, ns: str = "ml", deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": ns, "uid": f"uid-{ns}-{name}", "creationTimestamp": created}
    if deleting:
        meta["deletionTimestamp"] = created
    return {"metadata": meta, "spec": {"outputPath": output}}


OLD, NEW = "2026-12-01T00:00:00Z", "2026-12-02T00:00:00Z"


def test_the_younger_of_two_trainings_on_one_folder_waits_naming_the_older() -> None:
    old = _t("coco", "ufile://out-bucket/run/", OLD, ns="team-a")
    new = _t("copy", "ufile://out-bucket/run/", NEW, ns="team-b")  # ufile:// is global: another namespace counts
    problem = output_in_use(new, [old])
    assert problem is not None and (problem.field, problem.reason) == ("spec.outputPath", "OutputPathInUse")
    assert problem.message.startswith("spec.outputPath: ufile://out-bucket/run/ is the same folder as the output of "
                                      "training team-a/coco (ufile://out-bucket/run/)")
    assert output_in_use(old, [new]) is None  # the older one keeps it


def test_inside_and_around_count_and_neighbours_do_not() -> None:
    old = _t("coco", "pvc://out/run", OLD)
    assert "is inside the output" in output_in_use(_t("a", "pvc://out/run/sub/", NEW), [old]).message  # type: ignore[union-attr]
    assert "is around the output" in output_in_use(_t("b", "pvc://out/", NEW), [old]).message  # type: ignore[union-attr]
    assert output_in_use(_t("c", "pvc://out/run2", NEW), [old]) is None  # a longer name is a neighbour
    assert output_in_use(_t("d", "pvc://out/run", NEW, ns="other"), [old]) is None  # another namespace's claim


def test_a_training_being_deleted_frees_its_folder_and_a_training_never_blocks_itself() -> None:
    old = _t("coco", "ufile://out-bucket/run/", OLD, deleting=True)
    assert output_in_use(_t("new", "ufile://out-bucket/run/", NEW), [old]) is None
    me = _t("coco", "ufile://out-bucket/run/", OLD)
    assert output_in_use(me, [me]) is None


def test_the_index_finds_exactly_the_overlapping_folders_as_trainings_come_change_and_go() -> None:
    folders = OutputFolders()
    bodies = {n: _t(n, out, OLD) for n, out in (("run", "ufile://b/run/"), ("sub", "ufile://b/run/sub/"),
                                                   ("top", "ufile://b/"), ("run2", "ufile://b/run2/"),
                                                   ("other", "ufile://c/run/"), ("claim", "pvc://b/run/"))}
    for name, body in bodies.items():
        folders.put(("ml", name), body)

    def found(body: dict[str, Any]) -> set[str]:
        return {b["metadata"]["name"] for b in folders.overlapping(body)}

    assert found(_t("x", "ufile://b/run", NEW)) == {"run", "sub", "top"}  # same, inside, around; not run2 or c
    assert found(_t("x", "ufile://b/run/sub/deeper/", NEW)) == {"run", "sub", "top"}
    assert found(_t("x", "pvc://b/run/sub", NEW)) == {"claim"}  # a claim is its namespace's
    assert found(_t("x", "pvc://b/run/", NEW, ns="other")) == set()
    folders.put(("ml", "sub"), _t("sub", "ufile://elsewhere/", OLD))  # its spec changed
    folders.drop(("ml", "top"))  # gone
    assert found(_t("x", "ufile://b/run/", NEW)) == {"run"}
    assert found(_t("x", "ufile://elsewhere/", NEW)) == {"sub"}
    # output_in_use over the index says what it says over every training
    new = _t("new", "ufile://b/run/x/", NEW)
    assert output_in_use(new, folders.overlapping(new)) == output_in_use(new, bodies.values())
    folders.drop(("ml", "run"))
    folders.drop(("ml", "run"))  # twice: nothing left to drop
    assert found(_t("x", "ufile://b/run/", NEW)) == set()
