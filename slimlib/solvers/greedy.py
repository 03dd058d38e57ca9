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
The default runs never scan all pairs per step.  For ``K = 1``
(``_celf_columns``) the start gains are one matrix product
(:class:`~slimlib.solvers.pairs.PairModel`), the heap holds one key per
column, and after ``(n, c)`` is added only column ``c`` is re-evaluated,
lazily (its old gains become upper bounds); memory is O(observed (user,
expert) pairs) plus the latencies ``(M, C)``, never ``N M L E``.  For
``K >= 2`` (``_incremental_heap``): one heap of ``(-density, c N + n)`` per
server and a stamp per pair; after an addition only the columns sharing a
group with ``c`` are recomputed, and whole heaps are dropped once their
server has no room for their smallest column.  Every mode reads its gains
through :meth:`~slimlib.solvers.pairs.PairModel.gains_range`, so every
value, and hence every pick and its tie-breaking, is bit-identical to the
naive reference (``lazy=False``); the tests check this pick by pick.
"""
from __future__ import annotations

import heapq
import math
from itertools import combinations

import numpy as np

from .. import _validate as V
from ..problem import Placement, Problem
from . import register
from .pairs import PairModel

__all__ = ["greedy", "blind_greedy", "run_greedy"]


# -- the greedy ------------------------------------------------------------------
class _Run:
    """State of one greedy run: chosen pairs, current latencies, used storage.

    The latencies ``cur`` (M, C + 1) are built on first use; until then, for
    ``K = 1`` (submodular pair models), only the columns changed so far are
    held, in ``cols`` (column -> latencies (M,)), so the ``K = 1`` greedy never
    builds an (M, C) array.
    """

    def __init__(self, pm: PairModel, x=None, cur=None, used=None):
        self.pm = pm
        self.x = np.zeros((pm.C, pm.N), bool) if x is None else x.copy()
        self._cur = None if cur is None else cur.copy()
        self.cols: dict[int, np.ndarray] = {}
        self.used = np.zeros(pm.N) if used is None else used.copy()
        self.picks: list[tuple[int, int]] = []
        self.evaluations = 0
        self.trace: list[dict] | None = None

    @property
    def cur(self) -> np.ndarray:
        if self._cur is None:
            cur = self.pm.cur0.copy()
            for c, t in self.cols.items():
                cur[:, c] = t
            self._cur, self.cols = cur, {}
        return self._cur

    @property
    def at_start(self) -> bool:
        """No pair chosen and the latencies of no edge caching."""
        if self.picks or self.x.any():
            return False
        return not self.cols if self._cur is None else np.array_equal(self._cur, self.pm.cur0)

    def column(self, c: int) -> np.ndarray:
        """Latencies of column ``c`` (M,), for updating in place (only while ``cur`` is not built)."""
        t = self.cols.get(c)
        if t is None:
            t = self.cols[c] = self.pm.column_start(c)
        return t

    def add(self, pm: PairModel, n: int, c: int):
        self.x[c, n] = True
        if self._cur is None and pm.submodular:
            t = self.column(c)
            np.minimum(t, pm.T[:, n], out=t)           # other models' users hold 0 there: unchanged
        else:
            pm.apply(self.cur, n, c)
        self.used[n] += pm.col_bytes[c]
        self.picks.append((int(n), int(c)))

    def value(self) -> float:
        """``R`` of the run, seconds."""
        if self._cur is None and self.pm.submodular:
            return self.pm.columns_value(self.cols)
        return self.pm.value(self.cur)


def _select(pm: PairModel, run: _Run, gains: np.ndarray):
    """Best pair by density among the free pairs that fit; ties -> smallest ``c * N + n``."""
    dens = gains / pm.col_bytes[:, None]
    ok = pm.fits(run.used) & ~run.x
    dens = np.where(ok, dens, -np.inf)
    k = int(np.argmax(dens))
    c, n = divmod(k, pm.N)
    return n, c, float(gains[c, n]), float(dens[c, n]), ok


def _initial_gains(pm: PairModel, run: _Run | None) -> np.ndarray:
    """All gains ``(C, N)`` at the start of ``run`` (``None``: the empty start, computed once per :class:`~slimlib.solvers.pairs.PairModel`)."""
    if run is not None and not run.at_start:
        if pm.submodular and run._cur is None:       # a seeded K = 1 run: the start gains, changed columns redone
            g = pm._k1()["g0"].copy()                  # (the numbers of gains_range, without an (M, C) array)
            for c, t in run.cols.items():
                if not np.array_equal(t, pm.column_start(c)):
                    g[c] = pm.column_gains(t, c)
            return g
        return pm.gains_range(run.cur, 0, pm.C)
    if pm.submodular:                                   # the rows of gains_range for untouched columns
        return pm._k1()["g0"]
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
    """:meth:`~slimlib.solvers.pairs.PairModel.apply` of every pair ``(pn[i], pc[i])`` at once (in place; the order does not matter)."""
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



#: Kinds of a key in :func:`_celf_columns`: an upper bound, a tight upper bound, the exact gain.
LOOSE, TIGHT, EXACT = 0, 1, 2


def _celf_columns(pm: PairModel, run: _Run) -> _Run:
    """CELF for a submodular pair model (``K = 1`` or the blind surrogate): the naive greedy's picks, less work.

    Chapter *Greedy for K = 1*, Algorithm 1, step 2.  The lazy greedy of the
    generic loop in :func:`run_greedy`, organised by column: with ``K = 1``
    adding ``(n, c)`` changes the latencies of column ``c`` only, so every
    other column's gains stay exact.

    * The start gains are one matrix product
      (:meth:`~slimlib.solvers.pairs.PairModel.column_gains` of the empty
      cache, computed once).
    * The heap holds one key per column: its best free pair that fits,
      ``(-density, c N + n)`` (the naive greedy's order and tie-breaking).
    * After ``(n, c)`` is added, the old gains of column ``c`` become upper
      bounds (submodularity; raised by 1e-9 against rounding), capped by
      :meth:`~slimlib.solvers.pairs.PairModel.column_bound` (each user's
      fastest server).  Keys are of three kinds: such a *loose* bound; a
      *tight* bound; the exact gain.  When a loose key reaches the top, one
      single-precision pass gives tight bounds for all the column's free
      pairs that fit
      (:meth:`~slimlib.solvers.pairs.PairModel.column_gain_bounds`); when a
      tight key reaches the top, the exact gain of that one pair is computed
      (:meth:`~slimlib.solvers.pairs.PairModel.column_gains`); an exact key
      on top is picked.

    A key is exact or a bound of the pair's current gain, so the first exact
    key on top is the pair the naive greedy picks; gains are the numbers of
    :meth:`~slimlib.solvers.pairs.PairModel.gains_range`, bit for bit.  Only
    the latencies of the columns changed are held (``run.cols``, or a copy of
    those columns of a seeded run's ``cur``, written back at the end): no
    (M, C) array is built.
    """
    from heapq import heapify, heappop, heappush, heapreplace
    N, C = pm.N, pm.C
    gains = _initial_gains(pm, run)
    run.evaluations += gains.size
    val = gains.copy()                                     # exact gain, or an upper bound (see kind)
    kind = np.full((C, N), EXACT, np.int8)
    cb = pm.col_bytes
    capeff = pm.cap * (1 + 1e-12)
    used, x = run.used, run.x
    if run._cur is None:                                   # only the changed columns are held
        col = run.column
    else:                                                  # a seeded run: its columns, written back at the end
        held = {}

        def col(c):
            t = held.get(c)
            if t is None:
                t = held[c] = run.cur[:, c].copy()
            return t
    TT = pm._k1()["TT"]
    ver = [0] * C

    def top_of(c):                                         # the column's best free pair that fits, by density
        d = val[c] / cb[c]
        d[(cb[c] + used > capeff) | x[c]] = -np.inf
        n = int(d.argmax())
        if not d[n] > 0:
            return None
        return (-float(d[n]), c * N + n, int(kind[c, n]), ver[c])

    ok = pm.fits(used) & ~x & (gains > 0)
    dens = np.where(ok, gains / cb[:, None], -np.inf)
    best = np.argmax(dens, axis=1)
    bd = dens[np.arange(C), best]
    heap = [(-float(bd[c]), c * N + int(best[c]), EXACT, 0) for c in np.flatnonzero(np.isfinite(bd)).tolist()]
    heapify(heap)
    evaluations = 0
    while heap:
        negd, k, kd, v = heap[0]
        c, n = divmod(k, N)
        if v != ver[c]:
            heappop(heap)                                  # superseded by a newer key of its column
            continue
        if cb[c] + used[n] > capeff[n] or x[c, n]:
            pass                                           # the column's key moves to another server below
        elif kd == EXACT:
            heappop(heap)                                  # exact, free, fits: the naive greedy's pick
            x[c, n] = True
            used[n] += cb[c]
            t = col(c)
            np.minimum(t, TT[n], out=t)                    # other models' users hold 0 there: unchanged
            run.picks.append((n, c))
            ver[c] += 1
            # the old gains bound the new ones (submodularity); 1e-9 covers the start product's BLAS rounding
            val[c] = np.minimum(val[c] * (1 + 1e-9), pm.column_bound(t, c))
            kind[c] = LOOSE
        elif kd == LOOSE:
            # tight bounds, one single-precision pass, for the pairs of c that are free and fit
            ask = np.flatnonzero((kind[c] == LOOSE) & ~x[c] & (cb[c] + used <= capeff))
            val[c, ask] = np.minimum(val[c, ask], pm.column_gain_bounds(col(c), c, ask))
            kind[c, ask] = TIGHT
            evaluations += len(ask)
        else:                                              # a tight bound on top: the exact gain of this pair
            val[c, n] = pm.column_gains(col(c), c, [n])[0]
            kind[c, n] = EXACT
            evaluations += 1
        t = top_of(c)
        if t is None:
            if heap and heap[0][1] == k and heap[0][3] == ver[c]:
                heappop(heap)
        elif heap and heap[0][1] == k and heap[0][3] == v:
            heapreplace(heap, t)
        else:
            heappush(heap, t)
    run.evaluations += evaluations
    if run._cur is not None:
        for c, t in held.items():
            run.cur[:, c] = t
    return run


def _incremental_heap(pm: PairModel, run: _Run) -> _Run:
    """The exact greedy for any ``K`` (mode ``"incremental"``) with heaps instead of a full scan per step.

    Chapter *Greedy for K = 1*, section "Why not for K >= 2".  Adding ``(n, c)``
    lowers ``tau`` of column ``c``, which changes (up or down) the savings of
    ``c`` and of the columns sharing a group with ``c`` only; those are
    recomputed at once with :meth:`~slimlib.solvers.pairs.PairModel.gains_range` (bit-identical to a
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
    layer); built once per :class:`~slimlib.solvers.pairs.PairModel`.
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


def run_greedy(pm: PairModel, run: _Run | None, mode: str, record: bool = False) -> _Run:
    """Complete ``run`` by the density greedy (in place) and return it.

    Chapter *Greedy for K = 1*, Algorithm 1, step 2 (lazy or naive).

    Parameters
    ----------
    pm : PairModel
    run : _Run or None
        Start state (a seed set, or empty); ``None`` starts from no edge caching.
    mode : {"celf", "naive", "incremental"}
        Lazy evaluation, full recomputation at every step, or exact refresh of
        the changed layer only.
    record : bool
        Keep, for every step, the full gain matrix and the choice (naive mode
        only), in ``run.trace`` (used by :func:`slimlib.studies.greedy_trace`).
    """
    if run is None:
        run = _Run(pm)
    if mode == "celf" and pm.submodular and not record:
        return _celf_columns(pm, run)
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
