"""Measurements used by the chapters (not optimisers): greedy traces and ratios, stage tables and comparisons.

Chapters *Greedy for K = 1* (the worked example's trace, the ratio study,
the Top-2 counterexample), *Successive decomposition*, *Max-plus
convolution* and *Experiments*.  The optimisers themselves live in :mod:`slimlib.solvers`.
"""
from __future__ import annotations

import math
import time
from typing import Sequence

import numpy as np

from . import _validate as V
from .latency import average_latency, call_latency, expert_latency, group_latency, latency_reduction
from .problem import Placement, Problem
from .solvers.decomposition import server_order
from .solvers.gains import layer_gains
from .solvers.greedy_run import run_greedy
from .solvers.knapsack import MAX_UNITS, combine_accelerated, combine_dp, dp_unit
from .solvers.pairs import PairModel

__all__ = ["greedy_trace", "k2_counterexample", "study_problem", "ratio_study", "random_stage_tables",
           "stage_table_study", "exhaustive_stage", "compare_placements", "stage_comparison"]


def random_stage_tables(rng, *, num_items=(4, 16), max_choices: int = 8, sizes=(1, 4), concave_share: float = 0.3):
    """A random stage: per-item gains ``h_k``, integer sizes and a capacity (chapter *Max-plus convolution*).

    Each ``h_k`` has ``1..max_choices`` random non-negative increments (sorted
    decreasingly, i.e. concave, with probability ``concave_share``); sizes are
    uniform integers in ``sizes``; the capacity is uniform between 10 % and
    60 % of what caching everything would need.

    Returns
    -------
    (list of ndarray, ndarray of int, int)
        ``h_list``, ``sizes``, ``capacity``.
    """
    rng = np.random.default_rng(rng)
    J = int(rng.integers(num_items[0], num_items[1] + 1))
    hs, sz = [], []
    for _ in range(J):
        inc = rng.exponential(1.0, int(rng.integers(1, max_choices + 1))) * rng.exponential(1.0)
        if rng.random() < concave_share:
            inc = np.sort(inc)[::-1]
        hs.append(np.concatenate([[0.0], np.cumsum(inc)]))
        sz.append(int(rng.integers(sizes[0], sizes[1] + 1)))
    sz = np.array(sz)
    full = int(sum((len(h) - 1) * s for h, s in zip(hs, sz)))
    cap = int(rng.integers(max(1, full // 10), max(2, int(0.6 * full)) + 1))
    return hs, sz, cap


def stage_table_study(num: int, eps_values: Sequence[float], *, seed: int = 0) -> dict:
    """Algorithm 3 vs the exact DP on ``num`` random stages (:func:`random_stage_tables`).

    Returns
    -------
    dict
        ``ratios``: eps -> ndarray of value(accelerated) / value(DP) (1 when
        both are 0); ``exact_share``: eps -> fraction of stages needing no
        rounding; ``grid``: eps -> ndarray of the value grid sizes ``V``.
    """
    ratios = {float(e): [] for e in eps_values}
    grids = {float(e): [] for e in eps_values}
    exact = {float(e): [] for e in eps_values}
    for i in range(int(num)):
        hs, sz, cap = random_stage_tables([int(seed), i])
        _, v_dp, _, _ = combine_dp(hs, sz, cap)
        for e in ratios:
            _, v, inf = combine_accelerated(hs, sz.astype(float), float(cap), e)
            ratios[e].append(v / v_dp if v_dp > 0 else 1.0)
            grids[e].append(inf["grid"])
            exact[e].append(inf["exact"])
    return dict(ratios={e: np.array(r) for e, r in ratios.items()},
                grid={e: np.array(g) for e, g in grids.items()},
                exact_share={e: float(np.mean(x)) for e, x in exact.items()})


def exhaustive_stage(problem: Problem, placement: Placement, server: int, *, limit: int = 2 ** 16) -> float:
    """The stage optimum by brute force, scored by the evaluator (check of chapter *Successive decomposition*).

    Tries every set of (model, layer, expert) columns that fits in server
    ``n``'s storage, with the other servers' caches of ``placement`` fixed, and
    returns the largest increase of :func:`slimlib.latency_reduction`
    (weighted seconds, like ``StageResult.value``).

    Raises ValueError when there are more than ``limit`` candidate sets.
    """
    base = placement.copy()
    for x in base.server:
        x[server] = False
    r0 = latency_reduction(problem, base)
    cols = [(u, l, e) for u, m in enumerate(problem.models) for l in range(m.num_layers)
            for e in range(m.num_experts)]
    if 2 ** len(cols) > limit:
        raise V.fail("problem", f"{len(cols)} columns", f"exhaustive stage search is limited to {limit} sets")
    Q = float(problem.network.server_capacity_bytes[server])
    best = 0.0
    for mask in range(1, 2 ** len(cols)):
        chosen = [cols[i] for i in range(len(cols)) if mask >> i & 1]
        if sum(problem.models[u].expert_bytes for u, _, _ in chosen) > Q * (1 + 1e-12):
            continue
        trial = base.copy()
        for u, l, e in chosen:
            trial.server[u][server, l, e] = True
        best = max(best, latency_reduction(problem, trial) - r0)
    return best



def compare_placements(problem: Problem, a: Placement, b: Placement) -> dict:
    """Where two placements differ, layer by layer (to explain a comparison; chapter *Experiments*, Figs. 6-7).

    Both are scored by the one evaluator; each layer's share of the average
    latency is ``sum_m w_m sum_G P_{m,l}(G) tau_m(l, G) / sum_m w_m`` (the
    terms of :func:`slimlib.average_latency`, grouped by layer).

    Parameters
    ----------
    problem : Problem
    a, b : Placement

    Returns
    -------
    dict
        ``latency_a``, ``latency_b`` (s); ``layer_a``, ``layer_b``: per model
        an ndarray ``(L_u,)`` of each layer's share (s; sums to the latency);
        ``edge_a``, ``edge_b``: per model an ndarray ``(L_u,)`` of distinct
        experts of each layer cached on some server; ``only_a``/``only_b``:
        (model, layer, expert) cached at the edge by one placement only;
        ``moved``: cached by both but not on the same servers; ``worst``:
        (model, layer) where ``a`` is slower than ``b`` by most, with
        ``worst_delta`` (s, positive when ``a`` is slower there) and ``rest_delta``
        (s, the difference ``a - b`` over all other layers).
    """
    a.check(problem)
    b.check(problem)
    calls = call_latency(problem)
    w = problem.network.user_weight
    out: dict = {}
    for tag, pl in (("a", a), ("b", b)):
        lay = [np.zeros(m.num_layers) for m in problem.models]
        for m, st in enumerate(problem.stats):
            u = problem.user_model[m]
            tau = expert_latency(problem, pl, m, calls=calls)
            g = group_latency(tau, st.group_layer, st.group_experts) * st.group_prob
            lay[u] += w[m] * np.bincount(st.group_layer, weights=g, minlength=problem.models[u].num_layers)
        out[f"layer_{tag}"] = [x / float(w.sum()) for x in lay]
        out[f"latency_{tag}"] = average_latency(problem, pl)
        out[f"edge_{tag}"] = [x.any(axis=0).sum(axis=1) for x in pl.server]
    ea = np.concatenate([x.any(axis=0).ravel() for x in a.server])
    eb = np.concatenate([x.any(axis=0).ravel() for x in b.server])
    xa = np.concatenate([x.reshape(x.shape[0], -1) for x in a.server], axis=1)
    xb = np.concatenate([x.reshape(x.shape[0], -1) for x in b.server], axis=1)
    out.update(only_a=int((ea & ~eb).sum()), only_b=int((eb & ~ea).sum()),
               moved=int((ea & eb & (xa != xb).any(axis=0)).sum()))
    diff = [(float(la[l] - lb[l]), u, l) for u, (la, lb) in enumerate(zip(out["layer_a"], out["layer_b"]))
            for l in range(len(la))]
    d, u, l = max(diff)
    out.update(worst=(u, l), worst_delta=d, rest_delta=float(sum(x for x, *_ in diff) - d))
    return out


def stage_comparison(problem: Problem, eps_values: Sequence[float], *, order="latency", unit=None,
                     max_units: int = MAX_UNITS, repeat: int = 1) -> list[dict]:
    """Exact DP vs accelerated combination on the same stages (chapter *Max-plus convolution*).

    Follows Algorithm 2's stages; at each stage the per-layer gains are
    computed once and combined by :func:`slimlib.solvers.knapsack.combine_dp` (unit from
    :func:`slimlib.solvers.knapsack.dp_unit`) and by :func:`slimlib.solvers.knapsack.combine_accelerated` for each ``eps``.

    Returns
    -------
    list of dict
        One row per (stage, combination): ``server``, ``combine``
        (``"dp"`` or ``"accelerated"``), ``eps`` (NaN for the DP), ``value``
        (weighted seconds), ``ratio`` (to the DP's value; 1 when both are 0),
        ``time_s`` (best of ``repeat`` runs of the combination step alone),
        ``grid`` (value grid size ``V`` or capacity units), ``rounded``
        (the accelerated combination needed the value grid, i.e. was not
        solved exactly by merging alone).
    """
    placement = Placement.empty(problem)
    calls = call_latency(problem)
    rows = []
    for n in server_order(problem, order):
        items = layer_gains(problem, placement, n, calls=calls)
        Q = float(problem.network.server_capacity_bytes[n])
        sizes = np.array([it.size_bytes for it in items])
        hs = [it.h for it in items]
        u_bytes, _ = dp_unit(sizes if len(items) else [problem.models[0].expert_bytes], Q, unit, max_units)
        su = np.maximum(1, np.ceil(sizes / u_bytes - 1e-9)).astype(np.int64)
        qu = int(math.floor(Q / u_bytes + 1e-9))
        best = np.inf
        for _ in range(repeat):
            t = time.perf_counter()
            counts, v_dp, _, _ = combine_dp(hs, su, qu)
            best = min(best, time.perf_counter() - t)
        rows.append(dict(server=n, combine="dp", eps=float("nan"), value=v_dp, ratio=1.0, time_s=best, grid=qu,
                         rounded=False))
        for e in eps_values:
            best = np.inf
            for _ in range(repeat):
                t = time.perf_counter()
                _, v, inf = combine_accelerated(hs, sizes, Q, e)
                best = min(best, time.perf_counter() - t)
            rows.append(dict(server=n, combine="accelerated", eps=float(e), value=v,
                             ratio=v / v_dp if v_dp > 0 else 1.0, time_s=best, grid=inf["grid"],
                             rounded=not inf["exact"]))
        for it, c in zip(items, counts):
            placement.server[it.model][n, it.layer, it.sets[int(c)]] = True
    return rows


# -- chapter *Greedy for K = 1* -------------------------------------------------------
def greedy_trace(problem: Problem, *, blind: bool = False) -> tuple[PairModel, list[dict]]:
    """Every step of the plain density greedy, for the worked example.

    Chapter *Greedy for K = 1*, section "A worked example".

    Returns
    -------
    pm : PairModel
    steps : list of dict
        Step ``s`` (0-based, before the ``s``-th addition): ``gains`` ``(C, N)``
        marginal savings (s), ``fits`` ``(C, N)`` bool, ``pick`` ``(n, c)`` or
        ``None`` when the greedy stops, ``gain``, ``density`` (s per byte),
        ``x`` ``(C, N)`` pairs cached so far, ``value`` (reduction so far, s).
    """
    pm = PairModel(problem, blind=blind)
    run = run_greedy(pm, None, "naive", record=True)
    for st in run.trace:
        st["value"] = pm.value(st["cur"])
    return pm, run.trace


def k2_counterexample(q: float = 0.2, *, capacity: int = 2) -> Problem:
    """The smallest instance on which the natural greedy fails for ``K = 2``.

    Chapter *Greedy for K = 1*, section "Why not for K >= 2".  One user, one
    server with room for ``capacity`` experts, one layer of ``E = 4`` experts,
    Top-2 groups ``{0, 1}`` with probability ``q`` and ``{2, 3}`` with
    probability ``1 - q``; the device holds expert 0.  Caching 1 alone saves
    ``q (t_cloud - t_edge)``; caching 2 or 3 alone saves nothing (its partner
    still comes from the cloud), but caching both saves ``(1 - q)(t_cloud - t_edge)``.

    Parameters
    ----------
    q : float in (0, 1)
        Probability of the group ``{0, 1}``.
    capacity : int
        Server storage in experts.
    """
    from .model import MoEModel
    from .network import Network
    from .stats import ActivationStats
    q = V.number("q", q, minimum=1e-9, maximum=1 - 1e-9)
    capacity = V.number("capacity", capacity, integer=True, nonneg=True)
    mod = MoEModel("toy-top2", 1, 4, 2, hidden_size=1000, params_per_expert=10**6, bytes_per_param=1, act_bytes=1)
    stats = ActivationStats(4, 2, [[[0, 1], [2, 3]]], probs=[[q, 1 - q]], model="toy-top2",
                            provenance={"source": "synthetic", "generator": "k2_counterexample"})
    net = Network(server_capacity_bytes=[capacity * mod.expert_bytes], server_flops=[20e12],
                  user_capacity_bytes=[mod.expert_bytes], user_flops=[1e12], rate_up=[[20e6]], rate_down=[[40e6]],
                  backhaul_rate_bps=1e9, backhaul_delay_s=5e-3, cloud_flops=100e12)
    y = np.zeros((1, 4), bool)
    y[0, 0] = True
    return Problem(mod, net, stats, device_cache=[y], name=f"k2-counterexample-q{q:g}")


def study_problem(seed: int, *, top_k: int = 1, mixed: bool = False, single_server: bool = False) -> Problem:
    """One random instance of the ratio study of chapter *Greedy for K = 1*.

    Small enough for the exact MILP in tens of milliseconds: 1–3 users, 2–3
    servers (1 with ``single_server``), 1–2 layers of 3–4 experts; equal expert
    sizes and 1–4 slots per server, or (``mixed``) two models with experts of 1
    and 2 units and 1–6 units per server.
    """
    from .instances import random_mixed_problem, random_problem
    rng = np.random.default_rng([int(seed), int(top_k), int(mixed), int(single_server)])
    kw = dict(num_users=int(rng.integers(1, 4)), num_servers=1 if single_server else int(rng.integers(2, 4)),
              num_layers=int(rng.integers(1, 3)), num_experts=int(rng.integers(max(3, top_k), 5)), top_k=top_k,
              weights=True)
    if mixed:
        kw["num_users"] = max(kw["num_users"], 2)
        return random_mixed_problem(rng, sizes=(1, 2), server_units=(1, 6), **kw)
    return random_problem(rng, server_slots=(1, 4), **kw)


def ratio_study(num_problems: int = 100, *, variants=None, top_k: int = 1, mixed: bool = False,
                single_server: bool = False, seed: int = 0, progress: bool = False) -> dict:
    """Latency reduction of greedy variants as a fraction of the exact optimum.

    Chapter *Greedy for K = 1*, section "Measured ratios".  Every instance
    comes from :func:`study_problem`; the optimum is the MILP (``"exact"``);
    instances where the optimum saves nothing are skipped.

    Parameters
    ----------
    num_problems : int
    variants : dict of str to (method, options), optional
        Default: plain density greedy, the default greedy (better of density
        greedy and best single pair) and ``enumeration=1``.
    top_k : int
    mixed, single_server : bool
        Instance family (see :func:`study_problem`).
    seed : int
        First instance seed (instances ``seed .. seed + num_problems - 1``).
    progress : bool
        Show a tqdm bar.

    Returns
    -------
    dict
        ``ratios``: variant -> ndarray ``R(variant) / R(opt)``; ``optimum_s``:
        ndarray of ``R(opt)`` (s); ``seeds``: the instance seeds used.
    """
    from tqdm.auto import tqdm

    from .solvers import solve
    if variants is None:
        variants = {"plain density greedy": ("greedy", dict(single=False)),
                    "greedy (default)": ("greedy", {}),
                    "greedy, enumeration=1": ("greedy", dict(enumeration=1))}
    out = {k: [] for k in variants}
    opt, seeds = [], []
    for s in tqdm(range(seed, seed + int(num_problems)), disable=not progress, desc="ratio study"):
        p = study_problem(s, top_k=top_k, mixed=mixed, single_server=single_server)
        r_opt = latency_reduction(p, solve(p, "exact"))
        if not r_opt > 0:
            continue
        opt.append(r_opt)
        seeds.append(s)
        for k, (meth, opts) in variants.items():
            out[k].append(latency_reduction(p, solve(p, meth, **opts)) / r_opt)
    return dict(ratios={k: np.array(v) for k, v in out.items()}, optimum_s=np.array(opt), seeds=seeds,
                top_k=top_k, mixed=mixed, single_server=single_server)
