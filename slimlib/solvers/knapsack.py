"""Knapsack combination of the per-layer gains under one server's storage (Algorithms 2 and 3).

Chapters *Successive decomposition* (the DP over capacity units,
:func:`combine_dp`, Algorithm 2) and *Max-plus convolution* (the
``(1 - eps)`` value-grid combination, :func:`combine_accelerated`,
Algorithm 3).  Both read items ``h_k(c)`` (non-decreasing, ``h_k(0) = 0``)
and expert sizes, and return how many experts of each item to cache.

:func:`combine_exact` is the stage combination used by ``"decomposition"``:
it never loses storage to rounding (units from the sizes' gcd when usable,
otherwise one count-based DP per expert size, combined exactly over the
counts of all but the largest size class); only when neither is possible is
the DP run in rounded units, with a certified bound on what the rounding can
have cost.
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Sequence

import numpy as np

from .. import _validate as V
from ..maxplus import is_concave, maxplus_strided, merge_concave, minplus_sparse

__all__ = ["dp_unit", "combine_dp", "combine_accelerated", "combine_exact", "MAX_UNITS", "MAX_GRID"]

#: Default largest number of capacity units of the DP (the DP's table has ``MAX_UNITS + 1`` columns).
MAX_UNITS = 2 ** 21
#: Largest value grid ``V`` of :func:`combine_accelerated` (the grid has ``V + 1`` cells; about ``2 J / eps``).
MAX_GRID = 2 ** 24


def _slots(capacity_bytes: float, size_bytes: float) -> int:
    return int(math.floor(capacity_bytes / size_bytes + 1e-9))


def dp_unit(sizes_bytes, capacity_bytes: float, unit=None, max_units: int = MAX_UNITS) -> tuple[float, bool]:
    """The capacity unit of the DP (chapter *Successive decomposition*, "Capacity units").

    The DP counts storage in units of ``unit`` bytes; an expert of ``s`` bytes
    takes ``ceil(s / unit)`` units and the server ``floor(Q / unit)``.  The DP
    is exact when every size is a multiple of the unit, and otherwise
    conservative (feasible, possibly sub-optimal).

    Parameters
    ----------
    sizes_bytes : array_like
        Expert sizes of the models in the stage.
    capacity_bytes : float
        ``Q_n``.
    unit : float, optional
        Bytes per unit.  Default (``None``): the greatest common divisor of the
        sizes when they are whole numbers of bytes and ``Q_n / gcd <= max_units``;
        otherwise ``Q_n / max_units`` (sizes rounded up: conservative).
    max_units : int
        Largest capacity in units (bounds the DP table).

    Returns
    -------
    unit : float
    exact : bool
        Every size is a multiple of ``unit``.
    """
    sizes = np.unique(np.asarray(sizes_bytes, float))
    Q = float(capacity_bytes)
    if unit is None:
        if sizes.size and np.all(sizes == np.round(sizes)) and sizes.max() < 2 ** 62:
            g = 0
            for s in sizes.astype(np.int64):
                g = math.gcd(g, int(s))
            if g > 0 and Q / g <= max_units:
                return float(g), True
        unit = max(Q / max_units, 1e-300)
        if sizes.size:
            unit = max(unit, float(sizes.min()) / max_units)
    else:
        unit = V.number("unit", unit, positive=True)
        if Q / unit > max_units:
            raise V.fail("unit", unit, f"gives {Q / unit:.3g} capacity units, more than max_units={max_units}")
    r = sizes / unit
    return float(unit), bool(np.all(np.abs(r - np.round(r)) <= 1e-9 * np.maximum(1, r)))


def _strided_index(step: int, m: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``idx[q, j] = q - j * step``, or ``n`` (a sentinel) where that is negative, shape ``(n, m)``; and ``arange(n)``.

    Small ones (at most ``2**13`` entries, the usual stage) are cached.
    """
    if m * n <= 1 << 13:
        return _strided_index_cached(step, m, n)
    src = np.arange(n)[:, None] - step * np.arange(m)[None, :]
    return np.where(src >= 0, src, n), np.arange(n)


@lru_cache(maxsize=128)
def _strided_index_cached(step: int, m: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    src = np.arange(n)[:, None] - step * np.arange(m)[None, :]
    idx = np.where(src >= 0, src, n)
    q = np.arange(n)
    idx.setflags(write=False)
    q.setflags(write=False)
    return idx, q


def _maxplus_step(a: np.ndarray, b: np.ndarray, step: int, finite: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """:func:`slimlib.maxplus.maxplus_strided` ``(a, b, step, len(a))`` for inputs known to be valid.

    Same result bit for bit (the same sums ``a[q - j step] + b[j]`` and the
    first arg-max over ``j``), without the input checks, with the gather
    indices cached and ``j`` along the contiguous axis; the large case is
    delegated.  ``a``: floats, finite or ``-inf``; ``b``: finite floats.
    ``finite=True`` promises that ``a`` is finite, so no ``c[q]`` is ``-inf``.
    """
    n = len(a)
    m = min(len(b), (n - 1) // step + 1)
    if m * n > 1 << 16:
        return maxplus_strided(a, b, step, n)
    idx, q = _strided_index(step, m, n)
    ext = np.empty(n + 1)
    ext[:n] = a
    ext[n] = -np.inf
    cand = ext[idx]
    cand += b[None, :m]
    arg = cand.argmax(axis=1)
    c = cand[q, arg]
    if not finite:
        arg[c == -np.inf] = -1
    return c, arg


def combine_dp(h_list: Sequence, sizes_units: Sequence[int], capacity_units: int, *,
               keep_table: bool = False, _trusted: bool = False):
    """Algorithm 2's DP: split the capacity across layers exactly (chapter *Successive decomposition*, eq. (DP)).

    ``F_0(q) = 0``, ``F_k(q) = max_{c: c s_k <= q} F_{k-1}(q - c s_k) + h_k(c)``;
    each step is one :func:`slimlib.maxplus.maxplus_strided`.  ``O(J * C * Q)``
    for ``J`` layers, ``C + 1`` choices and ``Q`` units (pseudo-polynomial).

    Parameters
    ----------
    h_list : sequence of array_like
        ``h_k`` per item, non-decreasing, ``h_k[0] = 0``.
    sizes_units : sequence of int
        ``s_k >= 1`` units per expert.
    capacity_units : int
        ``Q >= 0``.
    keep_table : bool
        Also return the full tables.

    Returns
    -------
    counts : ndarray of int, shape (J,)
        The chosen ``c_k`` (the smallest best choices, backtracked from ``F_J(Q)``).
    value : float
        ``F_J(Q) = sum_k h_k(c_k)``.
    table : ndarray, shape (J + 1, Q + 1) or None
    choice : ndarray of int, shape (J, Q + 1) or None
    """
    # _trusted (private, solve_stage): the h_k are LayerGain.h float arrays; skip their checks (same result)
    Q = V.number("capacity_units", capacity_units, integer=True, nonneg=True)
    J = len(h_list)
    F = np.zeros(Q + 1)
    args = []
    rows = [F] if keep_table else None
    finite = True
    for k in range(J):
        w = int(sizes_units[k])
        if w < 1:
            raise V.fail(f"sizes_units[{k}]", w, "must be >= 1")
        if _trusted:
            h = h_list[k]
            finite = finite and math.isfinite(h[0])          # F_0 = 0, and F_k >= F_{k-1} + h_k[0]
            F, arg = _maxplus_step(F, h, w, finite=finite)
        else:
            F, arg = maxplus_strided(F, h_list[k], w, Q + 1)
        args.append(arg.astype(np.int16 if len(h_list[k]) < 2 ** 15 else np.int32))
        if keep_table:
            rows.append(F)
    counts = np.zeros(J, np.int64)
    q = Q
    for k in range(J - 1, -1, -1):
        c = int(args[k][q])
        counts[k] = c
        q -= c * int(sizes_units[k])
    value = float(F[Q]) if J else 0.0
    if keep_table:
        return counts, value, np.array(rows), (np.array(args, dtype=np.int32) if J else np.zeros((0, Q + 1), np.int32))
    return counts, value, None, None


def _hull_segments(H: np.ndarray, size: float):
    """Upper concave hull of ``(c * size, H[c])``: list of (cost, value, c_to)."""
    pts = []
    for c, h in enumerate(np.asarray(H, float).tolist()):          # Python floats: the same IEEE arithmetic
        while len(pts) >= 2:
            (c1, v1), (c2, v2) = pts[-2], pts[-1]
            if (v2 - v1) * (c - c1) <= (h - v1) * (c2 - c1):
                pts.pop()
            else:
                break
        pts.append((c, h))
    return [((b[0] - a[0]) * size, b[1] - a[1], b[0]) for a, b in zip(pts, pts[1:]) if b[1] > a[1]]


def _concave_flags(hs: list, tol: float) -> list:
    """``[slimlib.maxplus.is_concave(h, tol) for h in hs]`` for finite float arrays, in a few array operations."""
    flags = [True] * len(hs)
    idx = [k for k, h in enumerate(hs) if len(h) > 2]
    if not idx:
        return flags
    lens = np.array([len(hs[k]) for k in idx])
    flat = np.concatenate([hs[k] for k in idx])
    starts = np.concatenate([[0], np.cumsum(lens)[:-1]])
    scale = np.maximum(1.0, np.maximum.reduceat(np.abs(flat), starts))        # per sequence
    item = np.repeat(np.arange(len(idx)), lens)
    d2 = np.diff(np.diff(flat))                                                # d2[i] uses flat[i : i + 3]
    inside = item[:-2] == item[2:]
    bad = inside & ~(d2 <= tol * scale[item[:-2]])
    nbad = np.bincount(item[:-2][bad], minlength=len(idx))
    for i, k in enumerate(idx):
        flags[k] = bool(nbad[i] == 0)
    return flags


def _merge_concave(seqs: list) -> tuple[np.ndarray, np.ndarray]:
    """:func:`slimlib.maxplus.merge_concave` for float arrays already known to be concave (same result)."""
    inc = np.concatenate([np.diff(s) for s in seqs])
    who = np.concatenate([np.full(len(s) - 1, j) for j, s in enumerate(seqs)]).astype(np.int64)
    order = np.argsort(-inc, kind="stable")
    values = np.concatenate([[sum(float(s[0]) for s in seqs)], inc[order]]).cumsum()
    return values, who[order]


def _value_dp(merged: list, delta: float, Vmax: int) -> tuple[np.ndarray, list]:
    """The value-indexed DP of :func:`combine_accelerated` (step 3) for valid inputs, bit for bit.

    Per item ``(H, s)``: ``hr = floor(H / delta)``, its distinct values ``vals``
    with the smallest ``c`` reaching each (``first``, as ``np.unique(hr,
    return_index=True)``), and one (min,+) step
    ``D'[v] = min_i D[v - vals_i] + first_i s`` with the first minimising ``i``
    (as :func:`slimlib.maxplus.minplus_sparse`).  The rounding is done for all
    items at once, and ``D`` lives after ``P = max vals`` cells of ``+inf`` so
    that ``v - vals_i`` never needs a bounds check.

    Returns
    -------
    D : ndarray, shape (Vmax + 1,)
    steps : list of (vals, first, arg) per item
    """
    J = len(merged)
    n = Vmax + 1
    lens = np.array([len(m[0]) for m in merged])
    starts = np.zeros(J, np.int64)
    np.cumsum(lens[:-1], out=starts[1:])
    item = np.repeat(np.arange(J), lens)
    hr = np.floor(np.concatenate([m[0] for m in merged]) / delta).astype(np.int64)
    new = np.ones(len(hr), bool)
    new[1:] = hr[1:] != hr[:-1]
    new[starts] = True
    down = np.zeros(len(hr), bool)
    down[1:] = hr[1:] < hr[:-1]
    down[starts] = False
    unsorted = set(item[down].tolist())                        # (never for non-decreasing H)
    pos = np.flatnonzero(new)                                  # the first c of every run of equal hr
    cut = np.searchsorted(pos, np.append(starts, len(hr)))
    local = pos - starts[item[pos]]
    steps = []
    for j, (_, s, _, _) in enumerate(merged):
        if j in unsorted:
            vals, first = np.unique(hr[starts[j]:starts[j] + lens[j]], return_index=True)
        else:
            vals, first = hr[pos[cut[j]:cut[j + 1]]], local[cut[j]:cut[j + 1]]
        steps.append([vals, first, first * s])
    P = max(int(st[0].max()) for st in steps)
    buf = np.full(P + n, np.inf)
    buf[P] = 0.0                                               # D_0: value 0 costs nothing
    nxt = np.full(P + n, np.inf)
    q = np.arange(n)
    base = q + P
    for st in steps:
        vals, first, cost = st
        cand = buf[base[:, None] - vals[None, :]]              # (n, p): D[v - vals_i], +inf below 0
        cand += cost[None, :]
        arg = cand.argmin(axis=1)
        c = cand[q, arg]
        arg[c == np.inf] = -1
        nxt[P:] = c
        buf, nxt = nxt, buf
        st[2] = arg
    return buf[P:].copy(), [tuple(st) for st in steps]


def combine_accelerated(h_list: Sequence, sizes_bytes: Sequence[float], capacity_bytes: float, eps: float, *,
                        keep_table: bool = False, _trusted: bool = False):
    """Algorithm 3: combine the layers within ``(1 - eps)`` of the stage optimum (chapter *Max-plus convolution*).

    1. Each item is truncated to the experts that fit, ``c <= floor(Q / s_k)``.
    2. Concave items with the same expert size are merged exactly by
       :func:`slimlib.maxplus.merge_concave` (linear-time (max,+) merge), giving
       ``J`` items.
    3. If everything fits, or ``J = 1``, the answer is exact.  Otherwise the
       LP relaxation (greedy over hull segments) gives ``LB <= OPT <= UB <= 2 LB``;
       gains are rounded down to the grid ``delta = eps * LB / J``,
       ``hr_k(c) = floor(h_k(c) / delta)``, and ``D_k(v)``, the least storage
       reaching rounded value exactly ``v``, is computed for
       ``v = 0..floor(UB / delta)`` by (min,+) convolution with each item
       (:func:`slimlib.maxplus.minplus_sparse`); the answer is the largest
       ``v`` with ``D_J(v) <= Q``.

    Guarantee: the returned value is at least ``OPT - J delta >= (1 - eps) OPT``
    where ``OPT = max { sum_k h_k(c_k) : sum_k c_k s_k <= Q }`` (storage in
    exact bytes).  Time ``O(J * V * min(C, V))`` with ``V <= 2 J / eps``.

    Parameters
    ----------
    h_list : sequence of array_like
        ``h_k``, non-decreasing, ``h_k[0] = 0``.
    sizes_bytes : sequence of float
        ``s_k > 0``.
    capacity_bytes : float
    eps : float
        ``0 < eps < 1``.
    keep_table : bool
        Return the table ``D`` (rows: items after merging) and the merged items.

    Returns
    -------
    counts : ndarray of int, shape (len(h_list),)
    value : float
        ``sum_k h_k(counts_k)`` (exact gains, not rounded).
    info : dict
        ``exact`` (no rounding was needed), ``delta``, ``grid`` (``V``),
        ``lb``, ``ub``, ``items`` (``J``), and with ``keep_table`` ``table``,
        ``merged`` (list of (H, size, members)).
    """
    # _trusted (private, solve_stage): finite float h_k; skip the checks, batch the rounding (same result)
    eps = V.number("eps", eps, positive=True)
    if not eps < 1:
        raise V.fail("eps", eps, "must be < 1")
    Q = float(capacity_bytes)
    n = len(h_list)
    counts = np.zeros(n, np.int64)
    hs, sizes = [], []
    for k in range(n):
        h = np.asarray(h_list[k], float)
        s = float(sizes_bytes[k])
        hs.append(h[:max(1, min(len(h), _slots(Q, s) + 1))])
        sizes.append(s)
    # 2. merge concave items of equal size (exact)
    groups: dict = {}
    merged = []                      # (H, size, members, owner or None)
    concave = _concave_flags(hs, 1e-9) if _trusted else None
    for k in range(n):
        if len(hs[k]) <= 1:
            continue
        if concave[k] if _trusted else is_concave(hs[k], 1e-9):
            groups.setdefault(sizes[k], []).append(k)
        else:
            merged.append((hs[k], sizes[k], [k], None))
    for s, members in groups.items():
        if len(members) == 1:
            merged.append((hs[members[0]], s, members, None))
            continue
        H, owner = (_merge_concave if _trusted else merge_concave)([hs[k] for k in members])
        H = H[:_slots(Q, s) + 1]
        merged.append((H, s, members, owner))
    info = dict(exact=True, delta=0.0, grid=0, lb=0.0, ub=0.0, items=len(merged))

    def decode(j, c):
        H, s, members, owner = merged[j]
        if owner is None:
            counts[members[0]] = c
        else:
            counts[members] = np.bincount(owner[:c], minlength=len(members))

    J = len(merged)
    if J == 0:
        return counts, 0.0, info
    full = [len(H) - 1 for H, *_ in merged]
    if J == 1 or sum(c * m[1] for c, m in zip(full, merged)) <= Q * (1 + 1e-12):
        for j, (H, s, _, _) in enumerate(merged):
            c = int(np.flatnonzero(H >= H[-1])[0])
            decode(j, c)
        if keep_table:
            info["merged"] = merged
        return counts, float(sum(float(np.asarray(h_list[k])[counts[k]]) for k in range(n))), info
    # 3. bounds from the LP relaxation (hull segments by density)
    segs = []
    for j, (H, s, _, _) in enumerate(merged):
        segs += [(v / cst, cst, v) for cst, v, _ in _hull_segments(H, s)]
    segs.sort(key=lambda t: -t[0])
    room, lb_greedy, ub = Q, 0.0, 0.0
    for dens, cst, v in segs:
        if cst <= room:
            room -= cst
            lb_greedy += v
        else:
            ub = lb_greedy + v * room / cst
            break
    else:
        ub = lb_greedy
    lb = max(lb_greedy, max(float(H[-1]) for H, *_ in merged))
    ub = max(ub, lb)
    if not lb > 0:
        return counts, 0.0, info
    delta = eps * lb / J
    if ub / delta > MAX_GRID:
        raise V.fail("eps", eps, f"needs a value grid of {ub / delta:.3g} cells, more than {MAX_GRID}")
    Vmax = int(math.floor(ub / delta)) + 1
    info.update(exact=False, delta=delta, grid=Vmax, lb=lb, ub=ub)
    if _trusted and not keep_table:
        D, steps = _value_dp(merged, delta, Vmax)
    else:
        D = np.full(Vmax + 1, np.inf)
        D[0] = 0.0
        rows = [D] if keep_table else None
        steps = []
        for H, s, _, _ in merged:
            hr = np.floor(H / delta).astype(np.int64)
            vals, first = np.unique(hr, return_index=True)     # smallest c per rounded value
            D, arg = minplus_sparse(D, vals, first * s, Vmax + 1)
            steps.append((vals, first, arg))
            if keep_table:
                rows.append(D)
    ok = np.flatnonzero(D <= Q * (1 + 1e-12))
    v = int(ok[-1])
    for j in range(J - 1, -1, -1):
        vals, first, arg = steps[j]
        i = int(arg[v])
        decode(j, int(first[i]))
        v -= int(vals[i])
    if keep_table:
        info["table"] = np.array(rows)
        info["merged"] = merged
    value = float(sum(float(np.asarray(h_list[k])[counts[k]]) for k in range(n)))
    return counts, value, info



#: Largest number of count vectors :func:`combine_exact` enumerates over the smaller size classes.
MAX_COMBOS = 2 ** 20


def _dp_rows(h_list: Sequence, steps: Sequence[int], capacity: int) -> tuple[np.ndarray, list]:
    """The last row ``F_J(0..capacity)`` of the DP of :func:`combine_dp` and its arg-max rows (trusted inputs)."""
    F = np.zeros(capacity + 1)
    args = []
    finite = True
    for h, w in zip(h_list, steps):
        finite = finite and math.isfinite(h[0])
        F, arg = _maxplus_step(F, h, int(w), finite=finite)
        args.append(arg)
    return F, args


def _backtrack(args: list, steps: Sequence[int], q: int) -> np.ndarray:
    counts = np.zeros(len(args), np.int64)
    for k in range(len(args) - 1, -1, -1):
        c = max(int(args[k][q]), 0)
        counts[k] = c
        q -= c * int(steps[k])
    return counts


def combine_exact(h_list: Sequence, sizes_bytes: Sequence[float], capacity_bytes: float, *, unit=None,
                  max_units: int = MAX_UNITS, keep_table: bool = False, max_combos: int = MAX_COMBOS):
    """Algorithm 2's combination without losing storage to rounding (chapter *Successive decomposition*, "Capacity units").

    Three schemes, tried in this order (``info["scheme"]``):

    * ``"gcd"``: storage counted in units of the greatest common divisor of
      the sizes (:func:`dp_unit`) when that gives at most ``max_units`` units;
      the DP of :func:`combine_dp`, exact.  Also ``"unit"`` when ``unit`` is
      given (exact when every size is a multiple of it);
    * ``"by-size"``: the items are grouped by expert size; each size class is
      combined by a count-based DP (one unit = one expert of that size, so
      ``F_s(c)`` is the best value with ``c`` experts of size ``s``), and the
      classes are combined exactly by trying every count vector of all but
      the class with most counts (at most ``max_combos``), the last class
      taking every expert that still fits.  Exact, in exact bytes;
    * ``"rounded"``: otherwise the DP in units of ``max(Q / max_units,
      s_min / max_units)`` bytes with sizes rounded up (feasible).  The DP is
      run to ``n_max = floor(Q / s_min)`` more units, and
      ``info["loss_bound"] = F_J(Q' + n_max) - F_J(Q')`` bounds what the
      rounding can have cost: every feasible choice of ``c`` experts takes at
      most ``Q' + c`` rounded units, so the optimum is at most ``F_J(Q' + n_max)``.

    Parameters
    ----------
    h_list : sequence of ndarray
        ``h_k`` (finite floats, non-decreasing, ``h_k[0] = 0``).
    sizes_bytes : sequence of float
        ``s_k > 0`` bytes per expert of item ``k``.
    capacity_bytes : float
        ``Q``.
    unit : float, optional
        Force the DP in units of this many bytes (as :func:`dp_unit`).
    max_units : int
        Largest DP capacity in units.
    keep_table : bool
        Return the DP table and arg-max table (schemes ``"gcd"``/``"unit"`` and
        ``"by-size"`` with a single size, where one table describes the stage).
    max_combos : int
        Largest number of count vectors of scheme ``"by-size"``.

    Returns
    -------
    counts : ndarray of int, shape (J,)
    value : float
        ``sum_k h_k(counts_k)``.
    info : dict
        ``scheme``, ``exact`` (the value is the optimum for these ``h_k``),
        ``loss_bound`` (0 when exact; weighted seconds like ``value``),
        ``unit_bytes``, ``capacity_units``, ``sizes_units`` (the DP's units;
        for ``"by-size"`` one unit per expert of each class and
        ``capacity_units`` the per-class slot counts).
    table, choice : ndarray or None
        As :func:`combine_dp` with ``keep_table=True``.
    """
    max_units = V.number("max_units", max_units, integer=True, positive=True)
    max_combos = V.number("max_combos", max_combos, integer=True, positive=True)
    Q = float(capacity_bytes)
    J = len(h_list)
    sizes = np.asarray(sizes_bytes, float).reshape(J)
    if J == 0:
        return (np.zeros(0, np.int64), 0.0, dict(scheme="empty", exact=True, loss_bound=0.0, unit_bytes=float("nan"),
                capacity_units=0, sizes_units=np.zeros(0, np.int64)), None, None)
    if unit is None:
        u_bytes, unit_exact = dp_unit(sizes, Q, None, max_units)
        scheme = "gcd" if unit_exact else None
    else:
        u_bytes, unit_exact = dp_unit(sizes, Q, unit, max_units)
        scheme = "unit"
    if scheme is not None:
        su = np.maximum(1, np.ceil(sizes / u_bytes - 1e-9)).astype(np.int64)
        qu = int(math.floor(Q / u_bytes + 1e-9))
        info = dict(scheme=scheme, unit_bytes=u_bytes, capacity_units=qu, sizes_units=su)
        if unit_exact or keep_table:
            counts, value, table, choice = combine_dp(h_list, su, qu, keep_table=keep_table, _trusted=True)
            info.update(exact=bool(unit_exact), loss_bound=0.0 if unit_exact else float("nan"))
            if not unit_exact:
                info["loss_bound"] = _rounding_loss(h_list, sizes, su, qu, value)
            return counts, value, info, table, choice
        return _rounded(h_list, sizes, Q, u_bytes, info)
    # by size class
    classes = {}
    for k, s in enumerate(sizes.tolist()):
        classes.setdefault(s, []).append(k)
    keys = sorted(classes)
    caps = [min(_slots(Q, s), sum(len(h_list[k]) - 1 for k in classes[s])) for s in keys]
    rest = sorted(range(len(keys)), key=lambda i: caps[i])[:-1]           # enumerate all but the largest
    combos = 1
    for i in rest:
        combos *= caps[i] + 1
    if combos > max_combos:
        u_bytes = max(Q / max_units, float(sizes.min()) / max_units, 1e-300)
        su = np.maximum(1, np.ceil(sizes / u_bytes - 1e-9)).astype(np.int64)
        qu = int(math.floor(Q / u_bytes + 1e-9))
        return _rounded(h_list, sizes, Q, u_bytes, dict(scheme="rounded", unit_bytes=u_bytes, capacity_units=qu,
                                                         sizes_units=su))
    rows = []
    for s, cap in zip(keys, caps):
        hs = [h_list[k] for k in classes[s]]
        rows.append(_dp_rows(hs, [1] * len(hs), cap))
    last = [i for i in range(len(keys)) if i not in rest][0]
    grid = np.zeros((1, 0), np.int64)
    for i in rest:                                                        # count vectors of the small classes
        c = np.arange(caps[i] + 1)
        grid = np.concatenate([np.repeat(grid, len(c), axis=0), np.tile(c, len(grid))[:, None]], axis=1)
    grid = grid.reshape(-1, len(rest))
    used = grid @ np.array([keys[i] for i in rest], float) if rest else np.zeros(1)
    ok = used <= Q * (1 + 1e-12)
    grid, used = grid[ok], used[ok]
    c_last = np.minimum(caps[last], np.floor((Q - used) / keys[last] + 1e-9)).astype(np.int64)
    c_last = np.maximum(c_last, 0)
    val = rows[last][0][c_last].copy()
    for j, i in enumerate(rest):
        val += rows[i][0][grid[:, j]]
    b = int(np.argmax(val))
    counts = np.zeros(J, np.int64)
    pick = {last: int(c_last[b])}
    pick.update({i: int(grid[b, j]) for j, i in enumerate(rest)})
    for i, s in enumerate(keys):
        members = classes[s]
        counts[members] = _backtrack(rows[i][1], [1] * len(members), pick[i])
    value = float(sum(float(h_list[k][counts[k]]) for k in range(J)))
    info = dict(scheme="by-size", exact=True, loss_bound=0.0, unit_bytes=float("nan"),
                capacity_units=caps, sizes_units=np.ones(J, np.int64), size_classes=keys, combos=int(len(grid)))
    table = choice = None
    if keep_table and len(keys) == 1:
        counts, value, table, choice = combine_dp(h_list, np.ones(J, np.int64), caps[0], keep_table=True,
                                                  _trusted=True)
        info.update(unit_bytes=keys[0], capacity_units=caps[0])
    return counts, value, info, table, choice


def _rounding_loss(h_list, sizes, su, qu, value) -> float:
    """Certified bound on what rounding sizes up to units can cost (see :func:`combine_exact`)."""
    nmax = int(math.floor(qu / float(su.min()))) + 1 if len(su) else 0
    nmax = min(nmax, sum(len(h) - 1 for h in h_list))
    F, _ = _dp_rows(h_list, su, qu + nmax)
    return max(0.0, float(F[-1]) - float(value))


def _rounded(h_list, sizes, Q, u_bytes, info):
    su, qu = info["sizes_units"], info["capacity_units"]
    nmax = min(_slots(Q, float(sizes.min())), sum(len(h) - 1 for h in h_list))
    F, args = _dp_rows(h_list, su, qu + nmax)
    counts = _backtrack(args, su, qu)
    value = float(sum(float(h_list[k][counts[k]]) for k in range(len(h_list))))
    loss = max(0.0, float(F[-1]) - value)
    info.update(exact=loss == 0.0, loss_bound=loss)
    return counts, value, info, None, None
