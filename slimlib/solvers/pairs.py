"""(P1) flattened onto (server, column) pairs: the ground set of the pair-based solvers.

Chapter *Greedy for K = 1*, section "Incremental gains".  A *column*
``c = (u, l, e)`` is an expert ``e`` of MoE layer ``l`` of model ``u``; a pair
``(n, c)`` caches it on edge server ``n``.  :class:`PairModel` holds the
columns, the per-(user, group, member) *entries* whose sums are the marginal
gains, and the objective ``R`` (weighted latency reduction, seconds); the
greedy (:mod:`slimlib.solvers.greedy`) and the MILP
(:mod:`slimlib.solvers.exact`) search over it.
"""
from __future__ import annotations

import numpy as np

from ..latency import call_latency
from ..problem import Placement, Problem

__all__ = ["PairModel"]

#: Largest number of (entry, server) values :meth:`PairModel.gains_range` holds at once (``K >= 2``).
ENTRY_BLOCK = 2 ** 22
#: Largest dense block ``(columns, users)`` of the ``K = 1`` start-gain product, in elements.
GEMM_BLOCK = 2 ** 22


def _column_sum(tt: np.ndarray, tau: np.ndarray, a: np.ndarray) -> np.ndarray:
    """``sum_j a_j max(0, tau_j - tt[s, j])`` per row ``s`` of ``tt`` (S, U) (overwritten), shape (S,).

    Every row is reduced alone along its contiguous axis, so a row's sum does
    not depend on the other rows.
    """
    np.subtract(tau[None, :], tt, out=tt)
    np.maximum(tt, 0.0, out=tt)
    tt *= a[None, :]
    return tt.sum(axis=1)


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
        Built on first use (the ``K = 1`` gains, :meth:`column_gains`, never need them).
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
        for u in range(len(models)):                  # each user's own model's columns: the cloud
            us = np.flatnonzero(um == u)
            o, o1 = int(self.offset[u]), int(self.offset[u + 1])
            if us.size == M:
                cur0[:, o:o1] = np.asarray(cloud, dtype=float)[:, None]
            elif us.size:
                cur0[us, o:o1] = np.asarray(cloud, dtype=float)[us, None]
        dev = [self.offset[um[m]] + np.flatnonzero(problem.device_cache[m].ravel()) for m in range(M)]
        dm = np.repeat(np.arange(M), [len(d) for d in dev])
        if dm.size:                                   # ... or the device, for the experts it holds
            cur0[dm, np.concatenate(dev).astype(np.int64)] = np.asarray(low, dtype=float)[dm]
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
            counts = np.array([len(s.group_prob) for s in stats], dtype=np.int64)
            self.g_user = np.repeat(np.arange(M, dtype=np.int64), counts)
            ge = [np.asarray(s.group_experts, dtype=np.int64) for s in stats]
            padded = any(g.shape[1] != kmax for g in ge)
            if padded:
                ge = [np.hstack([g, np.full((len(g), kmax - g.shape[1]), -1, dtype=np.int64)]) for g in ge]
            ge = np.concatenate(ge)
            gl = np.concatenate([s.group_layer for s in stats]).astype(np.int64, copy=False)
            E_u = np.array([m.num_experts for m in models], dtype=np.int64)
            if len(models) == 1:                       # one model: no per-group gathers
                base = gl * E_u[0]
            else:
                base = np.repeat(self.offset[um].astype(np.int64), counts) + gl * np.repeat(E_u[um], counts)
            ge += base[:, None]                        # the dummy column C for the padding (-1)
            if padded:
                ge[ge < base[:, None]] = C
            self.g_cols = ge
            self.g_w = np.repeat(np.asarray(w, dtype=float), counts)
            self.g_w *= np.concatenate([s.group_prob for s in stats]).astype(float, copy=False)
        self.submodular = kmax == 1
        self.num_groups = len(self.g_user)
        self._cloud, self._low = np.asarray(cloud, dtype=float), np.asarray(low, dtype=float)

    #: Attributes built on first use by :meth:`_entries` (the ``K = 1`` fast path never needs them).
    _ENTRY_ATTRS = frozenset({"e_group", "e_col", "e_user", "e_w", "e_others", "col_ptr"})

    def __getattr__(self, name):
        if name in PairModel._ENTRY_ATTRS:
            self._entries()
            return self.__dict__[name]
        raise AttributeError(name)

    def _entries(self) -> None:
        """Build the per-(group, member) entries, sorted by column (see the class docstring)."""
        C, kmax = self.C, self.kmax
        gi, ki = np.nonzero(self.g_cols < C)                 # already by group, then position
        order = np.argsort(self.g_cols[gi, ki], kind="stable")   # by column, then group, then position
        gi, ki = gi[order], ki[order]
        d = self.__dict__
        d["e_group"] = gi
        d["e_col"] = self.g_cols[gi, ki]
        d["e_user"] = self.g_user[gi]
        d["e_w"] = self.g_w[gi]
        if kmax > 1:
            others = np.empty((len(gi), kmax - 1), dtype=np.int64)
            for j in range(kmax - 1):
                kk = np.where(j < ki, j, j + 1)
                others[:, j] = self.g_cols[gi, kk]
            d["e_others"] = others
        else:
            d["e_others"] = np.zeros((len(gi), 0), dtype=np.int64)
        d["col_ptr"] = np.searchsorted(d["e_col"], np.arange(C + 1))

    # -- K = 1: gains by column -------------------------------------------------
    def _k1(self) -> dict:
        """The ``K = 1`` gain data, built once: weights by column, ``T`` transposed, gains with no edge caching.

        ``A`` is ``a_{m,c} = w_m p_{m,c}`` as a CSR matrix ``(C, M)`` (users
        ascending in each row; memory O(observed (user, expert) pairs)).  The
        gains with no edge caching are ``A_cloud @ D_cloud + A_dev @ D_dev``
        with ``D[m, n] = max(0, tau0_m - t_{m,n})`` for the two start
        latencies ``tau0`` (cloud; device, for the experts a device holds):
        one dense matrix product per block of columns (BLAS), never an
        ``(N, M, C)`` array.
        """
        d = self.__dict__.get("_k1_data")
        if d is not None:
            return d
        from scipy import sparse
        C, M, N = self.C, self.M, self.N
        A = sparse.csr_matrix((self.g_w, (self.g_cols[:, 0], self.g_user)), shape=(C, M))   # sums duplicates
        A.sort_indices()
        # the (column, user) pairs that start on the device (cached there, and faster than the cloud)
        dm, dc = [], []
        for m in np.flatnonzero(self._low < self._cloud).tolist():
            cols = np.flatnonzero(self.problem.device_cache[m].ravel())
            if cols.size:
                dc.append(int(self.offset[self.problem.user_model[m]]) + cols)
                dm.append(np.full(cols.size, m))
        if dc:
            dc, dm = np.concatenate(dc), np.concatenate(dm)
            on_dev = sparse.csr_matrix((np.ones(dc.size), (dc, dm)), shape=(C, M))
            a_dev = A.multiply(on_dev).tocsr()
            a_cloud = (A - a_dev).tocsr()
        else:
            a_dev, a_cloud = sparse.csr_matrix((C, M)), A
        d_cloud = np.maximum(self._cloud[:, None] - self.T, 0.0)            # (M, N)
        d_dev = np.maximum(self._low[:, None] - self.T, 0.0)
        g0 = np.empty((C, N))
        step = max(1, GEMM_BLOCK // max(1, M))
        for c0 in range(0, C, step):
            g0[c0:c0 + step] = a_cloud[c0:c0 + step].toarray() @ d_cloud
        if a_dev.nnz:
            g0 += a_dev @ d_dev
        d = self._k1_data = dict(A=A, g0=g0, TT=np.ascontiguousarray(self.T.T), tmin=self.T.min(axis=1))
        return d

    def column_gains(self, tau: np.ndarray, c: int, servers=None) -> np.ndarray:
        """``K = 1``: gains of column ``c`` on ``servers`` (default all), given its current latencies ``tau`` (M,).

        ``sum_m a_{m,c} max(0, tau_m - t_{m,n})`` (chapter *Greedy for K = 1*,
        section "Incremental gains"), summed per server in one fixed order
        over the column's users (over all users, with zero weights, when at
        least half of them use the column: no gather), so a server's value
        is the same bit for bit whichever servers are asked for.  Shape
        ``(len(servers),)``, seconds.
        """
        d = self._k1()
        A = d["A"]
        p0, p1 = A.indptr[c], A.indptr[c + 1]
        users = A.indices[p0:p1]
        TT = d["TT"]
        if 2 * len(users) >= self.M:
            a = np.zeros(self.M)
            a[users] = A.data[p0:p1]
            tt = TT.copy() if servers is None else TT[np.atleast_1d(servers)]
            return _column_sum(tt, tau, a)
        tt = TT if servers is None else TT[np.atleast_1d(servers)]
        return _column_sum(tt[:, users], tau[users], A.data[p0:p1])

    def column_bound(self, tau: np.ndarray, c: int) -> float:
        """``K = 1``: an upper bound on :meth:`column_gains` over every server (each user's fastest server), s."""
        d = self._k1()
        A = d["A"]
        p0, p1 = A.indptr[c], A.indptr[c + 1]
        users = A.indices[p0:p1]
        return float(_column_sum(d["tmin"][None, users], tau[users], A.data[p0:p1])[0]) * (1 + 1e-9)

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
        if self.submodular:
            return self._k1_range(cur, lo, hi, servers)
        sv = np.arange(self.N) if servers is None else np.atleast_1d(servers)
        ns = len(sv)
        out = np.empty((hi - lo, ns))
        # blocks of whole columns with at most ENTRY_BLOCK (entry, server) values each: memory
        # O(observed groups), and each column's entries still summed in one bincount, in entry order
        ptr = self.col_ptr
        c0 = lo
        while c0 < hi:
            c1 = int(np.searchsorted(ptr, ptr[c0] + max(1, ENTRY_BLOCK // max(1, ns)), side="right")) - 1
            c1 = min(hi, max(c0 + 1, c1))
            out[c0 - lo:c1 - lo] = self._gains_block(cur, c0, c1, sv)
            c0 = c1
        return out

    def _gains_block(self, cur: np.ndarray, lo: int, hi: int, sv: np.ndarray) -> np.ndarray:
        """:meth:`gains_range` of columns ``lo..hi-1`` on servers ``sv`` in one piece, ``(hi - lo, len(sv))``."""
        ns = len(sv)
        a, b = self.col_ptr[lo], self.col_ptr[hi]
        if b == a:
            return np.zeros((hi - lo, ns))
        m = self.e_user[a:b]
        ck = cur[m, self.e_col[a:b]]
        om = cur[m[:, None], self.e_others[a:b]].max(axis=1) if self.kmax > 1 else np.zeros(b - a)
        gmax = np.maximum(ck, om)
        new = np.maximum(om[:, None], np.minimum(ck[:, None], self.T[m][:, sv]))
        val = self.e_w[a:b, None] * (gmax[:, None] - new)
        bins = (self.e_col[a:b, None] - lo) * ns + np.arange(ns)[None, :]
        return np.bincount(bins.ravel(), weights=val.ravel(), minlength=(hi - lo) * ns).reshape(hi - lo, ns)

    def gain(self, cur: np.ndarray, n: int, c: int) -> float:
        """Marginal gain of one pair ``(n, c)``, seconds.

        Bit-identical to the same entry of :meth:`gains_range` (same operations,
        same summation order).
        """
        return float(self.gains_range(cur, c, c + 1, [n])[0, 0])

    def _k1_range(self, cur: np.ndarray, lo: int, hi: int, servers=None) -> np.ndarray:
        """:meth:`gains_range` for ``K = 1``: the start gains for untouched columns, :meth:`column_gains` otherwise.

        A column is *untouched* when its latencies equal those with no edge
        caching; then its gains are the rows of the matrix product of
        :meth:`_k1` (the same numbers in every mode of the greedy, so every
        mode picks the same pairs).
        """
        g0 = self._k1()["g0"]
        out = g0[lo:hi] if servers is None else g0[lo:hi][:, np.atleast_1d(servers)]
        out = out.copy()
        touched = np.flatnonzero((cur[:, lo:hi] != self.cur0[:, lo:hi]).any(axis=0))
        for j in touched.tolist():
            out[j] = self.column_gains(cur[:, lo + j], lo + j, servers)
        return out

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

    def pair_names(self, picks) -> list[tuple[int, int, int, int]]:
        """:meth:`pair_name` of every pick ``(n, c)``, vectorised."""
        if not picks:
            return []
        n, c = np.array(picks, dtype=np.int64).T
        return list(zip(n.tolist(), self.col_model[c].tolist(), self.col_layer[c].tolist(),
                        self.col_expert[c].tolist()))
