"""Certified upper bounds on the latency reduction ``R`` of (P1), so every placement can show its gap.

Chapter *Experiments* ("How far from optimal") and the ``info`` of
``slimlib.solve(problem, method="exact")``.  The bound is computed from the
problem alone (no solver is trusted):

1. **Relax the groups** (any ``K``).  For a user ``m`` and an activated group
   ``G`` let ``b_c`` be expert ``c``'s latency without edge caching (device or
   cloud) and ``B = max_{c in G} b_c``.  With ``tau_c <= b_c`` its latency
   under a placement, the group's reduction is ``B - max_c tau_c <= B - tau_c``
   for *every* member ``c``, hence at most the average of ``b_c - tau_c`` over
   the ``k`` members with ``b_c = B``.  Giving each of them weight
   ``w_m P_m(G) / k`` turns ``R`` into a facility-location function
   ``R'(x) = sum_{m,c} W_{m,c} (b_{m,c} - min(b_{m,c}, min_{n: x_{n,c}} t_{m,n}))
   >= R(x)`` (equal for ``K = 1``).
2. **Lagrangian relaxation** of ``R'`` under the storage limits: writing
   ``g_{m,c,n} = W_{m,c} (b_{m,c} - t_{m,n})^+`` and dualising "each
   (user, expert) is served by at most one server" with multipliers
   ``mu_{m,c} >= 0``,

   .. math::  R'(x) \\le L(\\mu) = \\sum_{m,c} \\mu_{m,c} + \\sum_n \\max_{x_n}
              \\sum_c x_{n,c} \\sum_m (g_{m,c,n} - \\mu_{m,c})^+

   where each server's inner problem is a knapsack, bounded by its
   fractional (LP) relaxation.  ``mu`` starts at the second-best server's
   ``g`` and is improved by projected subgradient steps; every ``L(mu)`` is a
   valid bound and the smallest is returned.

The bound is exact when storage does not bind and ``K = 1``; for ``K >= 2`` it
also credits partially cached groups, so it is looser there.
"""
from __future__ import annotations

import numpy as np

from . import _validate as V
from .latency import call_latency
from .problem import Placement, Problem

__all__ = ["lp_upper_bound", "certified_gap", "MAX_BOUND_PAIRS"]

#: Largest number of (user, expert, server) triples the bound holds in memory (8 bytes each, several arrays).
MAX_BOUND_PAIRS = 2 ** 26


def _pairs(problem: Problem):
    """(user, column) pairs with weight ``W > 0``: user, column, W, b; column sizes; ``t`` (M, N)."""
    calls = call_latency(problem)
    models = problem.models
    offset = np.cumsum([0] + [m.num_layers * m.num_experts for m in models])
    w = problem.network.user_weight
    um = np.asarray(problem.user_model, np.int64)
    low = np.minimum(calls.local, calls.cloud)
    P_user, P_col, P_w, P_b = [], [], [], []
    for m, st in enumerate(problem.stats):
        u = int(um[m])
        mod = models[u]
        E = mod.num_experts
        b = np.where(problem.device_cache[m], low[m], calls.cloud[m]).ravel()       # (L E,)
        cols = st.group_layer[:, None] * E + st.group_experts                       # (G, K)
        bg = b[cols]
        top = bg >= bg.max(axis=1, keepdims=True)                                   # members with b_c = B
        share = (w[m] * st.group_prob / top.sum(axis=1))[:, None] * top
        W = np.bincount(cols.ravel(), weights=share.ravel(), minlength=mod.num_layers * E)
        nz = np.flatnonzero(W > 0)
        P_user.append(np.full(len(nz), m, np.int64))
        P_col.append(offset[u] + nz)
        P_w.append(W[nz])
        P_b.append(b[nz])
    sizes = np.repeat([float(m.expert_bytes) for m in models], [m.num_layers * m.num_experts for m in models])
    return (np.concatenate(P_user), np.concatenate(P_col), np.concatenate(P_w), np.concatenate(P_b),
            sizes, np.asarray(calls.edge, float), int(offset[-1]))


def _knapsack_lp(A: np.ndarray, sizes: np.ndarray, cap: np.ndarray):
    """Fractional knapsack per server: values ``A`` (C, N), sizes (C,), capacities (N,) -> value (N,), fractions (C, N)."""
    C, N = A.shape
    frac = np.zeros((C, N))
    val = np.zeros(N)
    for n in range(N):
        pos = np.flatnonzero(A[:, n] > 0)
        if len(pos) == 0:
            continue
        order = pos[np.argsort(-A[pos, n] / sizes[pos], kind="stable")]
        cum = np.cumsum(sizes[order])
        full = cum <= cap[n] * (1 + 1e-12)
        k = int(full.sum())
        frac[order[:k], n] = 1.0
        val[n] = float(A[order[:k], n].sum())
        if k < len(order):
            room = cap[n] - (cum[k - 1] if k else 0.0)
            f = max(0.0, room / sizes[order[k]])
            frac[order[k], n] = f
            val[n] += f * float(A[order[k], n])
    return val, frac


def lp_upper_bound(problem: Problem, *, iterations: int = 60, lower_bound: float = 0.0,
                   max_pairs: int = MAX_BOUND_PAIRS, details: bool = False):
    """An upper bound on the optimal latency reduction ``R*`` of (P1) (module docstring; any ``K``).

    Parameters
    ----------
    problem : Problem
    iterations : int
        Subgradient steps on the multipliers (each one is a valid bound; more
        steps tighten it).
    lower_bound : float
        A known achievable ``R`` (weighted seconds, e.g. of a heuristic's
        placement); only steers the step size.
    max_pairs : int
        Refuse (ValueError) when more (user, expert, server) triples would be
        held in memory.
    details : bool
        Return a dict instead of the float.

    Returns
    -------
    float or dict
        ``U >= R*`` in weighted seconds, the unit of
        :func:`slimlib.latency_reduction` (divide by ``sum_m w_m`` for the
        average latency).  With ``details``: ``upper_bound``,
        ``no_capacity_bound`` (every expert on every server it helps),
        ``iterations``, ``history`` (bound per step).
    """
    if not isinstance(problem, Problem):
        raise V.fail("problem", problem, "must be a slimlib.Problem")
    iterations = V.number("iterations", iterations, integer=True, nonneg=True, maximum=10_000)
    lower_bound = V.number("lower_bound", lower_bound, nonneg=True)
    M, N = problem.num_users, problem.num_servers
    # size check before allocating the (pairs, N) arrays: pairs <= users x columns of their model
    upper = sum(problem.models[int(u)].num_layers * problem.models[int(u)].num_experts
                for u in problem.user_model) * N
    pu, pc, W, b, sizes, T, C = _pairs(problem)
    if len(pu) * N > max_pairs:
        raise V.fail("problem", f"{len(pu)} (user, expert) pairs x {N} servers",
                     f"the bound would hold more than max_pairs={max_pairs} triples (at most {upper} possible)")
    g = W[:, None] * np.maximum(b[:, None] - T[pu], 0.0)                            # (P, N) weighted seconds
    no_cap = float(g.max(axis=1).sum()) if N else 0.0
    cap = np.asarray(problem.network.server_capacity_bytes, float)
    if N == 0 or len(pu) == 0:
        out = dict(upper_bound=0.0, no_capacity_bound=0.0, iterations=0, history=[0.0])
        return out if details else 0.0
    mu = np.sort(g, axis=1)[:, -2] if N > 1 else np.zeros(len(pu))
    idx = (pc[:, None] * N + np.arange(N)[None, :]).ravel()
    best, hist, theta, stall = np.inf, [], 1.0, 0
    for it in range(iterations + 1):
        adj = np.maximum(g - mu[:, None], 0.0)
        A = np.bincount(idx, weights=adj.ravel(), minlength=C * N).reshape(C, N)
        val, frac = _knapsack_lp(A, sizes, cap)
        L = float(mu.sum() + val.sum())
        hist.append(L)
        if L < best - 1e-12 * abs(best if np.isfinite(best) else L):
            best, stall = L, 0
        else:
            stall += 1
            if stall >= 4:
                theta, stall = theta / 2, 0
        if it == iterations:
            break
        sub = 1.0 - ((adj > 0) * frac[pc]).sum(axis=1)                             # dL/dmu
        sub = np.where((mu <= 0) & (sub > 0), 0.0, sub)                             # projected
        nrm = float(sub @ sub)
        if nrm == 0:
            break
        target = max(lower_bound, 0.5 * best)
        mu = np.maximum(0.0, mu - theta * (L - target) / nrm * sub)
    best = min(best, no_cap)
    out = dict(upper_bound=best, no_capacity_bound=no_cap, iterations=len(hist) - 1, history=hist)
    return out if details else best


def certified_gap(problem: Problem, placement: Placement, bound: float | None = None) -> dict:
    """How far ``placement`` can be from optimal, certified by :func:`lp_upper_bound`.

    Returns
    -------
    dict
        ``reduction`` (``R`` of the placement, weighted seconds), ``upper_bound``
        (``U >= R*``), ``fraction`` (``R / U``, at most ``R / R*``: the placement
        achieves at least this fraction of the optimum; 1 when ``U = 0``) and
        ``gap`` (``1 - fraction``).
    """
    from .latency import latency_reduction
    R = latency_reduction(problem, placement)
    U = lp_upper_bound(problem, lower_bound=max(R, 0.0)) if bound is None else float(bound)
    U = max(U, R)
    frac = 1.0 if U <= 0 else R / U
    return dict(reduction=R, upper_bound=U, fraction=frac, gap=1.0 - frac)
