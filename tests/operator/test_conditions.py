"""conditions: the API conventions (a transition time that moves only with the status)."""

from __future__ import annotations

from im2txt_operator import conditions as cond


def test_condition_keeps_transition_time_until_status_changes() -> None:
    c1 = cond.condition(None, "Ready", True, "A", "a", 1, "t1")
    c2 = cond.condition([c1], "Ready", True, "B", "b", 2, "t2")
    c3 = cond.condition([c2], "Ready", False, "C", "c", 3, "t3")
    assert (c2["lastTransitionTime"], c2["reason"], c2["observedGeneration"]) == ("t1", "B", 2)
    assert c3["lastTransitionTime"] == "t3" and c3["status"] == "False"
