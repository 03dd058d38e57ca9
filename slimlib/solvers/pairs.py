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
#: ``K = 1`` weights are held dense (C, M) when at least this fraction of (column, user) cells is observed.
DENSE_FRACTION = 1 / 3
#: Elements of one block of users filled at a time when the dense ``K = 1`` weights are built (its transpose
#: into the weights stays in the CPU cache).
WEIGHT_BLOCK = 2 ** 18


def _positive_dot(d: np.ndarray, a: np.ndarray) -> np.ndarray:
    """``sum_j a_j max(0, d[s, j])`` per row ``s`` of ``d`` (S, U) (overwritten), shape (S,).

    Every row is reduced alone along its contiguous axis, so a row's sum does
    not depend on the other rows.
    """
    np.maximum(d, np.zeros((1, d.shape[1]), d.dtype), out=d)   # a row of zeros: NumPy's fast loop, not the scalar one
    d *= a[None, :]
    return d.sum(axis=1)


def _column_sum(tt: np.ndarray, tau: np.ndarray, a: np.ndarray) -> np.ndarray:
    """``sum_j a_j max(0, tau_j - tt[s, j])`` per row ``s`` of ``tt`` (S, U) (overwritten), shape (S,)."""
    np.subtract(tau[None, :], tt, out=tt)
    return _positive_dot(tt, a)


def _server_sums(TT: np.ndarray, servers: np.ndarray, tau: np.ndarray, a: np.ndarray, users=None,
                 buf: np.ndarray | None = None) -> np.ndarray:
    """:func:`_column_sum` of the rows ``servers`` of ``TT`` (N, M) (restricted to ``users``), shape (len(servers),).

    When at least half the servers are asked for, every row is computed (no
    gather; into ``buf``, shaped like ``TT``, when given) and the asked ones
    are returned: the same values, each row alone.
    """
    if users is None and 2 * len(servers) >= len(TT):
        return _positive_dot(np.subtract(tau[None, :], TT, out=buf), a)[servers]
    tt = TT[servers] if users is None else TT[servers][:, users]
    return _column_sum(tt, tau, a)


def dense_weights(problem: Problem, users: np.ndarray, base: np.ndarray, experts: np.ndarray, C: int) -> np.ndarray:
    """``K = 1`` weights ``a_{c,i} = w_m p_{m,c}`` of the users ``m = users[i]``, dense, shape ``(C, len(users))``.

    Column ``c = base[i] + l * experts[i] + e`` for expert ``e`` of layer ``l``
    of user ``i``'s model (``base``: the model's first column; ``experts``: its
    ``E``).  Filled a block of users at a time through one buffer (its
    transpose stays in the CPU cache; fresh memory is slow to touch on some
    machines).  Groups are unique per layer, so entries are assigned, not added.
    """
    stats, w = problem.stats, problem.network.user_weight
    M = len(users)
    A = np.zeros((C, M))
    step = max(1, min(M, WEIGHT_BLOCK // max(1, C)))
    buf = np.empty((step, C))
    for i0 in range(0, M, step):
        us = users[i0:i0 + step]
        st = [stats[m] for m in us.tolist()]
        n = np.array([len(x.group_prob) for x in st], dtype=np.int64)
        col = np.concatenate([x.group_layer for x in st]) * np.repeat(experts[i0:i0 + len(us)], n)
        col += np.concatenate([x.group_experts[:, 0] for x in st]) + np.repeat(base[i0:i0 + len(us)], n)
        block = buf[:len(us)]
        block.fill(0.0)
        block[np.repeat(np.arange(len(us)), n), col] = np.repeat(w[us], n) * np.concatenate([x.group_prob for x in st])
        A[:, i0:i0 + len(us)] = block.T
    return A


def start_gains(A: np.ndarray, d_cloud: np.ndarray, d_near: np.ndarray, rows: np.ndarray, cols: np.ndarray):
    """``K = 1`` gains with no edge caching, ``A_cloud @ d_cloud + A_dev @ d_near``, shape ``(C, N)``.

    ``A`` (C, M) dense weights; ``d_cloud``, ``d_near`` (M, N) the savings
    ``max(0, tau0 - t_{m,n})`` from the cloud and from the device; the
    entries ``(rows, cols)`` of ``A`` start on the device (``A_dev``), the
    others from the cloud (``A_cloud``; ``A`` is zeroed there during the
    product and restored).  Sums of non-negative terms only, so a pair that
    saves nothing gets exactly 0.
    """
    held = A[rows, cols].astype(float)
    A[rows, cols] = 0.0
    g = A @ d_cloud
    A[rows, cols] = held
    if len(rows):
        from scipy.sparse import csr_matrix
        g += csr_matrix((held, (rows, cols)), shape=A.shape) @ d_near
    return g


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

    ``cur0``, the ``g_*`` and ``e_*`` arrays and ``col_ptr`` are built on
    first use (``_LAZY``): the ``K = 1`` greedy works by column
    (:meth:`column_gains`, :meth:`column_start`, :meth:`columns_value`) and
    never needs them, so a ``K = 1`` instance with 10,000 users holds no
    ``(M, C)`` array and no per-group rows.
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
        kmax = 1 if blind else max(m.top_k for m in models)
        self.kmax = kmax
        self.submodular = kmax == 1
        self._cloud = np.asarray(cloud, dtype=float)
        self._low = np.minimum(np.asarray(local, dtype=float), self._cloud)
        um = np.asarray(problem.user_model)
        self._model_users = [np.flatnonzero(um == u) for u in range(len(models))]

    # -- built on first use ---------------------------------------------------
    #: Attributes built on first use, and the method that builds them: the ``K = 1`` greedy
    #: (:meth:`column_gains`, :meth:`column_start`, :meth:`columns_value`) needs none of them.
    _LAZY = {"cur0": "_start", "g_user": "_groups", "g_cols": "_groups", "g_w": "_groups",
             "num_groups": "_groups", "e_group": "_entries", "e_col": "_entries", "e_user": "_entries",
             "e_w": "_entries", "e_others": "_entries", "col_ptr": "_entries"}

    def __getattr__(self, name):
        builder = PairModel._LAZY.get(name)
        if builder is None:
            raise AttributeError(name)
        getattr(self, builder)()
        return self.__dict__[name]

    def _start(self) -> None:
        """``cur0`` (M, C + 1): every column's latencies with no edge caching (see the class docstring)."""
        M, C = self.M, self.C
        cur0 = np.zeros((M, C + 1))
        for u, us in enumerate(self._model_users):    # each user's own model's columns: the cloud
            o, o1 = int(self.offset[u]), int(self.offset[u + 1])
            if us.size == M:
                cur0[:, o:o1] = self._cloud[:, None]
            elif us.size:
                cur0[us, o:o1] = self._cloud[us, None]
        dc, dm = self._device_entries()
        if dm.size:                                   # ... or the device, for the experts it holds (when faster)
            cur0[dm, dc] = self._low[dm]
        self.__dict__["cur0"] = cur0

    def _device_entries(self) -> tuple[np.ndarray, np.ndarray]:
        """``(columns, users)`` of the experts cached on the devices where the device is faster than the cloud."""
        d = self.__dict__.get("_dev")
        if d is None:
            d = self._dev = self._find_device_entries()
        return d

    def _find_device_entries(self) -> tuple[np.ndarray, np.ndarray]:
        problem = self.problem
        faster = self._low < self._cloud
        dc, dm = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)]
        for u, us in enumerate(self._model_users):      # per model: the users' device caches stacked, (k, L E)
            us = us[faster[us]]
            if us.size:
                i, c = np.nonzero(np.stack([problem.device_cache[m].ravel() for m in us.tolist()]))
                dc.append(int(self.offset[u]) + c)
                dm.append(us[i])
        order = np.argsort(np.concatenate(dm), kind="stable")   # by user, then column
        return np.concatenate(dc).astype(np.int64)[order], np.concatenate(dm).astype(np.int64)[order]

    def _groups(self) -> None:
        """``g_user``, ``g_cols``, ``g_w``, ``num_groups``: one row per (user, group) (see the class docstring)."""
        problem, models, M, C, kmax = self.problem, self.problem.models, self.M, self.C, self.kmax
        um = np.asarray(problem.user_model, dtype=np.int64)
        w = problem.network.user_weight
        stats = problem.stats
        d = self.__dict__
        if self.blind:
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
            d["g_user"] = np.concatenate(g_user).astype(np.int64)
            d["g_cols"] = np.concatenate(g_cols).astype(np.int64)
            d["g_w"] = np.concatenate(g_w).astype(float)
        else:
            # one row per (user, group), vectorised over users: columns o_u + l E_u + e, padded with C
            counts = np.array([len(s.group_prob) for s in stats], dtype=np.int64)
            d["g_user"] = np.repeat(np.arange(M, dtype=np.int64), counts)
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
            d["g_cols"] = ge
            d["g_w"] = np.repeat(np.asarray(w, dtype=float), counts)
            d["g_w"] *= np.concatenate([s.group_prob for s in stats]).astype(float, copy=False)
        d["num_groups"] = len(d["g_user"])

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
    def _k1_weights(self):
        """``a_{c,m} = w_m p_{m,c}``, shape (C, M): a dense array when at least ``DENSE_FRACTION`` of it is observed, else CSR.

        Built from the statistics directly (no per-group rows): a dense array is
        filled a block of users at a time, a sparse one is assembled by user and
        converted once.  Either holds at most three values per observed (user,
        expert) pair, so its size is bounded by that of the statistics already
        in memory.  The blind surrogate takes its rows from :meth:`_groups`.
        """
        from scipy import sparse
        C, M = self.C, self.M
        if self.blind:                                 # one row per (user, column) already
            A = sparse.csr_matrix((self.g_w, (self.g_cols[:, 0], self.g_user)), shape=(C, M))
            A.sort_indices()
            return A
        problem = self.problem
        stats, um, w = problem.stats, np.asarray(problem.user_model), problem.network.user_weight
        counts = np.array([len(s.group_prob) for s in stats], dtype=np.int64)

        def cols_of(m):                                # groups are unique per layer: no duplicate columns
            s, mod = stats[m], problem.models[um[m]]
            return int(self.offset[um[m]]) + s.group_layer * mod.num_experts + s.group_experts[:, 0]

        if counts.sum() >= DENSE_FRACTION * C * M:
            E_u = np.array([mod.num_experts for mod in problem.models], dtype=np.int64)
            return dense_weights(problem, np.arange(M), self.offset[um].astype(np.int64), E_u[um], C)
        ptr = np.concatenate([[0], np.cumsum(counts)])
        idx, val = np.empty(ptr[-1], dtype=np.int64), np.empty(ptr[-1])
        for m in range(M):
            idx[ptr[m]:ptr[m + 1]] = cols_of(m)
            val[ptr[m]:ptr[m + 1]] = w[m] * stats[m].group_prob
        A = sparse.csr_matrix((val, idx, ptr), shape=(M, C)).tocsc().T.tocsr()   # (C, M), users ascending
        A.sort_indices()
        return A

    def _k1(self) -> dict:
        """The ``K = 1`` gain data, built once: weights by column, ``T`` transposed, gains with no edge caching.

        ``A`` is ``a_{c,m} = w_m p_{m,c}`` (:meth:`_k1_weights`).  The gains
        with no edge caching, ``g0`` (C, N), are ``A_cloud @ D_cloud + A_dev @
        D_dev`` with ``D[m, n] = max(0, tau0_m - t_{m,n})`` for the two start
        latencies ``tau0`` (cloud; device, for the experts a device holds, whose
        weights are ``A_dev``; ``A_cloud`` the others): dense matrix products
        (BLAS) of non-negative terms, never an ``(N, M, C)`` array.
        """
        d = self.__dict__.get("_k1_data")
        if d is not None:
            return d
        from scipy import sparse
        C, M, N = self.C, self.M, self.N
        A = self._k1_weights()
        dense = isinstance(A, np.ndarray)
        d_cloud = np.maximum(self._cloud[:, None] - self.T, 0.0)            # (M, N)
        dc, dm = self._device_entries()                # the entries that start on the device
        d_near = np.maximum(self._low[:, None] - self.T, 0.0)
        if dense:
            g0 = start_gains(A, d_cloud, d_near, dc, dm)
        else:                                          # CSR: blocks of rows made dense, the same product
            g0 = np.empty((C, N))
            step = max(1, GEMM_BLOCK // max(1, M))
            for c0 in range(0, C, step):
                inside = (dc >= c0) & (dc < c0 + step)
                g0[c0:c0 + step] = start_gains(A[c0:c0 + step].toarray(), d_cloud, d_near,
                                               dc[inside] - c0, dm[inside])
        TT = np.ascontiguousarray(self.T.T)
        d = self._k1_data = dict(A=A, dense=dense, g0=g0, TT=TT, TT32=TT.astype(np.float32),
                                 buf32=np.empty(TT.shape, np.float32),
                                 tmin=self.T.min(axis=1), tmax=self.T.max(axis=1),
                                 lat_max=float(self.T.max(initial=0.0)))
        return d

    def _column_weights(self, c: int):
        """``(users, a)`` of column ``c``: the users with a weight (``None``: all users) and their weights (M,) or (k,)."""
        d = self._k1()
        A = d["A"]
        if d["dense"]:
            return None, A[c]
        p0, p1 = A.indptr[c], A.indptr[c + 1]
        users, a = A.indices[p0:p1], A.data[p0:p1]
        if 2 * len(users) >= self.M:                   # most users: all of them, zeros elsewhere (no gather)
            full = np.zeros(self.M)
            full[users] = a
            return None, full
        return users, a

    def column_start(self, c: int) -> np.ndarray:
        """``K = 1``: the latencies of column ``c`` with no edge caching, shape (M,), seconds (= ``cur0[:, c]``).

        The cloud for the users of the column's model, their device for the
        experts it holds (when faster), and 0 for the other models' users.
        """
        d = self.__dict__.get("_dev_index")
        if d is None:
            dc, dm = self._device_entries()
            order = np.argsort(dc, kind="stable")
            d = self._dev_index = (np.searchsorted(dc[order], np.arange(self.C + 1)), dm[order])
        ptr, dev_users = d
        users = self._model_users[self.col_model[c]]
        if len(users) == self.M:
            tau = self._cloud.copy()
        else:
            tau = np.zeros(self.M)
            tau[users] = self._cloud[users]
        dev = dev_users[ptr[c]:ptr[c + 1]]
        tau[dev] = self._low[dev]
        return tau

    def column_gains(self, tau: np.ndarray, c: int, servers=None) -> np.ndarray:
        """``K = 1``: gains of column ``c`` on ``servers`` (default all), given its current latencies ``tau`` (M,).

        ``sum_m a_{m,c} max(0, tau_m - t_{m,n})`` (chapter *Greedy for K = 1*,
        section "Incremental gains"), summed per server in one fixed order
        over the column's users (over all users, with zero weights, when at
        least half of them use the column: no gather), so a server's value
        is the same bit for bit whichever servers are asked for.  Shape
        ``(len(servers),)``, seconds.
        """
        users, a = self._column_weights(c)
        sv = np.arange(self.N) if servers is None else np.atleast_1d(servers)
        if users is None:
            return _server_sums(self._k1()["TT"], sv, tau, a)
        return _server_sums(self._k1()["TT"], sv, tau[users], a, users)

    def column_gain_bounds(self, tau: np.ndarray, c: int, servers) -> np.ndarray:
        """``K = 1``: upper bounds on :meth:`column_gains` of column ``c`` on ``servers``, from one single-precision pass.

        The sum of :meth:`column_gains` evaluated in ``float32`` (half the
        memory traffic), raised by its rounding error: with ``u = 2^-24``,
        ``gamma = (log2 M + 64) u`` (the pairwise sum, inputs and products),
        ``A = max_m a_m`` and ``L = max_m (tau_m + max_n t_{m,n})``,
        ``G <= S (1 + 4 gamma) + 4 u sum_m a_m (tau_m + max_n t_{m,n})
        + 4 M 2^-126 (A + 1)(L + 1)``, the last term for values that
        underflow in ``float32``.  Within about ``1e-5`` of the gain (relative)
        plus those small additive terms; the greedy confirms a bound with the
        exact :meth:`column_gains` before it picks.  Outside the range where
        single precision is safe (``2^-60 <= A L``, ``A, L <= 2^60``) or if
        anything is not finite, the exact gains are returned.  Shape
        ``(len(servers),)``, seconds.
        """
        users, a = self._column_weights(c)
        d = self._k1()
        TT32, tmax = d["TT32"], d["tmax"]
        sv = np.atleast_1d(servers)
        tu = tau if users is None else tau[users]
        reach = tu + (tmax if users is None else tmax[users])
        A = float(a.max()) if a.size else 0.0
        L = float(reach.max()) if reach.size else 0.0
        if not (2.0 ** -60 <= A * L and A <= 2.0 ** 60 and L <= 2.0 ** 60 and d["lat_max"] <= 2.0 ** 60):
            return self.column_gains(tau, c, sv)
        if users is None:
            s = _server_sums(TT32, sv, tu.astype(np.float32), a.astype(np.float32), buf=d["buf32"])
        else:
            s = _server_sums(TT32, sv, tu.astype(np.float32), a.astype(np.float32), users)
        u = 2.0 ** -24
        gamma = (int(self.M).bit_length() + 64) * u
        out = (s.astype(float) * (1 + 4 * gamma) + 4 * u * float(a @ reach)
               + 4 * self.M * 2.0 ** -126 * (A + 1) * (L + 1))
        return out if np.isfinite(out).all() else self.column_gains(tau, c, sv)

    def column_bound(self, tau: np.ndarray, c: int) -> float:
        """``K = 1``: an upper bound on :meth:`column_gains` over every server (each user's fastest server), s."""
        users, a = self._column_weights(c)
        tmin = self._k1()["tmin"]
        if users is None:
            return float(_column_sum(tmin[None, :].copy(), tau, a)[0]) * (1 + 1e-9)
        return float(_column_sum(tmin[None, users], tau[users], a)[0]) * (1 + 1e-9)

    def columns_value(self, columns: dict) -> float:
        """``K = 1``: ``R`` (seconds) when the columns ``c`` of ``columns`` have latencies ``columns[c]`` (M,) and the others their start.

        ``sum_c sum_m a_{m,c} (tau0_{m,c} - tau_{m,c})``, the columns in
        increasing order; equal to :meth:`value` of the same latencies.
        """
        total = 0.0
        for c in sorted(columns):
            users, a = self._column_weights(c)
            diff = self.column_start(c) - columns[c]
            total += float((a * diff).sum() if users is None else (a * diff[users]).sum())
        return total

    # -- objective ------------------------------------------------------------
    def value(self, cur: np.ndarray) -> float:
        """``R``: weighted reduction against no edge caching, seconds (= :func:`slimlib.latency_reduction`)."""
        if self.submodular:
            changed = np.flatnonzero((cur[:, :self.C] != self.cur0[:, :self.C]).any(axis=0))
            return self.columns_value({int(c): cur[:, c] for c in changed})
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
