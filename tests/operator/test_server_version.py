"""server_version: which API servers the operator runs against, from their /version answer."""

from __future__ import annotations

from im2txt_operator.server_version import OLDEST, SUPPORTED, parse, refusal, untested


def test_parse_reads_plain_managed_and_git_spellings() -> None:
    assert parse({"major": "1", "minor": "36", "gitVersion": "v1.36.3"}) == (1, 36)
    assert parse({"major": "1", "minor": "29+", "gitVersion": "v1.29.3-gke.100"}) == (1, 29)
    assert parse({"major": "", "minor": "", "gitVersion": "v1.31.0-rc.1"}) == (1, 31)
    assert parse({"gitVersion": "unknown"}) is None


def test_below_the_oldest_is_refused_with_the_version_the_range_and_why() -> None:
    why = refusal({"major": "1", "minor": "28", "gitVersion": "v1.28.15"})
    assert why is not None and why.startswith("Kubernetes v1.28.15 is older than 1.29")
    assert f"supported: {SUPPORTED}" in why and "restartPolicy: Always" in why and "Upgrade the control plane" in why
    assert refusal({"major": "1", "minor": "29", "gitVersion": "v1.29.0"}) is None
    assert refusal({"major": "1", "minor": "36", "gitVersion": "v1.36.3"}) is None
    assert refusal({"major": "1", "minor": "40", "gitVersion": "v1.40.0"}) is None  # newer: allowed
    assert "cannot tell the Kubernetes version" in (refusal({"gitVersion": "x"}) or "")
    assert OLDEST == (1, 29) and SUPPORTED == "1.29 to 1.36"


def test_newer_than_tested_is_allowed_but_flagged() -> None:
    assert untested({"major": "1", "minor": "37"}) and not untested({"major": "1", "minor": "36"})
