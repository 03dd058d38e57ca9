"""Single-expert stage gains of a ``K = 1`` model over all stages of one solve (private to the solvers).

Chapter *Successive decomposition*, :prf:ref:`prop-topc`: for ``K = 1`` the
stage gain ``h_{u,l}(c)`` is the sum of the ``c`` largest single-expert
gains.  :class:`SingleGains` computes those gains for every stage of Algorithm
2 or 3 at the cost of one pass over the experts cached on some other server,
used by :func:`slimlib.solvers.gains.layer_gains`.
"""
from __future__ import annotations

import numpy as np

from ..latency import CallLatency
from ..problem import Placement, Problem
from .pairs import dense_weights, start_gains

#: Bytes of the scratch block of :class:`SingleGains` (a few rows of ``M_u`` floats; fits a core's cache).
CHUNK_BYTES = 2 ** 21


class SingleGains:
    """The single-expert stage gains of one ``K = 1`` model at every stage of one solve.

    Chapter *Successive decomposition*, :prf:ref:`prop-topc`: at the stage of
    server ``n`` the gain of column ``c = l E + e`` (expert ``e`` of layer
    ``l``) is, in weighted seconds,

    .. math::  g_n(c) = \\sum_{m: u(m) = u} a_{m,c}\\, (\\tau_b(m, c) - t_{m,n})^+,
               \\qquad a_{m,c} = w_m\\, p_{m,l,e},

    with ``tau_b(m, c)`` the latency of the expert without server ``n``
    (seconds) and ``t_{m,n}`` the call latency through ``n`` (seconds).

    * A column that no other server caches (*untouched*) has ``tau_b`` equal
      to its start: ``cloud_m``, or ``min(local_m, cloud_m)`` where user ``m``
      caches the expert on its device.  Its gains at every server are one
      matrix product, computed once (:meth:`untouched`): ``a`` without the
      device entries times ``(cloud_m - t_{m,n})^+``, ``(L E, M_u) x (M_u, N)``,
      plus the device entries times ``(min(local_m, cloud_m) - t_{m,n})^+``.
    * The *touched* columns (cached on some other server) keep a running
      minimum ``tau_b`` over the servers folded in so far (:meth:`update`;
      only new caches are folded in, and a changed or removed cache starts it
      again from the start latencies) and are summed again at every stage
      (:meth:`gains`), a few rows at a time through one reused scratch block.

    Everything is column-major, ``(L E, M_u)``, with the touched columns moved
    to the first rows, so a stage reads consecutive memory.  Memory: ``a`` and
    the running minimum, two ``(L E, M_u)`` float64 arrays per solve, and
    nothing of that size per stage.  Every gain is a sum over the users in a
    fixed order (a matrix product's, ``np.einsum``'s), so the same input gives
    the same bits; they equal the per-user formula to rounding (1e-12 relative,
    ``tests/test_decomposition.py``).
    """

    def __init__(self, problem: Problem, u: int, users: np.ndarray, placement: Placement, calls: CallLatency):
        mod = problem.models[u]
        self.L, self.E = mod.num_layers, mod.num_experts
        C, M = self.L * self.E, len(users)
        self.cloud = calls.cloud[users]                                        # (M_u,) s
        self.near = np.minimum(calls.local[users], self.cloud)                  # (M_u,) s
        self.edge = np.ascontiguousarray(calls.edge[users].T)                  # (N, M_u) s: t_{m,n} per server
        dev = [np.flatnonzero(placement.device[m]) for m in users]            # per user: columns on the device
        self.dev_cols = dev
        dc = np.concatenate(dev + [np.zeros(0, np.int64)])
        di = np.repeat(np.arange(M), [len(f) for f in dev])
        order = np.argsort(dc, kind="stable")                                  # device entries by column
        self.dev_user = di[order]
        self.dev_ptr = np.searchsorted(dc[order], np.arange(C + 1))
        # a_{m,c} = w_m p_{m,c}, (C, M_u)
        self.a = dense_weights(problem, np.asarray(users), np.zeros(M, dtype=np.int64), np.full(M, self.E), C)
        self.rows = max(1, min(C, CHUNK_BYTES // (8 * M)))                   # rows summed at a time
        # touched columns are moved to the first rows of a (row r holds column col[r], column c is in row slot[c]),
        # so that every stage sums consecutive rows; tau (allocated on first use) holds their running minimum
        self.col, self.slot = np.arange(C), np.arange(C)
        self.ntouched = 0
        self.tau = None
        self.snaps: dict = {}                   # servers folded into tau -> their cache then, (L, E)
        self._base = None
        self._buf = None

    def untouched(self) -> np.ndarray:
        """``(N, L E)``, weighted seconds: the gain of every column at every server when no other server caches it."""
        if self._base is None:
            di, ptr = self.dev_user, self.dev_ptr
            dr = self.slot[np.repeat(np.arange(len(ptr) - 1), np.diff(ptr))]    # rows of the device entries
            rows = start_gains(self.a, np.maximum(self.cloud[:, None] - self.edge.T, 0.0),
                               np.maximum(self.near[:, None] - self.edge.T, 0.0), dr, di)   # (C, N), by row of a
            self._base = np.empty((rows.shape[1], rows.shape[0]))
            self._base[:, self.col] = rows.T
        return self._base

    def _touch(self, c: int) -> int:
        """Move column ``c`` into the touched rows and start its running minimum; its row."""
        r, j = int(self.slot[c]), self.ntouched
        if r != j:                                                              # swap rows r and j of a
            self.a[[r, j]] = self.a[[j, r]]
            cj = int(self.col[j])
            self.col[j], self.col[r], self.slot[c], self.slot[cj] = c, cj, j, r
        if self.tau is None:
            self.tau = np.empty(self.a.shape)
        self.tau[j] = self.cloud                                                # cloud, or the device
        us = self.dev_user[self.dev_ptr[c]:self.dev_ptr[c + 1]]
        self.tau[j, us] = self.near[us]
        self.ntouched += 1
        return j

    def update(self, x: np.ndarray, server: int) -> None:
        """Fold the caches ``x`` (``(N, L, E)``) of every server but ``server`` into the running minimum."""
        want = [k for k in range(len(x)) if k != server and x[k].any()]      # empty servers change nothing
        if any(k not in want or not np.array_equal(x[k], sx) for k, sx in self.snaps.items()):
            self.snaps = {}                                                     # start again from the devices
            self.ntouched = 0
        for k in want:                          # only the cached experts of the servers not yet applied
            if k in self.snaps:
                continue
            for c in np.flatnonzero(x[k]).tolist():
                r = int(self.slot[c])
                if r >= self.ntouched:
                    r = self._touch(c)
                np.minimum(self.tau[r], self.edge[k], out=self.tau[r])
            self.snaps[k] = x[k].copy()

    def gains(self, server: int) -> np.ndarray:
        """``(L, E)``, weighted seconds: the single gains at the stage of ``server`` (after :meth:`update`)."""
        g = self.untouched()[server].copy()
        if self._buf is None and self.ntouched:
            self._buf = np.empty((self.rows, self.a.shape[1]))
        t, d = self.edge[server], self._buf
        for i in range(0, self.ntouched, self.rows):
            j = min(i + self.rows, self.ntouched)
            k = j - i
            np.maximum(self.tau[i:j], t, out=d[:k])                            # (tau - t)^+ as max(tau, t) - t
            np.subtract(d[:k], t, out=d[:k])                                   # (the same float)
            g[self.col[i:j]] = np.einsum("ij,ij->i", self.a[i:j], d[:k])
        return g.reshape(self.L, self.E)

    def latency(self, i: int) -> np.ndarray:
        """``tau_b`` of the model's ``i``-th user, ``(L, E)`` seconds (a new array)."""
        out = np.full(self.L * self.E, self.cloud[i])
        out[self.dev_cols[i]] = self.near[i]
        n = self.ntouched
        out[self.col[:n]] = self.tau[:n, i] if n else 0.0
        return out.reshape(self.L, self.E)
