"""slimlib.verdicts: every verdict sentence agrees with the numbers it is given.

Each function is fed numbers on both sides of its condition; the contradiction
found in the chapter *Experiments* ("tight enough to certify ... at most 342.6%
above the optimum", "above some baseline ... by at most 0.00%") cannot recur.
"""
from __future__ import annotations

import math
import re

import pytest

from slimlib import verdicts as V
from slimlib.experiments import ResultTable


@pytest.mark.parametrize("x, text", [(0.034, "3.4%"), (0.00042, "0.042%"), (3e-7, "less than 0.0001%"),
                                     (3.426, "343%"), (0.25, "25.0%"), (0.0, "0%"), (float("nan"), "n/a"),
                                     (-0.012, "-1.2%")])
def test_percent_keeps_the_digits_that_matter(x, text):
    assert V.percent(x) == text


def test_percent_never_prints_zero_for_a_positive_number():
    for x in [1e-12, 4e-6, 4.9e-5, 9.9e-4, 0.0049]:
        s = V.percent(x)
        assert not re.fullmatch(r"0(\.0+)?%", s), (x, s)


def _gaps(gmax, gmean=None, n=6, nopt=0):
    return dict(n=n, n_optimal=nopt, max=gmax, mean=gmax / 2 if gmean is None else gmean, panels="m")


@pytest.mark.parametrize("gmax", [0.0, 0.01, V.CERTIFY_GAP])
def test_bound_sentence_certifies_only_small_gaps(gmax):
    s = V.bound_sentence(_gaps(gmax), "the decomposition")
    assert "certifies the decomposition within" in s and "too loose" not in s
    assert V.percent(gmax) in s


@pytest.mark.parametrize("gmax", [V.CERTIFY_GAP * 1.01, 0.2, 3.426])
def test_bound_sentence_refuses_to_certify_a_loose_bound(gmax):
    s = V.bound_sentence(_gaps(gmax), "the decomposition")
    assert "certifies" not in s and "too loose to certify" in s
    assert V.percent(gmax) in s
    # the old contradiction: a certificate next to a 342.6% gap
    assert not ("certif" in s.replace("too loose to certify", "") and gmax > V.CERTIFY_GAP)


def test_bound_sentence_with_proved_optima_and_with_no_bound():
    s = V.bound_sentence(_gaps(0.12, nopt=6), "greedy")
    assert "certif" not in s and "12.0% above the optimum" in s
    assert "nothing certifies" in V.bound_sentence(dict(n=0, n_optimal=0, max=math.nan, mean=math.nan), "greedy")


def test_at_or_below_sentence_follows_the_count():
    assert V.at_or_below_sentence(18, 18, "A", "B") == "A is at or below B at all 18 points"
    assert V.at_or_below_sentence(0, 18, "A", "B") == "A is above B at all 18 points"
    s = V.at_or_below_sentence(5, 18, "A", "B")
    assert "at 5 of the 18 points" in s and "above it at the other 13" in s
    with pytest.raises(ValueError, match="count, total"):
        V.at_or_below_sentence(19, 18, "A", "B")


def test_dominance_sentence_on_both_sides():
    assert V.dominance_sentence([], 18, "greedy") == "greedy is at or below every baseline at all 18 points"
    bad = [dict(panel="switch-base-64", value=1.5, method="greedy", baseline="popularity", excess=4e-6),
           dict(panel="switch-base-64", value=3.0, method="greedy", baseline="random", excess=0.02)]
    s = V.dominance_sentence(bad, 18, "greedy")
    assert "above some baseline at 2 of the 18 points, by at most 2.0%" in s
    assert "Switch-base-64 at 3 GB" in s and "at or below" not in s
    tiny = V.dominance_sentence(bad[:1], 18, "greedy")
    assert "0.00%" not in tiny and "by at most 0.0004%" in tiny
    assert "by less than 0.0001%" in V.dominance_sentence([dict(bad[0], excess=1e-9)], 18, "greedy")


def test_guarantee_sentence_counts_the_stages_below():
    assert "stays at or above" in V.guarantee_sentence([0.0, 0.1, -1e-12])
    s = V.guarantee_sentence([0.1, -0.01, -0.2])
    assert s.startswith("2 of the 3 stages fall below") and "stays" not in s
    with pytest.raises(ValueError, match="margins"):
        V.guarantee_sentence([])


def test_results_table_is_in_ms_with_no_nan():
    rows = [dict(panel="switch-base-8", value=v, method=m, seed=s, latency_s=lat)
            for v in (0.5, 1.5) for s in (0, 1)
            for m, lat in (("greedy", 0.010 + 0.002 * s), ("exact", float("nan") if v == 1.5 else 0.009))]
    t = ResultTable(rows, dict(xlabel="edge storage per server (GB)"))
    md = V.results_markdown(t)
    assert "nan" not in md.lower()
    lines = md.splitlines()
    assert lines[0] == ("| model / panel | edge storage per server (GB) | Greedy (Alg. 1) (ms) "
                        "| Optimum (MILP) (ms) |")
    assert lines[2] == "| Switch-base-8 | 0.5 | 11.00 | 9.00 |"
    assert lines[3] == "| Switch-base-8 | 1.5 | 11.00 | – |"
