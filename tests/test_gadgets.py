"""Gadgets of chapters *Greedy for K = 1* and *Successive decomposition*.

Each test asserts the ratio the proposition states, computed by the book's
evaluator against the exact optimum (MILP) or brute force.
"""
import numpy as np
import pytest

import slimlib as sl
from slimlib import gadgets
from slimlib.instances import random_problem


def _ratio(p, method, opt, **kw):
    return sl.latency_reduction(p, sl.solve(p, method, **kw)) / opt


def _delta(p):
    c = sl.call_latency(p)
    return float(c.cloud[0] - c.edge[0, 0])


def test_tight_greedy_gadget_ratios_match_the_hand_computation():
    G, eta, eps = 4, 5e-5, 0.01
    p = gadgets.tight_greedy_instance(G, eta_s=eta, eps=eps)
    D = _delta(p)
    opt = sl.latency_reduction(p, sl.solve(p, "exact"))
    assert opt == pytest.approx(G * ((2 - eps) * D - eta), rel=1e-9)
    rho = 2 - eps - eta / D                       # OPT per copy, in units of Δ
    for d in (0, 1, 2):
        want = (d * rho + (G - d)) / (G * rho)    # d seeded copies optimal, the rest greedy
        assert _ratio(p, "greedy", opt, enumeration=d) == pytest.approx(want, rel=1e-9)
    assert _ratio(p, "greedy", opt) == pytest.approx(0.504, abs=5e-4)
    assert _ratio(p, "greedy", opt, enumeration=2) == pytest.approx(0.752, abs=5e-4)
    assert _ratio(p, "decomposition", opt) == pytest.approx(1 / rho, rel=1e-9)


def test_two_size_gadget_has_no_constant_factor():
    N, q, eta = 6, 8, 0.01
    p = gadgets.two_size_instance(N, q, eta=eta)
    opt = sl.latency_reduction(p, sl.solve(p, "exact"))
    assert _ratio(p, "greedy", opt) == pytest.approx(max(1 / N, (1 + eta) / q), rel=1e-9)
    assert _ratio(p, "greedy", opt) == pytest.approx(0.1667, abs=1e-4)
    assert _ratio(p, "greedy", opt, enumeration=1) <= max(1 / N, (1 + eta) / q) + 1 / N + 1e-12
    assert _ratio(p, "decomposition", opt) == pytest.approx(1.0, rel=1e-12)
    # the ratio falls with N and q: no constant factor
    p2 = gadgets.two_size_instance(12, 16, eta=eta)
    opt2 = sl.latency_reduction(p2, sl.solve(p2, "exact"))
    assert _ratio(p2, "greedy", opt2) == pytest.approx(1 / 12, rel=1e-9)


@pytest.mark.parametrize("w1", [0.5, 0.1, 0.01])
def test_decomposition_zero_gadget(w1):
    p = gadgets.decomposition_zero_instance(w1)
    opt = sl.latency_reduction(p, sl.solve(p, "brute-force"))
    assert opt == pytest.approx(_delta_user(p, 1), rel=1e-12)
    for method, kw in (("decomposition", {}), ("decomposition", dict(passes=3)), ("accelerated", {}),
                       ("greedy", {})):
        assert _ratio(p, method, opt, **kw) == pytest.approx(w1, rel=1e-9), method
    opt_ns, _ = gadgets.no_split_optimum(p)
    assert opt_ns / opt == pytest.approx(w1, rel=1e-9)


def _delta_user(p, m):
    c = sl.call_latency(p)
    return float(c.cloud[m] - c.edge[m, 0])


def test_no_split_value_equals_R_for_k1_and_one_server():
    for seed in range(30):
        for kw in (dict(top_k=1, num_servers=3), dict(top_k=2, num_servers=1)):
            p = random_problem(seed, num_users=2, num_layers=2, num_experts=3, server_slots=(1, 2), **kw)
            pl = sl.solve(p, "greedy" if kw["top_k"] == 1 else "decomposition")
            assert gadgets.no_split_value(p, pl) == pytest.approx(sl.latency_reduction(p, pl), rel=1e-12,
                                                                  abs=1e-18)


def test_no_split_bound_holds_for_the_decomposition_on_random_k2():
    worst = np.inf
    for seed in range(40):
        p = random_problem(seed, num_users=2, num_servers=2, num_layers=1, num_experts=4, top_k=2,
                           server_slots=(1, 2), weights=True)
        opt_ns, _ = gadgets.no_split_optimum(p)
        val = sl.latency_reduction(p, sl.solve(p, "decomposition"))
        assert opt_ns <= sl.latency_reduction(p, sl.solve(p, "brute-force")) + 1e-15
        if opt_ns > 1e-12:
            worst = min(worst, val / opt_ns)
    assert worst >= 0.5


def test_gadget_inputs_are_checked():
    with pytest.raises(ValueError, match="G"):
        gadgets.tight_greedy_instance(0)
    with pytest.raises(ValueError, match="q"):
        gadgets.two_size_instance(3, 1)
    with pytest.raises(ValueError, match="w1"):
        gadgets.decomposition_zero_instance(0.0)


def test_densest_subgraph_instance_counts_edges():
    from itertools import combinations

    from slimlib import theory
    edges = [(0, 1), (1, 2), (0, 2), (2, 3)]
    p = gadgets.densest_subgraph_instance(edges, 4, 3)
    lam = _delta(p)
    for S in combinations(range(4), 3):
        inside = sum(1 for i, j in edges if i in S and j in S)
        R = theory.reduction(p, [(0, 0, 0, e) for e in S])
        assert R == pytest.approx(lam * inside / len(edges), rel=1e-12)
    best = sl.latency_reduction(p, sl.solve(p, "brute-force"))
    assert best == pytest.approx(lam * 3 / 4, rel=1e-12)          # the triangle {0, 1, 2}
    with pytest.raises(ValueError, match="edges"):
        gadgets.densest_subgraph_instance([(0, 0)], 4, 2)
