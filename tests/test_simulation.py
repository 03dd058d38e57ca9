"""The live-network simulator (slimlib.simulation): validation against the evaluator, queueing, invariants."""
from __future__ import annotations

import csv
import math

import numpy as np
import pytest

import slimlib as sl
from slimlib.cli import main
from slimlib.instances import random_problem
from slimlib.simulation import SimulationConfig, call_routes, call_stages, offered_load, simulate
from slimlib.simulation.routes import CLOUD, DEVICE
from slimlib.simulation.study import compare_reading, live_problem, ranking_reading, trace_problem
from slimlib.solvers.load_aware import erlang_c
from slimlib.trace import RoutingTrace, load_trace

FREE = SimulationConfig.no_contention()


def _instance(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, 3))
    return random_problem(seed, num_users=int(rng.integers(1, 4)), num_servers=int(rng.integers(1, 4)),
                          num_layers=int(rng.integers(1, 4)), num_experts=int(rng.integers(max(3, k), 6)),
                          top_k=k, weights=True)


# -- validation: without contention the simulator is the evaluator -------------------------------------
def test_no_contention_ci_contains_average_latency_on_60_random_instances():
    misses, z = [], []
    for seed in range(60):
        pb = _instance(seed)
        x = sl.solve(pb, method="random" if seed % 3 == 0 else "greedy" if pb.models[0].top_k == 1 else
                     "decomposition", **({"seed": seed} if seed % 3 == 0 else {}))
        res = simulate(pb, x, FREE, tokens=400, seed=seed, progress=False)
        want = sl.average_latency(pb, x)
        assert res.expected_s == want
        half = res.ci_s(0.99) + 1e-9 * want     # plus floating-point rounding of the simulated clock
        z.append((res.mean_s - want) / half)
        if abs(res.mean_s - want) > half:
            misses.append(seed)
    # with a correct simulator a miss has probability 1 %: P(4 or more misses of 60) < 0.3 %
    assert len(misses) <= 3, misses
    assert abs(np.mean(z)) < 0.15          # no bias: the mean z-score (in CI half-widths) is near 0


def test_deterministic_routing_gives_the_evaluator_exactly():
    pb = random_problem(5, num_users=3, num_servers=2, num_layers=3, num_experts=4, top_k=2, weights=True)
    one = sl.ActivationStats(4, 2, [[[0, 1]], [[1, 3]], [[0, 2]]], probs=[[1.0]] * 3)
    pb = pb.replace(stats=[one] * 3)
    for method in ("none", "decomposition", "coordinated-popularity"):
        x = sl.solve(pb, method=method)
        res = simulate(pb, x, FREE, tokens=50, progress=False)
        assert res.mean_s == pytest.approx(sl.average_latency(pb, x), rel=1e-12)
        assert res.ci_s() < 1e-12 * res.mean_s                  # every token of a user takes the same time
        assert all(np.ptp(lat) < 1e-12 * res.mean_s for lat in res.latency_s)


@pytest.mark.parametrize("name", ["fig6", "fig7"])
def test_paper_scale_no_contention_within_one_percent(name):
    pb = live_problem(name)
    for method in ("decomposition", "none"):
        x = sl.solve(pb, method=method)
        res = simulate(pb, x, FREE, progress=False)            # the default token count
        assert res.config.tokens == SimulationConfig().tokens == 2000
        assert abs(res.mean_s / sl.average_latency(pb, x) - 1) <= 0.01


def test_one_call_in_flight_never_waits_even_on_shared_stages():
    """One user, Top-1, one session at a time: every stage is FIFO with one slot, yet nothing can queue."""
    pb = random_problem(2, num_users=1, num_servers=2, num_layers=3, num_experts=4, top_k=1)
    x = sl.solve(pb)
    res = simulate(pb, x, tokens=300, max_sessions=1, token_rate=1e4, progress=False)
    np.testing.assert_allclose(res.latency_s[0], res.nominal_s[0], rtol=1e-9)
    assert res.queueing_share == pytest.approx(0.0, abs=1e-9)
    assert all(r["wait_s"] == 0 for r in res.resources)


def _two_users_one_server(up0, up1, dn0, dn1):
    """One layer, one expert on one server, two users whose links have the given transfer times (s)."""
    model = sl.MoEModel("m", 1, 1, 1, hidden_size=1000, params_per_expert=10**6, bytes_per_param=1, act_bytes=1)
    h = model.hidden_bits
    net = sl.Network(server_capacity_bytes=[1e6], server_flops=[2e12], user_capacity_bytes=[0.0, 0.0],
                     user_flops=[1e6, 1e6], rate_up=[[h / up0], [h / up1]], rate_down=[[h / dn0], [h / dn1]],
                     backhaul_rate_bps=1e9, backhaul_delay_s=1.0, cloud_flops=1e12)
    stats = sl.ActivationStats(1, 1, [[[0]]], probs=[[1.0]])
    pb = sl.Problem(model, net, stats)
    return pb, sl.solve(pb, method="coordinated-popularity")


def test_fifo_queueing_by_hand():
    # both users send their one token at t = 0; user 0 first (process order); compute 1 µs per call
    pb, x = _two_users_one_server(up0=1e-3, up1=2e-3, dn0=4e-3, dn1=1e-3)
    res = simulate(pb, x, tokens=2, batches=2, token_rate=math.inf, tokens_per_session=2, max_sessions=1,
                   progress=False)
    c = 2 * 10**6 / 2e12
    # user 0: uplink [0, 1 ms], compute [1 ms, +c], downlink [1 ms + c, 5 ms + c]
    assert res.latency_s[0][0] == pytest.approx(5e-3 + c, rel=1e-12)
    # user 1: uplink waits for user 0 (1 ms), [1, 3 ms], compute [3 ms, +c], downlink waits until 5 ms + c
    assert res.latency_s[1][0] == pytest.approx(5e-3 + c + 1e-3, rel=1e-12)
    # second tokens: user 0 at 5 ms + c, uplink free, compute, downlink after user 1's (ends 6 ms + c): no wait
    assert res.latency_s[0][1] == pytest.approx(5e-3 + c, rel=1e-12)


def test_simpy_resources_and_the_fifo_recursion_agree():
    pb = random_problem(11, num_users=3, num_servers=2, num_layers=3, num_experts=4, top_k=2)
    x = sl.solve(pb)
    a = simulate(pb, x, tokens=300, token_rate=300, server_slots=2, progress=False, queueing="recursion")
    b = simulate(pb, x, tokens=300, token_rate=300, server_slots=2, progress=False, queueing="resource")
    assert a.queueing_share > 0.01
    for la, lb in zip(a.latency_s, b.latency_s):
        np.testing.assert_allclose(la, lb, rtol=1e-9, atol=1e-15)
    for ra, rb in zip(a.resources, b.resources):
        assert ra["wait_s"] == pytest.approx(rb["wait_s"], rel=1e-9, abs=1e-15)


# -- invariants -----------------------------------------------------------------------------------------
def _loaded():
    """Every expert fits on every server: calls go to the edge, where the radio links are shared."""
    pb = random_problem(7, num_users=3, num_servers=2, num_layers=3, num_experts=4, top_k=2, server_slots=(4, 4))
    return pb, sl.solve(pb)


def test_same_seed_same_table_other_seed_other_table():
    pb, x = _loaded()
    strip = lambda t: [r for r in t if r["metric"] != "wall_time"]
    t1 = strip(simulate(pb, x, tokens=200, token_rate=100, seed=3, progress=False).table())
    t2 = strip(simulate(pb, x, tokens=200, token_rate=100, seed=3, progress=False).table())
    t3 = strip(simulate(pb, x, tokens=200, token_rate=100, seed=4, progress=False).table())
    assert t1 == t2 and t1 != t3


def test_conservation_every_call_served_once_and_utilisation_at_most_one():
    pb, x = _loaded()
    res = simulate(pb, x, tokens=400, warmup_tokens=40, token_rate=1000, tokens_per_session=16, progress=False)
    calls = 3 * 440 * pb.models[0].num_layers * pb.models[0].top_k
    assert res.served == calls == sum(res.calls.values())
    assert res.queueing_share > 0.05                    # the load really makes calls wait
    for r in res.resources:
        if r["capacity"] is not None and r["jobs"]:
            assert r["served_jobs"] == r["jobs"]        # the engine served what the routing asked for
            assert r["served_busy_s"] == pytest.approx(r["busy_s"], rel=1e-9)
            assert 0 < r["utilisation"] <= 1 + 1e-12
    for lat, nom in zip(res.latency_s, res.nominal_s):
        assert (lat >= nom * (1 - 1e-12)).all()        # waiting never makes a token faster
    assert all((w >= 0).all() for w in res.session_wait_s)


def test_calls_go_where_the_evaluator_routes_them():
    pb = random_problem(4, num_users=3, num_servers=3, num_layers=2, num_experts=5, top_k=1)
    x = sl.solve(pb, method="greedy")
    loc, nominal = call_routes(pb, x)
    st = call_stages(pb)
    for m in range(pb.num_users):
        np.testing.assert_array_equal(nominal[m], sl.expert_latency(pb, x, m))
        for (l, e), where in np.ndenumerate(loc[m]):
            if where == DEVICE:
                assert x.device[m][l, e]
            elif where >= 0:
                assert x.server[0][where, l, e]
                assert nominal[m][l, e] == pytest.approx(st.up[m, where] + st.compute[m, where]
                                                         + st.down[m, where], rel=1e-12)
            else:
                assert where == CLOUD
                n0 = st.best_server[m]
                assert nominal[m][l, e] == pytest.approx(st.up[m, n0] + 2 * st.backhaul[m] + 2 * st.backhaul_delay
                                                         + st.cloud_compute[m] + st.down[m, n0], rel=1e-12)


def test_more_load_never_lowers_the_mean():
    pb, x = _loaded()
    for slots in (1, 2):
        means = [simulate(pb, x, tokens=300, token_rate=r, tokens_per_session=16, server_slots=slots,
                          progress=False).mean_s for r in (2, 10, 50, 250, 1250)]
        assert all(b >= a for a, b in zip(means, means[1:])), means
        assert means[-1] > 1.2 * means[0]


def test_offered_load_matches_the_busy_time_of_a_run():
    pb, x = _loaded()
    rate = 20.0
    res = simulate(pb, x, tokens=3000, token_rate=rate, tokens_per_session=16, progress=False)
    load = offered_load(pb, x, rate)
    for r in res.resources:
        if r["kind"] in ("uplink", "downlink", "compute"):
            # busy seconds per simulated second, at the rate the run achieved (sampling noise of 3000 tokens)
            assert r["load"] == pytest.approx(load[r["kind"]][r["server"]] * res.throughput / rate, rel=0.05)


# -- routing traces -------------------------------------------------------------------------------------
def test_trace_round_trip_windows_and_errors(tmp_path):
    tr = load_trace()
    assert tr.model == "tiny-moe" and tr.top_k == 2 and tr.num_layers == 4
    assert RoutingTrace.from_json(tr.to_json()) == tr
    w = tr.window(tr.num_tokens - 2, 5)
    np.testing.assert_array_equal(w[2:], tr.experts[:3])
    with pytest.raises(ValueError, match=r"RoutingTrace.experts\[0, 0\]"):
        RoutingTrace([[[1, 1]]], 4)
    with pytest.raises(ValueError, match="sequence_lengths"):
        RoutingTrace([[[0, 1]], [[1, 2]]], 4, [3])
    bad = tr.to_dict()
    bad["layers"][0] = bad["layers"][0][:-1]
    with pytest.raises(ValueError, match=r"layers\[0\]"):
        RoutingTrace.from_dict(bad)
    with pytest.raises(ValueError, match="no such trace"):
        load_trace("nope")


def test_replaying_the_whole_trace_gives_the_evaluator_exactly():
    tr = load_trace()
    short = RoutingTrace(tr.experts[:600], tr.num_experts, model=tr.model)
    pb = trace_problem(short, num_users=3, num_servers=2)
    x = sl.solve(pb)
    res = simulate(pb, x, FREE, routing="trace", trace=short, tokens=600, progress=False)
    # each user replays all 600 tokens once (from its own offset): the group frequencies are the statistics'
    assert res.mean_s == pytest.approx(sl.average_latency(pb, x), rel=1e-9)
    sampled = simulate(pb, x, FREE, tokens=600, progress=False)
    assert not np.array_equal(np.sort(sampled.latency_s[0]), np.sort(res.latency_s[0]))


def test_trace_must_fit_the_model():
    pb, x = _loaded()
    with pytest.raises(ValueError, match="does not fit model"):
        simulate(pb, x, routing="trace", trace=load_trace(), tokens=100, progress=False)


# -- configuration and CLI ------------------------------------------------------------------------------
@pytest.mark.parametrize("kw, field", [(dict(tokens=0), "tokens"), (dict(token_rate=-1), "token_rate"),
                                       (dict(links="shared"), "links"), (dict(server_slots=0), "server_slots"),
                                       (dict(routing="trace"), "trace"), (dict(batches=1), "batches"),
                                       (dict(queueing="magic"), "queueing"), (dict(max_sessions=1.5), "max_sessions")])
def test_config_names_the_bad_field(kw, field):
    with pytest.raises(ValueError, match=f"SimulationConfig.{field}"):
        SimulationConfig(**kw)


def test_config_replace_and_size_check():
    with pytest.raises(ValueError, match="unknown field"):
        SimulationConfig().replace(slots=3)
    pb, x = _loaded()
    with pytest.raises(ValueError, match="limit"):
        simulate(pb, x, tokens=10**7, progress=False)


def test_cli_simulate_prints_summary_and_writes_csv(tmp_path, capsys):
    pb, x = _loaded()
    p, q = sl.save(pb, tmp_path / "p.json"), sl.save(x, tmp_path / "x.json")
    out = tmp_path / "r.csv"
    assert main(["simulate", "--problem", str(p), "--placement", str(q), "--tokens", "100", "--token-rate", "50",
                 "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "latency     mean" in text and "expected" in text
    rows = list(csv.DictReader(out.open()))
    mean = next(float(r["value"]) for r in rows if r["name"] == "all" and r["metric"] == "mean")
    assert mean == pytest.approx(simulate(pb, x, tokens=100, token_rate=50, progress=False).mean_s, rel=1e-12)
    assert not list(tmp_path.glob(".r.csv.*"))             # no temporary file left behind


@pytest.mark.parametrize("args, msg", [(["--tokens", "0"], "SimulationConfig.tokens"),
                                       (["--placement", "missing.json"], "no such file"),
                                       (["--out", "/nonexistent/dir/r.csv"], "--out"),
                                       (["--trace", "nope"], "no such trace")])
def test_cli_simulate_bad_arguments_exit_2_with_one_line(tmp_path, capsys, args, msg):
    pb, _ = _loaded()
    p = sl.save(pb, tmp_path / "p.json")
    with pytest.raises(SystemExit) as exc:
        main(["simulate", "--problem", str(p), "--no-progress", *args])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and msg in err[0]


# -- verdicts and the load-aware placement ---------------------------------------------------------------
def _row(label, rate, expected, mean, ci=0.1e-3, p99=None):
    return dict(label=label, method=label, token_rate=rate, expected_s=expected * 1e-3, mean_s=mean * 1e-3,
                ci99_s=ci, p99_s=(p99 or mean) * 1e-3)


def test_ranking_reading_both_sides():
    holds = [_row("decomposition", r, 10, 10 + r / 10) for r in (10, 20)] + \
            [_row("none", r, 20, 20 + r / 10) for r in (10, 20)]
    assert ranking_reading(holds) == ("The ranking by expected latency holds at every simulated load, "
                                      "up to 20 tokens/s per user.")
    flips = holds + [_row("decomposition", 40, 10, 30), _row("none", 40, 20, 25)]
    s = ranking_reading(flips)
    assert s.startswith("The ranking by expected latency holds up to 20 tokens/s per user; at 40 tokens/s")
    assert "No edge caching (25.0 ms per token) beats Decomposition" in s and "10.0 ms per token faster" in s
    noise = holds + [_row("decomposition", 40, 10, 25.1, ci=0.2e-3), _row("none", 40, 20, 25.0, ci=0.2e-3)]
    assert "holds at every simulated load" in ranking_reading(noise)     # within the CIs: not a flip


def test_compare_reading_both_sides():
    rows = [_row("load-aware", 10, 11, 11.0), _row("plain", 10, 10, 11.0),
            _row("load-aware", 50, 11, 15.0), _row("plain", 50, 10, 20.0)]
    s = compare_reading(rows, "load-aware", "plain")
    assert s.startswith("Load-aware (M/M/c fixed point) lowers the mean latency at 1 of 2 loads (most at 50 tokens/s per user: "
                        "5.0 ms per token, 25 %)") and "less than the noise at 1" in s
    rows[2]["mean_s"] = 0.030
    assert "raises it at 1 (most at 50 tokens/s per user: +10.0 ms" in compare_reading(rows, "load-aware", "plain")


def test_erlang_c_hand_values():
    assert erlang_c(1, 0.3) == pytest.approx(0.3)
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3)
    assert erlang_c(3, 3.0) == 1.0


def test_load_aware_is_the_plain_placement_at_negligible_load_and_feasible_under_load():
    pb = live_problem("fig7")
    plain = sl.solve(pb)
    light = sl.solve(pb, method="load-aware", token_rate=1e-6)
    assert light == plain and light.method == "load-aware"
    heavy = sl.solve(pb, method="load-aware", token_rate=75.0, iterations=3)
    assert heavy.is_feasible(pb) and 1 <= len(heavy.info["surrogate_s"]) <= 4
    assert heavy.info["surrogate_s"][heavy.info["chosen"]] == min(heavy.info["surrogate_s"])


def test_validation_and_trace_readings_both_sides():
    from slimlib.simulation.study import trace_reading, validation_reading
    assert "agree: the difference (0.50 %) lies inside" in validation_reading(0.1005, 0.001, 0.1)
    assert "differ by 5.00 %, more than" in validation_reading(0.105, 0.001, 0.1)
    a = dict(mean_s=0.010, ci99_s=0.0001, p50_s=0.008, p99_s=0.030, std_s=0.005)
    same = dict(a, mean_s=0.01005)
    assert trace_reading(a, same) == ("Replaying the trace leaves the mean where independent layers put it "
                                      "(10.05 against 10.00 ms per token, within the confidence intervals); "
                                      "the median stays at 8.00 ms, the 99th percentile stays at 30.00 ms, and "
                                      "the standard deviation of a token's latency stays at 5.00 ms.")
    moved = dict(a, mean_s=0.011, p50_s=0.007, p99_s=0.040, std_s=0.006, ci99_s=0.0004)
    s = trace_reading(a, moved)
    assert s.startswith("Replaying the trace raises the mean from 10.00 to 11.00 ms per token")
    assert "the median falls from 8.00 to 7.00 ms, the 99th percentile rises from 30.00 to 40.00 ms" in s
    assert s.endswith("is 4.0 times wider.")


def test_bend_reading_both_sides():
    from slimlib.simulation.study import bend_reading
    rows = [_row("decomposition", 10, 10, 10.5), _row("decomposition", 50, 10, 12.0),
            _row("none", 10, 20, 20.1), _row("none", 50, 20, 20.5)]
    assert bend_reading(rows) == ("The first to lose more than 10 % to waiting is Decomposition + DP (Alg. 2) (at 50 "
                                  "tokens/s per user); No edge caching never does in the simulated range.")
    rows[3]["mean_s"] = 0.030
    assert bend_reading(rows).endswith("(at 50 tokens/s per user).")
    rows[1]["mean_s"] = rows[3]["mean_s"] = 0.0105
    assert bend_reading(rows).startswith("No placement's mean exceeds its expected latency by 10 %")
