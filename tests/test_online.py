"""Drifting statistics, online estimation and re-caching policies (chapter *When the statistics drift*)."""
from __future__ import annotations

import csv
import itertools
import math

import numpy as np
import pytest

import slimlib as sl
from slimlib.cli import main
from slimlib.drift import drift_profile, drifting_workload, estimate, write_drift_profile
from slimlib.online import POLICIES, adopt, budget_counterexample, budgeted_step, moved_bytes, prepare, run_policy
from slimlib.online_study import (budget_verdict, churn_verdict, recaching_verdict, slower_verdict,
                                  window_verdict)
from slimlib.synthetic import user_stats

MODEL = "moe-llava-phi2-2.7b-4e"


@pytest.fixture(scope="module")
def problem():
    mod = sl.load_model_card(MODEL)
    users = user_stats(sl.load_stats(f"{MODEL}-synthetic"), 3, seed=0, tokens_per_user=None)
    params = sl.load_parameters().replace(server_capacity_bytes=4 * mod.expert_bytes)
    return sl.Problem.build(mod, users, params, num_users=3, num_servers=2, seed=0)


@pytest.fixture(scope="module")
def switch_ctx(problem):
    wl = drifting_workload(problem, drift_profile(), kind="switch", periods=10, start=3, tokens=300, seed=0)
    return prepare(problem, wl, estimate(wl, window=2))


def test_shipped_drift_profile_is_the_seeded_generator_output(tmp_path):
    (tmp_path / "stats").mkdir()
    path = write_drift_profile(tmp_path)
    shipped = sl.data_dir() / "stats" / path.name
    assert path.read_bytes() == shipped.read_bytes()
    assert drift_profile().provenance["seed"] == 1


def test_workload_mixes_profiles_as_scheduled(problem):
    to = drift_profile()
    sw = drifting_workload(problem, to, kind="switch", periods=8, start=3, sampling=False)
    gr = drifting_workload(problem, to, kind="gradual", periods=8, start=3, duration=4, sampling=False)
    assert sw.mix().tolist() == [0, 0, 0, 1, 1, 1, 1, 1]
    assert np.allclose(gr.mix(), [0, 0, 0, 0.25, 0.5, 0.75, 1, 1])
    for wl in (sw, gr):
        for l in range(wl.num_layers):                        # a distribution per user, layer and period
            assert np.allclose(wl.truth[:, :, wl.group_layer == l].sum(axis=2), 1.0)
        assert np.allclose(wl.counts.sum(axis=2), wl.tokens * wl.num_layers)
    # period 0 is the problem's own statistics; after the switch, every user's variant of the new profile
    for m in range(problem.num_users):
        assert sw.stats(0)[m].marginals() == pytest.approx(problem.stats[m].marginals(), abs=1e-12)
    assert np.allclose(sw.truth[5], sw.truth[7]) and np.abs(sw.truth[5] - sw.truth[0]).sum() > 1
    # the mid-ramp truth is the average of both ends
    assert np.allclose(gr.truth[4], 0.5 * (gr.truth[0] + gr.truth[7]))
    with pytest.raises(ValueError, match="kind"):
        drifting_workload(problem, to, kind="sudden")
    with pytest.raises(ValueError, match="to"):
        drifting_workload(problem, sl.load_stats("tiny-moe-measured"))


def test_stagger_delays_each_user_by_at_most_stagger_periods(problem):
    wl = drifting_workload(problem, drift_profile(), kind="switch", periods=12, start=3, stagger=4, seed=2)
    first = (wl.weights[:, :, 1] > 0.5).argmax(axis=0)
    assert np.all((first >= 3) & (first <= 7))


def test_estimator_converges_on_a_stationary_stream(problem):
    wl = drifting_workload(problem, drift_profile(), kind="none", periods=40, tokens=200, seed=1)
    uniform = np.zeros_like(wl.offline)
    for l in range(wl.num_layers):
        sel = wl.group_layer == l
        uniform[:, sel] = 1.0 / sel.sum()
    late = slice(32, 40)
    err = [estimate(wl, window=w, prior=uniform, prior_tokens=20).error[late].mean() for w in (1, 4, 16, 32)]
    assert all(a > b for a, b in zip(err, err[1:])), err
    assert err[-1] < 0.02
    # the error of the window W = 1 is what 200 tokens allow, far above W = 32
    assert err[0] > 2.5 * err[-1]
    fg = [estimate(wl, forgetting=g, prior=uniform, prior_tokens=20).error[late].mean() for g in (0.3, 0.8, 0.97)]
    assert all(a > b for a, b in zip(fg, fg[1:])), fg
    # period 0 knows the prior alone: its error is the prior's distance to the truth
    tv = np.mean([0.5 * np.abs(uniform[m, wl.group_layer == l] - wl.truth[0, m, wl.group_layer == l]).sum()
                  for m in range(wl.num_users) for l in range(wl.num_layers)])
    assert estimate(wl, window=3, prior=uniform).error[0] == pytest.approx(tv, rel=1e-12) and tv > 0.1
    with pytest.raises(ValueError, match="window"):
        estimate(wl, window=2, forgetting=0.5)


def test_budgeted_scorer_agrees_with_the_evaluator(problem):
    """budgeted_step scores candidates with slimlib.latency.BatchEvaluator: average_latency's numbers."""
    from slimlib.latency import BatchEvaluator
    rng = np.random.default_rng(0)
    score = BatchEvaluator(problem)
    mod = problem.models[0]
    per_server = int(problem.network.server_capacity_bytes[0] // mod.expert_bytes)
    for _ in range(20):
        x = np.zeros((problem.num_servers, mod.num_layers, mod.num_experts), bool)
        for n in range(problem.num_servers):
            x[n].ravel()[rng.choice(x[n].size, per_server, replace=False)] = True
        pl = sl.Placement([x], problem.device_cache)
        assert score([x]) == pytest.approx(sl.average_latency(problem, pl), rel=1e-12)


def test_without_drift_every_policy_keeps_the_initial_latency(problem):
    wl = drifting_workload(problem, drift_profile(), kind="none", periods=6, sampling=False)
    ctx = prepare(problem, wl, estimate(wl, window=2))
    base = sl.average_latency(problem, ctx.initial)
    for policy, b in (("static", 0), ("periodic", math.inf), ("budgeted", 3e8), ("budgeted", math.inf)):
        run = run_policy(ctx, policy, budget_bytes=b)
        assert run.latency_s == pytest.approx(np.full(6, base), rel=1e-9), policy
        assert run.total_bytes == 0


def test_zero_budget_is_static_and_unlimited_budget_is_the_periodic_resolve(switch_ctx):
    static = run_policy(switch_ctx, "static")
    zero = run_policy(switch_ctx, "budgeted", budget_bytes=0)
    assert all(a == b for a, b in zip(static.placements, zero.placements))
    assert np.array_equal(static.latency_s, zero.latency_s) and zero.total_bytes == 0
    periodic = run_policy(switch_ctx, "periodic")
    full = run_policy(switch_ctx, "budgeted", budget_bytes=math.inf)
    assert all(a == b for a, b in zip(periodic.placements, full.placements))
    assert np.array_equal(periodic.latency_s, full.latency_s)
    assert np.array_equal(periodic.moved_bytes, full.moved_bytes) and full.total_bytes > 0
    # the drift is real: re-solving beats the stale placement after the switch
    assert periodic.settled_s[-1] < static.settled_s[-1]


def test_every_placement_is_feasible_and_within_the_budget(problem, switch_ctx):
    size = problem.models[0].expert_bytes
    for b in (size, 2.5 * size, 6 * size):
        run = run_policy(switch_ctx, "budgeted", budget_bytes=b)
        assert np.all(run.moved_bytes <= b + 1e-6)
        for t, x in enumerate(run.placements):
            x.check(switch_ctx.truth[t])
            assert np.array_equal(x.device[0], problem.device_cache[0])
        # the migration time is bytes over the backhaul rate
        assert run.migration_s == pytest.approx(8 * run.moved_bytes / problem.network.backhaul_rate_bps)
    for every in (1, 3):
        run = run_policy(switch_ctx, "periodic", every=every)
        assert all(x.is_feasible(switch_ctx.truth[t]) for t, x in enumerate(run.placements))
        if every == 3:
            assert all(run.moved_bytes[t] == 0 for t in range(10) if t % 3)


def test_budgeted_moves_lower_the_estimated_latency(switch_ctx):
    size = switch_ctx.problem.models[0].expert_bytes
    run = run_policy(switch_ctx, "budgeted", budget_bytes=2 * size)
    greedy = 0
    for t in range(1, 10):
        est = switch_ctx.estimated[t]
        before = sl.average_latency(est, run.placements[t - 1])
        after = sl.average_latency(est, run.placements[t])
        need = moved_bytes(switch_ctx.problem, run.placements[t - 1], switch_ctx.targets[t])
        if need > 2 * size:                                   # the greedy branch (the target does not fit)
            greedy += 1
            assert after < before or run.placements[t] == run.placements[t - 1]
    assert greedy >= 2


def test_budgeted_candidates_scored_in_chunks_give_the_same_step(switch_ctx, monkeypatch):
    """The candidate caches of a server are built a chunk at a time (bounded memory): same moves, same latencies."""
    import slimlib.online as online
    size = switch_ctx.problem.models[0].expert_bytes
    ref = run_policy(switch_ctx, "budgeted", budget_bytes=2 * size)
    per = sum(xs.size for xs in ref.placements[0].server)
    monkeypatch.setattr(online, "VARIANT_BLOCK", per)                  # one candidate at a time
    small = run_policy(switch_ctx, "budgeted", budget_bytes=2 * size)
    assert small.placements == ref.placements
    np.testing.assert_allclose(small.latency_s, ref.latency_s, rtol=1e-12)


def test_migration_phase_is_charged_with_the_old_placement_and_a_shared_backhaul(switch_ctx):
    run = run_policy(switch_ctx, "periodic", period_s=100.0)
    t = int(np.argmax(run.moved_bytes))
    f = run.migration_s[t] / 100.0
    net = switch_ctx.problem.network
    busy = switch_ctx.truth[t].replace(network=net.replace(backhaul_rate_bps=net.backhaul_rate_bps / 2),
                                       device_cache=switch_ctx.problem.device_cache)
    want = f * sl.average_latency(busy, run.placements[t - 1]) + (1 - f) * run.settled_s[t]
    assert 0 < f < 1 and run.latency_s[t] == pytest.approx(want, rel=1e-12)
    with pytest.raises(ValueError, match="period_s"):
        run_policy(switch_ctx, "periodic", period_s=1.0)


def test_adopt_keeps_old_copies_only_where_they_fit(problem):
    mod = problem.models[0]
    x = np.zeros((2, mod.num_layers, mod.num_experts), bool)
    x[0, 0, :2] = True
    target = sl.Placement([x], problem.device_cache)
    old = np.zeros_like(x)
    old[0, 1, :4] = True
    old[1, 2, 0] = True
    out = adopt(problem, sl.Placement([old], problem.device_cache), target)
    assert out.server[0][0, 0, :2].all() and out.server[0][0].sum() == 4 and out.server[0][1, 2, 0]
    assert moved_bytes(problem, sl.Placement([old], problem.device_cache), out) == 2 * mod.expert_bytes


def test_budgeted_greedy_gets_p_over_1_minus_p_of_the_best_move_on_the_counterexample():
    for p in (0.34, 0.4, 0.45):
        prob, cur, target, budget = budget_counterexample(p)
        got = budgeted_step(prob, cur, target, budget)
        assert moved_bytes(prob, cur, got) <= budget
        base = sl.average_latency(prob, cur)
        greedy_gain = base - sl.average_latency(prob, got)
        # brute force: every server content reachable with at most two fetched experts
        best = 0.0
        for keep in itertools.combinations(range(7), 3):
            new = [e for e in keep if e not in (4, 5, 6)]
            if len(new) > 2:
                continue
            x = np.zeros((1, 1, 7), bool)
            x[0, 0, list(keep)] = True
            best = max(best, base - sl.average_latency(prob, sl.Placement([x], cur.device)))
        assert greedy_gain / best == pytest.approx(p / (1 - p), rel=1e-9)
    with pytest.raises(ValueError, match="p"):
        budget_counterexample(0.2)


def test_recaching_verdict_words_follow_the_numbers():
    assert "lowers the average latency from 70.0 ms to 40.0 ms" in recaching_verdict(70, 40, 1.2, 10, "X")
    assert "43 % less" in recaching_verdict(70, 40, 1.2, 10, "X")
    assert "leaves the average latency" in recaching_verdict(70, 69.5, 1.2, 10, "X")
    assert "raises the average latency" in recaching_verdict(70, 72, 1.2, 10, "X")
    assert "moving 1.20 GB" in recaching_verdict(70, 40, 1.2, 10, "X")


def test_budget_verdict_words_follow_the_numbers():
    v = lambda b: budget_verdict(70, 40, b, 1.0, 20.0, 500)  # noqa: E731
    assert "nearly all" in v(41) and "97 %" in v(41)
    assert "most of" in v(50)
    assert "only part" in v(65)
    assert "none of" in v(71)
    assert "more than the periodic" in v(39)
    assert "5 % of its bytes" in v(41)
    assert "nothing to recover" in budget_verdict(40, 40, 40, 0, 1, 100)


def test_slower_churn_and_window_verdicts_follow_the_numbers():
    assert slower_verdict(74.5, 33.0, "A", "B") == "A is 126 % slower than B"
    assert slower_verdict(13.6, 12.9, "A", "B") == "A is 5.4 % slower than B"
    assert slower_verdict(30.0, 33.0, "A", "B") == "A is 9.1 % faster than B"
    assert slower_verdict(33.2, 33.0, "A", "B") == "A is within 1 % of B"
    assert "already moves 9.33 GB" in churn_verdict(9.334, 4) and "4 periods" in churn_verdict(9.334, 4)
    assert "moves nothing" in churn_verdict(0.0, 4)
    assert window_verdict([1, 2, 8], [39.2, 39.7, 43.0]) == (
        "For the periodic re-solve the best window here is W = 1 (39.2 ms per token) and the worst W = 8 "
        "(43.0 ms per token).")
    assert "best window here is W = 8" in window_verdict([1, 8], [44.0, 40.0])
    assert "less than 1 %" in window_verdict([1, 2], [40.0, 40.2])


def _cli_problem(problem, tmp_path):
    return str(sl.save(problem, tmp_path / "p.json"))


def test_cli_online_writes_one_row_per_period(problem, tmp_path, capsys):
    path = _cli_problem(problem, tmp_path)
    out = tmp_path / "out"
    assert main(["online", "--problem", path, "--drift", "switch", "--policy", "budgeted", "--budget-mb", "200",
                 "--periods", "6", "--start", "2", "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out / "online.csv")))
    assert [int(r["period"]) for r in rows] == list(range(6))
    assert all(float(r["moved_mb"]) <= 200 for r in rows)
    assert [float(r["drifted_share"]) for r in rows] == [0, 0, 1, 1, 1, 1]
    text = capsys.readouterr().out
    mean = np.mean([float(r["latency_ms"]) for r in rows])
    assert f"average latency   {mean:.4f} ms" in text
    assert [p.name for p in out.iterdir()] == ["online.csv"]           # no temporary file left behind


@pytest.mark.parametrize("extra, field", [
    (["--policy", "budgeted"], "--budget-mb: required"),
    (["--policy", "budgeted", "--budget-mb", "-1"], "--budget-mb: must be >= 0"),
    (["--policy", "static", "--periods", "1"], "--periods: must be >= 2"),
    (["--policy", "static", "--period-s", "1"], "--period-s: must be >="),
    (["--policy", "static", "--method", "magic"], "--method: unknown method"),
    (["--policy", "static", "--to", "missing.json"], "--to: path: no such file"),
    (["--policy", "sideways"], "argument --policy: invalid choice"),
    (["--policy", "static", "--tokens", "many"], "argument --tokens: invalid int value"),
])
def test_cli_online_rejects_bad_arguments_before_work(problem, tmp_path, capsys, extra, field):
    path = _cli_problem(problem, tmp_path)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        main(["online", "--problem", path, "--drift", "switch", "--out", str(out), *extra])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert field in err and len(err.strip().splitlines()) == 1
    assert not (out / "online.csv").exists()


def test_cli_online_rejects_a_missing_problem_and_mismatched_profile(problem, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["online", "--problem", str(tmp_path / "none.json"), "--drift", "gradual", "--policy", "static",
              "--out", str(tmp_path)])
    assert exc.value.code == 2 and "--problem: path: no such file" in capsys.readouterr().err
    other = sl.save(sl.load_stats("tiny-moe-measured"), tmp_path / "tiny.json")
    with pytest.raises(SystemExit):
        main(["online", "--problem", _cli_problem(problem, tmp_path), "--drift", "gradual", "--policy", "static",
              "--to", str(other), "--out", str(tmp_path / "o")])
    assert "--to: num_layers=4 does not match" in capsys.readouterr().err


def test_study_and_figures_of_the_chapter(problem):
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from slimlib.online_study import drift_study
    from slimlib.plotting import online as oplot
    from slimlib.plotting import series_style
    size = problem.models[0].expert_bytes
    st = drift_study(problem, budgets_mb=(0, size / 1e6, math.inf), budget_mb=2 * size / 1e6, windows=(1, 2),
                     periods=6, start=2, duration=2, tokens=200)
    # the trade-off ends are static (B = 0) and the periodic re-solve (B = inf)
    pts = st.tradeoff("switch")
    assert pts[0][1] == 0 and pts[0][2] == pytest.approx(st.run("switch", "static").mean_latency_s * 1e3)
    assert pts[-1][2] == pytest.approx(st.run("switch", "periodic").mean_latency_s * 1e3)
    assert st.windows[2, "budgeted"] is st.run("switch", "budgeted")
    wl = {k: c.workload for k, c in st.contexts.items()}
    figs = [oplot.draw_drift(wl, {k: c.estimates for k, c in st.contexts.items()}),
            oplot.draw_latency({k: [st.run(k, p) for p in ("static", "periodic", "budgeted")] for k in wl}, wl,
                               budget_mb=st.budget_mb),
            oplot.draw_tradeoff(st), oplot.draw_windows(st), oplot.draw_explorer("gradual", 2 * size / 1e6, study=st)]
    for fig in figs:
        assert fig.legends, "legend outside the axes"
        assert not any(ax.get_legend() for ax in fig.axes)
        plt.close(fig)
    styles = {(s["color"], s["marker"]) for s in map(series_style, POLICIES)}
    assert len(styles) == 3 and len({c for c, _ in styles}) == 3 and len({m for _, m in styles}) == 3
