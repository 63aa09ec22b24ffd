"""names: every child's name by role, and one length limit shared with the CRD."""

from __future__ import annotations

import re
from typing import Any

import pytest

from im2txt_operator import names
from im2txt_operator.spec import SpecError


def test_every_child_is_named_by_its_role() -> None:
    assert [names.child("coco", r) for r in names.ROLES] == [
        "coco-stage1", "coco-stage2", "coco-export", "coco-tensorboard", "coco-evaluation"]
    assert (names.stage_job("coco", 1), names.stage_job("coco", 2)) == ("coco-stage1", "coco-stage2")
    assert (names.export_job("coco"), names.tensorboard("coco")) == ("coco-export", "coco-tensorboard")
    assert names.evaluation("coco") == "coco-evaluation"
    with pytest.raises(ValueError, match="stage must be 1 or 2"):
        names.stage_job("coco", 3)
    with pytest.raises(ValueError, match="role must be one of"):
        names.child("coco", "stage3")


def test_the_limit_leaves_room_for_the_longest_suffix() -> None:
    longest = "n" * names.MAX_TRAINING_NAME
    assert names.MAX_TRAINING_NAME == 51
    assert max(len(names.child(longest, r)) for r in names.ROLES) == names.NAME_LIMIT == 63
    with pytest.raises(SpecError) as e:
        names.stage_job(longest + "n", 1)  # even the short stage name: one rule for the training
    assert e.value.field == "metadata.name" and str(e.value).startswith("metadata.name: must be at most 51 ")


def test_names_the_services_could_not_carry_are_refused() -> None:
    for bad in ("coco.v2", "2coco", "-coco", "coco-", "Coco"):
        with pytest.raises(SpecError) as e:
            names.check(bad)
        assert e.value.field == "metadata.name" and "DNS-1035 label" in str(e.value), bad
    names.check("c0-c0")


def test_the_crd_rules_are_the_same_rules(crd: dict[str, Any]) -> None:
    rules = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["x-kubernetes-validations"]
    (rule, label) = [r for r in rules if r.get("fieldPath") == ".metadata.name"]
    assert label["rule"] == f"self.metadata.name.matches('^{names.DNS_1035.pattern}$')"
    assert re.fullmatch(r"size\(self\.metadata\.name\) <= (\d+)", rule["rule"])[1] == str(  # type: ignore[index]
        names.MAX_TRAINING_NAME)
    assert f"at most {names.MAX_TRAINING_NAME} characters" in rule["message"]
