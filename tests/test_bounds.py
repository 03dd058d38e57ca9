"""Certified bounds and honest MILP limits (issue 13, item 2)."""
from __future__ import annotations

import time

import numpy as np
import pytest

import slimlib
from slimlib import latency_reduction
from slimlib.bounds import certified_gap, lp_upper_bound
from slimlib.instances import random_mixed_problem, random_problem


@pytest.mark.parametrize("k", [1, 2, 3])
def test_upper_bound_is_above_the_optimum(k):
    for seed in range(6):
        p = random_problem(seed, num_users=3, num_servers=2, num_layers=2, num_experts=4, top_k=k,
                           server_slots=(1, 4))
        opt = latency_reduction(p, slimlib.solve(p, "exact"))
        d = lp_upper_bound(p, details=True)
        assert d["upper_bound"] >= opt * (1 - 1e-9) - 1e-15
        assert d["upper_bound"] <= d["no_capacity_bound"] + 1e-15
        if k == 1:     # the facility-location relaxation is exact for K = 1; only the knapsack LP is relaxed
            assert d["upper_bound"] <= 1.5 * opt + 1e-12


def test_upper_bound_mixed_sizes():
    for seed in range(4):
        p = random_mixed_problem(seed, num_users=4, num_servers=2)
        opt = latency_reduction(p, slimlib.solve(p, "exact"))
        assert lp_upper_bound(p) >= opt * (1 - 1e-9) - 1e-15


def test_certified_gap_of_the_optimum_and_of_nothing():
    p = random_problem(1, num_users=3, num_servers=2, num_layers=2, num_experts=4, top_k=1, server_slots=(1, 4))
    g = certified_gap(p, slimlib.solve(p, "exact"))
    assert 0 <= g["gap"] < 1 and g["fraction"] == pytest.approx(1 - g["gap"])
    assert certified_gap(p, slimlib.solve(p, "none"))["fraction"] == 0.0


def test_exact_info_keys_and_gap_zero_when_optimal():
    p = random_problem(2, num_users=3, num_servers=2, num_layers=2, num_experts=4, top_k=2, server_slots=(1, 4))
    pl = slimlib.solve(p, "exact")
    for key in ("status", "gap", "mip_gap", "bound_s", "upper_bound", "objective_s", "source", "build_s"):
        assert key in pl.info
    assert pl.info["status"] == "optimal" and pl.info["gap"] == 0.0
    assert pl.info["upper_bound"] >= latency_reduction(p, pl) * (1 - 1e-9)


def test_exact_time_limit_returns_the_warm_start_never_nothing():
    """A limit far too small for the MILP: the decomposition's placement comes back, with a certified gap."""
    p = random_problem(0, num_users=3, num_servers=2, num_layers=3, num_experts=8, top_k=2, server_slots=(2, 6))
    dec = latency_reduction(p, slimlib.solve(p, "decomposition"))
    t = time.perf_counter()
    pl = slimlib.solve(p, "exact", time_limit=1e-3)
    assert time.perf_counter() - t < 5.0
    assert "time limit" in pl.info["status"] and not pl.info["optimal"]
    assert pl.info["source"] == "warm start"
    assert latency_reduction(p, pl) >= dec * (1 - 1e-12) > 0
    assert pl.info["upper_bound"] >= latency_reduction(p, pl) and np.isfinite(pl.info["gap"])
    assert pl.is_feasible(p)
