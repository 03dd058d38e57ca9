"""The guarantee table and the verdict sentences (chapter *Problem and structure*)."""
import math

import pytest

from slimlib import guarantees as gt


def test_bound_verdict_both_sides():
    assert gt.bound_verdict(0.51, 0.5) == "at or above the proven bound"
    assert gt.bound_verdict(0.5, 0.5) == "at or above the proven bound"
    assert gt.bound_verdict(0.49, 0.5).startswith("below the proven bound")
    assert gt.bound_verdict(0.1, None) == "no bound is proven"


def test_ratio_verdict_both_sides():
    assert gt.ratio_verdict(1.0, 1.0) == "reaches"
    assert gt.ratio_verdict(0.999, 1.0) == "falls short of"


def test_zero_share_sentence_both_sides():
    assert gt.zero_share_sentence(0, 10, "greedy") == "greedy saved something on every one of the 10 instances"
    assert gt.zero_share_sentence(3, 10, "greedy") == "greedy saved nothing at all on 3 of the 10 instances"
    with pytest.raises(ValueError, match="zero"):
        gt.zero_share_sentence(11, 10)


def test_lead_sentence_three_cases():
    assert gt.lead_sentence("A", 0.99, "B", 0.95) == "A is ahead of B (0.990 against 0.950)"
    assert gt.lead_sentence("A", 0.90, "B", 0.95) == "A is behind B (0.900 against 0.950)"
    assert gt.lead_sentence("A", 0.9501, "B", 0.95).startswith("A and B are level")
    assert gt.lead_sentence("A", 1.2, "B", 1.5, better="lower", unit="ms") == \
        "A is ahead of B (1.200 ms against 1.500 ms)"
    assert gt.lead_sentence("A", 1.6, "B", 1.5, better="lower").startswith("A is behind B")
    with pytest.raises(ValueError, match="better"):
        gt.lead_sentence("A", 1, "B", 2, better="more")


def test_times_sentence_both_sides():
    assert gt.times_sentence(12.4) == "12 times faster than"
    assert gt.times_sentence(0.25) == "4 times slower than"
    assert gt.times_sentence(1.2) == "as fast as"
    with pytest.raises(ValueError, match="ratio"):
        gt.times_sentence(0.0)


def test_curve_sentence_three_cases():
    ref = [0.1, 0.5, 1.0]
    assert gt.curve_sentence(ref, ref, "greedy") == "greedy follows it exactly"
    assert gt.curve_sentence([0.1, 0.6, 1.0], ref, "greedy") == \
        "greedy stays at or above it and exceeds it at 1 of 3 points"
    assert gt.curve_sentence([0.1, 0.4, 0.9], ref, "greedy") == "greedy falls below it at 2 of 3 points"
    with pytest.raises(ValueError, match="measured"):
        gt.curve_sentence([1.0], ref, "greedy")


def test_table_rows_and_measurement_respect_the_bounds():
    keys = [g.key for g in gt.GUARANTEES]
    assert len(keys) == len(set(keys))
    assert {g.tight for g in gt.GUARANTEES} <= {"yes", "no constant", "open"}
    assert all((g.bound is None) == (g.tight == "no constant") for g in gt.GUARANTEES)
    res = gt.measure_guarantees(4, seed=3)
    for g in gt.GUARANTEES:
        r = res[g.key]
        assert r["below"] == 0, g.key
        assert 0 <= r["min"] <= r["mean"] <= 1 + 1e-9
        if g.bound is not None:
            assert r["min"] >= g.bound - 1e-9
    assert gt.GUARANTEES[[g.key for g in gt.GUARANTEES].index("pipage")].bound == pytest.approx(1 - 1 / math.e)
    with pytest.raises(ValueError, match="family"):
        gt.family_problem("nope", 0)
