"""The one evaluator against hand-computed latencies (chapter *The system model*)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import slimlib as sl
from slimlib.instances import random_problem
from conftest import tiny_problems

MS = 1e-3


def hand_network(M=1, weights=None):
    """1 or 2 users, 2 servers; every number chosen so latencies are round (see test docstrings)."""
    return sl.Network(server_capacity_bytes=[2e6, 2e6], server_flops=[2e12, 2e12],
                      user_capacity_bytes=[1e6] * M, user_flops=[1e9] * M,
                      rate_up=[[8e6, 4e6]] * M, rate_down=[[8e6, 8e6]] * M,
                      backhaul_rate_bps=8e9, backhaul_delay_s=5e-3, cloud_flops=2e12, user_weight=weights)


def hand_model(K):
    # 1e6 params -> 2e6 FLOP per call, 1 MB per expert; hidden 1000 x 1 byte -> 8000 bits per hop.
    return sl.MoEModel("hand", num_layers=1, num_experts=3, top_k=K, hidden_size=1000,
                       params_per_expert=10**6, bytes_per_param=1, act_bytes=1)


def placement(problem, server_sets, device_sets=None):
    x = np.zeros((2, 1, 3), bool)
    for n, s in enumerate(server_sets):
        x[n, 0, list(s)] = True
    dev = problem.device_cache if device_sets is None else device_sets
    return sl.Placement([x], [np.array(d) for d in dev])


def test_call_latencies_by_hand():
    # local 2e6/1e9 = 2 ms; edge0 = 1 ms up + 1 us + 1 ms down; edge1 = 2 ms up + 1 us + 1 ms;
    # cloud through n0 = server 0: 1 ms + 1 us + 5 ms + 1 us + 5 ms + 1 us + 1 ms = 12.003 ms.
    p = sl.Problem(hand_model(1), hand_network(), sl.ActivationStats(3, 1, [[[0], [1], [2]]], probs=[[.5, .3, .2]]))
    c = sl.call_latency(p)
    assert c.local[0] == pytest.approx(2 * MS, rel=1e-12)
    assert c.edge[0] == pytest.approx([2.001 * MS, 3.001 * MS], rel=1e-12)
    assert c.cloud[0] == pytest.approx(12.003 * MS, rel=1e-12)
    assert c.best_server[0] == 0
    assert c.cloud_comm[0] == pytest.approx(12.002 * MS, rel=1e-12)


def test_k1_local_hit_edge_hit_duplicate_and_cloud_miss():
    stats = sl.ActivationStats(3, 1, [[[0], [1], [2]]], probs=[[.5, .3, .2]])
    p = sl.Problem(hand_model(1), hand_network(), stats)
    # the device policy caches the most activated expert (0) in its 1 MB
    assert p.device_cache[0].tolist() == [[True, False, False]]
    # no edge caching: 0.5 * 2 ms + 0.5 * 12.003 ms
    assert sl.average_latency(p, sl.Placement.empty(p)) == pytest.approx(7.0015 * MS, rel=1e-12)
    # expert 1 on both servers (duplicate: the faster, server 0, serves), expert 2 on server 1
    pl = placement(p, [{1}, {1, 2}])
    assert sl.average_latency(p, pl) == pytest.approx((.5 * 2 + .3 * 2.001 + .2 * 3.001) * MS, rel=1e-12)
    # communication only: 0 for the local hit, 2 ms and 3 ms of radio for the edge hits
    assert sl.communication_latency(p, pl) == pytest.approx((.3 * 2 + .2 * 3) * MS, rel=1e-12)
    assert sl.latency_reduction(p, pl) == pytest.approx((7.0015 - 2.2005) * MS, rel=1e-9)


def test_k2_group_waits_for_slowest_expert():
    stats = sl.ActivationStats(3, 2, [[[0, 1], [1, 2]]], probs=[[.6, .4]])
    dev = [np.array([[True, False, False]])]
    p = sl.Problem(hand_model(2), hand_network(), stats, device_cache=dev)
    # expert 1 only in the cloud: both groups wait 12.003 ms
    assert sl.average_latency(p, placement(p, [{2}, set()])) == pytest.approx(12.003 * MS, rel=1e-12)
    # expert 1 on server 1: {0,1} = max(2, 3.001), {1,2} = max(3.001, 2.001)
    assert sl.average_latency(p, placement(p, [{2}, {1}])) == pytest.approx(3.001 * MS, rel=1e-12)
    # a second copy of expert 1 on server 0 (duplicate): both groups 2.001 ms
    assert sl.average_latency(p, placement(p, [{1, 2}, {1}])) == pytest.approx(2.001 * MS, rel=1e-12)
    # communication only, same placement: max(0, 2) and max(2, 2) ms
    assert sl.communication_latency(p, placement(p, [{1, 2}, {1}])) == pytest.approx(2 * MS, rel=1e-12)


def test_weighted_average_over_two_users():
    s0 = sl.ActivationStats(3, 1, [[[0], [1], [2]]], probs=[[.5, .3, .2]])
    s1 = sl.ActivationStats(3, 1, [[[0], [1], [2]]], probs=[[0., 0., 1.]])
    p = sl.Problem(hand_model(1), hand_network(M=2, weights=[1.0, 3.0]), [s0, s1])
    assert p.device_cache[1].tolist() == [[False, False, True]]
    pl = placement(p, [{1}, set()])
    t = sl.user_latency(p, pl)
    assert t == pytest.approx([(.5 * 2 + .3 * 2.001 + .2 * 12.003) * MS, 2 * MS], rel=1e-12)
    assert sl.average_latency(p, pl) == pytest.approx((t[0] + 3 * t[1]) / 4, rel=1e-12)


def test_infeasible_placement_is_refused():
    p = sl.Problem(hand_model(1), hand_network(), sl.ActivationStats(3, 1, [[[0], [1], [2]]], probs=[[.5, .3, .2]]))
    with pytest.raises(ValueError, match="exceeds capacity"):
        sl.average_latency(p, placement(p, [{0, 1, 2}, set()]))


def test_default_network_numbers():
    # Table 1 at 100 m: PL = 128.1 - 37.6 = 90.5 dB, noise -104 dBm over 10 MHz, SNR 36.5 dB (uplink)
    params = sl.load_parameters()
    net = sl.Network.from_parameters(params, num_users=1, num_servers=1, distance_m=[[100.0]])
    snr = 10 ** (36.5 / 10)
    assert net.rate_up[0, 0] == pytest.approx(10e6 * np.log2(1 + snr), rel=1e-12)
    assert net.rate_down[0, 0] == pytest.approx(10e6 * np.log2(1 + 10 ** (43.5 / 10)), rel=1e-12)


@settings(max_examples=150)
@given(tiny_problems(), st.data())
def test_adding_an_expert_never_increases_any_latency(problem, data):
    pl = sl.Placement.empty(problem)
    before = sl.user_latency(problem, pl)
    u, L, E = 0, problem.models[0].num_layers, problem.models[0].num_experts
    for _ in range(data.draw(st.integers(1, 4))):
        n = data.draw(st.integers(0, problem.num_servers - 1))
        l, e = data.draw(st.integers(0, L - 1)), data.draw(st.integers(0, E - 1))
        trial = pl.copy()
        trial.server[u][n, l, e] = True
        if not trial.is_feasible(problem):
            continue
        after = sl.user_latency(problem, trial)
        assert np.all(after <= before + 1e-15)
        pl, before = trial, after


@settings(max_examples=150)
@given(tiny_problems(), st.integers(0, 2**31 - 1))
def test_latency_between_best_location_bound_and_no_edge_cache(problem, seed):
    rng = np.random.default_rng(seed)
    pl = sl.Placement.empty(problem)
    x = pl.server[0]
    slots = (problem.network.server_capacity_bytes // problem.models[0].expert_bytes).astype(int)
    for n in range(problem.num_servers):
        idx = rng.permutation(x[n].size)[: slots[n]]
        x[n].flat[idx] = True
    c = sl.call_latency(problem)
    L = problem.models[0].num_layers
    best = np.minimum(np.minimum(c.local, c.edge.min(axis=1)), c.cloud) * L   # every expert at its best place
    t = sl.user_latency(problem, pl)
    upper = sl.user_latency(problem, sl.Placement.empty(problem))
    assert np.all(best <= t + 1e-15) and np.all(t <= upper + 1e-15)


def test_random_problem_latencies_are_reproducible():
    a, b = random_problem(7, top_k=2, num_experts=4), random_problem(7, top_k=2, num_experts=4)
    assert sl.average_latency(a, sl.Placement.empty(a)) == sl.average_latency(b, sl.Placement.empty(b))


def _lifted(problem):
    """``problem`` with room for every expert on every server and device (every random placement fits)."""
    big = 1e18
    net = problem.network.replace(server_capacity_bytes=[big] * problem.num_servers,
                                  user_capacity_bytes=[big] * problem.num_users)
    return problem.replace(network=net)


def _two_models(seed):
    """Three users, two servers: users 0 and 1 run a Top-2 model, user 2 a Top-1 model of another shape."""
    from slimlib.instances import random_stats
    rng = np.random.default_rng(seed)
    p = random_problem(seed, num_users=3, num_servers=2, num_layers=2, num_experts=4, top_k=2, weights=True)
    other = sl.MoEModel("other", num_layers=3, num_experts=5, top_k=1, hidden_size=500, params_per_expert=10**5,
                        bytes_per_param=1, act_bytes=1)
    stats = list(p.stats[:2]) + [random_stats(rng, 3, 5, 1, model="other")]
    return sl.Problem([p.models[0], other], p.network, stats, user_model=[0, 0, 1])


@pytest.mark.parametrize("seed", range(6))
def test_batch_evaluator_equals_average_latency_one_at_a_time(seed):
    """BatchEvaluator / average_latencies give average_latency's numbers to 1e-12 on random instances."""
    from slimlib.latency import BatchEvaluator, average_latencies
    rng = np.random.default_rng(seed)
    base = _two_models(seed) if seed % 2 else random_problem(seed, num_users=3, num_servers=3, num_layers=2,
                                                                num_experts=5, top_k=1 + seed % 3, weights=True)
    problem = _lifted(base)
    shapes = [(m.num_layers, m.num_experts) for m in problem.models]
    devices = [[rng.random(shapes[problem.user_model[m]]) < 0.3 for m in range(problem.num_users)]
               for _ in range(2)]
    placements = [sl.Placement([rng.random((problem.num_servers, L, E)) < rng.uniform(0, 0.8) for L, E in shapes],
                               devices[i % 2]) for i in range(12)]
    placements.append(sl.Placement.empty(problem))
    one_by_one = np.array([sl.average_latency(problem, P) for P in placements])
    np.testing.assert_allclose(average_latencies(problem, placements), one_by_one, rtol=1e-12, atol=0)
    ev = BatchEvaluator(problem, device=devices[0])
    batch = [np.stack([placements[i].server[u] for i in range(0, 12, 2)]) for u in range(len(shapes))]
    np.testing.assert_allclose(ev(batch), one_by_one[0:12:2], rtol=1e-12, atol=0)
    assert ev(placements[2].server) == pytest.approx(one_by_one[2], rel=1e-12)   # one placement -> a float
    # more placements than one chunk holds: same numbers
    import slimlib.latency as lat_mod
    old, lat_mod.BATCH_CELLS = lat_mod.BATCH_CELLS, 1
    try:
        np.testing.assert_allclose(ev(batch), one_by_one[0:12:2], rtol=1e-12, atol=0)
    finally:
        lat_mod.BATCH_CELLS = old
    assert one_by_one.max() > one_by_one.min()                                   # the placements differ


def test_batch_evaluator_rejects_wrong_shapes():
    from slimlib.latency import BatchEvaluator, average_latencies
    p = random_problem(0, num_users=2, num_servers=2, num_layers=2, num_experts=3)
    ev = BatchEvaluator(p)
    with pytest.raises(ValueError, match=r"servers\[0\]"):
        ev([np.zeros((2, 2, 4), bool)])
    with pytest.raises(ValueError, match="servers"):
        ev([np.zeros((2, 2, 3), bool)] * 2)
    with pytest.raises(ValueError, match="device"):
        BatchEvaluator(p, device=[np.zeros((2, 3), bool)])
    with pytest.raises(ValueError, match="placements"):
        average_latencies(p, [p])
    full = sl.Placement([np.ones((2, 2, 3), bool)], p.device_cache)
    assert full.used_bytes(p).max() > p.network.server_capacity_bytes.max()
    with pytest.raises(ValueError, match="capacity"):
        average_latencies(p, [full])                       # checked like average_latency
