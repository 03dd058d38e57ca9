"""Set-function view of (P1) and the checks of chapter *Problem and structure* (slimlib.theory)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import slimlib as sl
from slimlib import theory as T
from slimlib import theory_study as TS
from slimlib.instances import random_problem
from conftest import tiny_problems

# Hand-computed latencies of the counterexamples (docstrings of counterexample_not_*):
# h = 8000 bit, F = 2e6 FLOP, f_n = 2 GFLOP/s, r = 8 Mbit/s (server 0) or 4 Mbit/s (server 1),
# backhaul 1 Gbit/s and 5 ms each way, f_c = 100 TFLOP/s; the cloud goes through server 0.
T_EDGE0 = 8000 / 8e6 + 2e6 / 2e9 + 8000 / 8e6              # 3 ms
T_EDGE1 = 8000 / 4e6 + 2e6 / 2e9 + 8000 / 4e6              # 5 ms
T_CLOUD = 8000 / 8e6 + 2 * 8000 / 1e9 + 2 * 5e-3 + 2e6 / 100e12 + 8000 / 8e6   # 12.01602 ms


def test_counterexample_latencies_by_hand():
    c = sl.call_latency(TS.counterexample_not_supermodular())
    assert c.edge[0] == pytest.approx([T_EDGE0, T_EDGE1], rel=1e-12)
    assert c.cloud[0] == pytest.approx(T_CLOUD, rel=1e-12)
    assert T_CLOUD == pytest.approx(12.01602e-3, rel=1e-9)


def test_not_submodular_counterexample_found_exactly():
    p = TS.counterexample_not_submodular()
    assert T.ground_set(p) == [(0, 0, 0, 0), (0, 0, 0, 1)]
    viol = T.check_submodular(p)
    # the only nested pairs with A != B are (∅, {other}): exactly two violations, by symmetry
    assert len(viol) == 2
    v = [x for x in viol if x.element == (0, 0, 0, 0)][0]
    assert v.A == () and v.B == ((0, 0, 0, 1),)
    assert v.gain_A == 0.0
    assert v.gain_B == pytest.approx(T_CLOUD - T_EDGE0, rel=1e-12)
    assert v.gap == pytest.approx(T_CLOUD - T_EDGE0, rel=1e-12)
    assert "submodular violated" in v.describe()
    # R itself, by hand
    assert T.reduction(p, []) == 0.0
    assert T.reduction(p, [(0, 0, 0, 0)]) == 0.0
    assert T.reduction(p, [(0, 0, 0, 1)]) == 0.0
    assert T.reduction(p, T.ground_set(p)) == pytest.approx(T_CLOUD - T_EDGE0, rel=1e-12)
    # monotone, and (one server) supermodular
    assert T.check_monotone(p) == []
    assert T.check_supermodular(p) == []


def test_not_supermodular_counterexample_found():
    p = TS.counterexample_not_supermodular()
    viol = T.check_supermodular(p)
    assert viol, "two servers serving the same expert must break supermodularity"
    A, B, e = ((0, 0, 0, 1),), ((0, 0, 0, 0), (0, 0, 0, 1)), (1, 0, 0, 0)
    hit = [v for v in viol if (v.A, v.B, v.element) == (A, B, e)]
    assert len(hit) == 1
    assert hit[0].gain_A == pytest.approx(T_CLOUD - T_EDGE1, rel=1e-12)
    assert hit[0].gain_B == pytest.approx(0.0, abs=1e-15)
    assert all(v.gap > 0 for v in viol)
    assert [v.gap for v in viol] == sorted((v.gap for v in viol), reverse=True)
    assert T.check_monotone(p) == []
    assert T.check_submodular(p)              # K = 2: not submodular either


def test_random_pairs_mode_finds_counterexamples():
    p = TS.counterexample_not_supermodular()
    assert T.check_submodular(p, exhaustive_max=0, samples=300, seed=1)
    assert T.check_supermodular(p, exhaustive_max=0, samples=300, seed=1)
    assert T.check_monotone(p, exhaustive_max=0, samples=300, seed=1) == []


def test_exhaustive_visits_every_nested_pair():
    """With f(S) = |S|^2 (gain 2|S|+1, strictly increasing) every pair A ⊊ B violates submodularity:
    the exhaustive check must report exactly |V| (3^(|V|-1) - 2^(|V|-1)) of them, and none for supermodularity."""

    class Square:
        base = frozenset()

        def __call__(self, S):
            return float(len(frozenset(S)) ** 2)

        def gain(self, S, e):
            return self(set(S) | {e}) - self(S)

    p = TS.counterexample_not_supermodular()
    n = len(T.ground_set(p))
    assert n == 4
    viol = T.check_property(p, "submodular", function=Square())
    assert len(viol) == n * (3 ** (n - 1) - 2 ** (n - 1))
    assert all(set(v.A) < set(v.B) and v.element not in v.B for v in viol)
    assert all(v.gain_B - v.gain_A == 2 * (len(v.B) - len(v.A)) for v in viol)
    assert T.check_property(p, "supermodular", function=Square()) == []
    assert T.check_property(p, "monotone", function=Square()) == []


def test_reduction_is_the_evaluator():
    p = random_problem(3, num_users=3, num_servers=2, num_layers=2, num_experts=4, top_k=2, weights=True,
                       server_slots=(4, 4))
    rng = np.random.default_rng(0)
    V = T.ground_set(p)
    for _ in range(5):
        # feasible sets: at most 4 experts per server
        S = []
        for n in range(p.num_servers):
            mine = [x for x in V if x[0] == n]
            S += [mine[i] for i in rng.choice(len(mine), size=4, replace=False)]
        P = T.placement_from_set(p, S)
        assert P.is_feasible(p)
        r = T.reduction(p, S)
        assert r == sl.latency_reduction(p, P)               # the same computation, bit for bit
        W = p.network.user_weight.sum()
        drop = sl.average_latency(p, sl.Placement.empty(p)) - sl.average_latency(p, P)
        assert r == pytest.approx(W * drop, rel=1e-12)        # weighted sum, not an average
        f = T.SetFunction(p)
        assert f(S) == r
        e = next(x for x in V if x not in S)
        assert T.marginal_gain(p, S, e) == pytest.approx(T.reduction(p, S + [e]) - r, rel=1e-12, abs=1e-18)
        assert T.marginal_gain(p, S, S[0]) == 0.0


def test_capacities_are_ignored():
    p = random_problem(1, num_servers=2, num_experts=3, num_layers=2, server_slots=(0, 0))
    V = T.ground_set(p)
    assert T.reduction(p, V) > 0                  # infeasible in p, but R is defined on every subset
    assert p.network.server_capacity_bytes.sum() == 0     # p itself is unchanged


@settings(max_examples=200, deadline=None)
@given(tiny_problems(top_k=1, max_experts=4, max_servers=3, max_users=2, max_layers=2))
def test_k1_monotone_submodular(problem):
    """Proposition 1: no violation on K = 1 problems (exhaustive up to 8 elements, else 60 random pairs)."""
    assert T.check_monotone(problem, exhaustive_max=8, samples=60) == []
    assert T.check_submodular(problem, exhaustive_max=8, samples=60) == []


@settings(max_examples=60, deadline=None)
@given(tiny_problems(max_experts=4, max_servers=1, max_users=2, max_layers=2))
def test_single_server_supermodular_any_k(problem):
    """Lemma (one server): R is supermodular for every K when N = 1."""
    assert T.check_supermodular(problem, exhaustive_max=8, samples=60) == []


@settings(max_examples=40, deadline=None)
@given(tiny_problems(max_experts=3, max_servers=3, max_users=2, max_layers=2), st.integers(0, 2**31 - 1))
def test_stage_gain_supermodular_and_monotone(problem, seed):
    """With the other servers' caches fixed, server 0's gain is supermodular (any K) and R is monotone."""
    rng = np.random.default_rng(seed)
    others = [x for x in T.ground_set(problem) if x[0] != 0 and rng.random() < 0.5]
    mine = [x for x in T.ground_set(problem) if x[0] == 0]
    assert T.check_supermodular(problem, mine, base=others, exhaustive_max=8, samples=40) == []
    assert T.check_monotone(problem, exhaustive_max=8, samples=40) == []


@settings(max_examples=30, deadline=None)
@given(tiny_problems(max_experts=4, max_servers=3, max_users=3, max_layers=3), st.integers(0, 2**31 - 1))
def test_separability(problem, seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(problem.num_servers))
    others = [x for x in T.ground_set(problem) if x[0] != n and rng.random() < 0.4]
    assert T.separability_gap(problem, n, others, samples=10, seed=seed) < 1e-15


def test_k2_survey_finds_violations_k1_none():
    s1 = TS.survey(1, 25, seed=5)
    assert s1.total("submodular") == 0 and s1.total("monotone") == 0
    s2 = TS.survey(2, 25, seed=5)
    assert s2.with_violation("submodular") > 0
    assert s2.total("supermodular", servers="1") == 0
    rec, v = s2.example("submodular")
    assert v.gain_A < v.gain_B
    # the reported violation is real: recompute it on the recorded problem
    p = TS.random_problem_for_survey(rec.seed, rec.shape)
    assert T.marginal_gain(p, v.A, v.element) == pytest.approx(v.gain_A, abs=1e-15)
    assert T.marginal_gain(p, v.B, v.element) == pytest.approx(v.gain_B, abs=1e-15)
    rows = s2.table()
    assert rows[-1]["problems"] == 25


def test_gain_path():
    prob, elem, order, gains = TS.gain_path_example(1, 4, 0)
    assert len(gains) == len(order) + 1 == len(T.ground_set(prob))
    assert np.all(np.diff(gains) <= 1e-15)                  # K = 1: non-increasing along a chain
    assert gains[0] == pytest.approx(T.reduction(prob, [elem]))
    found = False
    for seed in range(6):
        _, _, _, g = TS.gain_path_example(2, 4, seed)
        found |= bool(np.any(np.diff(g) > 1e-12))
    assert found                                            # K = 2: some chain has a rising gain


@pytest.mark.parametrize("bad", [(0, 0, 0), (0, 0, 0, 9), (5, 0, 0, 0), (0, 0, 0, 0.5), "abcd"])
def test_bad_elements(bad):
    p = TS.counterexample_not_submodular()
    with pytest.raises(ValueError, match="element"):
        T.marginal_gain(p, [], bad)


def test_bad_options():
    p = TS.counterexample_not_submodular()
    with pytest.raises(ValueError, match="exhaustive_max"):
        T.check_submodular(p, exhaustive_max=20)
    with pytest.raises(ValueError, match="tol"):
        T.check_submodular(p, tol=-1)
    with pytest.raises(ValueError, match="ground"):
        T.check_submodular(p, [(0, 0, 0, 0)], base=[(0, 0, 0, 0)])
    with pytest.raises(ValueError, match="S"):
        T.reduction(p, sl.Placement.empty(p))
    with pytest.raises(ValueError, match="others"):
        T.separability_gap(p, 0, [(0, 0, 0, 1)])
    with pytest.raises(ValueError, match="order"):
        T.marginal_gain_path(p, (0, 0, 0, 0), [(0, 0, 0, 0)])


def test_dp_figures_state_delta_with_its_unit_and_gains_table():
    """Chapter *Max-plus convolution*: δ is printed with its unit; the h_k table has one row per layer."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from slimlib.plotting import dp as dplot
    from slimlib.solvers import decomposition as dec
    p = random_problem(3, num_users=2, num_servers=1, num_layers=3, num_experts=4, top_k=2,
                       server_slots=(3, 3))
    acc = dec.solve_stage(p, sl.Placement.empty(p), 0, combine="accelerated", eps=0.3, keep_table=True)
    assert acc.table is not None                  # this stage needs the value grid
    fig = dplot.draw_value_dp_step(len(acc.items), stage=acc, value_scale=1e3, value_unit="ms")
    label = fig.axes[0].get_xlabel()
    assert "δ" in label and label.rstrip(")").endswith("ms")
    plt.close(fig)
    st = dec.solve_stage(p, sl.Placement.empty(p), 0, keep_table=True)
    md = dplot.gains_markdown(st, scale=1e3)
    assert md.count("\n| layer ") == len(st.items)
    assert f"{st.items[0].h[-1] * 1e3:.2f}" in md
