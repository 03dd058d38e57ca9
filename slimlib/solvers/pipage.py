"""LP relaxation and pipage rounding: ``solve(problem, method="pipage")``.

Chapter *Greedy for K = 1*, section "An algorithm that earns 1 − 1/e"
(:prf:ref:`prop-pipage`).  For Top-1 routing with one expert size ``s`` the
constraint of (P1') is a partition matroid: server ``n`` holds at most
``k_n = floor(Q_n / s)`` columns ``c = (u, l, e)``.  The method

1. writes ``R`` as a sum over requests ``r = (m, l, e)``: with the servers
   ordered by the value ``f_r(1) >= f_r(2) >= ...`` they give the request
   (``f_r(j) = w_m p_{m,l,e} max(0, tau0 - t_edge[m, n_j])``),

   ``F(x) = sum_r sum_k (f_r(k) - f_r(k+1)) (1 - prod_{j<=k} (1 - x[n_j, c(r)]))``

   (the multilinear extension of ``R``; ``F = R`` on 0/1 points);
2. maximises the concave surrogate ``L`` (``1 - prod`` replaced by
   ``min(1, sum)``) over ``0 <= x <= 1``, ``sum_c x[n, c] <= k_n`` — a linear
   program solved by HiGHS through :func:`scipy.optimize.linprog`, whose value
   is at least the optimum (``L = R`` on 0/1 points);
3. rounds by pipage steps: two fractional entries of one server move along
   ``e_{n,c} - e_{n,c'}`` to the end point with the larger ``F`` (``F`` is
   linear on that line, since no request involves two columns), and a last
   fractional entry of a server is rounded up (``F`` is non-decreasing).

Since ``F >= (1 - 1/e) L`` point-wise, the result has
``R >= F(x_LP) >= (1 - 1/e) L(x_LP) >= (1 - 1/e) OPT``.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import sparse

from .. import _validate as V
from ..latency import call_latency
from ..problem import Placement, Problem
from . import register

__all__ = ["pipage", "PipageModel", "applicable", "MAX_TERMS"]

#: Largest number of LP terms ``(request, prefix)`` accepted (memory guard).
MAX_TERMS = 5_000_000


def applicable(problem: Problem) -> str | None:
    """Why pipage does not apply to ``problem`` (one sentence naming the method to use), or ``None``.

    Chapter *Greedy for K = 1*, :prf:ref:`prop-pipage`: every model must route
    Top-1 and all experts must have one size.
    """
    bad_k = [m.name for m in problem.models if m.top_k != 1]
    if bad_k:
        return (f"needs Top-1 routing, but model {bad_k[0]!r} has K >= 2; use method="
                "'decomposition' (or 'exact' on small instances)")
    sizes = sorted({float(m.expert_bytes) for m in problem.models})
    if len(sizes) > 1:
        return (f"needs one expert size per server, got sizes {sizes} bytes; use method="
                "'greedy' or 'decomposition' (or 'exact' on small instances)")
    return None


class PipageModel:
    """The requests of a Top-1 problem with one expert size, and ``F``/``L`` on them.

    Chapter *Greedy for K = 1*, :prf:ref:`prop-pipage`.

    Parameters
    ----------
    problem : Problem
        Every model with ``top_k == 1`` and the same expert size (else ValueError).

    Attributes
    ----------
    N, C : int
        Servers and columns ``c = (u, l, e)``.
    columns : list of (u, l, e)
    slots : ndarray of int, shape (N,)
        ``k_n``: experts server ``n`` can hold.
    req_col : ndarray of int, shape (R,)
        Column of each request.
    req_order : ndarray of int, shape (R, N)
        Servers in order of decreasing value for the request.
    req_coef : ndarray, shape (R, N)
        ``f_r(k) - f_r(k+1) >= 0``, seconds (weighted by ``w_m``).
    """

    def __init__(self, problem: Problem):
        why = applicable(problem)
        if why is not None:
            raise V.fail("method", "pipage", why)
        self.problem = problem
        self.size = float(problem.models[0].expert_bytes)
        N = problem.num_servers
        self.N = N
        self.slots = np.floor(problem.network.server_capacity_bytes / self.size * (1 + 1e-12)).astype(int)
        self.columns = [(u, l, e) for u, m in enumerate(problem.models)
                        for l in range(m.num_layers) for e in range(m.num_experts)]
        self.C = len(self.columns)
        first = np.cumsum([0] + [m.num_layers * m.num_experts for m in problem.models])
        calls = call_latency(problem)
        w = problem.network.user_weight
        cols, orders, coefs = [], [], []
        for m, st in enumerate(problem.stats):
            u = int(problem.user_model[m])
            mod = problem.models[u]
            p = st.marginals()                                            # (L, E)
            y = problem.device_cache[m]
            tau0 = np.where(y, min(calls.local[m], calls.cloud[m]), calls.cloud[m])
            val = np.maximum(0.0, tau0[..., None] - calls.edge[m][None, None, :])   # (L, E, N)
            val = w[m] * p[..., None] * val
            order = np.argsort(-val, axis=2, kind="stable")
            sv = np.take_along_axis(val, order, 2)
            coef = sv - np.concatenate([sv[..., 1:], np.zeros(sv.shape[:2] + (1,))], axis=2)
            keep = coef.reshape(-1, N).sum(axis=1) > 0
            col = first[u] + np.arange(mod.num_layers * mod.num_experts)
            cols.append(col[keep])
            orders.append(order.reshape(-1, N)[keep])
            coefs.append(coef.reshape(-1, N)[keep])
        self.req_col = np.concatenate(cols) if cols else np.zeros(0, int)
        self.req_order = np.concatenate(orders) if orders else np.zeros((0, N), int)
        self.req_coef = np.concatenate(coefs) if coefs else np.zeros((0, N))
        terms = int(np.count_nonzero(self.req_coef))
        if terms > MAX_TERMS:
            raise V.fail("problem", f"{terms} LP terms", f"pipage accepts at most {MAX_TERMS}")
        self._by_col = [np.flatnonzero(self.req_col == c) for c in range(self.C)]

    # -- the two extensions ---------------------------------------------------
    def _prefix(self, x: np.ndarray, rows) -> np.ndarray:
        return x[self.req_order[rows], self.req_col[rows, None]]          # (r, N)

    def F(self, x: np.ndarray, rows=slice(None)) -> float:
        """Multilinear extension ``F(x)``, seconds; ``x`` has shape ``(N, C)`` in ``[0, 1]``."""
        X = self._prefix(x, rows)
        return float(np.sum(self.req_coef[rows] * (1.0 - np.cumprod(1.0 - X, axis=1))))

    def L(self, x: np.ndarray) -> float:
        """Concave surrogate ``L(x)`` (``min(1, sum)`` for ``1 - prod``), seconds."""
        X = self._prefix(x, slice(None))
        return float(np.sum(self.req_coef * np.minimum(1.0, np.cumsum(X, axis=1))))

    # -- LP -------------------------------------------------------------------
    def solve_lp(self) -> tuple[np.ndarray, float]:
        """``argmax L`` over the relaxed partition matroid: ``(x, L*)``, ``x`` of shape ``(N, C)``."""
        N, C = self.N, self.C
        r, k = np.nonzero(self.req_coef)
        T = len(r)
        nx = N * C
        coef = self.req_coef[r, k]
        scale = float(coef.max()) if T else 1.0          # HiGHS tolerances are absolute: work in O(1)
        c = np.concatenate([np.zeros(nx), -coef / scale])
        # z_t - sum_{j <= k} x[n_j, c] <= 0
        rows_z = np.arange(T)
        entries_r, entries_c, entries_v = [rows_z], [nx + rows_z], [np.ones(T)]
        for j in range(N):
            sel = k >= j
            t = rows_z[sel]
            entries_r.append(t)
            entries_c.append(self.req_order[r[sel], j] * C + self.req_col[r[sel]])
            entries_v.append(-np.ones(len(t)))
        A1 = sparse.csr_matrix((np.concatenate(entries_v), (np.concatenate(entries_r),
                                                           np.concatenate(entries_c))), shape=(T, nx + T))
        A2 = sparse.csr_matrix((np.ones(nx), (np.repeat(np.arange(N), C), np.arange(nx))), shape=(N, nx + T))
        A = sparse.vstack([A1, A2]).tocsr()
        b = np.concatenate([np.zeros(T), np.minimum(self.slots, C)])
        from scipy.optimize import linprog      # on first use: importing the solvers stays fast
        res = linprog(c, A_ub=A, b_ub=b, bounds=(0.0, 1.0), method="highs",
                      options={"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10})
        if res.status != 0:                                               # pragma: no cover - LP is feasible
            raise RuntimeError(f"pipage LP failed: {res.message}")
        x = np.clip(res.x[:nx].reshape(N, C), 0.0, 1.0)
        return x, float(-res.fun) * scale

    # -- rounding -------------------------------------------------------------
    def round(self, x: np.ndarray, tol: float = 1e-7) -> tuple[np.ndarray, list[float]]:
        """Pipage rounding of ``x`` (shape ``(N, C)``): an integral point and ``F`` after every step.

        ``F`` never decreases (each step moves to the better end point of a
        line on which ``F`` is linear, or rounds a lone fractional entry up);
        the returned trace starts with ``F(x)``.
        """
        x = x.copy()
        x[x < tol] = 0.0
        x[x > 1 - tol] = 1.0
        value = self.F(x)
        trace = [value]
        for n in range(self.N):
            frac = [c for c in range(self.C) if 0.0 < x[n, c] < 1.0]
            while frac:
                if len(frac) == 1:
                    c = frac.pop()
                    rows = self._by_col[c]
                    before = self.F(x, rows)
                    # the row sum was <= k_n, so the integral part is < k_n and c fits
                    full = np.count_nonzero(x[n] == 1.0) >= self.slots[n]
                    x[n, c] = 0.0 if full else 1.0                        # 'full' only by round-off
                    value += self.F(x, rows) - before
                    trace.append(value)
                    continue
                a, b = frac[-2], frac[-1]
                rows = np.concatenate([self._by_col[a], self._by_col[b]])
                before = self.F(x, rows)
                up = min(1.0 - x[n, a], x[n, b])                          # x[a] up, x[b] down
                dn = min(x[n, a], 1.0 - x[n, b])                          # x[a] down, x[b] up
                best = None
                for t in (up, -dn):
                    y = x.copy()
                    y[n, a] += t
                    y[n, b] -= t
                    v = self.F(y, rows)
                    if best is None or v > best[0]:
                        best = (v, y)
                x = best[1]
                x[n, a] = 0.0 if x[n, a] < tol else (1.0 if x[n, a] > 1 - tol else x[n, a])
                x[n, b] = 0.0 if x[n, b] < tol else (1.0 if x[n, b] > 1 - tol else x[n, b])
                value += best[0] - before
                trace.append(value)
                frac = [c for c in frac if 0.0 < x[n, c] < 1.0]
        return x.round().astype(bool), trace

    def to_placement(self, x: np.ndarray) -> Placement:
        """Placement caching column ``c`` on server ``n`` where ``x[n, c]``."""
        P = Placement.empty(self.problem, method="pipage")
        for n, c in zip(*np.nonzero(x)):
            u, l, e = self.columns[c]
            P.server[u][n, l, e] = True
        return P


@register("pipage")
def pipage(problem: Problem) -> Placement:
    """LP relaxation plus pipage rounding, ``R >= (1 - 1/e) OPT`` for Top-1 and one expert size.

    Chapter *Greedy for K = 1*, :prf:ref:`prop-pipage`.

    Parameters
    ----------
    problem : Problem
        Top-1 routing for every model and one expert size; otherwise
        ValueError naming the method to use instead (``"decomposition"`` for
        ``K >= 2``, ``"greedy"`` for several sizes).

    Returns
    -------
    Placement
        ``info``: ``lp_value_s`` (``L*``, an upper bound on the optimal
        reduction ``R``, s), ``F_lp_s`` (``F`` at the LP point, s),
        ``rounding_trace_s`` (``F`` after every rounding step, s, non-decreasing),
        ``fractional`` (fractional LP entries).
    """
    pm = PipageModel(problem)
    x_lp, lp_value = pm.solve_lp()
    frac = int(np.count_nonzero((x_lp > 1e-9) & (x_lp < 1 - 1e-9)))
    x, trace = pm.round(x_lp)
    out = pm.to_placement(x)
    out.info.update(lp_value_s=lp_value, F_lp_s=trace[0], rounding_trace_s=trace, fractional=frac,
                    bound=1 - 1 / math.e)
    return out
