"""The chapter's studies: load sweeps, ranking verdicts, trace replay, the load-aware comparison.

Chapter *A placement in a live network*.  Data functions return lists of
plain row dicts (seconds, tokens/s); verdict functions choose their words from
the numbers (each has a test on both sides of its condition); the draw
functions live in :mod:`slimlib.plotting.simulation`.
"""
from __future__ import annotations

import math
import time
from typing import Mapping, Sequence

import numpy as np

from .. import _validate as V
from ..problem import Placement, Problem
from .config import SimulationConfig
from .engine import simulate
from .result import weighted_quantile

__all__ = ["SWEEP_METHODS", "LIVE_PROBLEMS", "live_problem", "sweep_row", "load_sweep", "ranking_reading",
           "trace_problem", "compare_reading", "validation_reading", "trace_reading", "bend_reading",
           "CDF_LEVELS"]

#: Methods compared under load (chapter *A placement in a live network*).
SWEEP_METHODS = ("decomposition", "popularity", "coordinated-popularity", "none")
#: The chapter's two operating points: a Figure 6 problem (K = 1) and a Figure 7 problem (K = 2).
LIVE_PROBLEMS = {"fig6": dict(model="switch-base-64", server_storage_gb=1.5),
                 "fig7": dict(model="moe-llava-phi2-2.7b-4e", server_storage_gb=0.5)}
#: Probability levels at which every sweep row keeps the latency CDF (for the explorer).
CDF_LEVELS = np.linspace(0.0, 1.0, 101)


def live_problem(name: str, seed: int = 0) -> Problem:
    """One of :data:`LIVE_PROBLEMS`, built by :func:`slimlib.experiments.experiment_problem` (Table 1 network)."""
    from ..experiments import experiment_problem
    if name not in LIVE_PROBLEMS:
        raise V.fail("problem", name, f"unknown; known: {sorted(LIVE_PROBLEMS)}")
    spec = dict(LIVE_PROBLEMS[name])
    problem, _ = experiment_problem(spec.pop("model"), seed=seed, **spec)
    return problem


def sweep_row(problem: Problem, placement: Placement, config: SimulationConfig, **labels) -> dict:
    """Simulate once and keep the numbers a sweep needs (seconds; CPU time of the run).

    Returns
    -------
    dict
        ``labels`` plus ``method``, ``token_rate``, ``expected_s``, ``mean_s``,
        ``ci99_s``, ``p50_s``, ``p95_s``, ``p99_s``, ``std_s`` (standard
        deviation of a token's latency), ``queueing_share``,
        ``utilisation`` (of the busiest shared stage), ``busiest``,
        ``throughput`` (tokens/s per user), ``cdf_s`` (latency at
        :data:`~slimlib.simulation.study.CDF_LEVELS`), ``calls``, ``cpu_s``.
    """
    cpu = time.process_time()
    res = simulate(problem, placement, config, progress=False)
    lat, w = res._token_weights()
    b = res.busiest()
    return dict(labels, method=placement.method, token_rate=config.token_rate, expected_s=res.expected_s,
                mean_s=res.mean_s, ci99_s=res.ci_s(0.99), p50_s=res.quantile_s(0.5), p95_s=res.quantile_s(0.95),
                p99_s=res.quantile_s(0.99), std_s=float(np.sqrt(np.average((lat - res.mean_s) ** 2, weights=w))),
                queueing_share=res.queueing_share,
                utilisation=b.get("utilisation", math.nan), busiest=b.get("stage", ""),
                throughput=res.throughput, cdf_s=weighted_quantile(lat, w, CDF_LEVELS), calls=res.served,
                cpu_s=time.process_time() - cpu)


def load_sweep(problem: Problem, token_rates: Sequence[float], *, methods: Sequence[str] = SWEEP_METHODS,
               placements: Mapping[str, Placement] | None = None, config: SimulationConfig | None = None,
               n_jobs: int = 1, progress: bool | None = None, **labels) -> list[dict]:
    """Mean and tail latency of several placements against the offered load.

    Every method's placement is solved once (or taken from ``placements``) and
    simulated at every token rate with the same seed, so the routing and the
    session arrivals are common random numbers across the sweep.

    Parameters
    ----------
    problem : Problem
    token_rates : sequence of float
        Offered tokens/s per user.
    methods : sequence of str
        Names for :func:`slimlib.solve` (ignored for those in ``placements``).
    placements : mapping of str to Placement, optional
        Placements to use instead of solving (keyed by a label).
    config : slimlib.simulation.config.SimulationConfig, optional
        Everything but ``token_rate``.
    n_jobs : int
        Parallel runs (joblib processes; 1 = in this process).
    progress : bool, optional
        tqdm bar over runs.
    **labels
        Written into every row (e.g. ``problem="fig7"``).

    Returns
    -------
    list of dict
        One :func:`~slimlib.simulation.study.sweep_row` per (placement, token rate), in method order.
    """
    from ..solvers import solve
    cfg = SimulationConfig() if config is None else config
    rates = [float(V.number("token_rates[]", r, positive=True)) for r in token_rates]
    if not rates:
        raise V.fail("token_rates", token_rates, "needs at least one rate")
    pls = dict(placements) if placements is not None else {m: solve(problem, method=m) for m in methods}
    jobs = [(label, pl, cfg.replace(token_rate=r)) for label, pl in pls.items() for r in rates]
    n_jobs = V.number("n_jobs", n_jobs, integer=True, positive=True)
    from tqdm.auto import tqdm

    from ..activations import _show_progress
    if n_jobs == 1:
        rows = [sweep_row(problem, pl, c, **labels) for _, pl, c in
                tqdm(jobs, desc="load sweep", unit="run", disable=not _show_progress(progress))]
    else:
        from joblib import Parallel, delayed
        rows = Parallel(n_jobs=n_jobs)(delayed(sweep_row)(problem, pl, c, **labels) for _, pl, c in jobs)
    for (label, _, _), row in zip(jobs, rows):
        row["label"] = label
    return rows


def _name(method: str) -> str:
    from ..plotting import series_style
    return series_style(method).get("label", method)


def ranking_reading(rows: Sequence[dict], *, what: str = "the ranking", label: str = "label") -> str:
    """Where the ranking by expected latency holds under load, and where it flips — in words.

    At each token rate, a pair of placements *flips* when the one with the
    lower expected latency has a simulated mean higher than the other's by
    more than the sum of their 99 % confidence half-widths (smaller
    differences are not counted either way).

    Parameters
    ----------
    rows : sequence of dict
        :func:`~slimlib.simulation.study.load_sweep` rows of one problem (keys ``token_rate``,
        ``expected_s``, ``mean_s``, ``ci99_s`` and ``label``).
    what : str
        Subject of the sentence.
    label : str
        Row key naming the placement.

    Returns
    -------
    str
        One or two sentences with the rates (tokens/s per user) and latencies (ms per token).
    """
    rates = sorted({r["token_rate"] for r in rows})
    if not rates:
        raise V.fail("rows", rows, "no rows")
    first_flip = None
    for rate in rates:
        at = [r for r in rows if r["token_rate"] == rate]
        flips = []
        for a in at:
            for b in at:
                if a["expected_s"] < b["expected_s"] and a["mean_s"] - b["mean_s"] > a["ci99_s"] + b["ci99_s"]:
                    flips.append((a["mean_s"] - b["mean_s"], a, b))
        if flips:
            first_flip = (rate, max(flips, key=lambda f: f[0]))
            break
    if first_flip is None:
        return (f"{what.capitalize()} by expected latency holds at every simulated load, up to "
                f"{rates[-1]:g} tokens/s per user.")
    rate, (_, a, b) = first_flip
    held = [r for r in rates if r < rate]
    lead = (f"{what.capitalize()} by expected latency holds up to {held[-1]:g} tokens/s per user; at "
            if held else f"{what.capitalize()} by expected latency already fails at the lightest load, ")
    return (f"{lead}{rate:g} tokens/s per user it flips: {_name(b[label])} ({b['mean_s'] * 1e3:.1f} ms per token) "
            f"beats {_name(a[label])} ({a['mean_s'] * 1e3:.1f} ms), which is "
            f"{(b['expected_s'] - a['expected_s']) * 1e3:.1f} ms per token faster in expectation.")


def bend_reading(rows: Sequence[dict], *, threshold: float = 0.10) -> str:
    """Which placement loses ``threshold`` of its expected latency to waiting first, and which last.

    A placement *bends* at the lowest simulated load at which its mean
    exceeds its expected latency by more than ``threshold`` (relative).

    Returns
    -------
    str
        One sentence naming the loads (tokens/s per user).
    """
    first = {}
    for r in sorted(rows, key=lambda r: r["token_rate"]):
        if r["label"] not in first:
            first[r["label"]] = None
        if first[r["label"]] is None and r["mean_s"] > (1 + threshold) * r["expected_s"]:
            first[r["label"]] = r["token_rate"]
    pct = f"{100 * threshold:.0f} %"
    bent = sorted((v, k) for k, v in first.items() if v is not None)
    never = [k for k, v in first.items() if v is None]
    if not bent:
        return f"No placement's mean exceeds its expected latency by {pct} at any simulated load."
    early = [k for v, k in bent if v == bent[0][0]]
    out = (f"The first to lose more than {pct} to waiting {'is' if len(early) == 1 else 'are'} "
           f"{' and '.join(_name(k) for k in early)} (at {bent[0][0]:g} tokens/s per user)")
    if never:
        out += (f"; {' and '.join(_name(k) for k in never)} never {'does' if len(never) == 1 else 'do'} "
                "in the simulated range.")
    elif bent[-1][0] > bent[0][0]:
        late = [k for v, k in bent if v == bent[-1][0]]
        out += (f"; the last {'is' if len(late) == 1 else 'are'} {' and '.join(_name(k) for k in late)} "
                f"(at {bent[-1][0]:g} tokens/s per user).")
    else:
        out += "."
    return out


def compare_reading(rows: Sequence[dict], new: str, old: str, *, stat: str = "mean_s") -> str:
    """Compare two placements across loads in words (e.g. the load-aware one against the plain one).

    A difference counts when it exceeds the sum of the 99 % half-widths for
    the mean (``stat="mean_s"``), and 1 % for a quantile.

    Parameters
    ----------
    rows : sequence of dict
        :func:`~slimlib.simulation.study.load_sweep` rows holding both labels.
    new, old : str
        The two labels.
    stat : str
        ``"mean_s"`` or a quantile key (``"p99_s"``).

    Returns
    -------
    str
    """
    word = {"mean_s": "mean", "p50_s": "median", "p95_s": "p95", "p99_s": "p99"}.get(stat, stat)
    by = {}
    for r in rows:
        by.setdefault(r["token_rate"], {})[r["label"]] = r
    better, worse, same = [], [], []
    for rate in sorted(by):
        if new not in by[rate] or old not in by[rate]:
            continue
        a, b = by[rate][new], by[rate][old]
        tol = a["ci99_s"] + b["ci99_s"] if stat == "mean_s" else 0.01 * b[stat]
        d = a[stat] - b[stat]
        (better if d < -tol else worse if d > tol else same).append((rate, d, b[stat]))
    if not (better or worse or same):
        raise V.fail("rows", new, f"no token rate has both {new!r} and {old!r}")
    parts = []
    if better:
        rate, d, ref = min(better, key=lambda x: x[1] / x[2])
        parts.append(f"lowers the {word} latency at {len(better)} of {len(better) + len(worse) + len(same)} loads "
                     f"(most at {rate:g} tokens/s per user: {-d * 1e3:.1f} ms per token, {-100 * d / ref:.0f} %)")
    if worse:
        rate, d, ref = max(worse, key=lambda x: x[1] / x[2])
        parts.append(f"raises it at {len(worse)} (most at {rate:g} tokens/s per user: +{d * 1e3:.1f} ms, "
                     f"+{100 * d / ref:.0f} %)")
    if same:
        parts.append(f"changes it by less than the noise at {len(same)}")
    return f"{_name(new)} " + "; ".join(parts) + "."


def validation_reading(mean_s: float, ci_s: float, expected_s: float) -> str:
    """Does the simulated mean agree with the expected latency?  In words, with the numbers (ms per token).

    Agreement means ``|mean - expected| <= ci`` (the 99 % half-width).
    """
    d = mean_s - expected_s
    rel = 100 * abs(d) / expected_s
    head = (f"the simulated mean, {mean_s * 1e3:.3f} ± {ci_s * 1e3:.3f} ms per token (99 % CI), "
            f"and the expected latency, {expected_s * 1e3:.3f} ms")
    if abs(d) <= ci_s:
        return f"{head}, agree: the difference ({rel:.2f} %) lies inside the confidence interval."
    return f"{head}, differ by {rel:.2f} %, more than the confidence interval allows."


def trace_reading(sampled: dict, replayed: dict) -> str:
    """What replaying the trace changes against independent layers (rows of :func:`~slimlib.simulation.study.sweep_row`), in words.

    The means count as equal when they differ by less than the sum of their
    99 % half-widths; a quantile when it moves by less than 1 %.
    """
    dm = replayed["mean_s"] - sampled["mean_s"]
    if abs(dm) <= sampled["ci99_s"] + replayed["ci99_s"]:
        first = (f"Replaying the trace leaves the mean where independent layers put it "
                 f"({replayed['mean_s'] * 1e3:.2f} against {sampled['mean_s'] * 1e3:.2f} ms per token, "
                 f"within the confidence intervals)")
    else:
        first = (f"Replaying the trace {'raises' if dm > 0 else 'lowers'} the mean from "
                 f"{sampled['mean_s'] * 1e3:.2f} to {replayed['mean_s'] * 1e3:.2f} ms per token")
    parts = []
    for key, word in (("p50_s", "median"), ("p99_s", "99th percentile"),
                      ("std_s", "standard deviation of a token's latency")):
        a, b = sampled[key], replayed[key]
        if abs(b - a) <= 0.01 * a:
            parts.append(f"the {word} stays at {b * 1e3:.2f} ms")
        else:
            parts.append(f"the {word} {'rises' if b > a else 'falls'} from {a * 1e3:.2f} to {b * 1e3:.2f} ms")
    ratio = replayed["ci99_s"] / sampled["ci99_s"] if sampled["ci99_s"] > 0 else math.nan
    tail = ""
    if ratio > 1.5:
        tail = (f" Consecutive tokens are correlated in the trace: the confidence interval of the mean, "
                f"computed from batches of consecutive tokens, is {ratio:.1f} times wider.")
    return f"{first}; {parts[0]}, {parts[1]}, and {parts[2]}.{tail}"


def trace_problem(trace=None, *, server_experts: int = 2, device_experts: int = 2, num_users: int | None = None,
                  num_servers: int | None = None, seed: int = 0) -> Problem:
    """The tiny MoE in a Table 1 network, with the statistics of its routing trace.

    Every user's statistics are ``trace.to_stats()``, so sampling groups
    from them and replaying the trace give the same per-layer group
    frequencies; only the correlation across layers and tokens differs.
    Capacities are counted in tiny experts (a Table 1 device would hold the
    whole tiny model).

    Parameters
    ----------
    trace : RoutingTrace, optional
        Default: the shipped :data:`slimlib.trace.TINY_TRACE`.
    server_experts, device_experts : int
        Experts each server / device can hold.
    num_users, num_servers : int, optional
        Default Table 1.
    seed : int
        Draws the network.
    """
    from ..io import load_model_card, load_parameters
    from ..trace import load_trace
    tr = load_trace() if trace is None else trace
    model = load_model_card(tr.model) if tr.model else None
    if model is None or (model.num_layers, model.num_experts, model.top_k) != (tr.num_layers, tr.num_experts,
                                                                               tr.top_k):
        raise V.fail("trace", tr, "needs the model card of its model in data/models")
    eb = model.expert_bytes
    params = load_parameters().replace(
        server_capacity_bytes=V.number("server_experts", server_experts, integer=True, nonneg=True) * eb,
        device_capacity_bytes=V.number("device_experts", device_experts, integer=True, nonneg=True) * eb)
    return Problem.build(model, tr.to_stats(), params, num_users=num_users, num_servers=num_servers, seed=seed,
                         name=f"{model.name}-trace")
