"""Algorithm 1: cost-benefit greedy over (server, expert) pairs.

Chapter *Greedy for K = 1* (Algorithm 1).  The ground set is every
pair ``(n, c)`` of an edge server ``n`` and a *column* ``c = (u, l, e)`` (an
expert ``e`` of MoE layer ``l`` of model ``u``); caching the pair costs
``expert_bytes_u`` of server ``n``'s storage ``Q_n``.  The greedy repeatedly
adds the pair with the largest marginal latency saving per byte,

.. math:: \\rho(n, c \\mid X) = \\frac{R(X \\cup \\{(n, c)\\}) - R(X)}{s_u},

among the pairs that still fit, and stops when nothing fits or no pair saves
anything.  ``R`` is :func:`slimlib.latency_reduction` (weighted, in seconds per
token).

Methods registered here
-----------------------
``"greedy"``
    The natural greedy on the true objective, any ``K``.  Options:

    * ``enumeration`` (0..3, default 0): Sviridenko's partial enumeration.
      ``0`` returns the better of the density greedy and the best single pair
      (the "modified greedy" of Khuller, Moss and Naor).  ``d >= 1`` returns the
      best of: every feasible set of fewer than ``d`` pairs, and the density
      greedy started from every feasible set of exactly ``d`` pairs (plus the
      two candidates of ``0``).  ``d = 3`` gives ``1 - 1/e`` for one server
      (one knapsack) when ``K = 1``.
    * ``single`` (bool, default True): include the best single pair
      (``False`` with ``enumeration=0`` gives the plain density greedy).
    * ``lazy`` (None, True or False): ``True`` is lazy evaluation (CELF,
      Minoux's accelerated greedy); ``False`` is the naive reference that
      recomputes every gain at every step.  ``None`` (default) uses CELF when
      the objective is submodular (every model has ``K = 1``) and otherwise an
      exact incremental update (after adding a pair, only the gains of the
      columns sharing a group with it are recomputed), which picks exactly
      what the naive greedy picks.  CELF with ``K >= 2`` is a heuristic (stale
      gains are no longer upper bounds).
    * ``max_seeds`` (int, default 200 000): refuse enumerations with more seed sets.
``"blind-greedy"``
    The same greedy on the co-activation-blind surrogate: every expert of a
    Top-``K`` model is valued as if it were called alone, with probability
    ``p_{m,l,e} / K`` (its share of the layer's ``K`` calls), i.e. the layer
    latency ``max_{e in G} tau(e)`` is replaced by the mean ``(1/K) sum_{e in G}
    tau(e)``.  The surrogate is a ``K = 1`` objective (submodular, CELF is
    exact); the returned placement is scored by the true evaluator like every
    other method.  For ``K = 1`` it coincides with ``"greedy"``.

Group completion (``K >= 2``)
-----------------------------
With Top-``K`` groups a single expert saves nothing while the other experts of
its groups stay far away, so the density greedy can stop at once with every
server empty.  ``"greedy"`` therefore alternates the density greedy with a
*group-completion step*: among the moves "cache on server ``n`` every member
of one activated (user, group) row that ``n`` would speed up", it takes the
one of largest own gain per byte that fits (the row's own saving,
``w_m P(G) (max_c tau - max_c min(tau, t_{m,n}))``, a lower bound on the true
gain), then runs the density greedy again; it stops when no move fits or
gains.  For ``K = 1`` nothing changes (option ``completion=False`` gives
Algorithm 1 alone for any ``K``).

Incremental gains
-----------------
For ``K = 1`` the gain of pair ``(n, (u, l, e))`` has the closed form

.. math:: \\Delta(n, l, e) = \\sum_{m : u(m) = u} w_m\\, p_{m,l,e}\\, \\max(0, \\tau_m(l, e) - t_{m,n}),

with ``tau`` the current latency of the expert.  For Top-``K`` groups the gain
of one group ``G`` containing ``e`` is ``w_m P(G) (max(a, tau(e)) - max(a, min(tau(e), t_{m,n})))``
with ``a`` the largest current latency of the other experts of ``G``; this is
the same formula (``a = 0``) for ``K = 1``.  All gains are sums of such
per-(user, group, expert) *entries*, evaluated vectorised over entries and
servers; the entries of one column are contiguous, so a single gain and a
whole layer are cheap to refresh.

Fast paths
----------
The loops (naive, CELF by column for ``K = 1``, incremental heaps for
``K >= 2``) are :func:`slimlib.solvers.greedy_run.run_greedy`; every mode
picks what the naive reference (``lazy=False``) picks, pair by pair.
"""
from __future__ import annotations

import math
from itertools import combinations

import numpy as np

from .. import _validate as V
from ..problem import Placement, Problem
from . import register
from .greedy_run import _apply_all, _initial_gains, _Run, run_greedy
from .pairs import PairModel

__all__ = ["greedy", "blind_greedy"]


#: Largest (group, member, server) triples one group-completion step holds at once (chunked beyond).
COMPLETION_CHUNK = 2 ** 22


def _best_completion(pm: PairModel, run: _Run):
    """The group-completion move of largest own gain per byte that fits (module docstring), or ``None``.

    A move ``(n, G)`` caches on server ``n`` every member ``c`` of one
    (user ``m``, group ``G``) row with ``cur[m, c] > t_{m,n}``; its *own gain*
    ``w_m P(G) (max_c cur - max_c min(cur, t_{m,n}))`` is a lower bound on its
    true gain (caching more never hurts other rows).
    """
    K, N, C = pm.kmax, pm.N, pm.C
    G = pm.num_groups
    free = pm.cap * (1 + 1e-12) - run.used                                   # (N,)
    sizes = np.append(pm.col_bytes, 0.0)
    best = (0.0, None)
    step = max(1, COMPLETION_CHUNK // max(1, K * N))
    for g0 in range(0, G, step):
        sl = slice(g0, min(G, g0 + step))
        cols, users, w = pm.g_cols[sl], pm.g_user[sl], pm.g_w[sl]
        cur = run.cur[users[:, None], cols]                                   # (g, K); dummy: 0
        t = pm.T[users]                                                       # (g, N)
        need = cur[:, :, None] > t[:, None, :]                                # (g, K, N)
        own = w[:, None] * (cur.max(axis=1)[:, None] - np.minimum(cur[:, :, None], t[:, None, :]).max(axis=1))
        cost = (need * sizes[cols][:, :, None]).sum(axis=1)                  # (g, N) bytes
        ok = (own > 0) & (cost > 0) & (cost <= free[None, :]) & (need.sum(axis=1) >= 2)
        if not ok.any():
            continue
        dens = np.where(ok, own / np.where(cost > 0, cost, 1.0), -np.inf)
        k = int(np.argmax(dens))
        gi, n = divmod(k, N)
        if dens[gi, n] > best[0]:
            best = (float(dens[gi, n]), (int(n), [int(c) for c, nd in zip(cols[gi], need[gi, :, n]) if nd and c < C]))
    return best[1]


def _complete_groups(pm: PairModel, run: _Run, mode: str) -> int:
    """Alternate group-completion moves and the density greedy until neither adds anything (``K >= 2``)."""
    moves = 0
    while True:
        mv = _best_completion(pm, run)
        if mv is None:
            return moves
        n, cols = mv
        for c in cols:
            if not run.x[c, n]:
                run.add(pm, n, c)
        moves += 1
        run_greedy(pm, run, mode)


def _mode(pm: PairModel, lazy) -> str:
    """Internal evaluation mode for the ``lazy`` option (see the module docstring)."""
    if lazy is None:
        return "celf" if pm.submodular else "incremental"
    if lazy is True:
        return "celf"
    if lazy is False:
        return "naive"
    raise V.fail("lazy", lazy, "must be None, True or False")


def _solve(problem: Problem, *, blind: bool, method: str, enumeration: int = 0, single: bool = True,
           lazy=None, max_seeds: int = 200_000, completion: bool = True) -> Placement:
    if not isinstance(completion, (bool, np.bool_)):
        raise V.fail("completion", completion, "must be True or False")
    d = V.number("enumeration", enumeration, integer=True, minimum=0, maximum=3)
    if not isinstance(single, (bool, np.bool_)):
        raise V.fail("single", single, "must be True or False")
    max_seeds = V.number("max_seeds", max_seeds, integer=True, positive=True)
    pm = PairModel(problem, blind=blind)
    mode = _mode(pm, lazy)
    evaluations = 0

    best = run_greedy(pm, _Run(pm), mode)
    best_val, variant = best.value(), "density greedy"
    evaluations += best.evaluations
    completions = 0
    if not pm.submodular and completion:
        completions = _complete_groups(pm, best, mode)
        best_val = pm.value(best.cur)
        variant = "density greedy + group completion" if completions else variant
    g0 = _initial_gains(pm, None)                       # the empty start's gains, computed once
    fits0 = pm.fits(np.zeros(pm.N))
    if single or d >= 1:
        cand = np.where(fits0, g0, -np.inf)
        k = int(np.argmax(cand))
        c, n = divmod(k, pm.N)
        if cand[c, n] > best_val:
            r = _Run(pm)
            r.add(pm, n, c)
            best, best_val, variant = r, r.value(), "best single pair"
    seeds_tried = 0
    if d >= 1:
        # seed candidates: pairs that fit alone (for K = 1 only those with a positive gain:
        # by submodularity a pair that saves nothing now never will)
        mask = fits0 & (g0 > 0) if pm.submodular else fits0
        cs, ns = np.nonzero(mask)
        pairs = list(zip(ns.tolist(), cs.tolist()))
        total = sum(math.comb(len(pairs), k) for k in range(1, d + 1))
        if total > max_seeds:
            raise V.fail("enumeration", d, f"needs {total} seed sets over {len(pairs)} pairs, more than "
                         f"max_seeds={max_seeds}; use enumeration<={d - 1} or raise max_seeds")
        for size in range(1, d + 1):
            for S in combinations(pairs, size):
                used = np.zeros(pm.N)
                for n, c in S:
                    used[n] += pm.col_bytes[c]
                if (used > pm.cap * (1 + 1e-12)).any():
                    continue
                r = _Run(pm)
                for n, c in S:
                    r.add(pm, n, c)
                if size == d:
                    run_greedy(pm, r, mode)
                    evaluations += r.evaluations
                seeds_tried += 1
                v = r.value()
                if v > best_val:
                    best, best_val = r, v
                    variant = f"seed of {size}" + (" + greedy" if size == d else "")
    out = pm.to_placement(best.x, method)
    out.info.update(value_s=best_val, variant=variant, enumeration=d, lazy=mode, gain_evaluations=int(evaluations),
                    seed_sets=seeds_tried, picks=pm.pair_names(best.picks), group_completions=completions)
    if blind:
        out.info["surrogate_value_s"] = best_val
        true = PairModel(problem)
        cur = true.cur0.copy()
        if best.picks:
            pn, pc = np.array(best.picks, dtype=np.int64).reshape(-1, 2).T
            _apply_all(true, cur, pn, pc)
        out.info["value_s"] = true.value(cur)
    return out


@register("greedy")
def greedy(problem: Problem, *, enumeration: int = 0, single: bool = True, lazy=None,
           max_seeds: int = 200_000, completion: bool = True) -> Placement:
    """Algorithm 1: density greedy over (server, expert) pairs (chapter *Greedy for K = 1*).

    Parameters
    ----------
    problem : Problem
    enumeration : int, 0..3
        Size of the enumerated seed sets (Sviridenko); 0 = better of density
        greedy and best single pair.  See the module docstring.
    single : bool
        Also consider the best single pair (default True).
    lazy : None, bool
        CELF (True), naive reference (False), or automatic (None).
    max_seeds : int
        Refuse an enumeration with more seed sets than this.
    completion : bool
        ``K >= 2`` only (default True): after the density greedy, the
        *group-completion step* of the module docstring (a single expert of a
        Top-``K`` group saves nothing while its partners are far, so the plain
        greedy can stop with free storage).  ``False`` is Algorithm 1 alone.

    Returns
    -------
    Placement
        ``info``: ``value_s`` (reduction ``R``, s), ``variant`` (which candidate won),
        ``group_completions`` (completion moves made),
        ``picks`` (the pairs ``(n, u, l, e)`` in the order added), ``gain_evaluations``,
        ``seed_sets``, ``lazy`` (the mode used).
    """
    return _solve(problem, blind=False, method="greedy", enumeration=enumeration, single=single, lazy=lazy,
                  max_seeds=max_seeds, completion=completion)


@register("blind-greedy")
def blind_greedy(problem: Problem, *, enumeration: int = 0, single: bool = True, lazy=None,
                 max_seeds: int = 200_000) -> Placement:
    """Co-activation-blind greedy (baseline; chapter *Greedy for K = 1*, section "Why not for K >= 2").

    Algorithm 1 run on the surrogate objective that values every expert by its
    marginal ``p_{m,l,e} / K`` as if it were called alone (layer latency = mean
    of its experts' latencies instead of the maximum).  Options as
    :func:`greedy`.  ``info["surrogate_value_s"]`` is the surrogate reduction,
    ``info["value_s"]`` the true one.
    """
    return _solve(problem, blind=True, method="blind-greedy", enumeration=enumeration, single=single, lazy=lazy,
                  max_seeds=max_seeds)
