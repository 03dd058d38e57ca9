"""Algorithm 1: cost-benefit greedy over (server, expert) pairs.

Chapter *Greedy for K = 1* (SPEC §3, Algorithm 1).  The ground set is every
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
      exact incremental update (after adding a pair, only the gains of that
      pair's layer are recomputed), which picks exactly what the naive greedy
      picks.  CELF with ``K >= 2`` is a heuristic (stale gains are no longer
      upper bounds).
    * ``max_seeds`` (int, default 200 000): refuse enumerations with more seed sets.
``"blind-greedy"``
    The same greedy on the co-activation-blind surrogate: every expert of a
    Top-``K`` model is valued as if it were called alone, with probability
    ``p_{m,l,e} / K`` (its share of the layer's ``K`` calls), i.e. the layer
    latency ``max_{e in G} tau(e)`` is replaced by the mean ``(1/K) sum_{e in G}
    tau(e)``.  The surrogate is a ``K = 1`` objective (submodular, CELF is
    exact); the returned placement is scored by the true evaluator like every
    other method.  For ``K = 1`` it coincides with ``"greedy"``.

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
"""
from __future__ import annotations

import heapq
import math
from itertools import combinations

import numpy as np

from .. import _validate as V
from ..latency import call_latency
from ..problem import Placement, Problem
from . import register

__all__ = ["PairModel", "greedy", "blind_greedy", "greedy_trace", "run_greedy", "k2_counterexample",
           "study_problem", "ratio_study"]


class PairModel:
    """(P1) flattened onto (server, column) pairs, for the pair-based solvers.

    Chapter *Greedy for K = 1*, section "Incremental gains".  Columns ``c``
    number every ``(u, l, e)``: ``c = offset[u] + l * E_u + e``.

    Parameters
    ----------
    problem : Problem
    blind : bool
        Build the co-activation-blind surrogate (every group replaced by its
        ``K`` single experts with probability ``P(G) / K``; see ``"blind-greedy"``).
    communication : bool
        Use communication-only latencies (compute terms removed).

    Attributes
    ----------
    C, N, M : int
        Columns, servers, users.
    col_model, col_layer, col_expert : ndarray of int, shape (C,)
    col_bytes : ndarray, shape (C,)
        ``s_u``, bytes per expert of the column's model.
    cap : ndarray, shape (N,)
        ``Q_n``, bytes.
    T : ndarray, shape (M, N)
        Edge latency ``t_{m,n}`` of one call, seconds.
    cur0 : ndarray, shape (M, C + 1)
        Latency of each column without edge caching: ``min(local if on the device, cloud)``;
        the extra last column is a zero-latency dummy used to pad groups of smaller ``K``.
    g_user, g_cols, g_w : ndarrays, shapes (G,), (G, Kmax), (G,)
        One row per (user, group): user, columns (padded with the dummy ``C``),
        weight ``w_m P_{m,l}(G)``.
    e_col, e_user, e_w, e_others : ndarrays
        One row per (user, group, member expert), sorted by column; ``e_others``
        holds the other columns of the group (padded with the dummy), shape ``(Ent, Kmax - 1)``.
    col_ptr : ndarray of int, shape (C + 1,)
        Entries of column ``c`` are ``col_ptr[c]:col_ptr[c + 1]``.
    submodular : bool
        Every group has one expert (``K = 1`` or blind surrogate).
    """

    def __init__(self, problem: Problem, *, blind: bool = False, communication: bool = False):
        self.problem = problem
        self.blind = bool(blind)
        models = problem.models
        self.offset = np.cumsum([0] + [m.num_layers * m.num_experts for m in models])
        C = int(self.offset[-1])
        self.C, self.N, self.M = C, problem.num_servers, problem.num_users
        self.col_model = np.concatenate([np.full(m.num_layers * m.num_experts, u) for u, m in enumerate(models)])
        self.col_layer = np.concatenate([np.repeat(np.arange(m.num_layers), m.num_experts) for m in models])
        self.col_expert = np.concatenate([np.tile(np.arange(m.num_experts), m.num_layers) for m in models])
        self.col_bytes = np.array([models[u].expert_bytes for u in self.col_model], dtype=float)
        self.cap = np.asarray(problem.network.server_capacity_bytes, dtype=float)
        calls = call_latency(problem)
        if communication:
            local, edge, cloud = calls.local_comm, calls.edge_comm, calls.cloud_comm
        else:
            local, edge, cloud = calls.local, calls.edge, calls.cloud
        self.T = np.asarray(edge, dtype=float)
        cur0 = np.zeros((self.M, C + 1))
        w = problem.network.user_weight
        g_user, g_cols, g_w = [], [], []
        kmax = 1 if blind else max(m.top_k for m in models)
        self.kmax = kmax
        for m in range(self.M):
            u = int(problem.user_model[m])
            mod = models[u]
            o = int(self.offset[u])
            base = np.full((mod.num_layers, mod.num_experts), cloud[m])
            y = problem.device_cache[m]
            base[y] = np.minimum(local[m], cloud[m])
            cur0[m, o:o + base.size] = base.ravel()
            s = problem.stats[m]
            cols = o + s.group_layer[:, None] * mod.num_experts + s.group_experts      # (G, K)
            if blind:
                p = np.zeros(mod.num_layers * mod.num_experts)
                np.add.at(p, (cols - o).ravel(), np.repeat(s.group_prob, cols.shape[1]) / mod.top_k)
                keep = np.flatnonzero(p > 0)
                g_user.append(np.full(len(keep), m))
                g_cols.append((o + keep)[:, None])
                g_w.append(w[m] * p[keep])
            else:
                pad = np.full((len(cols), kmax - cols.shape[1]), C)
                g_user.append(np.full(len(cols), m))
                g_cols.append(np.hstack([cols, pad]).astype(np.int64))
                g_w.append(w[m] * s.group_prob)
        self.cur0 = cur0
        self.g_user = np.concatenate(g_user).astype(np.int64)
        self.g_cols = np.concatenate(g_cols).astype(np.int64)
        self.g_w = np.concatenate(g_w).astype(float)
        self.submodular = kmax == 1
        # entries: one per (group, real member)
        G = len(self.g_user)
        gi, ki = np.nonzero(self.g_cols < C)
        order = np.lexsort((ki, gi, self.g_cols[gi, ki]))   # by column, then group, then position
        gi, ki = gi[order], ki[order]
        self.e_group = gi
        self.e_col = self.g_cols[gi, ki]
        self.e_user = self.g_user[gi]
        self.e_w = self.g_w[gi]
        if kmax > 1:
            others = np.empty((len(gi), kmax - 1), dtype=np.int64)
            for j in range(kmax - 1):
                kk = np.where(j < ki, j, j + 1)
                others[:, j] = self.g_cols[gi, kk]
            self.e_others = others
        else:
            self.e_others = np.zeros((len(gi), 0), dtype=np.int64)
        self.col_ptr = np.searchsorted(self.e_col, np.arange(C + 1))
        self.num_groups = G

    # -- objective ------------------------------------------------------------
    def value(self, cur: np.ndarray) -> float:
        """``R``: weighted reduction against no edge caching, seconds (= :func:`slimlib.latency_reduction`)."""
        g0 = self.cur0[self.g_user[:, None], self.g_cols].max(axis=1)
        g1 = cur[self.g_user[:, None], self.g_cols].max(axis=1)
        return float(self.g_w @ (g0 - g1))

    def gains_range(self, cur: np.ndarray, lo: int, hi: int, servers=None) -> np.ndarray:
        """Marginal gains of columns ``lo..hi-1`` on the given servers, shape ``(hi - lo, len(servers))``.

        Sums the entries of each column sequentially (``np.bincount``), so the
        value of a pair is bit-identical whichever range it is computed in.
        """
        srv = np.arange(self.N) if servers is None else np.atleast_1d(servers)
        a, b = self.col_ptr[lo], self.col_ptr[hi]
        out = np.zeros((hi - lo) * len(srv))
        if b > a:
            m = self.e_user[a:b]
            ck = cur[m, self.e_col[a:b]]
            if self.kmax > 1:
                om = cur[m[:, None], self.e_others[a:b]].max(axis=1)
            else:
                om = np.zeros(b - a)
            gmax = np.maximum(ck, om)
            new = np.maximum(om[:, None], np.minimum(ck[:, None], self.T[m][:, srv]))
            val = self.e_w[a:b, None] * (gmax[:, None] - new)
            bins = (self.e_col[a:b, None] - lo) * len(srv) + np.arange(len(srv))[None, :]
            out = np.bincount(bins.ravel(), weights=val.ravel(), minlength=out.size)
        return out.reshape(hi - lo, len(srv))

    def gain(self, cur: np.ndarray, n: int, c: int) -> float:
        """Marginal gain of one pair ``(n, c)``, seconds.

        Bit-identical to the same entry of :meth:`gains_range` (same operations,
        same summation order).
        """
        if self.kmax > 1:
            return float(self.gains_range(cur, c, c + 1, [n])[0, 0])
        a, b = self.col_ptr[c], self.col_ptr[c + 1]
        if b == a:
            return 0.0
        m = self.e_user[a:b]
        ck = cur[m, c]
        # K = 1 closed form: sum_m w_m p (tau - min(tau, t_mn)); as in gains_range with om = 0
        val = self.e_w[a:b] * (np.maximum(ck, 0.0) - np.maximum(0.0, np.minimum(ck, self.T[m, n])))
        return float(np.bincount(np.zeros(b - a, np.int64), weights=val, minlength=1)[0])

    def apply(self, cur: np.ndarray, n: int, c: int) -> None:
        """Cache column ``c`` on server ``n`` (in place): every user of the model may now use it."""
        u = self.col_model[c]
        users = np.flatnonzero(self.problem.user_model == u)
        cur[users, c] = np.minimum(cur[users, c], self.T[users, n])

    def layer_range(self, c: int) -> tuple[int, int]:
        """Columns of the layer (model, layer) of column ``c``: ``lo, hi``."""
        u = self.col_model[c]
        E = self.problem.models[u].num_experts
        lo = int(self.offset[u] + self.col_layer[c] * E)
        return lo, lo + E

    def fits(self, used: np.ndarray) -> np.ndarray:
        """Bool ``(C, N)``: column fits into the free storage of server."""
        return self.col_bytes[:, None] + used[None, :] <= self.cap[None, :] * (1 + 1e-12)

    def to_placement(self, x: np.ndarray, method: str) -> Placement:
        """``x`` bool ``(C, N)`` -> :class:`Placement` (device caches from the problem)."""
        server = []
        for u, mod in enumerate(self.problem.models):
            o = self.offset[u]
            xs = x[o:o + mod.num_layers * mod.num_experts].T.reshape(self.N, mod.num_layers, mod.num_experts)
            server.append(xs.copy())
        return Placement(server, [y.copy() for y in self.problem.device_cache], method=method)

    def pair_name(self, n: int, c: int) -> tuple[int, int, int, int]:
        """``(n, u, l, e)`` of pair ``(n, c)``."""
        return (int(n), int(self.col_model[c]), int(self.col_layer[c]), int(self.col_expert[c]))


# -- the greedy ------------------------------------------------------------------
class _Run:
    """State of one greedy run: chosen pairs, current latencies, used storage."""

    def __init__(self, pm: PairModel, x=None, cur=None, used=None):
        self.x = np.zeros((pm.C, pm.N), bool) if x is None else x.copy()
        self.cur = pm.cur0.copy() if cur is None else cur.copy()
        self.used = np.zeros(pm.N) if used is None else used.copy()
        self.picks: list[tuple[int, int]] = []
        self.evaluations = 0
        self.trace: list[dict] | None = None

    def add(self, pm: PairModel, n: int, c: int):
        self.x[c, n] = True
        pm.apply(self.cur, n, c)
        self.used[n] += pm.col_bytes[c]
        self.picks.append((int(n), int(c)))


def _select(pm: PairModel, run: _Run, gains: np.ndarray):
    """Best pair by density among the free pairs that fit; ties -> smallest ``c * N + n``."""
    dens = gains / pm.col_bytes[:, None]
    ok = pm.fits(run.used) & ~run.x
    dens = np.where(ok, dens, -np.inf)
    k = int(np.argmax(dens))
    c, n = divmod(k, pm.N)
    return n, c, float(gains[c, n]), float(dens[c, n]), ok


def run_greedy(pm: PairModel, run: _Run, mode: str, record: bool = False) -> _Run:
    """Complete ``run`` by the density greedy (in place) and return it.

    Chapter *Greedy for K = 1*, Algorithm 1, step 2 (lazy or naive).

    Parameters
    ----------
    pm : PairModel
    run : _Run
        Start state (a seed set, or empty).
    mode : {"celf", "naive", "incremental"}
        Lazy evaluation, full recomputation at every step, or exact refresh of
        the changed layer only.
    record : bool
        Keep, for every step, the full gain matrix and the choice (naive mode only).
    """
    if mode == "celf":
        gains = pm.gains_range(run.cur, 0, pm.C)
        run.evaluations += gains.size
        dens = gains / pm.col_bytes[:, None]
        ok = pm.fits(run.used) & ~run.x & (gains > 0)
        cs, ns = np.nonzero(ok)
        heap = [(-float(dens[c, n]), int(c * pm.N + n), 0) for c, n in zip(cs, ns)]
        heapq.heapify(heap)
        step = len(run.picks)
        while heap:
            negd, k, stamp = heap[0]
            c, n = divmod(k, pm.N)
            if pm.col_bytes[c] + run.used[n] > pm.cap[n] * (1 + 1e-12):
                heapq.heappop(heap)           # will never fit again: storage only fills up
                continue
            if stamp == step:                 # fresh: it is the best pair
                heapq.heappop(heap)
                if -negd <= 0:
                    break
                run.add(pm, n, c)
                step += 1
                continue
            g = pm.gain(run.cur, n, c)
            run.evaluations += 1
            if g > 0:
                heapq.heapreplace(heap, (-(g / pm.col_bytes[c]), k, step))
            else:
                heapq.heappop(heap)           # submodular: a zero gain stays zero
        return run
    if mode not in ("naive", "incremental"):
        raise V.fail("lazy", mode, "internal mode must be celf, naive or incremental")
    gains = pm.gains_range(run.cur, 0, pm.C)
    run.evaluations += gains.size
    while True:
        n, c, g, d, ok = _select(pm, run, gains)
        if record:
            go = bool(d > 0 and np.isfinite(d))
            run.trace = (run.trace or []) + [dict(gains=gains.copy(), fits=ok, pick=(n, c) if go else None,
                                                  gain=g if go else 0.0, density=d if go else 0.0,
                                                  x=run.x.copy(), cur=run.cur.copy())]
        if not (d > 0 and np.isfinite(d)):
            break
        run.add(pm, n, c)
        if mode == "naive":
            gains = pm.gains_range(run.cur, 0, pm.C)
            run.evaluations += gains.size
        else:
            lo, hi = pm.layer_range(c)
            gains[lo:hi] = pm.gains_range(run.cur, lo, hi)
            run.evaluations += (hi - lo) * pm.N
    return run


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
           lazy=None, max_seeds: int = 200_000) -> Placement:
    d = V.number("enumeration", enumeration, integer=True, minimum=0, maximum=3)
    if not isinstance(single, (bool, np.bool_)):
        raise V.fail("single", single, "must be True or False")
    max_seeds = V.number("max_seeds", max_seeds, integer=True, positive=True)
    pm = PairModel(problem, blind=blind)
    mode = _mode(pm, lazy)
    evaluations = 0

    best = run_greedy(pm, _Run(pm), mode)
    best_val, variant = pm.value(best.cur), "density greedy"
    evaluations += best.evaluations
    g0 = pm.gains_range(pm.cur0, 0, pm.C)
    fits0 = pm.fits(np.zeros(pm.N))
    if single or d >= 1:
        cand = np.where(fits0, g0, -np.inf)
        k = int(np.argmax(cand))
        c, n = divmod(k, pm.N)
        if cand[c, n] > best_val:
            r = _Run(pm)
            r.add(pm, n, c)
            best, best_val, variant = r, pm.value(r.cur), "best single pair"
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
                v = pm.value(r.cur)
                if v > best_val:
                    best, best_val = r, v
                    variant = f"seed of {size}" + (" + greedy" if size == d else "")
    out = pm.to_placement(best.x, method)
    out.info.update(value_s=best_val, variant=variant, enumeration=d, lazy=mode, gain_evaluations=int(evaluations),
                    seed_sets=seeds_tried, picks=[pm.pair_name(n, c) for n, c in best.picks])
    if blind:
        out.info["surrogate_value_s"] = best_val
        true = PairModel(problem)
        cur = true.cur0.copy()
        for n, c in best.picks:
            true.apply(cur, n, c)
        out.info["value_s"] = true.value(cur)
    return out


@register("greedy")
def greedy(problem: Problem, *, enumeration: int = 0, single: bool = True, lazy=None,
           max_seeds: int = 200_000) -> Placement:
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

    Returns
    -------
    Placement
        ``info``: ``value_s`` (reduction ``R``, s), ``variant`` (which candidate won),
        ``picks`` (the pairs ``(n, u, l, e)`` in the order added), ``gain_evaluations``,
        ``seed_sets``, ``lazy`` (the mode used).
    """
    return _solve(problem, blind=False, method="greedy", enumeration=enumeration, single=single, lazy=lazy,
                  max_seeds=max_seeds)


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
    run = run_greedy(pm, _Run(pm), "naive", record=True)
    for st in run.trace:
        st["value"] = pm.value(st["cur"])
    return pm, run.trace


# -- book helpers (chapter *Greedy for K = 1*) -----------------------------------------
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
    from ..model import MoEModel
    from ..network import Network
    from ..stats import ActivationStats
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
    from ..instances import random_mixed_problem, random_problem
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

    from ..latency import latency_reduction
    from . import solve
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
