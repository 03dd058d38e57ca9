"""Baselines: none, random, popularity, coordinated popularity (chapter *Experiments*)."""
from __future__ import annotations

import numpy as np
import pytest

import slimlib
from slimlib import ActivationStats, MoEModel, Network, Problem
from slimlib.instances import random_mixed_problem, random_problem
from slimlib.solvers.baselines import expert_popularity


def _toy(caps=(2e6, 2e6), device=None):
    """One layer of 5 experts, two users with known marginals; servers with 2 slots each."""
    mod = MoEModel("toy", 1, 5, 1, hidden_size=1000, params_per_expert=10**6, bytes_per_param=1, act_bytes=1)
    s0 = ActivationStats(5, 1, [[[0], [1], [2], [3], [4]]], probs=[[0.4, 0.3, 0.15, 0.1, 0.05]])
    s1 = ActivationStats(5, 1, [[[0], [1], [2], [3], [4]]], probs=[[0.1, 0.1, 0.2, 0.5, 0.1]])
    net = Network(list(caps), [20e12] * len(caps), [1e6, 0.0], [1e12, 1e12],
                  [[10e6, 30e6], [10e6, 30e6]], [[10e6, 30e6], [10e6, 30e6]], backhaul_rate_bps=1e9,
                  backhaul_delay_s=5e-3, cloud_flops=100e12, user_weight=[1.0, 2.0])
    return Problem(mod, net, [s0, s1], device_cache=device)


def test_popularity_hand_computed():
    p = _toy()
    # device policy: user 0 (1 slot) holds expert 0; user 1 (no storage) nothing
    assert p.device_cache[0].tolist() == [[True, False, False, False, False]]
    pop = expert_popularity(p)[0][0]
    want = 1.0 * np.array([0, 0.3, 0.15, 0.1, 0.05]) + 2.0 * np.array([0.1, 0.1, 0.2, 0.5, 0.1])
    np.testing.assert_allclose(pop, want)
    # ranking: 3 (1.1), 2 (0.55), 1 (0.5), 4 (0.25), 0 (0.2)
    pl = slimlib.solve(p, "popularity")
    for n in range(2):
        assert [e for _, _, e in pl.cached(n)] == [2, 3]           # both servers, uncoordinated
    cp = slimlib.solve(p, "coordinated-popularity")
    # server 1 is faster (30 Mbit/s): it gets the top two, server 0 the next two
    assert cp.info["server_order"] == [1, 0]
    assert [e for _, _, e in cp.cached(1)] == [2, 3]
    assert [e for _, _, e in cp.cached(0)] == [1, 4]


def test_none_is_empty():
    p = random_problem(0)
    pl = slimlib.solve(p, "none")
    assert not any(x.any() for x in pl.server)
    assert pl == slimlib.Placement.empty(p)


def test_random_seeded_and_maximal():
    p = random_mixed_problem(1, num_users=3, num_servers=3, sizes=(1, 2, 3), server_units=(2, 7))
    a = slimlib.solve(p, "random", seed=3)
    b = slimlib.solve(p, "random", seed=3)
    c = [slimlib.solve(p, "random", seed=s) for s in range(10)]
    assert a == b
    assert any(x != a for x in c)
    _assert_maximal(p, a)


def _assert_maximal(p, pl):
    """No uncached expert fits into any server's remaining space."""
    free = p.network.server_capacity_bytes - pl.used_bytes(p)
    for n in range(p.num_servers):
        for u, mod in enumerate(p.models):
            if not pl.server[u][n].all():
                assert mod.expert_bytes > free[n] + 1e-6, (n, u)


@pytest.mark.parametrize("seed", range(25))
def test_popularity_variants_properties(seed):
    p = random_mixed_problem(seed, num_users=4, num_servers=3, sizes=(1, 2), server_units=(0, 6), top_k=1 + seed % 3,
                             num_experts=4, weights=True)
    pop = slimlib.solve(p, "popularity")
    cp = slimlib.solve(p, "coordinated-popularity")
    for pl in (pop, cp):
        assert pl.is_feasible(p)
    _assert_maximal(p, pop)
    # coordinated: no expert twice
    for x in cp.server:
        assert (x.sum(axis=0) <= 1).all()
    # popularity: servers with the same capacity hold the same experts
    q = p.network.server_capacity_bytes
    for n in range(p.num_servers):
        for k in range(n):
            if q[n] == q[k]:
                assert all((x[n] == x[k]).all() for x in pop.server)


def test_coordinated_equal_sizes_caches_the_top_prefix():
    """One model, equal sizes: coordinated popularity caches exactly the sum(slots) most popular experts."""
    for s in range(15):
        p = random_problem(s, num_users=3, num_servers=3, num_layers=2, num_experts=5, server_slots=(0, 3))
        cp = slimlib.solve(p, "coordinated-popularity")
        pop = expert_popularity(p)[0].ravel()
        slots = int(p.network.server_capacity_bytes.sum() / p.models[0].expert_bytes)
        got = np.flatnonzero(cp.server[0].any(axis=0).ravel())
        want = np.argsort(-pop, kind="stable")[:slots]
        assert sorted(got) == sorted(want)


def test_random_bad_seed():
    with pytest.raises(ValueError, match="seed"):
        slimlib.solve(random_problem(0), "random", seed=-1)
    with pytest.raises(ValueError):
        slimlib.solve(random_problem(0), "popularity", seed=1)
