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
The default runs never scan all pairs per step (``_celf_submodular``
for ``K = 1``, ``_incremental_heap`` otherwise): one heap of
``(-density, c N + n)`` per server, a stamp per column (``K = 1``: adding
``(n, c)`` changes ``tau`` of column ``c`` only, so every other key stays
exact) or per pair (``K >= 2``: only the columns sharing a group with ``c``
are recomputed), and whole heaps dropped once their server has no room for
their smallest column.  Single savings are summed in the order of
:meth:`PairModel.gains_range`, so every value, and hence every pick and its
tie-breaking, is bit-identical to the naive reference (``lazy=False``); the
tests check this pick by pick.
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

    The arrays are read-only once built: the fast greedy loops cache values
    derived from them on the instance.

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
        self.col_bytes = np.repeat(np.array([m.expert_bytes for m in models], dtype=float),
                                   [m.num_layers * m.num_experts for m in models])
        self.cap = np.asarray(problem.network.server_capacity_bytes, dtype=float)
        calls = call_latency(problem)
        if communication:
            local, edge, cloud = calls.local_comm, calls.edge_comm, calls.cloud_comm
        else:
            local, edge, cloud = calls.local, calls.edge, calls.cloud
        self.T = np.asarray(edge, dtype=float)
        M = self.M
        um = np.asarray(problem.user_model, dtype=np.int64)
        w = problem.network.user_weight
        kmax = 1 if blind else max(m.top_k for m in models)
        self.kmax = kmax
        # no edge caching: every column from the cloud, or from the device when cached there
        cur0 = np.zeros((M, C + 1))
        low = np.minimum(local, cloud)
        for m in range(M):
            u = int(um[m])
            o = int(self.offset[u])
            cur0[m, o:int(self.offset[u + 1])] = cloud[m]
            cur0[m, o + np.flatnonzero(problem.device_cache[m].ravel())] = low[m]
        self.cur0 = cur0
        stats = problem.stats
        if blind:
            g_user, g_cols, g_w = [], [], []
            for m in range(M):
                u = int(um[m])
                mod = models[u]
                o = int(self.offset[u])
                s = stats[m]
                cols = o + s.group_layer[:, None] * mod.num_experts + s.group_experts      # (G, K)
                p = np.zeros(mod.num_layers * mod.num_experts)
                np.add.at(p, (cols - o).ravel(), np.repeat(s.group_prob, cols.shape[1]) / mod.top_k)
                keep = np.flatnonzero(p > 0)
                g_user.append(np.full(len(keep), m))
                g_cols.append((o + keep)[:, None])
                g_w.append(w[m] * p[keep])
            self.g_user = np.concatenate(g_user).astype(np.int64)
            self.g_cols = np.concatenate(g_cols).astype(np.int64)
            self.g_w = np.concatenate(g_w).astype(float)
        else:
            # one row per (user, group), vectorised over users: columns o_u + l E_u + e, padded with C
            self.g_user = np.repeat(np.arange(M, dtype=np.int64), [len(s.group_prob) for s in stats])
            ge = [np.asarray(s.group_experts, dtype=np.int64) for s in stats]
            if any(g.shape[1] != kmax for g in ge):
                ge = [np.hstack([g, np.full((len(g), kmax - g.shape[1]), -1, dtype=np.int64)]) for g in ge]
            ge = np.concatenate(ge)
            gl = np.concatenate([s.group_layer for s in stats]).astype(np.int64)
            gu = um[self.g_user]
            E_u = np.array([m.num_experts for m in models], dtype=np.int64)
            base = self.offset[gu].astype(np.int64) + gl * E_u[gu]
            self.g_cols = np.where(ge >= 0, base[:, None] + ge, C).astype(np.int64)
            self.g_w = (w[self.g_user] * np.concatenate([s.group_prob for s in stats])).astype(float)
        self.submodular = kmax == 1
        # entries: one per (group, real member)
        G = len(self.g_user)
        gi, ki = np.nonzero(self.g_cols < C)                 # already by group, then position
        order = np.argsort(self.g_cols[gi, ki], kind="stable")   # by column, then group, then position
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
        lo, hi = int(lo), int(hi)
        ns = self.N if servers is None else len(np.atleast_1d(servers))
        a, b = self.col_ptr[lo], self.col_ptr[hi]
        out = np.zeros((hi - lo) * ns)
        if b > a:
            m = self.e_user[a:b]
            ck = cur[m, self.e_col[a:b]]
            if self.kmax > 1:
                om = cur[m[:, None], self.e_others[a:b]].max(axis=1)
            else:
                om = np.zeros(b - a)
            gmax = np.maximum(ck, om)
            if servers is None:
                # server-major layout (N, entries), built once: each bin still receives its
                # entries in entry order, so the sums are the same
                te = self.__dict__.get("_entry_T")
                if te is None:
                    te = self._entry_T = np.ascontiguousarray(self.T[self.e_user].T)
                    self._entry_bins = self.e_col[None, :] * self.N + np.arange(self.N)[:, None]
                new = np.maximum(om[None, :], np.minimum(ck[None, :], te[:, a:b]))
                val = self.e_w[None, a:b] * (gmax[None, :] - new)
                bins = self._entry_bins[:, a:b] - lo * ns
            else:
                t = self.T[m][:, np.atleast_1d(servers)]
                new = np.maximum(om[:, None], np.minimum(ck[:, None], t))
                val = self.e_w[a:b, None] * (gmax[:, None] - new)
                bins = (self.e_col[a:b, None] - lo) * ns + np.arange(ns)[None, :]
            out = np.bincount(bins.ravel(), weights=val.ravel(), minlength=out.size)
        return out.reshape(hi - lo, ns)

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


def _pair_names(pm: PairModel, picks) -> list[tuple[int, int, int, int]]:
    """:meth:`PairModel.pair_name` of every pick, vectorised."""
    if not picks:
        return []
    n, c = np.array(picks, dtype=np.int64).T
    return list(zip(n.tolist(), pm.col_model[c].tolist(), pm.col_layer[c].tolist(), pm.col_expert[c].tolist()))


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


def _entry_lists(pm: PairModel) -> dict:
    """Plain Python copies of the entry arrays, built once per :class:`PairModel` (for fast scalar loops)."""
    d = pm.__dict__.get("_lists")
    if d is None:
        d = dict(e_user=pm.e_user.tolist(), e_w=pm.e_w.tolist(), col_ptr=pm.col_ptr.tolist(),
                 T_by_server=pm.T.T.tolist(), col_bytes=pm.col_bytes.tolist(),
                 cap_eff=(pm.cap * (1 + 1e-12)).tolist())
        pm._lists = d
    return d


def _initial_gains(pm: PairModel, run: _Run) -> np.ndarray:
    """All gains ``(C, N)`` at the start of ``run``; those of the empty start are computed once per :class:`PairModel`."""
    empty = not run.picks and not run.x.any() and np.array_equal(run.cur, pm.cur0)
    if not empty:
        return pm.gains_range(run.cur, 0, pm.C)
    g0 = pm.__dict__.get("_g0")
    if g0 is None:
        g0 = pm._g0 = pm.gains_range(pm.cur0, 0, pm.C)
    return g0


def _server_heaps(pm: PairModel, gains: np.ndarray, ok: np.ndarray):
    """One heap per server of ``(-density, c N + n, 0)`` over the pairs ``ok``, and the smallest column size in each.

    A list sorted by key is a heap, so each heap is built by one vectorised sort.
    """
    N = pm.N
    negd = -(gains / pm.col_bytes[:, None])
    heaps, smallest = [], []
    for n in range(N):
        cs = np.flatnonzero(ok[:, n])
        nd = negd[cs, n]
        order = np.lexsort((cs, nd))
        heaps.append(list(zip(nd[order].tolist(), (cs[order] * N + n).tolist(), [0] * cs.size)))
        smallest.append(float(pm.col_bytes[cs].min()) if cs.size else 0.0)
    return heaps, smallest


def _finish(pm: PairModel, run: _Run, keys: list, used: list) -> _Run:
    """Write the pairs ``keys`` (``c N + n``, in the order added) and the storage ``used`` back into ``run``."""
    if not keys:
        return run
    k = np.array(keys, dtype=np.int64)
    pc, pn = k // pm.N, k % pm.N
    run.x[pc, pn] = True
    run.used = np.array(used, dtype=float)
    _apply_all(pm, run.cur, pn, pc)
    run.picks.extend(zip(pn.tolist(), pc.tolist()))
    return run


def _apply_all(pm: PairModel, cur: np.ndarray, pn: np.ndarray, pc: np.ndarray) -> None:
    """:meth:`PairModel.apply` of every pair ``(pn[i], pc[i])`` at once (in place; the order does not matter)."""
    pu = pm.col_model[pc]
    um = pm.problem.user_model
    for u in np.unique(pu).tolist():
        users = np.flatnonzero(um == u)
        sel = pu == u
        if users.size:
            np.minimum.at(cur, (users[:, None], pc[sel][None, :]), pm.T[users][:, pn[sel]])

def _pop_best(tops, heaps, N):
    """Pop the overall best key among the servers' heap tops; ``(column, server)`` or ``None``."""
    best = None
    for top in tops:
        if top is not None and (best is None or top < best):
            best = top
    if best is None:
        return None
    c, bn = divmod(best[1], N)
    heapq.heappop(heaps[bn])
    return c, bn



def _celf_submodular(pm: PairModel, run: _Run) -> _Run:
    """CELF for a submodular pair model (every group has one expert): same picks, less work.

    Chapter *Greedy for K = 1*, Algorithm 1, step 2.  The lazy greedy of the
    generic loop in :func:`run_greedy`, with refinements that do not change a
    single pick:

    * freshness per column: with ``K = 1`` adding ``(n, c)`` lowers ``tau`` of
      column ``c`` only, so a key stays *equal* to the current saving until a
      pair of its own column is added (a stamp per column instead of per step;
      a stale key is recomputed when it reaches the top, as in CELF);
    * one heap per server: a server with no room for its smallest remaining
      column drops out with its whole heap, and a validated heap top stays
      valid until its server or its column changes;
    * the best pair is the smallest ``(-density, c N + n)`` among the heap
      tops: the tie-breaking of the naive greedy.

    A saving is summed in plain Python over the column's entries in the order
    of :meth:`PairModel.gains_range`, skipping the entries that add exactly
    zero (``tau <= t``), so the values are bit-identical.  The state (``x``,
    ``cur``, ``used``, ``picks``) is written back into ``run`` at the end.
    """
    from heapq import heappop, heapreplace
    L = _entry_lists(pm)
    N = pm.N
    eu, ew, cp, TT, cb, capeff = (L["e_user"], L["e_w"], L["col_ptr"], L["T_by_server"], L["col_bytes"],
                                  L["cap_eff"])
    gains = _initial_gains(pm, run)
    run.evaluations += gains.size
    heaps, smallest = _server_heaps(pm, gains, pm.fits(run.used) & ~run.x & (gains > 0))
    ecur = run.cur[pm.e_user, pm.e_col].tolist()          # current latency of every entry
    used = run.used.tolist()
    ver = [0] * pm.C
    tops = [None] * N                                      # validated top of each heap (None: empty)
    need = range(N)
    keys = []
    evaluations = 0
    while True:
        for n in need:                                     # validate the tops that may have changed
            h = heaps[n]
            un, capn, Tn = used[n], capeff[n], TT[n]
            if h and smallest[n] + un > capn:              # nothing in it fits any more: drop it whole
                h.clear()
            top = None
            while h:
                top = h[0]
                c = top[1] // N
                if cb[c] + un > capn:
                    heappop(h)                             # will never fit again: storage only fills up
                elif top[2] != ver[c]:                     # its column changed since: recompute the saving
                    acc = 0.0
                    for i in range(cp[c], cp[c + 1]):
                        d = ecur[i] - Tn[eu[i]]            # > 0 exactly when the entry saves something
                        if d > 0.0:
                            acc += ew[i] * d
                    evaluations += 1
                    if acc > 0:
                        heapreplace(h, (-(acc / cb[c]), top[1], ver[c]))
                    else:
                        heappop(h)                         # submodular: a zero gain stays zero
                else:
                    break
                top = None
            tops[n] = top
        best = _pop_best(tops, heaps, N)
        if best is None:
            break
        c, bn = best
        k = c * N + bn
        used[bn] += cb[c]
        ver[c] += 1
        Tn = TT[bn]
        for i in range(cp[c], cp[c + 1]):
            t = Tn[eu[i]]
            if t < ecur[i]:
                ecur[i] = t
        keys.append(k)
        need = [n for n in range(N) if n == bn or (tops[n] is not None and tops[n][1] // N == c)]
    run.evaluations += evaluations
    return _finish(pm, run, keys, used)


def _incremental_heap(pm: PairModel, run: _Run) -> _Run:
    """The exact greedy for any ``K`` (mode ``"incremental"``) with heaps instead of a full scan per step.

    Chapter *Greedy for K = 1*, section "Why not for K >= 2".  Adding ``(n, c)``
    lowers ``tau`` of column ``c``, which changes (up or down) the savings of
    ``c`` and of the columns sharing a group with ``c`` only; those are
    recomputed at once with :meth:`PairModel.gains_range` (bit-identical to a
    full recomputation), and each pair whose saving changed gets a new stamp
    and, if it still helps and fits, a new key.  Every key with its pair's
    current stamp is that pair's current saving, so the best valid heap top,
    ``(-density, c N + n)``, is the pair the naive greedy picks.
    """
    from heapq import heappop, heappush
    N = pm.N
    cb, capeff = pm.col_bytes.tolist(), (pm.cap * (1 + 1e-12)).tolist()
    gains = _initial_gains(pm, run)
    run.evaluations += gains.size
    gcur = gains.copy()
    heaps, smallest = _server_heaps(pm, gains, pm.fits(run.used) & ~run.x & (gains > 0))
    nb_lo, nb_hi = _neighbour_ranges(pm)
    col_model = pm.col_model.tolist()
    users_of = [np.flatnonzero(pm.problem.user_model == u) for u in range(len(pm.problem.models))]
    used = run.used.tolist()
    x, cur = run.x, run.cur
    stamp = [0] * (pm.C * N)                              # stamp of the current saving of pair c N + n
    tops = [None] * N
    need = range(N)
    keys = []
    while True:
        for n in need:
            h = heaps[n]
            un, capn = used[n], capeff[n]
            if h and smallest[n] + un > capn:
                h.clear()
            top = None
            while h:
                top = h[0]
                if cb[top[1] // N] + un > capn or top[2] != stamp[top[1]]:
                    heappop(h)                             # no room any more, or superseded by a newer key
                    top = None
                else:
                    break
            tops[n] = top
        best = _pop_best(tops, heaps, N)
        if best is None:
            break
        c, bn = best
        k = c * N + bn
        used[bn] += cb[c]
        x[c, bn] = True
        users = users_of[col_model[c]]
        cur[users, c] = np.minimum(cur[users, c], pm.T[users, bn])
        keys.append(k)
        lo, hi = nb_lo[c], nb_hi[c]
        g = pm.gains_range(cur, lo, hi)
        run.evaluations += g.size
        changed = g != gcur[lo:hi]
        need = {bn}
        if changed.any():
            gcur[lo:hi] = g
            ok = changed & ~x[lo:hi] & (g > 0) & (pm.col_bytes[lo:hi, None] + np.array(used)[None, :]
                                                   <= pm.cap[None, :] * (1 + 1e-12))
            negd = -(g / pm.col_bytes[lo:hi, None])
            for cc, nn in zip(*np.nonzero(changed)):
                kk = int((lo + cc) * N + nn)
                stamp[kk] += 1
                if ok[cc, nn]:
                    heappush(heaps[nn], (float(negd[cc, nn]), kk, stamp[kk]))
                need.add(int(nn))
        for n in range(N):
            if tops[n] is not None and tops[n][2] != stamp[tops[n][1]]:
                need.add(n)
    run.used = np.array(used, dtype=float)
    run.picks.extend((int(k % N), int(k // N)) for k in keys)
    return run


def _neighbour_ranges(pm: PairModel) -> tuple[list, list]:
    """For every column ``c``, the range ``lo..hi-1`` of columns whose savings change when ``tau`` of ``c`` changes.

    ``c`` itself and every column sharing a group with it (same model and
    layer); built once per :class:`PairModel`.
    """
    r = pm.__dict__.get("_nb")
    if r is None:
        lo = np.arange(pm.C)
        hi = np.arange(pm.C)
        if pm.kmax > 1 and len(pm.e_col):
            oth = pm.e_others
            real = oth < pm.C
            np.minimum.at(lo, pm.e_col, np.where(real, oth, pm.C).min(axis=1))
            np.maximum.at(hi, pm.e_col, np.where(real, oth, -1).max(axis=1))
        r = pm._nb = (lo.tolist(), (hi + 1).tolist())
    return r


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
    if mode == "celf" and pm.submodular and not record:
        return _celf_submodular(pm, run)
    if mode == "incremental" and not record:
        return _incremental_heap(pm, run)
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
    best_val, variant = pm.value(best.cur), "density greedy"
    evaluations += best.evaluations
    completions = 0
    if not pm.submodular and completion:
        completions = _complete_groups(pm, best, mode)
        best_val = pm.value(best.cur)
        variant = "density greedy + group completion" if completions else variant
    g0 = _initial_gains(pm, _Run(pm))                   # the empty start's gains, computed once
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
                    seed_sets=seeds_tried, picks=_pair_names(pm, best.picks), group_completions=completions)
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
