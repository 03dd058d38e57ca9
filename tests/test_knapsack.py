"""The stage combination never loses storage to rounding (issue 13, item 1; chapter *Successive decomposition*)."""
from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

import slimlib
from slimlib import Placement, Problem, latency_reduction
from slimlib.instances import random_stats
from slimlib.solvers.knapsack import MAX_UNITS, combine_dp, combine_exact


def brute(hs, sizes, Q):
    best = 0.0
    for cs in itertools.product(*(range(len(h)) for h in hs)):
        if sum(c * s for c, s in zip(cs, sizes)) <= Q * (1 + 1e-12):
            best = max(best, sum(h[c] for h, c in zip(hs, cs)))
    return best


def random_items(rng, sizes_pool):
    J = int(rng.integers(1, 5))
    hs = [np.concatenate([[0.0], np.cumsum(rng.exponential(1.0, int(rng.integers(1, 4))))]) for _ in range(J)]
    sizes = rng.choice(sizes_pool, J)
    return hs, sizes


@pytest.mark.parametrize("pool", [(1_000_003.0, 2_000_000.0), (3.7e6, 5.1e6, 1.1e7), (7.0e6,)])
def test_combine_exact_equals_brute_force(pool):
    rng = np.random.default_rng(len(pool))
    for _ in range(40):
        hs, sizes = random_items(rng, pool)
        Q = float(rng.uniform(0.5, 3.0)) * float(max(pool)) * 2
        counts, value, info, _, _ = combine_exact(hs, sizes, Q)
        assert info["exact"] and info["loss_bound"] == 0.0
        assert float(counts @ sizes) <= Q * (1 + 1e-12)
        assert value == pytest.approx(sum(h[c] for h, c in zip(hs, counts)), abs=1e-12)
        assert value == pytest.approx(brute(hs, sizes, Q), rel=1e-12, abs=1e-12)


def test_three_slots_are_three_slots():
    """Sizes with gcd 1 and Q = exactly 3 experts: the old Q / 2^21 units held 2 (issue 13, item 1)."""
    h = np.array([0.0, 3.0, 5.0, 6.0])
    sizes = [2_000_000.0, 1_000_003.0]
    Q = 3 * 2_000_000.0
    counts, value, info, _, _ = combine_exact([h, np.array([0.0, 0.1])], sizes, Q)
    assert info["scheme"] == "by-size" and counts.tolist() == [3, 0] and value == 6.0
    # the old rounding, for the record: 2 slots only, and the certified loss bound says so
    counts, value, info, _, _ = combine_exact([h, np.array([0.0, 0.1])], sizes, Q, max_combos=1)
    assert info["scheme"] == "rounded" and counts[0] == 2
    assert not info["exact"] and value + info["loss_bound"] >= 6.0 - 1e-12


def test_rounded_loss_bound_is_certified():
    rng = np.random.default_rng(5)
    for _ in range(30):
        hs, sizes = random_items(rng, (1_000_003.0, 2_000_017.0, 2_999_999.0))
        Q = float(rng.uniform(1e6, 1e7))
        _, value, info, _, _ = combine_exact(hs, sizes, Q, max_units=64, max_combos=1)
        opt = brute(hs, sizes, Q)
        assert value <= opt + 1e-12 <= value + info["loss_bound"] + 2e-12


def test_gcd_scheme_unchanged():
    hs = [np.array([0.0, 2.0, 3.0]), np.array([0.0, 1.5])]
    counts, value, info, _, _ = combine_exact(hs, [2.0, 4.0], 6.0)
    c2, v2, _, _ = combine_dp(hs, [1, 2], 3)
    assert info["scheme"] == "gcd" and counts.tolist() == c2.tolist() and value == v2


def mixed_single_server(extra=1):
    """Two models whose expert sizes share gcd 2 bytes, one server with room for exactly 3 + 2 experts."""
    base = slimlib.MoEModel("a", 2, 4, 1, hidden_size=1000, params_per_expert=2_000_000, bytes_per_param=1,
                            act_bytes=1)
    other = dataclasses.replace(base, name="b", params_per_expert=1_000_000 + extra)
    rng = np.random.default_rng(0)
    stats = [random_stats(rng, 2, 4, 1) for _ in range(2)]
    Q = 3 * base.expert_bytes + 2 * other.expert_bytes
    net = slimlib.Network(server_capacity_bytes=[Q], server_flops=[2e13], user_capacity_bytes=[0, 0],
                          user_flops=[1e9, 1e9], rate_up=[[5e7], [5e7]], rate_down=[[5e7], [5e7]],
                          backhaul_rate_bps=1e8, backhaul_delay_s=0.05, cloud_flops=1e14)
    return Problem([base, other], net, stats, user_model=[0, 1])


def test_decomposition_fills_exact_capacity():
    p = mixed_single_server()
    pl = slimlib.solve(p, "decomposition")
    ex = slimlib.solve(p, "exact")
    assert pl.info["stage_schemes"] == ["by-size"] and pl.info["stages_exact"]
    assert latency_reduction(p, pl) == pytest.approx(latency_reduction(p, ex), rel=1e-9)
    used = sum(int(x.sum()) * m.expert_bytes for x, m in zip(pl.server, p.models))
    assert used <= p.network.server_capacity_bytes[0]


def test_max_units_and_eps_limits_refused_before_work():
    p = mixed_single_server()
    with pytest.raises(ValueError, match="max_units"):
        slimlib.solve(p, "decomposition", max_units=2 ** 40)
    with pytest.raises(ValueError, match="eps"):
        slimlib.solve(p, "accelerated", eps=1e-7)
    assert MAX_UNITS <= 2 ** 25
