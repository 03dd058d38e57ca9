"""``solve(problem, "pipage")``: chapter *Greedy for K = 1*, {prf:ref}`prop-pipage`.

Against brute force on 300 random Top-1 instances with several servers and
one expert size: ratio >= 1 - 1/e on every instance, the LP value is an upper
bound on the optimum, and no rounding step lowers ``F``.
"""
import math

import numpy as np
import pytest

import slimlib as sl
from slimlib import gadgets
from slimlib.instances import random_mixed_problem, random_problem
from slimlib.solvers.pipage import PipageModel
from slimlib.theory import uncapacitated

BOUND = 1 - 1 / math.e


def _instance(seed):
    rng = np.random.default_rng([seed, 11])
    return random_problem(rng, num_users=int(rng.integers(1, 4)), num_servers=int(rng.integers(2, 4)),
                          num_layers=int(rng.integers(1, 3)), num_experts=3, top_k=1,
                          server_slots=(1, 2), device_slots=(0, 1), weights=True)


def test_pipage_against_brute_force_300():
    ratios, checked = [], 0
    for seed in range(300):
        p = _instance(seed)
        opt = sl.latency_reduction(p, sl.solve(p, "brute-force"))
        pl = sl.solve(p, "pipage")
        val = sl.latency_reduction(p, pl)
        trace = pl.info["rounding_trace_s"]
        # rounding never lowers F (every step), and ends at the evaluator's R
        assert all(b >= a - 1e-12 for a, b in zip(trace, trace[1:])), (seed, trace)
        assert trace[-1] == pytest.approx(val, rel=1e-9, abs=1e-15)
        # the LP value is an upper bound on the optimum; F at the LP point is >= (1 - 1/e) L
        assert pl.info["lp_value_s"] >= opt * (1 - 1e-9), seed  # HiGHS tolerance 1e-10
        assert pl.info["F_lp_s"] >= BOUND * pl.info["lp_value_s"] - 1e-15
        if opt > 1e-12:
            ratios.append(val / opt)
            checked += 1
        assert val >= BOUND * opt - 1e-15, (seed, val, opt)
    assert checked >= 250
    assert min(ratios) >= BOUND


def test_F_and_L_at_integral_points_equal_R():
    p = _instance(3)
    pm = PipageModel(p)
    rng = np.random.default_rng(0)
    for _ in range(20):
        x = rng.random((pm.N, pm.C)) < 0.4
        # capacities do not matter for the value: compare on the uncapacitated copy
        R = sl.latency_reduction(uncapacitated(p), pm.to_placement(x))
        assert pm.F(x.astype(float)) == pytest.approx(R, rel=1e-12, abs=1e-18)
        assert pm.L(x.astype(float)) == pytest.approx(R, rel=1e-12, abs=1e-18)
        xf = rng.random((pm.N, pm.C))
        assert pm.F(xf) >= BOUND * pm.L(xf) - 1e-18
        assert pm.F(xf) <= pm.L(xf) + 1e-18


def test_pipage_optimal_on_tight_gadget_where_greedy_gets_half():
    p = gadgets.tight_greedy_instance(4)
    opt = sl.latency_reduction(p, sl.solve(p, "exact"))
    assert sl.latency_reduction(p, sl.solve(p, "pipage")) == pytest.approx(opt, rel=1e-12)
    assert sl.latency_reduction(p, sl.solve(p, "greedy")) / opt == pytest.approx(0.5039, abs=5e-4)


def test_pipage_refuses_k2_and_mixed_sizes_naming_the_alternative():
    with pytest.raises(ValueError, match="decomposition"):
        sl.solve(random_problem(0, top_k=2), "pipage")
    with pytest.raises(ValueError, match="greedy"):
        sl.solve(random_mixed_problem(0, sizes=(1, 2)), "pipage")


def test_rounding_never_lowers_F_from_random_fractional_points():
    """The LP optimum is often integral on tiny instances; here rounding starts from random
    fractional points of the relaxed partition matroid, so every step is exercised."""
    rng = np.random.default_rng(5)
    steps = 0
    for seed in range(100):
        p = _instance(seed)
        pm = PipageModel(p)
        x = rng.random((pm.N, pm.C))
        rows = x.sum(axis=1)
        x *= np.minimum(1.0, pm.slots / np.maximum(rows, 1e-12))[:, None]   # sum_c x[n, c] <= k_n
        F0 = pm.F(x)
        xr, trace = pm.round(x)
        steps += len(trace) - 1
        assert trace[0] == pytest.approx(F0, rel=1e-12)
        assert all(b >= a - 1e-15 for a, b in zip(trace, trace[1:])), seed
        assert (xr.sum(axis=1) <= pm.slots).all()
        assert pm.F(xr.astype(float)) == pytest.approx(trace[-1], rel=1e-9, abs=1e-18)
        assert pm.F(xr.astype(float)) >= F0 - 1e-15
    assert steps > 500
