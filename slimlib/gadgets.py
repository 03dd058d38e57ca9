"""Instances that make the guarantees of the algorithm chapters tight, or break them.

Chapters *Greedy for K = 1* (:prf:ref:`prop-greedy-tight`,
:prf:ref:`prop-greedy-sizes`) and *Successive decomposition*
(:prf:ref:`prop-decomposition-zero`, :prf:ref:`prop-no-split`).  Every
instance is a :class:`~slimlib.Problem` scored by the book's one evaluator;
the tests assert the ratios the propositions state.

* :func:`tight_greedy_instance` — equal sizes, ``K = 1``: greedy and the first
  stage of the decomposition reach about 1/2 of the optimum, seeds of ``d``
  pairs about ``(G + d) / (2G)``.
* :func:`two_size_instance` — two expert sizes, ``K = 1``: Algorithm 1 reaches
  ``max(1/N, (1 + η)/q)`` of the optimum (+ ``d/N`` with seeds).
* :func:`decomposition_zero_instance` — ``K = 2``, two one-slot servers: the
  decomposition (and greedy) reach ``w₁`` of the optimum, for any ``w₁ > 0``.
* :func:`no_split_value`, :func:`no_split_optimum` — the no-split value ``R′``
  and its optimum ``OPT′`` (brute force, small instances).

All gadgets use toy experts of 1 MB (``θ = 8000`` bit per hop, ``φ = 2·10⁶``
FLOP per call at the small size); a link at 8 Mbit/s and a 2 GFLOP/s server give
an edge call of 3 ms, the cloud about 12.016 ms (Table 1 backhaul).
"""
from __future__ import annotations

import itertools
import math

import numpy as np

from . import _validate as V
from .latency import call_latency
from .model import MoEModel
from .network import Network
from .problem import Problem
from .stats import ActivationStats

__all__ = ["tight_greedy_instance", "two_size_instance", "decomposition_zero_instance",
           "no_split_value", "no_split_optimum", "ratio_table", "ratio_markdown",
           "densest_subgraph_instance", "no_split_study", "FAR_RATE_BPS"]

#: Rate of a link that is too slow to help (an edge call of about 16 s, far above the cloud).
FAR_RATE_BPS = 1e3
_NEAR = 8e6          # bit/s: 1 ms per hop for θ = 8000 bit
_FLOPS = 2e9         # FLOP/s: 1 ms per call for φ = 2e6 FLOP


def _model(name: str, experts: int, top_k: int, units: int = 1) -> MoEModel:
    return MoEModel(name, num_layers=1, num_experts=experts, top_k=top_k, hidden_size=1000,
                    params_per_expert=units * 10 ** 6, bytes_per_param=1, act_bytes=1,
                    description="Toy layer of a gadget (chapters Greedy for K = 1 and "
                                "Successive decomposition).")


def _stats(model: MoEModel, groups, probs, generator: str) -> ActivationStats:
    return ActivationStats(model.num_experts, model.top_k, [groups], probs=[probs], model=model.name,
                           provenance={"source": "synthetic", "generator": generator})


def _network(reach: np.ndarray, capacity_bytes, server_flops, weights, user_capacity_bytes=None,
             user_flops=None) -> Network:
    M, N = reach.shape
    rate = np.where(reach, _NEAR, FAR_RATE_BPS)
    return Network(server_capacity_bytes=np.asarray(capacity_bytes, float),
                   server_flops=np.asarray(server_flops, float),
                   user_capacity_bytes=np.zeros(M) if user_capacity_bytes is None else user_capacity_bytes,
                   user_flops=np.full(M, 1e8) if user_flops is None else user_flops,
                   rate_up=rate, rate_down=rate, backhaul_rate_bps=1e9, backhaul_delay_s=5e-3,
                   cloud_flops=100e12, user_weight=np.asarray(weights, float))


def tight_greedy_instance(G: int = 4, *, eta_s: float = 5e-5, eps: float = 0.01) -> Problem:
    """Greedy gets about 1/2 of the optimum with equal sizes and ``K = 1`` (:prf:ref:`prop-greedy-tight`).

    ``2G`` servers with one slot each; for every ``g < G`` a user ``A_g``
    (weight 1) asks for expert ``x_g = 2g`` and reaches server ``2g`` in
    ``t = 3`` ms and server ``2g + 1`` in ``t + η``; a user ``B_g`` (weight
    ``1 − ε``) asks for expert ``y_g = 2g + 1`` and reaches only server ``2g``.
    With ``Δ = t_cloud − t``: greedy (and the first stage of the
    decomposition) caches ``x_g`` on server ``2g``, value ``GΔ``; the optimum
    caches ``x_g`` on ``2g + 1`` and ``y_g`` on ``2g``, value
    ``G((2 − ε)Δ − η)``.

    Parameters
    ----------
    G : int
        Number of gadget copies (``4G`` ground-set pairs per expert … ``2G`` servers, ``2G`` experts).
    eta_s : float
        ``η``, seconds: how much slower server ``2g + 1`` is for ``A_g``.
    eps : float in [0, 1)
        ``ε``: ``B_g`` has weight ``1 − ε``.
    """
    G = V.number("G", G, integer=True, positive=True)
    if G > 16:
        raise V.fail("G", G, "must be <= 16 (2G servers and 2G experts)")
    eta_s = V.number("eta_s", eta_s, minimum=0.0, maximum=1e-3)
    eps = V.number("eps", eps, minimum=0.0, maximum=0.999)
    mod = _model("toy-tight", 2 * G, 1)
    N = 2 * G
    reach = np.zeros((2 * G, N), bool)
    stats = []
    for g in range(G):
        reach[2 * g, [2 * g, 2 * g + 1]] = True      # user A_g
        reach[2 * g + 1, 2 * g] = True               # user B_g
        stats += [_stats(mod, [[2 * g]], [1.0], "tight_greedy_instance"),
                  _stats(mod, [[2 * g + 1]], [1.0], "tight_greedy_instance")]
    phi = mod.flops_per_expert
    flops = np.array([_FLOPS if n % 2 == 0 else phi / (phi / _FLOPS + eta_s) for n in range(N)])
    weights = np.tile([1.0, 1.0 - eps], G)
    net = _network(reach, np.full(N, mod.expert_bytes), flops, weights)
    return Problem(mod, net, stats, name=f"tight-greedy-G{G}")


def two_size_instance(N: int = 6, q: int = 8, *, eta: float = 0.01) -> Problem:
    """Algorithm 1 has no constant factor with two expert sizes (:prf:ref:`prop-greedy-sizes`).

    ``N`` servers of ``q`` units (1 MB each); a small model (experts of 1 unit)
    and a big one (``q`` units), one layer of one expert each.  Users ``a_n``
    (small model) and ``b_n`` (big model) reach only server ``n``; their
    weights make the gains ``(1 + η)Δ_b/q`` and ``Δ_b`` (``Δ_b``: what caching
    the big expert saves ``b_n``).  The density greedy puts the small expert
    on every server first, and then the big one no longer fits.

    Parameters
    ----------
    N : int
        Servers (and pairs of users).
    q : int >= 2
        Big expert size, units; server capacity, units.
    eta : float in [0, q - 1)
        Density margin of the small expert.
    """
    N = V.number("N", N, integer=True, positive=True)
    q = V.number("q", q, integer=True, minimum=2)
    if N > 32 or q > 64:
        raise V.fail("N, q", (N, q), "must be <= 32 and <= 64 (a small gadget)")
    eta = V.number("eta", eta, minimum=0.0, maximum=q - 1.001)
    small, big = _model("toy-small", 1, 1, 1), _model("toy-big", 1, 1, q)
    reach = np.repeat(np.eye(N, dtype=bool), 2, axis=0)              # users a_0, b_0, a_1, b_1, ...
    stats = [_stats(m, [[0]], [1.0], "two_size_instance") for _ in range(N) for m in (small, big)]
    net = _network(reach, np.full(N, q * small.expert_bytes), np.full(N, 1e12), np.ones(2 * N))
    prob = Problem([small, big], net, stats, user_model=np.tile([0, 1], N), name=f"two-sizes-N{N}-q{q}")
    c = call_latency(prob)
    gain = c.cloud - c.edge[np.arange(2 * N), np.repeat(np.arange(N), 2)]   # Δ of each user, s
    w = np.where(np.arange(2 * N) % 2 == 0, (1 + eta) / q * gain[1] / gain[0], 1.0)
    return prob.replace(network=net.replace(user_weight=w), device_cache=prob.device_cache)


def decomposition_zero_instance(w1: float = 0.1) -> Problem:
    """The decomposition gets ``w₁`` of the optimum for ``K = 2`` (:prf:ref:`prop-decomposition-zero`).

    One layer of ``E = 5`` experts, Top-2; two one-slot servers with equal
    latencies (3 ms); user 1 (weight ``w₁``, its device holds expert 4, served
    locally in 1 ms) has groups ``{2, 4}`` (probability 0.6) and ``{3, 4}``
    (0.4); user 2 (weight 1, no device storage) has ``{0, 1}`` with probability
    1.  With ``Δ = t_cloud − t_edge``: every stage sees only user 1's gains
    (``0`` or ``1`` alone gains nothing), so the stages cache 2, then 3:
    ``R = w₁Δ``; caching 0 and 1 on the two servers gives ``OPT = Δ``
    (``w₁ <= 1``).
    """
    w1 = V.number("w1", w1, minimum=1e-9, maximum=1.0)
    mod = _model("toy-zero", 5, 2)
    stats = [_stats(mod, [[2, 4], [3, 4]], [0.6, 0.4], "decomposition_zero_instance"),
             _stats(mod, [[0, 1]], [1.0], "decomposition_zero_instance")]
    reach = np.ones((2, 2), bool)
    net = _network(reach, np.full(2, mod.expert_bytes), np.full(2, _FLOPS), [w1, 1.0],
                   user_capacity_bytes=np.array([mod.expert_bytes, 0.0]),
                   user_flops=np.array([2e9, 1e8]))
    y = [np.zeros((1, 5), bool), np.zeros((1, 5), bool)]
    y[0][0, 4] = True
    return Problem(mod, net, stats, device_cache=y, name=f"decomposition-zero-w{w1:g}")


# -----------------------------------------------------------------------------
# The no-split value R' and its optimum OPT'
# -----------------------------------------------------------------------------
def _request_table(problem: Problem):
    """Per request ``r = (m, l, G)``: weight ``w_m P(G)``, members, base latency, edge latencies."""
    c = call_latency(problem)
    out = []
    for m, st in enumerate(problem.stats):
        u = int(problem.user_model[m])
        y = problem.device_cache[m]
        for l, G, p in zip(st.group_layer, st.group_experts, st.group_prob):
            base = np.where(y[l, G], min(c.local[m], c.cloud[m]), c.cloud[m])     # (K,)
            out.append((u, int(l), np.asarray(G), problem.network.user_weight[m] * float(p), base,
                        c.edge[m]))
    return out


def _request_gain(req, n: int, cached: np.ndarray) -> float:
    """``R_r`` with only server ``n`` caching ``cached[u][l, e]`` (bool arrays per model), seconds."""
    u, l, G, w, base, edge = req
    tau = np.where(cached[u][l, G], np.minimum(base, edge[n]), base)
    return w * (base.max() - tau.max())


def no_split_value(problem: Problem, placement) -> float:
    """``R′(S) = Σ_r max_n R_r(S ∩ 𝒱_n)``, seconds (:prf:ref:`prop-no-split`).

    Each request ``r = (user, layer, group)`` takes its edge gain from one
    server only.  ``R′ <= R``, with equality when ``K = 1`` or ``N = 1``.

    Parameters
    ----------
    problem : Problem
    placement : Placement
    """
    reqs = _request_table(problem)
    total = 0.0
    for req in reqs:
        total += max(_request_gain(req, n, [x[n] for x in placement.server])
                     for n in range(problem.num_servers))
    return total


def no_split_optimum(problem: Problem, *, limit: int = 200_000) -> tuple[float, list]:
    """``OPT′ = max R′`` over feasible placements, by brute force (small instances).

    Enumerates, per server, every set of columns that fits; scores the product
    over servers.  Returns ``(OPT′ in seconds, per-server column sets)``.

    Parameters
    ----------
    problem : Problem
    limit : int
        Refuse (ValueError) above this many candidate placements.
    """
    limit = V.number("limit", limit, integer=True, positive=True)
    cols = [(u, l, e) for u, m in enumerate(problem.models)
            for l in range(m.num_layers) for e in range(m.num_experts)]
    size = np.array([problem.models[u].expert_bytes for u, _, _ in cols])
    cap = problem.network.server_capacity_bytes
    options = []
    total = 1
    for n in range(problem.num_servers):
        sets = [S for k in range(len(cols) + 1) for S in itertools.combinations(range(len(cols)), k)
                if size[list(S)].sum() <= cap[n] * (1 + 1e-12)]
        options.append(sets)
        total *= len(sets)
        if total > limit:
            raise V.fail("no_split_optimum", f"{total}+ candidate placements", f"more than limit={limit}")
    reqs = _request_table(problem)
    # gains[n][i, r]: request r's gain with server n holding its i-th option only
    gains = []
    for n, sets in enumerate(options):
        g = np.zeros((len(sets), len(reqs)))
        for i, S in enumerate(sets):
            cached = [np.zeros((m.num_layers, m.num_experts), bool) for m in problem.models]
            for j in S:
                u, l, e = cols[j]
                cached[u][l, e] = True
            g[i] = [_request_gain(r, n, cached) for r in reqs]
        gains.append(g)
    best, arg = -math.inf, None
    for head in itertools.product(*(range(len(o)) for o in options[:-1])):
        acc = np.zeros(len(reqs))
        for n, i in enumerate(head):
            acc = np.maximum(acc, gains[n][i])
        vals = np.maximum(acc[None], gains[-1]).sum(axis=1)
        k = int(np.argmax(vals))
        if vals[k] > best + 1e-15:
            best, arg = float(vals[k]), head + (k,)
    return best, [[cols[j] for j in options[n][i]] for n, i in enumerate(arg)]


def ratio_table(instances: dict, variants: dict, *, optimum: str = "exact") -> dict:
    """``R(method) / OPT`` of every variant on every instance (chapter tables of the gadgets).

    Parameters
    ----------
    instances : dict of str to Problem
    variants : dict of str to (method, options)
        Passed to :func:`slimlib.solve`; a method that refuses the instance
        (ValueError) gets ``nan``.
    optimum : str
        Method giving ``OPT`` (``"exact"`` or ``"brute-force"``).

    Returns
    -------
    dict
        ``instance name -> variant name -> ratio`` (dimensionless).
    """
    from .latency import latency_reduction
    from .solvers import solve
    out = {}
    for name, p in instances.items():
        opt = latency_reduction(p, solve(p, optimum))
        row = {}
        for v, (method, opts) in variants.items():
            try:
                row[v] = latency_reduction(p, solve(p, method, **opts)) / opt
            except ValueError:
                row[v] = float("nan")
        out[name] = row
    return out


def ratio_markdown(table: dict) -> str:
    """:func:`ratio_table` as a Markdown table, one row per instance, ratios to 3 decimals ("—" for nan)."""
    names = list(next(iter(table.values())))
    head = "| instance | " + " | ".join(names) + " |\n|---|" + "---:|" * len(names)
    rows = ["| " + inst + " | " + " | ".join("—" if v != v else f"{v:.3f}" for v in r.values()) + " |"
            for inst, r in table.items()]
    return "\n".join([head, *rows])


def densest_subgraph_instance(edges, num_vertices: int, capacity: int) -> Problem:
    """Weighted densest-``c``-subgraph as (P1) with ``K = 2`` (:prf:ref:`prop-hardness`).

    One server with room for ``capacity`` experts, one user without device
    storage, one layer of ``num_vertices`` experts; every edge ``{i, j}`` is a
    Top-2 group with probability ``1 / len(edges)``.  Then
    ``R(S) = λ · (edges inside S) / len(edges)`` with ``λ = t_cloud − t_edge``.

    Parameters
    ----------
    edges : sequence of (int, int)
        Distinct pairs of distinct vertices in ``0 .. num_vertices − 1``.
    num_vertices : int in 2 .. 64
    capacity : int in 0 .. num_vertices
    """
    E = V.number("num_vertices", num_vertices, integer=True, minimum=2, maximum=64)
    c = V.number("capacity", capacity, integer=True, minimum=0, maximum=E)
    groups = sorted({tuple(sorted((int(i), int(j)))) for i, j in edges})
    if not groups or len(groups) != len(list(edges)) or any(i == j or not 0 <= i < j < E for i, j in groups):
        raise V.fail("edges", list(edges), f"must be distinct pairs of distinct vertices in 0..{E - 1}")
    mod = _model("toy-densest", E, 2)
    stats = [_stats(mod, [list(g) for g in groups], [1.0 / len(groups)] * len(groups),
                    "densest_subgraph_instance")]
    net = _network(np.ones((1, 1), bool), [c * mod.expert_bytes], [_FLOPS], [1.0])
    return Problem(mod, net, stats, name=f"densest-subgraph-E{E}-c{c}")


def no_split_study(num_problems: int = 40, *, seed: int = 0) -> dict:
    """Check :prf:ref:`prop-no-split` on random ``K = 2`` problems (2 servers, 1 layer of 4 experts).

    Returns
    -------
    dict
        ``min``: smallest ``R(decomposition) / OPT′``; ``min_gap``: smallest
        ``OPT′ / OPT`` (OPT by brute force); ``n``: problems with ``OPT′ > 0``.
    """
    from .instances import random_problem
    from .latency import latency_reduction
    from .solvers import solve
    num_problems = V.number("num_problems", num_problems, integer=True, positive=True, maximum=400)
    ratios, gaps = [], []
    for s in range(seed, seed + num_problems):
        p = random_problem(s, num_users=2, num_servers=2, num_layers=1, num_experts=4, top_k=2,
                           server_slots=(1, 2), weights=True)
        opt_ns, _ = no_split_optimum(p)
        if opt_ns <= 1e-12:
            continue
        ratios.append(latency_reduction(p, solve(p, "decomposition")) / opt_ns)
        gaps.append(opt_ns / latency_reduction(p, solve(p, "brute-force")))
    return {"min": float(min(ratios)), "min_gap": float(min(gaps)), "n": len(ratios)}
