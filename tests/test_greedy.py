"""Algorithm 1 (greedy) and the co-activation-blind greedy: chapter *Greedy for K = 1*."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import slimlib
from slimlib import latency_reduction
from slimlib.instances import random_mixed_problem, random_problem
from slimlib.solvers.pairs import PairModel
from slimlib.studies import greedy_trace, k2_counterexample, study_problem

from conftest import tiny_problems

E1 = 1 - 1 / math.e


def R(p, pl):
    return slimlib.latency_reduction(p, pl)


def roomy(p):
    """The same problem with room for every expert on every server (so any x is feasible)."""
    big = np.full(p.num_servers, 1e3 * sum(m.expert_bytes * m.num_layers * m.num_experts for m in p.models))
    return p.replace(network=p.network.replace(server_capacity_bytes=big))


def test_hand_computed_k1_single_server():
    """One user, one server with 1 slot, one layer, two experts p = (0.7, 0.3): cache expert 0."""
    from slimlib import MoEModel, Network, Problem, ActivationStats
    mod = MoEModel("toy", 1, 2, 1, hidden_size=1000, params_per_expert=10**6, bytes_per_param=1, act_bytes=1)
    st_ = ActivationStats(2, 1, [[[0], [1]]], probs=[[0.7, 0.3]])
    net = Network([1e6], [20e12], [0.0], [1e12], [[10e6]], [[20e6]], backhaul_rate_bps=1e9,
                  backhaul_delay_s=5e-3, cloud_flops=100e12)
    p = Problem(mod, net, st_)
    pl = slimlib.solve(p, "greedy")
    assert pl.server[0][0].tolist() == [[True, False]]
    h, F = 8000.0, 2e6
    edge = h / 10e6 + F / 20e12 + h / 20e6
    cloud = h / 10e6 + h / 20e6 + 2 * h / 1e9 + 2 * 5e-3 + F / 100e12
    assert R(p, pl) == pytest.approx(0.7 * (cloud - edge), rel=1e-12)
    assert pl.info["value_s"] == pytest.approx(0.7 * (cloud - edge), rel=1e-12)
    assert pl.info["picks"] == [(0, 0, 0, 0)]


@settings(max_examples=60)
@given(tiny_problems(top_k=1, max_users=3, max_servers=3))
def test_k1_closed_form_gain_matches_evaluator(p):
    """Gain of every pair = evaluator difference, both from empty and from a random partial cache."""
    p = roomy(p)
    pm = PairModel(p)
    rng = np.random.default_rng(0)
    x = rng.random((pm.C, pm.N)) < 0.3
    cur = pm.cur0.copy()
    for c, n in zip(*np.nonzero(x)):
        pm.apply(cur, n, c)
    pl = pm.to_placement(x, "t")
    base = R(p, pl)
    assert pm.value(cur) == pytest.approx(base, rel=1e-9, abs=1e-15)
    g = pm.gains_range(cur, 0, pm.C)
    for c in range(pm.C):
        for n in range(pm.N):
            if x[c, n]:
                continue
            x2 = x.copy()
            x2[c, n] = True
            want = R(p, pm.to_placement(x2, "t")) - base
            assert g[c, n] == pytest.approx(want, rel=1e-9, abs=1e-15)
            assert pm.gain(cur, n, c) == g[c, n]          # bit-identical single and batched gain


@settings(max_examples=60)
@given(tiny_problems(max_users=3, max_servers=3))
def test_general_k_gain_matches_evaluator(p):
    p = roomy(p)
    pm = PairModel(p)
    cur = pm.cur0.copy()
    for c, n in [(0, 0), (pm.C - 1, pm.N - 1)]:
        pm.apply(cur, n, c)
    x = np.zeros((pm.C, pm.N), bool)
    x[0, 0] = x[pm.C - 1, pm.N - 1] = True
    base = R(p, pm.to_placement(x, "t"))
    g = pm.gains_range(cur, 0, pm.C)
    for c in range(pm.C):
        for n in range(pm.N):
            x2 = x.copy()
            x2[c, n] = True
            assert g[c, n] == pytest.approx(R(p, pm.to_placement(x2, "t")) - base, rel=1e-9, abs=1e-15)


@settings(max_examples=120)
@given(tiny_problems(top_k=1, max_experts=5, max_users=3, max_servers=3, max_layers=3, server_slots=(0, 5)))
def test_lazy_picks_exactly_what_naive_picks_k1(p):
    lazy = slimlib.solve(p, "greedy", lazy=True, single=False)
    naive = slimlib.solve(p, "greedy", lazy=False, single=False)
    assert lazy.info["picks"] == naive.info["picks"]
    assert lazy == naive
    assert lazy.info["gain_evaluations"] <= naive.info["gain_evaluations"]


@pytest.mark.parametrize("seed", range(40))
def test_lazy_equals_naive_mixed_sizes(seed):
    p = random_mixed_problem(seed, num_users=3, num_servers=3, num_layers=2, num_experts=4, weights=True)
    for blind_method in ("greedy", "blind-greedy"):
        a = slimlib.solve(p, blind_method, lazy=True)
        b = slimlib.solve(p, blind_method, lazy=False)
        assert a.info["picks"] == b.info["picks"]


@settings(max_examples=80)
@given(tiny_problems(max_users=3, max_servers=3, max_layers=3))
def test_incremental_equals_naive_any_k(p):
    """For K >= 2 the default (exact incremental refresh of the changed layer) is the naive greedy."""
    a = slimlib.solve(p, "greedy")
    b = slimlib.solve(p, "greedy", lazy=False)
    assert a.info["picks"] == b.info["picks"]
    assert a.info["value_s"] == pytest.approx(R(p, a), rel=1e-9, abs=1e-15)


def test_celf_saves_evaluations_at_scale():
    p = random_problem(3, num_users=6, num_servers=4, num_layers=6, num_experts=32, top_k=1, server_slots=(20, 40))
    a = slimlib.solve(p, "greedy", lazy=True)
    b = slimlib.solve(p, "greedy", lazy=False)
    assert a.info["picks"] == b.info["picks"]
    assert a.info["gain_evaluations"] * 10 < b.info["gain_evaluations"]


# -- guarantees ------------------------------------------------------------------------
def _opt(p):
    return R(p, slimlib.solve(p, "exact"))


def test_single_server_equal_size_k1_ratio():
    """One server, equal sizes, K = 1: R is modular under a cardinality constraint, so the
    greedy is optimal -- in particular >= (1 - 1/e) OPT (the Done-when bound) for every variant."""
    worst = {"default": 1.0, "plain": 1.0, "enumeration=3": 1.0}
    for s in range(60):
        rng = np.random.default_rng(s)
        p = random_problem(s, num_users=int(rng.integers(1, 4)), num_servers=1, num_layers=int(rng.integers(1, 3)),
                           num_experts=int(rng.integers(2, 5)), top_k=1, server_slots=(1, 4), weights=True)
        opt = _opt(p)
        if opt <= 0:
            continue
        for name, kw in (("default", {}), ("plain", dict(single=False)), ("enumeration=3", dict(enumeration=3))):
            r = R(p, slimlib.solve(p, "greedy", **kw)) / opt
            worst[name] = min(worst[name], r)
    for name, r in worst.items():
        assert r >= E1, name
        assert r >= 1 - 1e-9, name          # modular + cardinality: optimal


def test_single_server_knapsack_k1_ratio():
    """One server, two expert sizes (a knapsack): Sviridenko's enumeration=3 gives >= 1 - 1/e,
    the default (density greedy + best single) >= 1/2 (modular objective)."""
    w3, w0 = 1.0, 1.0
    for s in range(40):
        p = study_problem(s, mixed=True, single_server=True)
        opt = _opt(p)
        if opt <= 0:
            continue
        w3 = min(w3, R(p, slimlib.solve(p, "greedy", enumeration=3)) / opt)
        w0 = min(w0, R(p, slimlib.solve(p, "greedy")) / opt)
    assert w3 >= E1
    assert w0 >= 0.5


def test_partition_matroid_half():
    """N servers, equal sizes, K = 1: a partition matroid, so the greedy gets >= 1/2 (Fisher et al. 1978)."""
    worst = 1.0
    for s in range(60):
        p = study_problem(s)
        opt = _opt(p)
        if opt > 0:
            worst = min(worst, R(p, slimlib.solve(p, "greedy", single=False)) / opt)
    assert worst >= 0.5


def test_enumeration_never_worse_than_default():
    for s in range(15):
        p = study_problem(s, mixed=True)
        v = [slimlib.solve(p, "greedy", enumeration=d).info["value_s"] for d in range(3)]
        assert v[1] >= v[0] - 1e-15 and v[2] >= v[0] - 1e-15


# -- K >= 2 ---------------------------------------------------------------------------
@pytest.mark.parametrize("q", [0.05, 0.2, 0.4])
def test_k2_counterexample(q):
    p = k2_counterexample(q)
    opt = R(p, slimlib.solve(p, "brute-force"))
    g = slimlib.solve(p, "greedy")
    b = slimlib.solve(p, "blind-greedy")
    assert g.info["picks"] == [(0, 0, 0, 1)]              # the only expert with a positive gain alone
    assert R(p, g) / opt == pytest.approx(q / (1 - q), rel=1e-9)
    assert R(p, b) == pytest.approx(opt, rel=1e-12)       # marginals see the {2, 3} pair


def test_blind_greedy_equals_greedy_for_k1():
    for s in range(20):
        p = random_problem(s, num_users=3, num_servers=2, num_layers=2, num_experts=4, top_k=1, weights=True)
        a, b = slimlib.solve(p, "greedy"), slimlib.solve(p, "blind-greedy")
        assert a == b
        assert b.info["surrogate_value_s"] == pytest.approx(b.info["value_s"], rel=1e-12)


def test_blind_surrogate_value():
    """Surrogate = sum_m w_m sum_{l,e} (p/K) (tau0 - tau): check by hand on the K = 2 counterexample."""
    p = k2_counterexample(0.3)
    b = slimlib.solve(p, "blind-greedy")
    c = slimlib.call_latency(p)
    d = c.cloud[0] - c.edge[0, 0]
    assert b.info["surrogate_value_s"] == pytest.approx((0.7 / 2 + 0.7 / 2) * d, rel=1e-12)


# -- trace, options, refusals ------------------------------------------------------------
def test_trace_matches_solver():
    p = random_problem(42, num_users=3, num_servers=2, num_layers=2, num_experts=4, top_k=1, server_slots=(2, 3))
    pm, tr = greedy_trace(p)
    picks = [pm.pair_name(*t["pick"]) for t in tr if t["pick"] is not None]
    assert tr[-1]["pick"] is None
    assert picks == slimlib.solve(p, "greedy", single=False).info["picks"]
    assert tr[-1]["value"] == pytest.approx(slimlib.solve(p, "greedy", single=False).info["value_s"], rel=1e-12)
    for a, b in zip(tr[:-1], tr[1:]):                                # values grow by the chosen gain
        assert b["value"] - a["value"] == pytest.approx(a["gain"], rel=1e-9)


@pytest.mark.parametrize("opts", [dict(enumeration=4), dict(enumeration=-1), dict(enumeration=1.5), dict(lazy="yes"),
                                  dict(single="no"), dict(max_seeds=0), dict(bogus=1)])
def test_bad_options(opts):
    p = random_problem(0)
    with pytest.raises(ValueError):
        slimlib.solve(p, "greedy", **opts)


def test_enumeration_refuses_above_max_seeds():
    p = random_problem(0, num_servers=3, num_layers=4, num_experts=8, server_slots=(4, 4))
    with pytest.raises(ValueError, match="enumeration.*max_seeds"):
        slimlib.solve(p, "greedy", enumeration=3, max_seeds=1000)


def test_capacity_respected_with_different_sizes():
    for s in range(30):
        p = random_mixed_problem(s, num_users=4, num_servers=3, sizes=(1, 2, 3), server_units=(0, 7), top_k=1 + s % 2)
        for meth in ("greedy", "blind-greedy"):
            pl = slimlib.solve(p, meth)
            assert (pl.used_bytes(p) <= p.network.server_capacity_bytes + 1e-6).all()


# -- the fast paths (per-column CELF for K = 1, heap-based exact refresh for K >= 2) ------------
def _mixed_top_k_problem(seed):
    """Two models on one network: Top-1 with 1-unit experts and Top-2 with 2-unit experts."""
    from slimlib import MoEModel
    from slimlib.instances import random_stats
    p = random_mixed_problem(seed, num_users=4, num_servers=3, num_layers=2, num_experts=5, sizes=(1, 2),
                             server_units=(0, 9), weights=True)
    rng = np.random.default_rng([seed, 2])
    k2 = MoEModel("random-s2-k2", 2, 5, 2, hidden_size=1000, params_per_expert=2 * 10**6, bytes_per_param=1,
                  act_bytes=1)
    stats = [s if p.user_model[m] == 0 else random_stats(rng, 2, 5, 2) for m, s in enumerate(p.stats)]
    return p.replace(models=[p.models[0], k2], stats=stats)


@pytest.mark.parametrize("seed", range(25))
def test_mixed_top_k_default_equals_naive(seed):
    """A Top-1 and a Top-2 model together: only the columns sharing a group with the added one are refreshed."""
    p = _mixed_top_k_problem(seed)
    for meth in ("greedy", "blind-greedy"):
        a = slimlib.solve(p, meth)
        b = slimlib.solve(p, meth, lazy=False)
        assert a.info["picks"] == b.info["picks"]
        assert a == b and a.info["value_s"] == b.info["value_s"]
        assert a.info["value_s"] == pytest.approx(R(p, a), rel=1e-9, abs=1e-15)


def _seeded_problems():
    for s in range(30):
        k = 1 + s % 3
        yield random_problem(s, num_users=3, num_servers=3, num_layers=2, num_experts=4, top_k=k,
                             server_slots=(1, 5), weights=True)
        yield random_mixed_problem(s, num_users=3, num_servers=3, num_layers=2, num_experts=4, top_k=1 + s % 2,
                                   server_units=(1, 9), weights=True)
        yield _mixed_top_k_problem(s)


def test_fast_paths_from_seed_sets_equal_naive():
    """Started from a feasible seed set (as in the enumeration), the fast loops end in exactly the naive state."""
    from slimlib.solvers.greedy import _mode
    from slimlib.solvers.greedy_run import _Run, run_greedy
    for i, p in enumerate(_seeded_problems()):
        pm = PairModel(p)
        rng = np.random.default_rng(i)
        seed = _Run(pm)
        for _ in range(int(rng.integers(0, 3))):
            c, n = int(rng.integers(pm.C)), int(rng.integers(pm.N))
            if not seed.x[c, n] and seed.used[n] + pm.col_bytes[c] <= pm.cap[n]:
                seed.add(pm, n, c)
        fast = run_greedy(pm, _Run(pm, seed.x, seed.cur, seed.used), _mode(pm, None))
        naive = run_greedy(pm, _Run(pm, seed.x, seed.cur, seed.used), "naive")
        assert fast.picks == naive.picks, i
        assert np.array_equal(fast.x, naive.x) and np.array_equal(fast.cur, naive.cur), i
        assert np.array_equal(fast.used, naive.used), i


@settings(max_examples=40)
@given(tiny_problems(max_users=3, max_servers=3, max_layers=3))
def test_batched_gains_bit_identical_to_single_pairs(p):
    """All gains at once (server-major layout) = each pair alone, bit for bit, from a random partial cache."""
    pm = PairModel(roomy(p))
    cur = pm.cur0.copy()
    rng = np.random.default_rng(1)
    for c, n in zip(*np.nonzero(rng.random((pm.C, pm.N)) < 0.3)):
        pm.apply(cur, n, c)
    g = pm.gains_range(cur, 0, pm.C)
    single = np.array([[pm.gains_range(cur, c, c + 1, [n])[0, 0] for n in range(pm.N)] for c in range(pm.C)])
    assert np.array_equal(g, single)
    for c in range(pm.C):
        assert np.array_equal(pm.gains_range(cur, c, pm.C), g[c:])


def test_k2_greedy_completes_groups_when_everything_fits():
    """Issue 13, item 4: at K >= 2 the plain density greedy cached nothing even when everything fits."""
    for seed in range(4):
        p = random_problem(seed, num_users=2, num_servers=2, num_layers=2, num_experts=3, top_k=2,
                           server_slots=(6, 6))
        plain = slimlib.solve(p, "greedy", completion=False)
        pl = slimlib.solve(p, "greedy")
        ex = slimlib.solve(p, "exact")
        assert pl.is_feasible(p)
        assert latency_reduction(p, pl) >= latency_reduction(p, plain)
        assert latency_reduction(p, pl) == pytest.approx(latency_reduction(p, ex), rel=1e-9)
    assert plain.info["group_completions"] == 0 and pl.info["group_completions"] > 0


def test_completion_option_is_validated():
    p = random_problem(0, top_k=2)
    with pytest.raises(ValueError, match="completion"):
        slimlib.solve(p, "greedy", completion="yes")


def test_k1_fast_path_works_by_column():
    """K = 1: the greedy never builds the per-entry arrays (memory O(observed pairs)); the column bound caps every gain."""
    from slimlib.solvers.greedy_run import run_greedy
    p = random_problem(5, num_users=8, num_servers=4, num_layers=3, num_experts=16, top_k=1, server_slots=(4, 12))
    pm = PairModel(p)
    run = run_greedy(pm, None, "celf")
    assert run.picks and "e_col" not in pm.__dict__
    # no (M, C) array and no per-group rows: only the changed columns' latencies
    assert run._cur is None and "cur0" not in pm.__dict__ and "g_user" not in pm.__dict__
    assert sorted(run.cols) == sorted({c for _, c in run.picks})
    assert run.picks == run_greedy(pm, None, "naive").picks
    cur = run.cur
    touched = (cur != pm.cur0).any(axis=0)
    assert touched.any()
    for c in range(pm.C):
        g = pm.column_gains(cur[:, c], c)
        assert np.all(g <= pm.column_bound(cur[:, c], c))
        if touched[c]:                           # untouched columns read the start product instead
            assert np.array_equal(g, pm.gains_range(cur, c, c + 1)[0])
        else:
            np.testing.assert_allclose(g, pm.gains_range(cur, c, c + 1)[0], rtol=1e-12, atol=1e-18)


def test_k2_gains_in_blocks_are_bit_identical(monkeypatch):
    """K >= 2 gains are computed in blocks of whole columns (memory O(observed groups)): same bits at any block size."""
    from slimlib.solvers import pairs
    p = random_problem(2, num_users=4, num_servers=3, num_layers=2, num_experts=6, top_k=2, server_slots=(2, 5))
    pm = PairModel(p)
    cur = pm.cur0.copy()
    for c, n in [(0, 0), (3, 1), (7, 2)]:
        pm.apply(cur, n, c)
    whole = pm.gains_range(cur, 0, pm.C)
    monkeypatch.setattr(pairs, "ENTRY_BLOCK", 7)
    assert np.array_equal(pm.gains_range(cur, 0, pm.C), whole)
    assert np.array_equal(pm.gains_range(cur, 2, pm.C, [1, 2]), whole[2:, 1:])


@settings(max_examples=60)
@given(tiny_problems(top_k=1, max_experts=6, max_users=4, max_servers=4, max_layers=2, server_slots=(1, 4)),
       st.integers(0, 2 ** 31 - 1))
def test_single_precision_bounds_cap_the_exact_gains(p, seed):
    """The float32 screening pass of the K = 1 greedy gives upper bounds within ~1e-5 of the exact gains,
    also when a latency equals an edge latency exactly (the term that rounds to either side of 0)."""
    pm = PairModel(p)
    rng = np.random.default_rng(seed)
    for c in range(pm.C):
        tau = pm.column_start(c)
        for n in rng.permutation(pm.N)[:rng.integers(0, pm.N + 1)].tolist():
            tau = np.minimum(tau, pm.T[:, n])            # as after caching c on n: ties with T[:, n]
        sv = np.arange(pm.N)
        exact = pm.column_gains(tau, c, sv)
        bound = pm.column_gain_bounds(tau, c, sv)
        assert np.all(bound >= exact)
        assert np.all(bound <= exact * (1 + 1e-4) + 1e-4 * pm.T.max() * max(1.0, p.network.user_weight.sum()))


@pytest.mark.parametrize("seed", range(6))
def test_value_by_columns_equals_evaluator(seed):
    """K = 1: R from the changed columns only (the greedy's lazy run) equals the evaluator to 1e-12."""
    from slimlib.solvers.greedy_run import _Run
    p = random_problem(seed, num_users=5, num_servers=3, num_layers=3, num_experts=8, top_k=1, server_slots=(2, 6))
    pm = PairModel(p)
    rng = np.random.default_rng(seed)
    run = _Run(pm)
    for n in range(pm.N):
        for c in rng.choice(pm.C, size=2, replace=False).tolist():
            run.add(pm, n, c)
    assert run._cur is None
    pl = pm.to_placement(run.x, "test")
    r = latency_reduction(p, pl)
    assert r > 0
    assert run.value() == pytest.approx(r, rel=1e-12)
    assert pm.value(run.cur) == pytest.approx(r, rel=1e-12)        # the same from the full latencies


@pytest.mark.parametrize("seed", range(4))
def test_dense_and_sparse_weights_agree(seed, monkeypatch):
    """K = 1 weights held dense (C, M) or as CSR give the same start gains (1e-12) and the same greedy."""
    import slimlib.solvers.pairs as pairs
    p = random_problem(seed, num_users=12, num_servers=3, num_layers=2, num_experts=16, top_k=1, server_slots=(2, 8))
    out = {}
    for name, frac in (("dense", 0.0), ("sparse", 2.0)):
        monkeypatch.setattr(pairs, "DENSE_FRACTION", frac)
        pm = PairModel(p)
        assert pm._k1()["dense"] == (name == "dense")
        out[name] = (pm._k1()["g0"], slimlib.solve(p, "greedy"))
    np.testing.assert_allclose(out["dense"][0], out["sparse"][0], rtol=1e-12, atol=1e-18)
    assert R(p, out["dense"][1]) == pytest.approx(R(p, out["sparse"][1]), rel=1e-9)


@pytest.mark.parametrize("seed", range(12))
def test_lazy_equals_naive_when_devices_are_faster(seed):
    """Devices faster than the cloud (their experts start on the device): a pair that saves nothing has a
    start gain of exactly 0, so CELF and the naive greedy make the same picks (regression: the start
    product once cancelled to +-1e-17 there)."""
    p = random_problem(seed, num_users=30, num_servers=3, num_layers=1, num_experts=3, top_k=1,
                       server_slots=(3, 3), device_slots=(3, 3))
    p = p.replace(network=p.network.replace(user_flops=np.full(p.num_users, 1e15)))
    lazy = slimlib.solve(p, "greedy", lazy=True, single=False)
    naive = slimlib.solve(p, "greedy", lazy=False, single=False)
    assert lazy.info["picks"] == naive.info["picks"]


@pytest.mark.parametrize("scale", [1e-44, 1e-20, 1e20, 1e50])
def test_lazy_equals_naive_at_extreme_weight_scales(scale):
    """User weights far outside float32's comfortable range: the single-precision screening falls back or
    stays a valid bound, so CELF still picks what the naive greedy picks."""
    for seed in range(6):
        p = random_problem(seed, num_users=6, num_servers=3, num_layers=2, num_experts=6, top_k=1,
                           server_slots=(2, 6))
        p = p.replace(network=p.network.replace(user_weight=p.network.user_weight * scale))
        lazy = slimlib.solve(p, "greedy", lazy=True, single=False)
        naive = slimlib.solve(p, "greedy", lazy=False, single=False)
        assert lazy.info["picks"] == naive.info["picks"]


@pytest.mark.parametrize("seed", range(3))
def test_seeded_k1_runs_build_no_full_latency_array(seed):
    """Enumeration seeds of a K = 1 greedy stay column-wise (no (M, C) array) and give the naive result."""
    from slimlib.solvers.greedy_run import _initial_gains, _Run
    p = random_problem(seed, num_users=5, num_servers=3, num_layers=2, num_experts=5, top_k=1, server_slots=(1, 4))
    pm = PairModel(p)
    r = _Run(pm)
    r.add(pm, 0, 3)
    r.add(pm, 1, 3)
    g = _initial_gains(pm, r)
    assert r._cur is None and "cur0" not in pm.__dict__
    assert np.array_equal(g, pm.gains_range(r.cur, 0, pm.C))          # the numbers of the reference
    a = slimlib.solve(p, "greedy", enumeration=1)
    b = slimlib.solve(p, "greedy", enumeration=1, lazy=False)
    assert a.info["picks"] == b.info["picks"] and a.info["value_s"] == pytest.approx(b.info["value_s"], rel=1e-12)
