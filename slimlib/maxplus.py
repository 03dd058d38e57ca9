"""(max,+) and (min,+) convolution primitives.

Chapter *Max-plus convolution* (and the DP of chapter *Successive
decomposition*).  The (max,+) convolution of two sequences ``a`` (length
``n``) and ``b`` (length ``m``) is

.. math::  (a \\oplus b)[k] = \\max_{i + j = k} a[i] + b[j], \\qquad k = 0, \\dots, n + m - 2,

and the (min,+) convolution is the same with ``min``.  Missing entries are
``-inf`` (for max) or ``+inf`` (for min).  This module holds

* the naive ``O(nm)`` convolutions, the reference every other primitive is
  tested against (:func:`maxplus_naive`, :func:`minplus_naive`);
* the linear-time merge for two concave sequences (:func:`maxplus_concave`),
  its convex (min,+) mirror (:func:`minplus_convex`) and the merge of many
  concave sequences with the bookkeeping needed to recover which sequence
  contributed what (:func:`merge_concave`);
* the two DP steps of the algorithms: the capacity-indexed step of the exact
  DP, which is a (max,+) convolution with a sequence spread out by a stride
  (:func:`maxplus_strided`, chapter *Successive decomposition*, eq. (DP)), and
  the value-indexed step of the accelerated algorithm, a (min,+) convolution
  with a sparse sequence (:func:`minplus_sparse`, chapter *Max-plus
  convolution*).

The strided and sparse steps also return the arg-max / arg-min needed to
backtrack a DP.  All functions take and return float ``numpy`` arrays.
"""
from __future__ import annotations

import numpy as np

from . import _validate as V

__all__ = ["maxplus_naive", "minplus_naive", "is_concave", "is_convex", "maxplus_concave",
           "minplus_convex", "merge_concave", "maxplus_strided", "minplus_sparse"]


def _seq(name: str, a, allow: float | None = None) -> np.ndarray:
    """A non-empty 1-D float sequence; NaN never allowed, only ``allow`` (+-inf) as infinite value."""
    try:
        x = np.asarray(a, dtype=float)
    except (TypeError, ValueError):
        raise V.fail(name, a, "must be a 1-D sequence of numbers") from None
    if x.ndim != 1 or x.size == 0:
        raise V.fail(name, a, "must be a non-empty 1-D sequence")
    if np.isnan(x).any():
        raise V.fail(f"{name}[{int(np.flatnonzero(np.isnan(x))[0])}]", float("nan"), "must not be NaN")
    bad = np.isinf(x) & (x != allow) if allow is not None else np.isinf(x)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise V.fail(f"{name}[{i}]", x[i], "must be finite" if allow is None else f"may only be finite or {allow}")
    return x


# -- naive reference -----------------------------------------------------------
def maxplus_naive(a, b) -> np.ndarray:
    """(max,+) convolution by definition, ``O(n m)`` (chapter *Max-plus convolution*, eq. (MP)).

    Parameters
    ----------
    a : array_like, shape (n,)
        May contain ``-inf`` (an infeasible entry).
    b : array_like, shape (m,)
        May contain ``-inf``.

    Returns
    -------
    ndarray, shape (n + m - 1,)
        ``c[k] = max_{i+j=k} a[i] + b[j]``.
    """
    a = _seq("a", a, -np.inf)
    b = _seq("b", b, -np.inf)
    n, m = len(a), len(b)
    c = np.full(n + m - 1, -np.inf)
    if m <= n:
        for j in range(m):
            np.maximum(c[j:j + n], a + b[j], out=c[j:j + n])
    else:
        for i in range(n):
            np.maximum(c[i:i + m], b + a[i], out=c[i:i + m])
    return c


def minplus_naive(a, b) -> np.ndarray:
    """(min,+) convolution by definition, ``O(n m)``; entries may be ``+inf``.

    Returns
    -------
    ndarray, shape (n + m - 1,)
        ``c[k] = min_{i+j=k} a[i] + b[j]``.
    """
    a = _seq("a", a, np.inf)
    b = _seq("b", b, np.inf)
    return -maxplus_naive(-a, -b)


# -- concave sequences -----------------------------------------------------------
def is_concave(a, tol: float = 1e-12) -> bool:
    """``True`` if the finite sequence ``a`` has non-increasing increments.

    ``tol`` is relative to the largest absolute entry (floating-point noise of
    sums of gains must not make a concave sequence look non-concave).
    """
    a = _seq("a", a)
    if len(a) <= 2:
        return True
    d = np.diff(a)
    scale = max(1.0, float(np.abs(a).max()))
    return bool((np.diff(d) <= tol * scale).all())


def is_convex(a, tol: float = 1e-12) -> bool:
    """``True`` if the finite sequence ``a`` has non-decreasing increments."""
    return is_concave(-_seq("a", a), tol)


def maxplus_concave(a, b) -> np.ndarray:
    """(max,+) convolution of two concave sequences in ``O(n + m)`` by merging increments.

    Chapter *Max-plus convolution*, Proposition (concave merge): for concave
    ``a`` and ``b``, ``c[0] = a[0] + b[0]`` and ``c[k] - c[k-1]`` is the
    ``k``-th largest of all increments of ``a`` and ``b`` together.  The merge
    walks both increment lists once, like the merge step of merge sort.

    Parameters
    ----------
    a, b : array_like, shape (n,) and (m,)
        Finite and concave (checked; ValueError otherwise).

    Returns
    -------
    ndarray, shape (n + m - 1,)
    """
    a = _seq("a", a)
    b = _seq("b", b)
    if not is_concave(a, 1e-9):
        raise V.fail("a", a.tolist(), "must be concave (non-increasing increments)")
    if not is_concave(b, 1e-9):
        raise V.fail("b", b.tolist(), "must be concave (non-increasing increments)")
    da, db = np.diff(a), np.diff(b)
    out = np.empty(len(a) + len(b) - 1)
    out[0] = a[0] + b[0]
    i = j = 0
    k = 1
    while i < len(da) or j < len(db):          # the linear merge
        if j >= len(db) or (i < len(da) and da[i] >= db[j]):
            out[k] = out[k - 1] + da[i]
            i += 1
        else:
            out[k] = out[k - 1] + db[j]
            j += 1
        k += 1
    return out


def minplus_convex(a, b) -> np.ndarray:
    """(min,+) convolution of two convex sequences in ``O(n + m)`` (mirror of :func:`maxplus_concave`)."""
    a = _seq("a", a)
    b = _seq("b", b)
    if not is_convex(a, 1e-9):
        raise V.fail("a", a.tolist(), "must be convex (non-decreasing increments)")
    if not is_convex(b, 1e-9):
        raise V.fail("b", b.tolist(), "must be convex (non-decreasing increments)")
    return -maxplus_concave(-a, -b)


def merge_concave(seqs) -> tuple[np.ndarray, np.ndarray]:
    """(max,+) convolution of many concave sequences, with the owner of every increment.

    Chapter *Max-plus convolution*, Algorithm (concave merge) generalised to
    ``J`` sequences: the convolution's increments are all increments sorted in
    decreasing order (ties: lower sequence index first, then position), so the
    result and its decomposition come from one sort, ``O(S log S)`` for ``S``
    increments in total (linear time for two sequences, :func:`maxplus_concave`).

    Parameters
    ----------
    seqs : sequence of array_like
        ``J`` finite concave sequences (checked).

    Returns
    -------
    values : ndarray, shape (S + 1,)
        ``values[t] = max { sum_j a_j[c_j] : sum_j c_j = t }``.
    owner : ndarray of int, shape (S,)
        ``owner[t]`` is the sequence whose increment is the ``(t+1)``-th
        largest: the best split of ``t`` is ``c_j = #{s < t : owner[s] = j}``
        (``np.bincount(owner[:t], minlength=J)``).
    """
    seqs = [_seq(f"seqs[{j}]", s) for j, s in enumerate(seqs)]
    if not seqs:
        raise V.fail("seqs", seqs, "needs at least one sequence")
    for j, s in enumerate(seqs):
        if not is_concave(s, 1e-9):
            raise V.fail(f"seqs[{j}]", s.tolist(), "must be concave (non-increasing increments)")
    inc = np.concatenate([np.diff(s) for s in seqs])
    who = np.concatenate([np.full(len(s) - 1, j) for j, s in enumerate(seqs)]).astype(np.int64)
    order = np.argsort(-inc, kind="stable")      # concatenation order breaks ties: index, then position
    values = np.concatenate([[sum(float(s[0]) for s in seqs)], inc[order]]).cumsum()
    return values, who[order]


# -- the two DP steps ---------------------------------------------------------------
def maxplus_strided(a, b, step: int, out_len: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One step of the capacity-indexed DP: ``c[q] = max_j a[q - j*step] + b[j]``.

    Chapter *Successive decomposition*, eq. (DP): with ``a = F_{k-1}`` over
    capacity units ``q`` and ``b = h_k`` over the number of experts ``j`` of
    size ``step`` units, ``c = F_k``.  It equals the naive (max,+) convolution
    of ``a`` with ``b`` spread out by ``step`` (``-inf`` in between), truncated
    to ``out_len``.  ``O(out_len * m)`` vectorised over ``q``.

    Parameters
    ----------
    a : array_like, shape (n,)
        May contain ``-inf``.
    b : array_like, shape (m,)
        May contain ``-inf``.
    step : int
        ``>= 1``.
    out_len : int, optional
        Length of the result (default ``n``, the DP's capacity axis).

    Returns
    -------
    c : ndarray, shape (out_len,)
    arg : ndarray of int, shape (out_len,)
        The smallest maximising ``j`` (``-1`` where ``c`` is ``-inf``).
    """
    a = _seq("a", a, -np.inf)
    b = _seq("b", b, -np.inf)
    step = V.number("step", step, integer=True, positive=True)
    n = len(a)
    L = n if out_len is None else V.number("out_len", out_len, integer=True, positive=True)
    m = min(len(b), (L - 1) // step + 1)
    if m * L <= 1 << 16:                      # small: one gather over the (j, q) grid
        q = np.arange(L)
        src = q[None, :] - step * np.arange(m)[:, None]
        ok = (src >= 0) & (src < n)
        cand = np.where(ok, a[np.clip(src, 0, n - 1)] + b[:m, None], -np.inf)
        arg = np.argmax(cand, axis=0)
        c = cand[arg, q]
        arg[c == -np.inf] = -1
        return c, arg.astype(np.int64)
    c = np.full(L, -np.inf)
    arg = np.full(L, -1, dtype=np.int64)
    for j in range(len(b)):
        off = j * step
        if off >= L:
            break
        hi = min(L, off + n)
        cand = a[:hi - off] + b[j]
        seg = c[off:hi]
        better = cand > seg
        seg[better] = cand[better]
        arg[off:hi][better] = j
    return c, arg


def minplus_sparse(a, offsets, costs, out_len: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One step of the value-indexed DP: ``c[v] = min_i a[v - offsets[i]] + costs[i]``.

    Chapter *Max-plus convolution*, eq. (VDP): ``a = D_{k-1}`` (least storage
    reaching rounded value ``v``), and the layer offers ``(offsets[i],
    costs[i])`` = (rounded gain, bytes) pairs.  It equals the naive (min,+)
    convolution of ``a`` with the sparse sequence ``b[offsets[i]] = costs[i]``
    (``+inf`` elsewhere; the smallest cost if an offset repeats), truncated to
    ``out_len``.  ``O(out_len * len(offsets))`` vectorised over ``v``.

    Parameters
    ----------
    a : array_like, shape (n,)
        May contain ``+inf``.
    offsets : array_like of int, shape (p,)
        Non-negative.
    costs : array_like, shape (p,)
        Finite.
    out_len : int, optional
        Default ``n``.

    Returns
    -------
    c : ndarray, shape (out_len,)
    arg : ndarray of int, shape (out_len,)
        The index ``i`` of the minimising pair (first one on ties; ``-1`` where
        ``c`` is ``+inf``).
    """
    a = _seq("a", a, np.inf)
    off = V.array("offsets", offsets, ndim=1, dtype=np.int64)
    cost = V.array("costs", costs, shape=(len(off),))
    if len(off) == 0:
        raise V.fail("offsets", [], "needs at least one pair")
    if (off < 0).any():
        raise V.fail("offsets", off.tolist(), "must be >= 0")
    n = len(a)
    L = n if out_len is None else V.number("out_len", out_len, integer=True, positive=True)
    c = np.full(L, np.inf)
    arg = np.full(L, -1, dtype=np.int64)
    for i in range(len(off)):
        o = int(off[i])
        if o >= L:
            continue
        hi = min(L, o + n)
        cand = a[:hi - o] + cost[i]
        seg = c[o:hi]
        better = cand < seg
        seg[better] = cand[better]
        arg[o:hi][better] = i
    return c, arg
