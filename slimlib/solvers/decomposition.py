"""Algorithms 2 and 3: successive decomposition over the servers, one stage at a time.

Chapters *Successive decomposition* (``method="decomposition"``) and
*Max-plus convolution* (``method="accelerated"``).

The servers are processed one after another (:func:`server_order`; by
default the fastest first, by the weighted mean latency of one call).  At the
stage of server ``n`` every other server's cache is fixed, and server ``n``
receives the cache that maximises the marginal latency reduction
(:func:`solve_stage`):

1. the per-layer gains ``h_{u,l}(c)``, :func:`slimlib.solvers.gains.layer_gains`;
2. their combination under the server's storage ``Q_n``:
   :func:`slimlib.solvers.knapsack.combine_exact` (Algorithm 2: a DP that
   never loses storage to rounding) or
   :func:`slimlib.solvers.knapsack.combine_accelerated` (Algorithm 3: within
   ``(1 - eps)`` of the stage optimum over a value grid);
3. the storage left free is filled (:func:`fill_free_storage`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .. import _validate as V
from ..latency import CallLatency, call_latency, latency_reduction
from ..problem import Placement, Problem
from . import register
from .gains import ENUM_LIMIT, _chosen, _Context, layer_gains
from .knapsack import MAX_GRID, MAX_UNITS, combine_accelerated, combine_exact

__all__ = ["StageResult", "server_order", "solve_stage", "fill_free_storage", "decomposition", "accelerated",
           "ORDERS", "MAX_UNITS_LIMIT"]

#: Largest ``max_units`` accepted (the DP's rows have ``max_units + 1`` floats: 256 MiB here).
MAX_UNITS_LIMIT = 2 ** 25
#: Above this many (user, group) rows, :func:`fill_free_storage` scores once instead of after every expert.
FILL_RESCORE_GROUPS = 2 ** 17
#: Named server orders (besides an explicit list of server indices).
ORDERS = ("latency", "capacity", "rate", "index")


@dataclass
class StageResult:
    """One stage of Algorithm 2 or 3: server ``n``'s cache given all other caches.

    Attributes
    ----------
    server : int
    capacity_bytes : float
        ``Q_n``.
    items : list of LayerGain
        One per (model, layer) with something to gain.
    counts : ndarray of int, shape (len(items),)
        Experts cached per item.
    value : float
        ``sum_k h_k(counts_k)``: the stage gain, weighted seconds (the
        increase of ``R`` of chapter *The system model*).
    cache : list of ndarray of bool
        Per model ``u`` the ``(L_u, E_u)`` cache of the server.
    combine : str
        ``"dp"`` or ``"accelerated"``.
    exact : bool
        ``True`` when the stage is provably optimal (every ``h`` exact, and the
        DP exact in its unit, or the accelerated combination needed no rounding).
    info : dict
        Unit, grid, bounds and timings.
    table : ndarray or None
        With ``keep_table=True`` and ``combine="dp"``: the DP table ``F``,
        shape ``(len(items) + 1, Q + 1)``; for ``"accelerated"``: ``D``,
        shape ``(J + 1, V + 1)`` (least bytes per rounded value).
    choice : ndarray or None
        The DP's arg-max table (same shape as ``table`` minus its first row).
    """

    server: int
    capacity_bytes: float
    items: list
    counts: np.ndarray
    value: float
    cache: list
    combine: str
    exact: bool
    info: dict = field(default_factory=dict)
    table: np.ndarray | None = None
    choice: np.ndarray | None = None


# -- server order ---------------------------------------------------------------------
def server_order(problem: Problem, order="latency", *, _calls: CallLatency | None = None) -> list[int]:
    """The order in which the stages visit the servers (chapter *Successive decomposition*, "Server order").

    Parameters
    ----------
    problem : Problem
    order : {"latency", "capacity", "rate", "index"} or sequence of int
        * ``"latency"`` (default): fastest server first, by the weighted mean
          latency of one expert call through it,
          ``sum_m w_m t_{m,n} / sum_m w_m`` (eq. (1.3) of chapter *The system
          model*: both radio hops and the server's compute, seconds); ties by
          larger storage ``Q_n``.  The first stage sees every uncached expert
          as a cloud miss and takes the most requested ones, so they should
          land on the server that serves its users fastest; for one user and
          ``K = 1`` this order makes Algorithm 2 exact (chapter *Successive
          decomposition*, "Server order");
        * ``"capacity"``: largest storage ``Q_n`` first (with equal storage
          this is the index order);
        * ``"rate"``: highest weighted mean round-trip rate first,
          ``sum_m w_m / (1/r_up[m,n] + 1/r_dn[m,n])`` (links only, no compute);
        * ``"index"``: ``0, 1, ..., N-1``;
        * a list: this permutation of ``0..N-1``.

        Remaining ties keep the server index order.

    Returns
    -------
    list of int
    """
    N = problem.num_servers
    net = problem.network
    if isinstance(order, str):
        if order == "latency":
            edge = (call_latency(problem) if _calls is None else _calls).edge
            t = net.user_weight @ edge / float(net.user_weight.sum())   # (N,) seconds
            # lexsort: last key first; np.lexsort is stable, so full ties keep the index order
            return [int(n) for n in np.lexsort((-net.server_capacity_bytes, t))]
        if order == "capacity":
            key = -net.server_capacity_bytes
        elif order == "rate":
            key = -(net.user_weight @ (1.0 / (1.0 / net.rate_up + 1.0 / net.rate_down)))
        elif order == "index":
            key = np.arange(N, dtype=float)
        else:
            raise V.fail("order", order, f"must be one of {ORDERS} or a list of server indices")
        return [int(n) for n in np.argsort(key, kind="stable")]
    try:
        seq = [int(n) for n in order]
        ok = all(float(a) == b for a, b in zip(order, seq))
    except (TypeError, ValueError):
        raise V.fail("order", order, f"must be one of {ORDERS} or a list of server indices") from None
    if not ok or sorted(seq) != list(range(N)):
        raise V.fail("order", order, f"must be a permutation of the server indices 0..{N - 1}")
    return seq


# -- one stage ------------------------------------------------------------------------------
def solve_stage(problem: Problem, placement: Placement, server: int, *, combine: str = "dp", eps: float = 0.05,
                enum_limit: int = ENUM_LIMIT, unit=None, max_units: int = MAX_UNITS, fill: bool = True,
                keep_table: bool = False, calls: CallLatency | None = None,
                _ctx: _Context | None = None) -> StageResult:
    """Best cache of ``server`` given every other server's cache (one stage of Algorithm 2 or 3).

    Parameters
    ----------
    problem : Problem
    placement : Placement
        Caches of the other servers (entries of ``server`` itself are ignored).
    server : int
    combine : {"dp", "accelerated"}
        Exact DP over capacity units (Algorithm 2) or the ``(1 - eps)``
        combination over a value grid (Algorithm 3).
    eps : float
        Accuracy of ``"accelerated"``.
    enum_limit : int
        See :func:`slimlib.solvers.gains.layer_gains`.
    unit, max_units
        See :func:`slimlib.solvers.knapsack.dp_unit` (``"dp"`` only).
    fill : bool
        Tie-breaking among the maximisers: storage the chosen cache leaves
        free is filled by :func:`fill_free_storage` (it never lowers the stage
        value; it gives later stages partners to complete).  ``False`` leaves
        it empty.
    keep_table : bool
        Keep the DP table (for figures).
    calls : CallLatency, optional

    Returns
    -------
    StageResult
    """
    if combine not in ("dp", "accelerated"):
        raise V.fail("combine", combine, "must be 'dp' or 'accelerated'")
    n = V.number("server", server, integer=True, nonneg=True, maximum=problem.num_servers - 1)
    enum_limit = V.number("enum_limit", enum_limit, integer=True, nonneg=True)
    t0 = time.perf_counter()
    ctx = _Context(problem, placement, call_latency(problem) if calls is None else calls) if _ctx is None else _ctx
    lat = ctx.stage_latency(placement, n)
    items = layer_gains(problem, placement, n, enum_limit=enum_limit, _lat=lat, _ctx=ctx)
    t1 = time.perf_counter()
    Q = float(problem.network.server_capacity_bytes[n])
    sizes = np.array([it.size_bytes for it in items])
    info: dict = {"gains_s": t1 - t0}
    table = choice = None
    if combine == "dp":
        counts, value, cinfo, table, choice = combine_exact([it.h for it in items], sizes, Q, unit=unit,
                                                            max_units=max_units, keep_table=keep_table)
        exact = cinfo["exact"]
        info.update(cinfo)
    else:
        counts, value, cinfo = combine_accelerated([it.h for it in items], sizes, Q, eps, keep_table=keep_table,
                                                   _trusted=True)
        table = cinfo.pop("table", None)
        exact = cinfo["exact"]
        info.update(cinfo, eps=eps)
    info["combine_s"] = time.perf_counter() - t1
    cache = [np.zeros((m.num_layers, m.num_experts), bool) for m in problem.models]
    for it, c in zip(items, counts):
        cache[it.model][it.layer, _chosen(it, int(c))] = True
    info["filled"] = (fill_free_storage(problem, cache, lat[0], lat[1], Q, _single=lambda u: ctx.single_gains(u, n))
                      if fill else 0)                 # K = 1 models: the single gains layer_gains computed
    exact = bool(exact and all(it.exact for it in items))
    return StageResult(n, Q, items, counts, float(value), cache, combine, exact, info, table, choice)


def fill_free_storage(problem: Problem, cache: list, tau_before, t_server: np.ndarray,
                      capacity_bytes: float, *, _single=None) -> int:
    r"""Fill the storage a stage leaves free (tie-breaking rule of Algorithms 2 and 3).

    Chapter *Successive decomposition*, "Ties and free storage".  With
    ``K >= 2`` an expert can be worth nothing to this stage (its partners are
    still far away) yet everything to a later stage that caches the partners.
    Since ``R`` is monotone, caching more never hurts: the free storage is
    filled with the uncached experts of largest *completion score per byte*.
    With ``tau`` the latencies given the other servers and the chosen cache,
    and ``d_e = (tau(m, l, e) - t_{m,n})^+`` how much this server would speed
    expert ``e`` up, the score of ``e`` shares the gain of completing each of
    its groups among the group's experts in proportion to ``d``:

    .. math::  o_{u,\ell,e} = \frac{1}{s_u} \sum_{m: u(m) = u} w_m \sum_{G \ni e}
               P_{m,\ell}(G)\, \Big(\max_{e' \in G} \tau - \max_{e' \in G} \min(\tau, t_{m,n})\Big)
               \frac{d_e}{\sum_{e' \in G} d_{e'}}.

    For ``K = 1`` this is the exact single gain and the free storage is filled
    by decreasing ``o``; for ``K >= 2`` experts are added one at a time and the
    scores recomputed after each (the remaining experts of a group that is
    being completed gain a larger share), unless the users hold more than
    ``FILL_RESCORE_GROUPS`` (user, group) rows in total, where the scores are
    computed once, as for ``K = 1``.  Experts with ``o = 0`` are never
    added.  Nothing is scored when no expert fits in the free storage.

    Parameters
    ----------
    problem : Problem
    cache : list of ndarray of bool
        Per model ``(L, E)``; modified in place.
    tau_before : sequence of ndarray
        Per user ``(L, E)``, seconds, from :func:`slimlib.solvers.gains.stage_latency`.
    t_server : ndarray, shape (M,)
        Seconds, from :func:`slimlib.solvers.gains.stage_latency`.
    capacity_bytes : float

    Returns
    -------
    int
        Experts added.
    """
    used = sum(int(c.sum()) * m.expert_bytes for c, m in zip(cache, problem.models))
    room = capacity_bytes * (1 + 1e-12) - used
    if room < min(m.expert_bytes for m in problem.models):
        return 0
    w = problem.network.user_weight

    def scores():
        out = []
        for u, mod in enumerate(problem.models):
            users = problem.users_of(u)
            if room < mod.expert_bytes or len(users) == 0:
                out.append(None)
                continue
            if mod.top_k == 1 and _single is not None:
                o = np.array(_single(u))                # the stage's single gains (the K = 1 score below)
            else:
                o = np.zeros((mod.num_layers, mod.num_experts))
                for m in users:
                    st = problem.stats[m]
                    t = t_server[m]
                    tau = np.where(cache[u], np.minimum(tau_before[m], t), tau_before[m])
                    b = tau[st.group_layer[:, None], st.group_experts]               # (G, K)
                    a = np.minimum(b, t)
                    gain = w[m] * st.group_prob * (b.max(axis=1) - a.max(axis=1))
                    d = b - a                                                       # > 0 where n speeds e up
                    share = gain[:, None] * d / np.maximum(d.sum(axis=1, keepdims=True), 1e-300)
                    for k in range(mod.top_k):
                        np.add.at(o, (st.group_layer, st.group_experts[:, k]), share[:, k])
            o[cache[u]] = 0.0
            out.append(o / mod.expert_bytes)
        return out

    added = 0
    k1 = all(m.top_k == 1 for m in problem.models)
    if k1 or sum(len(st.group_prob) for st in problem.stats) > FILL_RESCORE_GROUPS:
        # K = 1: the scores are the exact single gains and do not change as experts are added
        # (large K >= 2 instances: the scores are computed once, not after every expert)
        cand = [(o[l, e], u, l, e) for u, o in enumerate(scores()) if o is not None for l, e in zip(*np.nonzero(o > 0))]
        cand.sort(key=lambda t: -t[0])
        for _, u, l, e in cand:
            s = problem.models[u].expert_bytes
            if s <= room:
                cache[u][l, e] = True
                room -= s
                added += 1
        return added
    while True:
        # K >= 2: one expert at a time, scores recomputed (a group's remaining experts gain weight)
        best = None
        for u, o in enumerate(scores()):
            if o is None:
                continue
            j = int(np.argmax(o))
            if o.flat[j] > 0 and (best is None or o.flat[j] > best[0]):
                best = (o.flat[j], u, j)
        if best is None:
            return added
        _, u, j = best
        cache[u].flat[j] = True
        room -= problem.models[u].expert_bytes
        added += 1


def _check_grid(problem: Problem, eps: float) -> None:
    """Refuse an ``eps`` whose value grid (about ``2 J / eps`` cells, ``J`` layers) exceeds ``MAX_GRID``, before any work."""
    J = sum(m.num_layers for m in problem.models)
    if 2.0 * J / eps > MAX_GRID:
        raise V.fail("eps", eps, f"gives a value grid of up to {2.0 * J / eps:.3g} cells for {J} layers, more than "
                     f"{MAX_GRID}; use eps >= {2.0 * J / MAX_GRID:.3g}, or method='decomposition' (exact stages)")


# -- the algorithms -----------------------------------------------------------------------
def _successive(problem: Problem, combine: str, *, order, passes, enum_limit, unit=None, max_units=MAX_UNITS,
                eps=0.05, fill=True, method: str) -> Placement:
    passes = V.number("passes", passes, integer=True, positive=True)
    calls = call_latency(problem)
    seq = server_order(problem, order, _calls=calls)
    placement = Placement.empty(problem, method=method)
    ctx = _Context(problem, placement, calls)
    values, exact, improved, losses, schemes = [], True, 0, [], []
    for p in range(passes):
        changed = False
        for n in seq:
            st = solve_stage(problem, placement, n, combine=combine, eps=eps, enum_limit=enum_limit, unit=unit,
                             max_units=max_units, fill=fill, calls=calls, _ctx=ctx)
            if p > 0:
                # a later pass replaces server n's cache only if the stage found something better
                old = latency_reduction(problem, placement)
                trial = placement.copy()
                for u in range(len(problem.models)):
                    trial.server[u][n] = st.cache[u]
                if latency_reduction(problem, trial) <= old * (1 + 1e-12) + 1e-15:
                    continue
                changed = True
                improved += 1
            for u in range(len(problem.models)):
                placement.server[u][n] = st.cache[u]
            values.append(st.value)
            losses.append(float(st.info.get("loss_bound", 0.0)))
            schemes.append(st.info.get("scheme", combine))
            exact = exact and st.exact
        if p > 0 and not changed:
            break
    wsum = float(problem.network.user_weight.sum())
    placement.info.update(order=seq, passes=passes, stage_values_s=[v / wsum for v in values],
                          stages_exact=exact, improved_in_later_passes=improved,
                          stage_schemes=schemes, stage_loss_bound_s=[v / wsum for v in losses])
    if combine == "accelerated":
        placement.info["eps"] = eps
    return placement


@register("decomposition")
def decomposition(problem: Problem, *, order="latency", passes: int = 1, enum_limit: int = ENUM_LIMIT,
                  unit=None, max_units: int = MAX_UNITS, fill: bool = True) -> Placement:
    """Algorithm 2: successive decomposition over servers, each stage solved by a DP (chapter *Successive decomposition*).

    Parameters
    ----------
    problem : Problem
    order : {"latency", "capacity", "rate", "index"} or list of int
        Order of the stages, see :func:`server_order` (default: fastest
        server first, by the weighted mean latency of one call through it).
    passes : int
        ``1`` is the algorithm of the paper.  With ``passes > 1`` the servers
        are visited again, each stage re-solved with all other caches fixed and
        kept only if it improves the latency (block coordinate ascent; stops
        early when a pass changes nothing).
    enum_limit : int
        Largest number of subsets enumerated per layer for ``K >= 2``
        (default ``2**16``); above it, :func:`slimlib.solvers.group_search.grow_heuristic`.
    unit : float, optional
        Bytes per DP capacity unit (default: see :func:`slimlib.solvers.knapsack.dp_unit`; exact when
        every expert size is a multiple of it).
    max_units : int
        Largest DP capacity in units.
    fill : bool
        Fill the storage a stage leaves free (:func:`fill_free_storage`;
        default ``True``).

    Returns
    -------
    Placement
        ``info``: ``order``, ``stage_values_s`` (reduction of the average
        latency by each stage, seconds), ``stages_exact`` (every stage provably
        optimal), ``stage_schemes`` (how each stage counted storage, see
        :func:`slimlib.solvers.knapsack.combine_exact`: ``"gcd"``, ``"by-size"``,
        ``"unit"`` or ``"rounded"``), ``stage_loss_bound_s`` (per stage, at most
        this much average latency, seconds, can have been lost to rounding
        storage into units; 0 for exact schemes), ``passes``.
    """
    max_units = V.number("max_units", max_units, integer=True, positive=True, maximum=MAX_UNITS_LIMIT)
    return _successive(problem, "dp", order=order, passes=passes, enum_limit=enum_limit, unit=unit,
                       max_units=max_units, fill=fill, method="decomposition")


@register("accelerated")
def accelerated(problem: Problem, *, eps: float = 0.05, order="latency", passes: int = 1,
                enum_limit: int = ENUM_LIMIT, fill: bool = True) -> Placement:
    """Algorithm 3: successive decomposition, each stage combined over a value grid (chapter *Max-plus convolution*).

    Every stage value is at least ``(1 - eps)`` times the stage optimum given
    the same per-layer gains (:func:`slimlib.solvers.knapsack.combine_accelerated`); storage is counted
    in exact bytes, so no capacity unit is needed.

    Parameters
    ----------
    problem : Problem
    eps : float
        ``0 < eps < 1`` (default 0.05).
    order, passes, enum_limit, fill
        As for :func:`decomposition`.

    Returns
    -------
    Placement
    """
    eps = V.number("eps", eps, positive=True)
    if not eps < 1:
        raise V.fail("eps", eps, "must be < 1")
    _check_grid(problem, eps)
    return _successive(problem, "accelerated", order=order, passes=passes, enum_limit=enum_limit, eps=eps,
                       fill=fill, method="accelerated")

