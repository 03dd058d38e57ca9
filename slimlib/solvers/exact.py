"""Exact references: the mixed-integer program of (P1) and brute force.

Chapter *Greedy for K = 1* (ratios to the optimum) and chapter *Problem and structure* ("Exact
reference").  ``"exact"`` solves the MILP with HiGHS through
:func:`scipy.optimize.milp`; ``"brute-force"`` enumerates every feasible
placement of tiny instances and serves as an independent check of the MILP.

The MILP
--------
Binary ``x[n, c]`` (server ``n`` caches column ``c = (u, l, e)``); knapsacks
``sum_c s_c x[n, c] <= Q_n``.  For every user ``m`` and column ``c`` it may
call, ``b_{m,c} = min(local if cached on the device, cloud)`` is the latency
without edge caching.  Pairs that help no user (``t_{m,n} >= b_{m,c}`` for all
of them) or do not fit alone are fixed to 0.  Two equivalent formulations of
the latency (option ``formulation``):

``"shares"``
    Routing shares ``z[m, c, n] in [0, 1]`` for the servers faster than
    ``b_{m,c}``, with

    .. math::

        z_{m,c,n} \\le x_{n,c}, \\qquad \\sum_{n} z_{m,c,n} \\le 1, \\qquad
        \\tau_{m,c} = b_{m,c} - \\sum_n (b_{m,c} - t_{m,n})\\, z_{m,c,n}

    (routing shares over device/servers/cloud summing to 1, with the share of
    the base location eliminated).  For ``K = 1`` the objective is
    ``sum_m w_m sum_c p_{m,c} tau_{m,c} / sum_m w_m``; for Top-``K`` groups a
    continuous ``w[m, G] >= tau_{m,c}`` for every ``c in G`` is minimised in
    ``sum_m w_m sum_G P_m(G) w[m, G] / sum_m w_m``.
``"levels"`` (default)
    For every (user, group ``G``) let ``B_G = max_{c in G} b_{m,c}`` and
    ``theta_1 < ... < theta_r`` the latencies below ``B_G`` the group can reach
    (edge latencies ``t_{m,n}`` and members' ``b_{m,c}``), ``theta_{r+1} = B_G``.
    A continuous ``v[G, j] in [0, 1]`` may be 1 only if every member is
    available within ``theta_j``:
    ``v[G, j] <= sum_{n : t_{m,n} <= theta_j} x[n, c]`` for each member ``c``
    with ``b_{m,c} > theta_j``.  The group latency is
    ``B_G - sum_j (theta_{j+1} - theta_j) v[G, j]``.  With integral ``x`` both
    formulations give the evaluator's latency; the levels relaxation is at
    least as tight (it takes the minimum over members level by level), which
    makes HiGHS much faster for ``K >= 2`` (MoE-LLaVA, 4 users, 2 servers:
    0.3 s instead of 2 s; 6 users, 3 servers: proved optimal in 23 s, where
    the shares model still had a gap after 60 s).

Tests compare both with ``"brute-force"``.
"""
from __future__ import annotations

import contextlib
import itertools
import math
import os
import sys
import time

import numpy as np
from scipy import sparse

from .. import _validate as V
from ..problem import Placement, Problem
from . import register
from .pairs import PairModel

__all__ = ["exact", "brute_force", "milp_model", "BRUTE_FORCE_LIMIT", "GAP_RESOLUTION"]

#: Default largest number of candidate placements ``"brute-force"`` accepts.
BRUTE_FORCE_LIMIT = 2_000_000


def milp_model(problem: Problem, formulation: str = "levels", *, _deadline: float | None = None):
    """Build the MILP of (P1) (see the module docstring).

    Parameters
    ----------
    problem : Problem
    formulation : {"levels", "shares"}
        ``"shares"``: routing shares ``z``; ``"levels"``: threshold
        variables per group (module docstring), the same optimum with a
        tighter relaxation for ``K >= 2``.

    Returns
    -------
    dict
        ``c`` objective, ``A`` (sparse), ``lb``, ``ub`` row bounds,
        ``integrality``, ``bounds`` (variable bounds), ``xvars`` ``(P, 2)`` pairs
        ``(c, n)`` of the binaries (the first ``P`` variables), ``const``
        (objective constant), ``scale`` (seconds per objective unit) and the
        ``PairModel``.
    """
    if formulation not in ("levels", "shares"):
        raise V.fail("formulation", formulation, "must be 'levels' or 'shares'")
    pm = PairModel(problem)
    w = problem.network.user_weight
    wsum = float(w.sum())
    # time unit: the no-caching average latency / 1000, so the objective is ~1e3
    # (HiGHS' absolute MIP gap, 1e-6, is then ~1e-9 relative)
    g0 = pm.cur0[pm.g_user[:, None], pm.g_cols].max(axis=1)
    base = float(pm.g_w @ g0) / wsum
    scale = base / 1e3 if base > 0 else 1.0
    C, N = pm.C, pm.N
    # columns each user calls, with their base latency
    uc = np.unique(np.stack([pm.e_user, pm.e_col], 1), axis=0)          # (Q, 2) (m, c)
    b = pm.cur0[uc[:, 0], uc[:, 1]]
    t = pm.T[uc[:, 0]]                                                   # (Q, N)
    fit_alone = pm.col_bytes[:, None] <= pm.cap[None, :] * (1 + 1e-12)  # (C, N)
    helps = (t < b[:, None]) & fit_alone[uc[:, 1]]                      # (Q, N)
    # binaries: pairs useful to somebody
    useful = np.zeros((C, N), bool)
    useful[uc[:, 1][:, None].repeat(N, 1)[helps], np.nonzero(helps)[1]] = True
    xc, xn = np.nonzero(useful)
    P = len(xc)
    xid = -np.ones((C, N), np.int64)
    xid[xc, xn] = np.arange(P)
    if formulation == "levels":
        return _levels_model(pm, xid, xc, xn, P, scale, wsum, base, _deadline)
    # z variables
    zq, zn = np.nonzero(helps)
    Z = len(zq)
    zid0 = P
    save = (b[zq] - t[zq, zn]) / scale                                    # saving per unit share
    # tau_{m,c} = b - sum save * z   (in objective units)
    rows, cols, vals, lo, hi = [], [], [], [], []
    r = 0
    # z <= x
    rows += [np.arange(Z) + r, np.arange(Z) + r]
    cols += [zid0 + np.arange(Z), xid[uc[zq, 1], zn]]
    vals += [np.ones(Z), -np.ones(Z)]
    lo.append(np.full(Z, -np.inf)); hi.append(np.zeros(Z))
    r += Z
    # sum_n z <= 1 per (m, c)
    qs = np.unique(zq)
    qrow = -np.ones(len(uc), np.int64)
    qrow[qs] = np.arange(len(qs)) + r
    rows.append(qrow[zq]); cols.append(zid0 + np.arange(Z)); vals.append(np.ones(Z))
    lo.append(np.full(len(qs), -np.inf)); hi.append(np.ones(len(qs)))
    r += len(qs)
    # knapsacks (scaled by the largest expert size)
    smax = float(pm.col_bytes.max())
    rows.append(r + xn); cols.append(np.arange(P)); vals.append(pm.col_bytes[xc] / smax)
    lo.append(np.full(N, -np.inf)); hi.append(pm.cap / smax)
    r += N
    nvar = P + Z
    obj = np.zeros(P + Z)
    # index q of the (user, column) of every group member
    key = uc[:, 0] * (C + 1) + uc[:, 1]
    e_q = np.searchsorted(key, pm.e_user * (C + 1) + pm.e_col)           # per entry
    order = np.argsort(zq, kind="stable")                                # z variables grouped by q
    zptr = np.searchsorted(zq[order], np.arange(len(uc) + 1))
    if pm.submodular:
        # K = 1: objective sum_m w_m p tau = const - sum_z (w p save) z
        wq = np.bincount(e_q, weights=pm.e_w, minlength=len(uc)) / wsum
        const = float(wq @ b) / scale
        obj[zid0:] = -wq[zq] * save
        integrality = np.r_[np.ones(P), np.zeros(Z)]
        ub = np.ones(nvar)
    else:
        # K >= 2: one w per group, w + sum_n save z >= b for every member c of G
        G = pm.num_groups
        const = 0.0
        wid0 = P + Z
        nvar = P + Z + G
        obj = np.r_[obj, pm.g_w / wsum]
        Ent = len(e_q)
        cnt = zptr[e_q + 1] - zptr[e_q]                                  # z's per entry
        erow = r + np.arange(Ent)
        zpos = np.repeat(zptr[e_q], cnt) + (np.arange(cnt.sum()) - np.repeat(np.cumsum(cnt) - cnt, cnt))
        zs = order[zpos]
        rows += [erow, np.repeat(erow, cnt)]
        cols += [wid0 + pm.e_group, zid0 + zs]
        vals += [np.ones(Ent), save[zs]]
        lo.append(b[e_q] / scale); hi.append(np.full(Ent, np.inf))
        r += Ent
        integrality = np.r_[np.ones(P), np.zeros(Z + G)]
        ub = np.r_[np.ones(P + Z), np.full(G, np.inf)]
    A = sparse.csr_array((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(r, nvar))
    return dict(c=obj, A=A, lb=np.concatenate(lo), ub=np.concatenate(hi), integrality=integrality,
                bounds=_bounds(np.zeros(nvar), ub), xvars=np.stack([xc, xn], 1), const=const, scale=scale,
                base_s=base, pm=pm, num_binaries=P)


def _levels_model(pm: PairModel, xid, xc, xn, P: int, scale: float, wsum: float, base: float,
                  deadline: float | None = None) -> dict:
    """The "levels" MILP: for every (user, group) and every latency level the group can reach, a
    variable ``v <= 1`` that may be 1 only if every member is available at that level.

    Vectorised over the groups (in chunks of bounded memory); raises :class:`_BuildTimeout` when
    ``deadline`` (a :func:`time.perf_counter` value) passes.
    """
    C, N, K = pm.C, pm.N, pm.g_cols.shape[1]
    G = pm.num_groups
    wg_all = pm.g_w / wsum / scale
    bm_all = pm.cur0[pm.g_user[:, None], pm.g_cols]                       # (G, K); dummy column: 0
    B_all = bm_all.max(axis=1)
    const = float(wg_all @ B_all)
    xok = xid >= 0                                                         # (C, N)
    xok = np.vstack([xok, np.zeros((1, N), bool)])                         # dummy column C
    xidp = np.vstack([xid, -np.ones((1, N), np.int64)])
    Jmax = N + K
    chunk = max(1, (1 << 22) // max(1, Jmax * K * N))
    rows, cols, vals = [], [], []
    obj_v = []
    nv, r = 0, 0
    for g0 in range(0, G, chunk):
        if deadline is not None and time.perf_counter() > deadline:
            raise _BuildTimeout(g0, G)
        sl = slice(g0, min(G, g0 + chunk))
        gc = pm.g_cols[sl]
        bm, B, t = bm_all[sl], B_all[sl], pm.T[pm.g_user[sl]]             # (g, K), (g,), (g, N)
        cand = np.concatenate([t, np.where(gc < C, bm, np.inf)], axis=1)  # (g, N + K)
        cand = np.sort(np.where(cand < B[:, None], cand, np.inf), axis=1)
        dup = np.zeros_like(cand, bool)
        dup[:, 1:] = cand[:, 1:] == cand[:, :-1]
        theta = np.sort(np.where(dup, np.inf, cand), axis=1)               # distinct levels, inf = none
        nxt = np.concatenate([theta[:, 1:], np.full((len(B), 1), np.inf)], axis=1)
        nxt = np.where(np.isfinite(nxt), nxt, B[:, None])
        valid = np.isfinite(theta)
        need = bm[:, None, :] > theta[:, :, None]                          # (g, J, K)
        avail = (t[:, None, None, :] <= theta[:, :, None, None]) & xok[gc][:, None, :, :]   # (g, J, K, N)
        has = avail.any(axis=3)
        ok = valid & (~need | has).all(axis=2)                             # (g, J)
        gi, ji = np.nonzero(ok)
        vid = P + nv + np.arange(len(gi))
        vmap = np.full(ok.shape, -1, np.int64)
        vmap[gi, ji] = vid
        nv += len(gi)
        obj_v.append(-wg_all[sl][gi] * (nxt[gi, ji] - theta[gi, ji]))
        # one row per (group, level, needed member): v - sum_{n available} x[c, n] <= 0
        rg, rj, rk = np.nonzero(ok[:, :, None] & need)
        rid = r + np.arange(len(rg))
        r += len(rg)
        rows.append(rid); cols.append(vmap[rg, rj]); vals.append(np.ones(len(rg)))
        a = avail[rg, rj, rk]                                              # (R, N)
        ri, ni = np.nonzero(a)
        rows.append(rid[ri]); cols.append(xidp[gc[rg[ri], rk[ri]], ni]); vals.append(-np.ones(len(ri)))
    lo = [np.full(r, -np.inf)]
    hi = [np.zeros(r)]
    smax = float(pm.col_bytes.max())
    rows.append(r + xn); cols.append(np.arange(P)); vals.append(pm.col_bytes[xc] / smax)
    lo.append(np.full(N, -np.inf)); hi.append(pm.cap / smax)
    r += N
    nvar = P + nv
    A = sparse.csr_array((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(r, nvar))
    obj = np.concatenate([np.zeros(P)] + obj_v)
    return dict(c=obj, A=A, lb=np.concatenate(lo), ub=np.concatenate(hi),
                integrality=np.r_[np.ones(P), np.zeros(nv)], bounds=_bounds(np.zeros(nvar), np.ones(nvar)),
                xvars=np.stack([xc, xn], 1), const=const, scale=scale, base_s=base, pm=pm, num_binaries=P)


class _BuildTimeout(Exception):
    """Building the MILP passed the deadline of ``exact``'s ``time_limit``."""


@contextlib.contextmanager
def _quiet_stdout(active: bool):
    """Silence C-level prints to file descriptor 1 (HiGHS writes a few debug lines even with disp=False)."""
    if not active:
        yield
        return
    try:
        sys.stdout.flush()
        saved = os.dup(1)
    except (OSError, ValueError, AttributeError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def _bounds(lo: np.ndarray, hi: np.ndarray):
    """:class:`scipy.optimize.Bounds` (scipy.optimize is imported on first use: importing slimlib's solvers stays fast)."""
    from scipy.optimize import Bounds
    return Bounds(lo, hi)


def _highs(mm: dict, opts: dict, quiet: bool):
    """Run HiGHS; return ``(status, message, x[:P] or None, fun, mip_gap, dual_bound)``."""
    from scipy.optimize import LinearConstraint, milp
    with _quiet_stdout(quiet):
        res = milp(mm["c"], constraints=LinearConstraint(mm["A"], mm["lb"], mm["ub"]),
                   integrality=mm["integrality"], bounds=mm["bounds"], options=opts)
    x = None if res.x is None else np.asarray(res.x[:mm["num_binaries"]])
    return (int(res.status), str(res.message), x, None if res.fun is None else float(res.fun),
            getattr(res, "mip_gap", None), getattr(res, "mip_dual_bound", None))


def _highs_child(conn, mm, opts, quiet):               # pragma: no cover - runs in a forked process
    try:
        conn.send(_highs(mm, opts, quiet))
    except BaseException as exc:                       # noqa: BLE001 - reported to the parent
        conn.send(("error", repr(exc)))
    finally:
        conn.close()


def _highs_with_wall(mm: dict, opts: dict, quiet: bool, wall: float | None):
    """HiGHS with a hard wall-clock limit: HiGHS' own ``time_limit`` is not checked inside every
    phase (presolve, the root LP), so with a limit it runs in a forked process that is stopped at
    ``wall`` seconds.  Returns ``None`` when it was stopped (or fork is unavailable and ... never)."""
    import multiprocessing as mp
    if wall is None or "fork" not in mp.get_all_start_methods():
        return _highs(mm, opts, quiet)
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_highs_child, args=(child, mm, opts, quiet), daemon=True)
    proc.start()
    child.close()
    try:
        if parent.poll(max(0.0, wall)):
            out = parent.recv()
        else:
            out = None
    except EOFError:
        out = None
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join(1.0)
        parent.close()
    if isinstance(out, tuple) and len(out) == 2 and out[0] == "error":
        raise RuntimeError(f"HiGHS failed: {out[1]}")
    return out


@register("exact")
def exact(problem: Problem, *, time_limit: float | None = 600.0, mip_rel_gap: float = 1e-9,
          formulation: str = "levels", disp: bool = False, warm_start: bool = True) -> Placement:
    """Optimal placement by the MILP of (P1) solved with HiGHS (the exact reference of chapter *Greedy for K = 1*).

    ``time_limit`` bounds the whole call: the warm start, building the model
    (vectorised) and HiGHS, which runs in a forked process stopped at the
    deadline (HiGHS' own limit is not checked inside every phase).  When the
    limit is reached the result is the better of HiGHS' incumbent (if any) and
    the warm start — never "no caching" when the warm start caches something;
    such a result depends on the machine's speed.

    Parameters
    ----------
    problem : Problem
    time_limit : float or None
        Seconds for the whole call (``None``: no limit).
    mip_rel_gap : float
        Relative optimality gap at which HiGHS stops (default ``1e-9``).
    formulation : {"levels", "shares"}
        Which of the two equivalent MILPs of the module docstring to solve.
    disp : bool
        Print the HiGHS log.
    warm_start : bool
        Also run ``method="decomposition"`` first (its time counts in
        ``time_limit``) and return it when it is better than HiGHS' result.

    Returns
    -------
    Placement
        ``info`` keys:

        * ``status``: ``"optimal"``, ``"time limit"`` (HiGHS stopped with or
          without an incumbent), ``"time limit while building"`` (the model was
          not finished within ``time_limit``; HiGHS never ran), or HiGHS'
          message;
        * ``optimal`` (bool), ``source`` (``"highs"`` or ``"warm start"``:
          which placement is returned);
        * ``objective_s``: average latency of the returned placement, s;
        * ``bound_s``: a lower bound on the optimal average latency, s (HiGHS'
          dual bound, or :func:`slimlib.bounds.lp_upper_bound` when HiGHS gave
          none);
        * ``upper_bound``: the matching upper bound on the latency reduction
          ``R`` (weighted seconds, the unit of :func:`slimlib.latency_reduction`);
        * ``gap`` and ``mip_gap``: ``(R_bound - R) / R`` for the returned
          placement (0 when proved optimal, and when ``R_bound - R`` is below
          :data:`slimlib.solvers.exact.GAP_RESOLUTION` times the no-caching latency times the total
          weight: floating-point noise between the MILP's objective and the
          evaluator); ``highs_gap``: HiGHS' own ``mip_gap`` when it reported one;
        * ``build_s``, ``highs_s``, ``warm_start_s``: where the time went;
        * ``formulation``, ``num_binaries``, ``num_variables``, ``num_constraints``.
    """
    from ..bounds import lp_upper_bound
    from ..latency import latency_reduction
    t0 = time.perf_counter()
    mip_rel_gap = V.number("mip_rel_gap", mip_rel_gap, nonneg=True)
    if time_limit is not None:
        time_limit = V.number("time_limit", time_limit, positive=True)
    deadline = None if time_limit is None else t0 + float(time_limit)
    wsum = float(problem.network.user_weight.sum())
    info: dict = dict(formulation=formulation)
    warm = None
    if warm_start:
        from .decomposition import decomposition
        warm = decomposition(problem)
        info["warm_start_s"] = time.perf_counter() - t0
    r_warm = latency_reduction(problem, warm) if warm is not None else 0.0
    t1 = time.perf_counter()
    if deadline is not None and t1 >= deadline:
        info.update(status="time limit during warm start",
                    message=f"the warm start alone took {t1 - t0:.3g} s of time_limit={time_limit} s")
        return _finish_limited(problem, warm, r_warm, info, wsum, lp_upper_bound)
    try:
        mm = milp_model(problem, formulation, _deadline=deadline)
    except _BuildTimeout as exc:
        info.update(build_s=time.perf_counter() - t1, status="time limit while building",
                    message=f"building the MILP took longer than time_limit={time_limit} s "
                            f"({exc.args[0]} of {exc.args[1]} groups done); returned the warm start")
        return _finish_limited(problem, warm, r_warm, info, wsum, lp_upper_bound)
    pm, P = mm["pm"], mm["num_binaries"]
    info.update(build_s=time.perf_counter() - t1, num_binaries=int(P), num_variables=int(len(mm["c"])),
                num_constraints=int(mm["A"].shape[0]))
    x = np.zeros((pm.C, pm.N), bool)
    base = mm["base_s"]
    if len(mm["c"]) == 0 or P == 0:
        info.update(status="optimal", gap=0.0, objective_s=base, bound_s=base, source="highs")
    else:
        left = None if deadline is None else deadline - time.perf_counter()
        if left is not None and left <= 0.05:
            info.update(status="time limit while building",
                        message=f"no time left for HiGHS within time_limit={time_limit} s; returned the warm start")
            return _finish_limited(problem, warm, r_warm, info, wsum, lp_upper_bound)
        opts = {"disp": bool(disp), "mip_rel_gap": mip_rel_gap}
        if left is not None:
            opts["time_limit"] = max(0.05, 0.95 * left)
        t2 = time.perf_counter()
        out = _highs_with_wall(mm, opts, not disp, left)
        info["highs_s"] = time.perf_counter() - t2
        if out is None:
            info.update(status="time limit", message="HiGHS stopped at the time limit without returning")
            return _finish_limited(problem, warm, r_warm, info, wsum, lp_upper_bound)
        status, message, xv, fun, hgap, bound = out
        info["status"] = "optimal" if status == 0 else ("time limit" if status == 1 else message)
        if xv is not None and fun is not None:
            sel = xv > 0.5
            x[mm["xvars"][sel, 0], mm["xvars"][sel, 1]] = True
            info["highs_gap"] = float(hgap or 0.0)
            info["objective_s"] = (fun + mm["const"]) * mm["scale"]
            bound_s = (float(bound) + mm["const"]) * mm["scale"] if bound is not None and np.isfinite(bound) \
                else (info["objective_s"] if status == 0 else -np.inf)
            info["bound_s"] = min(bound_s, info["objective_s"])
            info["source"] = "highs"
        else:
            info["source"] = None
    # rounding safety (never seen in practice): drop cached pairs until every server fits
    for n in range(pm.N):
        while (x[:, n] * pm.col_bytes).sum() > pm.cap[n] * (1 + 1e-9):
            x[np.flatnonzero(x[:, n])[-1], n] = False
            info["repaired"] = True
    out_pl = pm.to_placement(x, "exact")
    if info.get("source") is None:
        return _finish_limited(problem, warm, r_warm, info, wsum, lp_upper_bound)
    r_inc = latency_reduction(problem, out_pl)
    if warm is not None and r_warm > r_inc * (1 + 1e-12) + 1e-15:
        out_pl, r_inc = warm, r_warm
        info["source"] = "warm start"
        info["objective_s"] = base - r_warm / wsum
    if not np.isfinite(info["bound_s"]):
        U = lp_upper_bound(problem, lower_bound=r_inc)
        info["bound_s"] = base - U / wsum
    _gap_keys(info, base, r_inc, wsum)
    info["optimal"] = info.get("status") == "optimal"
    out_pl.method = "exact"
    out_pl.info.update(info)
    return out_pl


#: Differences of ``R`` below this fraction of the no-caching latency (times the total weight) are floating-point
#: noise between the MILP's objective and the evaluator (seen up to 8e-14 when nothing can be cached).
GAP_RESOLUTION = 1e-11


def _gap_keys(info: dict, base: float, r_inc: float, wsum: float) -> None:
    """``upper_bound``, ``gap`` and ``mip_gap`` from ``bound_s`` (average-latency bound, s)."""
    info["bound_s"] = min(info["bound_s"], base - r_inc / wsum)
    U = (base - info["bound_s"]) * wsum
    info["upper_bound"] = float(U)
    noise = max(1e-12 * U, GAP_RESOLUTION * base * wsum)
    info["gap"] = 0.0 if U - r_inc <= noise else float((U - r_inc) / max(r_inc, 1e-9 * base * wsum))
    info["mip_gap"] = info["gap"]


def _finish_limited(problem: Problem, warm, r_warm: float, info: dict, wsum: float, lp_upper_bound) -> Placement:
    """The time limit struck before HiGHS had an incumbent: the warm start (or no caching), with a certified bound."""
    from ..latency import average_latency
    pl = warm if warm is not None else Placement.empty(problem, method="exact")
    base = average_latency(problem, Placement.empty(problem))
    U = lp_upper_bound(problem, lower_bound=r_warm)
    info.update(source="warm start" if warm is not None else "no caching",
                objective_s=base - r_warm / wsum, bound_s=base - U / wsum, optimal=False)
    _gap_keys(info, base, r_warm, wsum)
    pl.method = "exact"
    pl.info.update(info)
    return pl


@register("brute-force")
def brute_force(problem: Problem, *, limit: int = BRUTE_FORCE_LIMIT) -> Placement:
    """Optimal placement by trying every feasible placement (tiny instances only).

    Independent of the MILP: every subset of columns that fits each server is
    enumerated (no pruning), the product over servers is scored with the
    expected latency of chapter *The system model* (vectorised over the last server's subsets),
    and the first best is returned.

    Parameters
    ----------
    problem : Problem
    limit : int
        Refuse (ValueError) when the number of candidate placements (an upper
        bound: per server, all subsets of at most ``floor(Q_n / s_min)``
        columns) exceeds this.

    Returns
    -------
    Placement
        ``info``: ``objective_s`` (its average latency, s), ``candidates``.
    """
    limit = V.number("limit", limit, integer=True, positive=True)
    pm = PairModel(problem)
    C, N = pm.C, pm.N
    smin = float(pm.col_bytes.min())
    bound = 1
    for n in range(N):
        kmax = min(C, int(math.floor(pm.cap[n] / smin * (1 + 1e-12))))
        bound *= sum(math.comb(C, k) for k in range(kmax + 1))
        if bound > limit:
            raise V.fail("brute-force", f"{C} columns x {N} servers",
                         f"more than limit={limit} candidate placements; use method='exact' "
                         "(or raise the limit)")
    subsets = []
    for n in range(N):
        kmax = min(C, int(math.floor(pm.cap[n] / smin * (1 + 1e-12))))
        rows = []
        for k in range(kmax + 1):
            for S in itertools.combinations(range(C), k):
                if pm.col_bytes[list(S)].sum() <= pm.cap[n] * (1 + 1e-12):
                    r = np.zeros(C, bool)
                    r[list(S)] = True
                    rows.append(r)
        subsets.append(np.array(rows).reshape(-1, C))
    wsum = float(problem.network.user_weight.sum())
    # latency of each column for each user if served by server n: (N, M, C) ; inf if not cached
    lat = [np.where(subsets[n][:, None, :], pm.T[None, :, n, None], np.inf) for n in range(N)]  # (S_n, M, C)
    base = pm.cur0[:, :C]
    best_val, best_idx = np.inf, None
    count = 0
    for head in itertools.product(*(range(len(s)) for s in subsets[:-1])):
        cur = base.copy()
        for n, i in enumerate(head):
            cur = np.minimum(cur, lat[n][i])
        cur = np.minimum(cur[None], lat[-1])                                   # (S_last, M, C)
        cur = np.concatenate([cur, np.zeros(cur.shape[:2] + (1,))], axis=2)    # dummy column
        gl = cur[:, pm.g_user[:, None], pm.g_cols].max(axis=2)                 # (S_last, G)
        vals = gl @ pm.g_w / wsum
        k = int(np.argmin(vals))
        count += len(vals)
        if vals[k] < best_val:
            best_val, best_idx = float(vals[k]), head + (k,)
    x = np.zeros((C, N), bool)
    for n, i in enumerate(best_idx):
        x[:, n] = subsets[n][i]
    out = pm.to_placement(x, "brute-force")
    out.info.update(objective_s=best_val, candidates=count, optimal=True, status="optimal", gap=0.0)
    return out
