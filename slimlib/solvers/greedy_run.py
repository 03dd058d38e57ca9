"""The density greedy's runs: state, the naive loop and its two fast paths (chapter *Greedy for K = 1*, Algorithm 1, step 2).

:func:`run_greedy` completes a run (a seed set, or the empty start) by the
density greedy over (server, column) pairs of a
:class:`~slimlib.solvers.pairs.PairModel`; :func:`slimlib.solvers.greedy.greedy`
wraps it with Algorithm 1's variants (best single pair, seeds, group
completion).

Fast paths
----------
The default runs never scan all pairs per step.  For ``K = 1``
(``_celf_columns``) the start gains are one matrix product
(:class:`~slimlib.solvers.pairs.PairModel`), the heap holds one key per
column, and after ``(n, c)`` is added only column ``c`` is re-evaluated,
lazily (its old gains become upper bounds); memory is O(observed (user,
expert) pairs) plus the latencies of the columns changed, never ``N M L E``.  For
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

import numpy as np

from .. import _validate as V
from .pairs import PairModel

__all__ = ["run_greedy"]


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
