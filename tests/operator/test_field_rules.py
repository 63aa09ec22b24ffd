"""field_rules: quantities as the API parses them, and the flags the operator reserves (with the CRD's patterns)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from crd_validate import validate

from im2txt_operator.field_rules import RESERVED_FLAGS, parse_quantity, reserved_flag
from im2txt_operator.spec import SpecError, parse_spec

BASE: dict[str, Any] = {"dataPath": "pvc://data/coco", "outputPath": "pvc://out/model/"}


def test_quantities_parse_as_the_api_does() -> None:
    assert parse_quantity("1Gi") == parse_quantity("1073741824") == Decimal(2**30)
    assert parse_quantity("500m") == Decimal("0.5") and parse_quantity(".5") == parse_quantity("5e-1")
    assert parse_quantity("1E") == Decimal(10**18) and parse_quantity("2Ei") == Decimal(2 * 2**60)
    assert parse_quantity("+1.5k") == Decimal(1500) and parse_quantity("3n") == Decimal("3e-9")
    for bad in ("1K", "-1", "1e", "1.2.3", "", "Gi", True):
        with pytest.raises(ValueError):
            parse_quantity(bad)


def test_reserved_flag_names_what_an_argument_sets_or_abbreviates() -> None:
    assert reserved_flag("--train_dir=/x") == "train_dir"
    assert reserved_flag("--number_of=5") == "number_of_steps"
    assert reserved_flag("--train_dir_suffix=x") is None and reserved_flag("--image_size=299") is None


@pytest.mark.parametrize("arg", ["--train_dir_suffix=x", "--trainer", "--number_of_steps2=1", "--x", "--n_x",
                                 "--inception_v4", "--input_file_patterns", "--train_inception_lr=0.1"])
def test_flags_that_only_start_like_a_reserved_one_are_allowed(arg: str) -> None:
    """Only a flag name that is a prefix of a reserved flag's (what an abbreviating parser would expand) is
    refused; a longer name that starts with one is another flag."""
    assert parse_spec({**BASE, "extraArgs": [arg]}).extra_args == (arg,)


@pytest.mark.parametrize("reserved", RESERVED_FLAGS)
def test_every_prefix_of_a_reserved_flag_is_refused(crd: dict[str, Any], reserved: str) -> None:
    for n in range(1, len(reserved) + 1):
        for arg in (f"--{reserved[:n]}", f"--{reserved[:n]}=1"):
            with pytest.raises(SpecError, match=r"^spec\.extraArgs\[0\]: "):
                parse_spec({**BASE, "extraArgs": [arg]})
            obj = {"apiVersion": "im2txt.dev/v1alpha1", "kind": "Im2txtTraining", "metadata": {"name": "t"},
                   "spec": {**BASE, "extraArgs": [arg]}}
            assert any(e.startswith("spec.extraArgs[0]: ") for e in validate(crd, obj)), arg
