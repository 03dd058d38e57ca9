"""Algorithms 2 and 3: successive decomposition with a DP per server, and its accelerated form.

Chapters *Successive decomposition* (``method="decomposition"``) and
*Max-plus convolution* (``method="accelerated"``); SPEC §3.

The servers are processed one after another (:func:`server_order`; by
default the fastest first, by the weighted mean latency of one call).  At the
stage of server ``n`` every other server's cache is fixed, and server ``n``
receives the cache that maximises the marginal latency reduction.  Writing
``tau_b(m, l, e)`` for user ``m``'s latency of expert ``e`` without server
``n`` and ``tau_a = min(tau_b, t_{m,n})`` for an expert cached on ``n``, the
stage objective is a sum over (model ``u``, layer ``l``) of

.. math::  g_{u,l}(S) = \\sum_{m: u(m) = u} w_m \\sum_G P_{m,l}(G)
           \\Big(\\max_{e \\in G} \\tau_b(m,l,e) - \\max_{e \\in G} \\tau_{S}(m,l,e)\\Big)

(``tau_S = tau_a`` on ``S``, ``tau_b`` elsewhere), eq. (STAGE) of chapter
*Successive decomposition*.  Per layer, :func:`layer_gains` computes
``h_{u,l}(c)``, the best ``g`` with at most ``c`` experts:

* ``K = 1``: ``g`` is modular, ``h(c)`` is the sum of the ``c`` largest single
  gains (concave; exact);
* ``K >= 2``: exact enumeration of the subsets of the *useful* experts (those
  that some user would reach faster on ``n``) while their number,
  ``sum_{c <= c_max} C(E', c)``, is at most ``enum_limit`` (default ``2**16``);
  beyond it the heuristic :func:`grow_heuristic` (documented there) grows
  nested sets from the empty set and from the best single group.

The layers share the server's storage ``Q_n``; they are combined

* exactly by the DP over capacity units (:func:`combine_dp`, Algorithm 2),
  ``F_k(q) = max_c F_{k-1}(q - c s_k) + h_k(c)``, exact whenever every expert
  size is a multiple of the unit (:func:`dp_unit`);
* or approximately by the accelerated combination (:func:`combine_accelerated`,
  Algorithm 3): concave layers of equal expert size are merged exactly by the
  linear-time (max,+) merge, then the gains are rounded to a grid
  ``delta = eps * LB / J`` and the ``J`` merged items combined by (min,+)
  convolution over the value grid; the result is within ``(1 - eps)`` of the
  stage optimum in ``O(J^2 * C / eps)`` time.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import combinations
from typing import Sequence

import numpy as np

from .. import _validate as V
from ..latency import CallLatency, average_latency, call_latency, expert_latency, group_latency, latency_reduction
from ..maxplus import is_concave, maxplus_strided, merge_concave, minplus_sparse
from ..problem import Placement, Problem
from . import register

__all__ = ["LayerGain", "StageResult", "server_order", "stage_latency", "layer_gains", "grow_heuristic",
           "dp_unit", "combine_dp", "combine_accelerated", "solve_stage", "fill_free_storage", "decomposition", "accelerated",
           "stage_comparison", "compare_placements", "exhaustive_stage", "random_stage_tables", "stage_table_study",
           "ENUM_LIMIT", "MAX_UNITS", "ORDERS"]

#: Default largest number of subsets enumerated per (model, layer) and stage.
ENUM_LIMIT = 2 ** 16
#: Default largest number of capacity units of the DP (the DP's table has ``MAX_UNITS + 1`` columns).
MAX_UNITS = 2 ** 21
#: Named server orders (besides an explicit list of server indices).
ORDERS = ("latency", "capacity", "rate", "index")
#: Models with at most this many experts per layer are enumerated for all layers at once.
DENSE_MAX_EXPERTS = 10
#: Group candidates tried per step by :func:`grow_heuristic`.
HEURISTIC_GROUPS = 16


# -- data -------------------------------------------------------------------------
@dataclass
class LayerGain:
    """``h_{u,l}(c)`` of one (model, layer) at one stage (chapter *Successive decomposition*, eq. (H)).

    Attributes
    ----------
    model, layer : int
        ``u`` and ``l``.
    size_bytes : float
        ``s_u``, bytes per expert.
    h : ndarray, shape (C + 1,)
        Best stage gain with at most ``c`` experts of this layer cached on the
        server, ``c = 0..C`` (weighted seconds: ``sum_m w_m`` times seconds);
        non-decreasing, ``h[0] = 0``.  ``C`` is at most the number of useful
        experts and of experts that fit.
    sets : list of ndarray of int
        ``sets[c]``: experts achieving ``h[c]``.
    how : str
        ``"top-c"`` (K = 1, exact), ``"enumeration"`` (exact) or ``"heuristic"``.
    evaluated : int
        Subsets evaluated to get ``h``.
    """

    model: int
    layer: int
    size_bytes: float
    h: np.ndarray
    sets: list
    how: str
    evaluated: int = 0

    @property
    def exact(self) -> bool:
        return self.how != "heuristic"


class _PrefixGain(LayerGain):
    """A ``"top-c"`` :class:`LayerGain` whose ``sets`` are the prefixes of one ranking, listed on first access.

    ``sets[c]`` is ``ranking[:c]``; :meth:`chosen` gives one without building
    the list (a stage reads only the chosen ``c``).
    """

    @property
    def sets(self) -> list:
        d = self.__dict__
        if d.get("_sets") is None:
            r = d["_ranking"]
            d["_sets"] = [r[:c] for c in range(len(r) + 1)]
        return d["_sets"]

    @sets.setter
    def sets(self, value):
        self.__dict__["_sets"] = value

    def chosen(self, c: int) -> np.ndarray:
        if self.__dict__.get("_sets") is None:
            return self.__dict__["_ranking"][:c]
        return self.sets[c]


def _prefix_gain(model: int, layer: int, size_bytes: float, h: np.ndarray, ranking: np.ndarray,
                 evaluated: int) -> _PrefixGain:
    it = _PrefixGain(model, layer, size_bytes, h, None, "top-c", evaluated)
    it.__dict__["_ranking"] = ranking
    return it


def _chosen(it: LayerGain, c: int) -> np.ndarray:
    """``it.sets[c]``."""
    return it.chosen(c) if isinstance(it, _PrefixGain) else it.sets[c]


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
          ``sum_m w_m t_{m,n} / sum_m w_m`` (eq. (5) of chapter *The system
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


# -- stage ingredients ---------------------------------------------------------------------
def stage_latency(problem: Problem, placement: Placement, server: int,
                  calls: CallLatency | None = None) -> tuple[list, np.ndarray]:
    """Expert latencies without server ``n``, and the latency through ``n``.

    Returns
    -------
    tau_before : list of ndarray
        Per user ``m`` shape ``(L, E)``, seconds: ``tau_b(m, l, e)``, the
        fastest of device (if cached), the other servers caching ``e``, cloud.
    t_server : ndarray, shape (M,)
        ``t_{m,n}``, seconds (eq. (5) of chapter *The system model*).
    """
    c = call_latency(problem) if calls is None else calls
    tau, t_srv, _ = _Context(problem, placement, c).stage_latency(placement, server)
    return tau, t_srv


class _Context:
    """What the stages of one run share (private; built once per solve, read-only afterwards).

    Per model ``u`` with users ``m_1 < m_2 < ...``: the latency of every expert
    with no server at all (device if cached, else cloud), stacked over the
    users, ``(M_u, L, E)``; the users' call latency through each server,
    ``(M_u, N)``; and lazily the stage-independent parts of the gain tables
    (``weighted_marginals``, the merged groups of ``_dense_gains``)
    and the DP's capacity units.  The stage computations use exactly the
    floating-point operations of the per-user formulas (minima and maxima are
    exact; sums keep their order), so the results are identical bit for bit.
    """

    def __init__(self, problem: Problem, placement: Placement, calls: CallLatency):
        self.problem = problem
        self.calls = calls
        self.users = [problem.users_of(u) for u in range(len(problem.models))]
        self.device_tau, self.edge = [], []
        for us in self.users:
            if len(us) == 0:
                self.device_tau.append(None)
                self.edge.append(None)
                continue
            y = np.stack([placement.device[m] for m in us])                      # (M_u, L, E)
            near = np.minimum(calls.local[us], calls.cloud[us])
            self.device_tau.append(np.where(y, near[:, None, None], calls.cloud[us][:, None, None]))
            self.edge.append(calls.edge[us])                                      # (M_u, N)
        self._wmarg: dict = {}
        self._dense: dict = {}
        self.units: dict = {}
        self._masks: dict = {}

    def stage_latency(self, placement: Placement, server: int):
        """``(tau_before per user, t_server (M,), tau_before stacked per model (M_u, L, E))``."""
        N = self.problem.num_servers
        tau = [None] * self.problem.num_users
        stacks = []
        for u, us in enumerate(self.users):
            if self.device_tau[u] is None:
                stacks.append(None)
                continue
            x = placement.server[u]                                               # (N, L, E)
            others = [k for k in range(N) if k != server and x[k].any()]          # empty servers change nothing
            if others:
                edge = np.where(x[others][None], self.edge[u][:, others, None, None], np.inf).min(axis=1)
                t = np.minimum(self.device_tau[u], edge)
            else:
                t = self.device_tau[u].copy()
            stacks.append(t)
            for i, m in enumerate(us):
                tau[m] = t[i]
        return tau, self.calls.edge[:, server].copy(), stacks

    def weighted_marginals(self, u: int) -> np.ndarray:
        """``w_m p_m(l, e)`` stacked over the users of model ``u``, ``(M_u, L, E)``."""
        if u not in self._wmarg:
            w = self.problem.network.user_weight
            self._wmarg[u] = np.stack([w[m] * self.problem.stats[m].marginals() for m in self.users[u]])
        return self._wmarg[u]

    def mask_sets(self, E: int) -> list:
        """``np.flatnonzero`` of the bits of every mask ``0 .. 2^E - 1``."""
        if E not in self._masks:
            self._masks[E] = [np.flatnonzero((x >> np.arange(E)) & 1) for x in range(2 ** E)]
        return self._masks[E]


def _slots(capacity_bytes: float, size_bytes: float) -> int:
    return int(math.floor(capacity_bytes / size_bytes + 1e-9))


def _layer_terms(problem, u, l, tau_b, t_srv):
    """Per (user, group) of model ``u``, layer ``l``: groups (T,K), before (T,K), after (T,K), weight (T,)."""
    w = problem.network.user_weight
    G, B, A, W = [], [], [], []
    for m in problem.users_of(u):
        s = problem.stats[m]
        g = s.groups(l)
        b = tau_b[m][l][g]                                        # (G_l, K)
        G.append(g)
        B.append(b)
        A.append(np.minimum(b, t_srv[m]))
        W.append(w[m] * s.probs(l))
    return np.concatenate(G), np.concatenate(B), np.concatenate(A), np.concatenate(W)


class _Terms:
    """The gain table of one layer: ``g(S) = sum_t table[t, bits_t(S)]`` over aggregated terms.

    ``bits_t(S)`` has bit ``k`` set when the ``k``-th expert of term ``t``'s
    group is in ``S``; ``table[t, s] = sum of w P (max_k b_k - max_k (a_k if bit k else b_k))``
    over the (user, group) pairs that map to the same local group.
    """

    def __init__(self, groups, before, after, weight, top_k):
        K = top_k
        useful_pair = after < before                               # (T, K)
        keep = useful_pair.any(axis=1) & (weight > 0)
        groups, before, after, weight = groups[keep], before[keep], after[keep], weight[keep]
        useful_pair = useful_pair[keep]
        experts = np.unique(groups[useful_pair]) if len(groups) else np.zeros(0, np.int64)
        self.experts = experts                                     # local index -> expert
        E = len(experts)
        loc = np.full(int(groups.max()) + 1 if len(groups) else 1, -1, np.int64)
        loc[experts] = np.arange(E)
        gl = loc[groups] if len(groups) else np.zeros((0, K), np.int64)   # (T, K), -1 = never useful
        bits = ((np.arange(2 ** K)[:, None] >> np.arange(K)) & 1).astype(bool)   # (2^K, K)
        val = np.where(bits[None], after[:, None, :], before[:, None, :]).max(axis=2)   # (T, 2^K)
        tab = weight[:, None] * (before.max(axis=1)[:, None] - val)
        if len(gl):
            uniq, inv = np.unique(gl, axis=0, return_inverse=True)
            agg = np.zeros((len(uniq), 2 ** K))
            np.add.at(agg, inv.ravel(), tab)
        else:
            uniq, agg = gl, tab
        self.groups = uniq                                         # (T', K) local, -1 allowed
        self.table = agg                                           # (T', 2^K)
        self.K = K
        self.E = E

    def bits(self, S: np.ndarray) -> np.ndarray:
        """``S`` (B, E) bool -> (B, T') int bit patterns."""
        Sp = np.concatenate([S, np.zeros((S.shape[0], 1), bool)], axis=1)
        g = np.where(self.groups < 0, self.E, self.groups)
        out = np.zeros((S.shape[0], len(g)), np.int64)
        for k in range(self.K):
            out |= Sp[:, g[:, k]].astype(np.int64) << k
        return out

    def values(self, S: np.ndarray, chunk: int = 1 << 22) -> np.ndarray:
        """``g(S)`` for every row of ``S`` (B, E) bool."""
        T = len(self.groups)
        out = np.zeros(S.shape[0])
        if T == 0:
            return out
        step = max(1, chunk // T)
        rows = np.arange(T)
        for i in range(0, S.shape[0], step):
            b = self.bits(S[i:i + step])
            out[i:i + step] = self.table[rows, b].sum(axis=1)
        return out


def _subset_count(E: int, cmax: int) -> int:
    return sum(math.comb(E, c) for c in range(cmax + 1))


def _enumerate(terms: _Terms, cmax: int):
    """Exact ``h(c)`` by evaluating every subset of the useful experts with at most ``cmax`` of them."""
    E = terms.E
    if E <= 20:
        masks = np.arange(2 ** E, dtype=np.int64)
        S = ((masks[:, None] >> np.arange(E)) & 1).astype(bool)
        S = S[S.sum(axis=1) <= cmax]
    else:
        rows = [np.zeros(E, bool)]
        for c in range(1, cmax + 1):
            for comb in combinations(range(E), c):
                r = np.zeros(E, bool)
                r[list(comb)] = True
                rows.append(r)
        S = np.array(rows)
    vals = terms.values(S)
    size = S.sum(axis=1)
    h = np.zeros(cmax + 1)
    sets = [np.zeros(0, np.int64)]
    for c in range(1, cmax + 1):
        idx = np.flatnonzero(size == c)
        j = idx[np.argmax(vals[idx])]          # first best subset of size c (masks ordered by bits)
        h[c] = vals[j]
        sets.append(np.flatnonzero(S[j]))
    return h, sets, len(S)


def grow_heuristic(terms: _Terms, cmax: int, groups_per_step: int = HEURISTIC_GROUPS):
    """Documented heuristic for ``h(c)`` when enumeration is too large (chapter *Successive decomposition*).

    Three chains of nested sets are grown: plain greedy on single experts
    from the empty set, and two *mixed* chains, one from the empty set and one
    from the best single group (the group ``G`` with the largest ``g(G)``
    among those that fit).  A mixed step adds either one expert or the missing
    experts of one *sub-group* (a subset of two or more experts of an
    activated group; the ``groups_per_step`` sub-groups with the largest
    stand-alone ``g`` are tried), choosing the move with the largest gain
    per added expert that keeps ``|S| <= cmax``; the sizes a group move skips
    are filled by adding single experts greedily, and every set evaluated on
    the way (including every sub-group alone) is a candidate for ``h`` of its
    size.  A chain stops when no move
    gains.
    When every useful expert fits, the set of all of them is recorded too.
    ``h(c)`` is the best value of a chain set with at most ``c`` experts.
    Single-expert gains are updated incrementally (``O(T K)`` per step), group
    moves are evaluated exactly.  The result is a lower bound on the exact
    ``h`` (every value is attained by a set of that size or smaller).

    Returns
    -------
    h : ndarray, shape (cmax + 1,)
    sets : list of ndarray
    evaluated : int
        Candidate sets evaluated.
    """
    E, K = terms.E, terms.K
    T = len(terms.groups)
    subs = set()                                           # every sub-group of >= 2 useful experts
    for g in terms.groups:
        g = np.unique(g[g >= 0])
        for r in range(2, len(g) + 1):
            subs.update(combinations(g.tolist(), r))
    subs = sorted(subs)
    gmask = np.zeros((len(subs), E), bool)
    for t, g in enumerate(subs):
        gmask[t, list(g)] = True
    gsize = gmask.sum(axis=1)
    fits = (gsize >= 2) & (gsize <= cmax)
    gval = terms.values(gmask) if len(subs) else np.zeros(0)
    gval = np.where(fits, gval, -np.inf)
    rank = np.argsort(-gval, kind="stable")
    rank = rank[np.isfinite(gval[rank])]
    best = np.full(cmax + 1, -np.inf)
    best[0] = 0.0
    best_set = [np.zeros(0, np.int64)] + [None] * cmax
    evaluated = len(subs)
    rows = np.arange(T)

    def record(S, cur):
        n = int(S.sum())
        if cur > best[n]:
            best[n] = cur
            best_set[n] = np.flatnonzero(S)

    def singles(S):
        """Marginal gain of adding each expert to ``S`` (incremental, ``O(T K)``)."""
        b = terms.bits(S[None])[0]
        out = np.zeros(E)
        for k in range(K):
            gk = terms.groups[:, k]
            ok = (gk >= 0) & ((b >> k) & 1 == 0)
            d = terms.table[rows[ok], b[ok] | (1 << k)] - terms.table[rows[ok], b[ok]]
            out += np.bincount(gk[ok], weights=d, minlength=E)
        out[S] = -np.inf
        return out

    for t in rank:                                         # every sub-group alone is a candidate too
        record(gmask[t], float(gval[t]))
    chains = [("singles", np.zeros(E, bool)), ("mixed", np.zeros(E, bool))]
    if len(rank):
        chains.append(("mixed", gmask[rank[0]].copy()))
    for mode, S in chains:
        cur = float(terms.values(S[None])[0])
        evaluated += 1
        while True:
            record(S, cur)
            n = int(S.sum())
            if n >= cmax or n >= E:
                break
            single = singles(S)
            evaluated += int((~S).sum())
            moves = [(float(single.max()), 1, int(np.argmax(single)), None)]
            if mode == "mixed":
                cand = [t for t in rank if (gmask[t] & ~S).sum() >= 2
                        and (gmask[t] | S).sum() <= cmax][:groups_per_step]
                if cand:
                    U = gmask[cand] | S[None]
                    v = terms.values(U) - cur
                    evaluated += len(cand)
                    moves += [(float(v[i]), int((U[i] & ~S).sum()), None, t) for i, t in enumerate(cand)]
                    for i in range(len(cand)):                # every evaluated set is a candidate for h
                        record(U[i], cur + float(v[i]))
            gain, add, e, t = max(moves, key=lambda mv: (mv[0] / mv[1], mv[0]))
            if not gain > 0:
                break
            if t is not None:
                # fill the sizes the group move skips: add singles greedily from S
                F, fcur = S.copy(), cur
                for _ in range(add - 1):
                    sg = singles(F)
                    j = int(np.argmax(sg))
                    F[j] = True
                    fcur += float(sg[j])
                    record(F, fcur)
                S = S | gmask[t]
            else:
                S = S.copy()
                S[e] = True
            cur += gain
    if E <= cmax:                                          # every useful expert fits: the best set
        full = np.ones(E, bool)
        v = float(terms.values(full[None])[0])
        evaluated += 1
        if v > best[E]:
            best[E], best_set[E] = v, np.arange(E)
    h = np.maximum.accumulate(best)
    sets, last = [], best_set[0]
    for c in range(cmax + 1):
        if best[c] >= h[c] and best_set[c] is not None:
            last = best_set[c]
        sets.append(last)
    return h, sets, evaluated


def _dense_tables(problem: Problem, u: int, users) -> dict:
    """The stage-independent part of ``_dense_gains`` for model ``u`` (its users' groups, merged)."""
    mod = problem.models[u]
    E, K, L = mod.num_experts, mod.top_k, mod.num_layers
    w = problem.network.user_weight
    lay, grp, wt, who = [], [], [], []
    for i, m in enumerate(users):
        s = problem.stats[m]
        lay.append(s.group_layer)
        grp.append(s.group_experts)
        wt.append(w[m] * s.group_prob)
        who.append(np.full(len(s.group_layer), i))
    lay, grp, wt, who = map(np.concatenate, (lay, grp, wt, who))
    key = lay * E ** K + (grp * E ** np.arange(K)).sum(axis=1)
    uk, inv = np.unique(key, return_inverse=True)
    inv = inv.ravel()
    first = np.zeros(len(uk), np.int64)
    first[inv] = np.arange(len(key))
    cell = (inv[None, :] * 2 ** K + np.arange(2 ** K)[:, None]).ravel()     # (2^K, T) term -> table cell
    return dict(lay=lay, grpT=np.ascontiguousarray(grp.T), wt=wt, who=who, cell=cell, T=len(uk),
                g_lay=lay[first], g_exp=grp[first], caps={})


def _dense_masks(tab: dict, E: int, K: int, L: int, cap: int) -> dict:
    """The subsets of at most ``cap`` experts, ordered by size (then mask), and the gather indices per layer."""
    if cap in tab["caps"]:
        return tab["caps"][cap]
    masks = np.arange(2 ** E, dtype=np.int64)
    pop = np.array([bin(x).count("1") for x in masks])
    keep = pop <= cap
    masks, pop = masks[keep], pop[keep]
    nmasks = len(masks)
    perm = np.argsort(pop, kind="stable")                  # by size; within a size, by mask
    masks, pop = masks[perm], pop[perm]
    g_exp, g_lay, T = tab["g_exp"], tab["g_lay"], tab["T"]
    b = np.zeros((len(masks), T), np.int64)
    for k in range(K):
        b |= ((masks[:, None] >> g_exp[None, :, k]) & 1) << k
    flat = np.arange(T)[None, :] * 2 ** K + b              # index into the (T, 2^K) table, raveled
    cols = [flat[:, g_lay == l] for l in range(L)]         # (S, T_l) per layer
    bounds = np.searchsorted(pop, np.arange(cap + 2))
    out = dict(masks=masks, nmasks=nmasks, cols=cols, bounds=bounds)
    tab["caps"][cap] = out
    return out


def _dense_gains(problem: Problem, u: int, tau_b, t_srv, cap: int, ctx: "_Context | None" = None,
                 stack: np.ndarray | None = None) -> list:
    """Exact ``h`` of every layer of model ``u`` at once, enumerating all subsets of all ``E`` experts.

    The same enumeration as the per-layer path, vectorised over layers (used
    when ``E <= DENSE_MAX_EXPERTS``, e.g. the MoE-LLaVA models with ``E = 4``).
    ``ctx`` and ``stack`` (``tau_b`` of the model's users stacked,
    ``(M_u, L, E)``) only save work.
    """
    mod = problem.models[u]
    E, K, L = mod.num_experts, mod.top_k, mod.num_layers
    users = problem.users_of(u) if ctx is None else ctx.users[u]
    if ctx is None:
        tab = _dense_tables(problem, u, users)
    else:
        tab = ctx._dense.get(u)
        if tab is None:
            tab = ctx._dense[u] = _dense_tables(problem, u, users)
    if stack is None:
        stack = np.stack([tau_b[m] for m in users])
    # Transposed, (K, T) and (2^K, T): every array operation runs along the long axis.  The maxima of
    # K latencies are taken pairwise (latencies are positive numbers, so a maximum is the same float
    # however it is taken), and each table cell sums its terms in row order (np.bincount, like np.add.at).
    who, lay = tab["who"], tab["lay"]
    bef = stack[who[None, :], lay[None, :], tab["grpT"]]                       # (K, T)
    aft = np.minimum(bef, t_srv[users][who][None, :])
    bmax = bef[0]
    for k in range(1, K):
        bmax = np.maximum(bmax, bef[k])
    val = np.empty((2 ** K, len(who)))
    for b in range(2 ** K):                                                    # subset b of the group's experts on n
        v = aft[0] if b & 1 else bef[0]
        for k in range(1, K):
            v = np.maximum(v, aft[k] if b >> k & 1 else bef[k])
        val[b] = v
    terms = tab["wt"][None, :] * (bmax[None, :] - val)                        # (2^K, T)
    flat = np.bincount(tab["cell"], weights=terms.ravel(), minlength=tab["T"] * 2 ** K)   # (T', 2^K) raveled
    mk = _dense_masks(tab, E, K, L, cap)
    per_layer = np.zeros((len(mk["masks"]), L))
    for l in range(L):                                                         # sum of each layer's terms
        per_layer[:, l] = flat[mk["cols"][l]].sum(axis=1)
    hs = np.zeros((cap + 1, L))
    best = np.zeros((cap + 1, L), np.int64)
    cols = np.arange(L)
    bounds, masks = mk["bounds"], mk["masks"]
    for c in range(cap + 1):                                                   # best subset of each size
        blk = per_layer[bounds[c]:bounds[c + 1]]
        j = np.argmax(blk, axis=0)
        hs[c] = blk[j, cols]
        best[c] = masks[bounds[c] + j]
    H = np.maximum.accumulate(np.maximum(hs.T, 0.0), axis=1)                  # (L, cap + 1)
    # the smallest set reaching each value: the set of the last size where h improved
    step = np.concatenate([np.ones((L, 1), bool), H[:, 1:] > H[:, :-1]], axis=1)
    src = np.maximum.accumulate(np.where(step, np.arange(cap + 1), 0), axis=1)
    top = np.argmax(H >= H[:, -1:], axis=1)                                    # no column beyond the last improvement
    ms = (ctx.mask_sets(E) if ctx is not None else
          [np.flatnonzero((x >> np.arange(E)) & 1) for x in range(2 ** E)])
    items = []
    for l in np.flatnonzero(H[:, -1] > 0).tolist():
        t = int(top[l])
        sets = [ms[best[c, l]] for c in src[l, :t + 1].tolist()]
        items.append(LayerGain(u, l, mod.expert_bytes, H[l, :t + 1], sets, "enumeration", mk["nmasks"]))
    return items


def layer_gains(problem: Problem, placement: Placement, server: int, *, enum_limit: int = ENUM_LIMIT,
                calls: CallLatency | None = None, _lat=None, _ctx: _Context | None = None) -> list[LayerGain]:
    """``h_{u,l}(c)`` for every (model, layer) at the stage of ``server`` (chapter *Successive decomposition*, eq. (H)).

    Parameters
    ----------
    problem : Problem
    placement : Placement
        The fixed caches of the other servers (server ``n``'s own entries are ignored).
    server : int
        ``n``.
    enum_limit : int
        Largest number of subsets enumerated per layer for ``K >= 2``; above
        it :func:`grow_heuristic` is used.
    calls : CallLatency, optional
        Precomputed :func:`slimlib.call_latency`.

    Returns
    -------
    list of LayerGain
        Only layers with a positive gain for some ``c``.
    """
    if _ctx is None:
        _ctx = _Context(problem, placement, call_latency(problem) if calls is None else calls)
    if _lat is None:
        _lat = _ctx.stage_latency(placement, server)
    tau_b, t_srv = _lat[0], _lat[1]
    stacks = _lat[2] if len(_lat) > 2 else [None if len(us) == 0 else np.stack([tau_b[m] for m in us])
                                            for us in _ctx.users]
    Q = float(problem.network.server_capacity_bytes[server])
    items = []
    for u, mod in enumerate(problem.models):
        users = _ctx.users[u]
        if len(users) == 0:
            continue
        s = mod.expert_bytes
        cap = min(mod.num_experts, _slots(Q, s))
        if cap == 0:
            continue
        if mod.top_k == 1:
            gain = _ctx.weighted_marginals(u) * np.maximum(stacks[u] - t_srv[users][:, None, None], 0.0)
            single = np.zeros((mod.num_layers, mod.num_experts))
            for g in gain:                                     # users in index order, as a running sum
                single += g
            order = np.argsort(-single, axis=1, kind="stable")
            ranked = np.take_along_axis(single, order, axis=1)     # decreasing: the positive ones first
            npos = np.minimum((ranked > 0).sum(axis=1), cap)
            cum = np.zeros((mod.num_layers, mod.num_experts + 1))
            np.cumsum(ranked, axis=1, out=cum[:, 1:])          # row l: h of layer l (0, then running sums)
            for l in np.flatnonzero(npos).tolist():
                c = int(npos[l])
                items.append(_prefix_gain(u, l, s, cum[l, :c + 1], order[l, :c], mod.num_experts))
            continue
        if mod.num_experts <= DENSE_MAX_EXPERTS and _subset_count(mod.num_experts, cap) <= enum_limit:
            items += _dense_gains(problem, u, tau_b, t_srv, cap, _ctx, stacks[u])
            continue
        for l in range(mod.num_layers):
            terms = _Terms(*_layer_terms(problem, u, l, tau_b, t_srv), mod.top_k)
            if terms.E == 0 or not (terms.table > 0).any():
                continue
            cmax = min(cap, terms.E)
            if _subset_count(terms.E, cmax) <= enum_limit:
                h, sets, ev = _enumerate(terms, cmax)
                how = "enumeration"
            else:
                h, sets, ev = grow_heuristic(terms, cmax)
                how = "heuristic"
            h = np.maximum.accumulate(np.maximum(h, 0.0))
            sets = [terms.experts[st] for st in sets]
            # keep the smallest set reaching each value (h is flat where more experts do not help)
            for c in range(1, len(h)):
                if not h[c] > h[c - 1]:
                    sets[c] = sets[c - 1]
            top = int(np.flatnonzero(h >= h[-1])[0])           # no column beyond the last improvement
            items.append(LayerGain(u, l, s, h[:top + 1], sets[:top + 1], how, ev))
    return [it for it in items if len(it.h) > 1 and it.h[-1] > 0]


# -- combining the layers -----------------------------------------------------------
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
        See :func:`layer_gains`.
    unit, max_units
        See :func:`dp_unit` (``"dp"`` only).
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
        du = sizes if len(items) else [m.expert_bytes for m in problem.models]
        if unit is None:                      # depends only on the distinct sizes and Q: once per run
            key = (tuple(sorted({float(x) for x in du})), Q, max_units)
            if key not in ctx.units:
                ctx.units[key] = dp_unit(np.array(key[0]), Q, None, max_units)
            u_bytes, unit_exact = ctx.units[key]
        else:
            u_bytes, unit_exact = dp_unit(du, Q, unit, max_units)
        su = np.maximum(1, np.ceil(sizes / u_bytes - 1e-9)).astype(np.int64)
        qu = int(math.floor(Q / u_bytes + 1e-9))
        counts, value, table, choice = combine_dp([it.h for it in items], su, qu, keep_table=keep_table,
                                                  _trusted=True)
        exact = unit_exact
        info.update(unit_bytes=u_bytes, capacity_units=qu, sizes_units=su)
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
    info["filled"] = fill_free_storage(problem, cache, lat[0], lat[1], Q) if fill else 0
    exact = bool(exact and all(it.exact for it in items))
    return StageResult(n, Q, items, counts, float(value), cache, combine, exact, info, table, choice)


def fill_free_storage(problem: Problem, cache: list, tau_before: list, t_server: np.ndarray,
                      capacity_bytes: float) -> int:
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
    being completed gain a larger share).  Experts with ``o = 0`` are never
    added.

    Parameters
    ----------
    problem : Problem
    cache : list of ndarray of bool
        Per model ``(L, E)``; modified in place.
    tau_before, t_server
        From :func:`stage_latency`.
    capacity_bytes : float

    Returns
    -------
    int
        Experts added.
    """
    used = sum(int(c.sum()) * m.expert_bytes for c, m in zip(cache, problem.models))
    room = capacity_bytes * (1 + 1e-12) - used
    w = problem.network.user_weight

    def scores():
        out = []
        for u, mod in enumerate(problem.models):
            users = problem.users_of(u)
            if room < mod.expert_bytes or len(users) == 0:
                out.append(None)
                continue
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
    if all(m.top_k == 1 for m in problem.models):
        # K = 1: the scores are the exact single gains and do not change as experts are added
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


# -- the algorithms -----------------------------------------------------------------------
def _successive(problem: Problem, combine: str, *, order, passes, enum_limit, unit=None, max_units=MAX_UNITS,
                eps=0.05, fill=True, method: str) -> Placement:
    passes = V.number("passes", passes, integer=True, positive=True)
    calls = call_latency(problem)
    seq = server_order(problem, order, _calls=calls)
    placement = Placement.empty(problem, method=method)
    ctx = _Context(problem, placement, calls)
    values, exact, improved = [], True, 0
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
            exact = exact and st.exact
        if p > 0 and not changed:
            break
    wsum = float(problem.network.user_weight.sum())
    placement.info.update(order=seq, passes=passes, stage_values_s=[v / wsum for v in values],
                          stages_exact=exact, improved_in_later_passes=improved)
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
        (default ``2**16``); above it, :func:`grow_heuristic`.
    unit : float, optional
        Bytes per DP capacity unit (default: see :func:`dp_unit`; exact when
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
        optimal), ``passes``.
    """
    return _successive(problem, "dp", order=order, passes=passes, enum_limit=enum_limit, unit=unit,
                       max_units=max_units, fill=fill, method="decomposition")


@register("accelerated")
def accelerated(problem: Problem, *, eps: float = 0.05, order="latency", passes: int = 1,
                enum_limit: int = ENUM_LIMIT, fill: bool = True) -> Placement:
    """Algorithm 3: successive decomposition, each stage combined over a value grid (chapter *Max-plus convolution*).

    Every stage value is at least ``(1 - eps)`` times the stage optimum given
    the same per-layer gains (:func:`combine_accelerated`); storage is counted
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
    return _successive(problem, "accelerated", order=order, passes=passes, enum_limit=enum_limit, eps=eps,
                       fill=fill, method="accelerated")


# -- measurements for the chapters ------------------------------------------------------------
def random_stage_tables(rng, *, num_items=(4, 16), max_choices: int = 8, sizes=(1, 4), concave_share: float = 0.3):
    """A random stage: per-item gains ``h_k``, integer sizes and a capacity (chapter *Max-plus convolution*).

    Each ``h_k`` has ``1..max_choices`` random non-negative increments (sorted
    decreasingly, i.e. concave, with probability ``concave_share``); sizes are
    uniform integers in ``sizes``; the capacity is uniform between 10 % and
    60 % of what caching everything would need.

    Returns
    -------
    (list of ndarray, ndarray of int, int)
        ``h_list``, ``sizes``, ``capacity``.
    """
    rng = np.random.default_rng(rng)
    J = int(rng.integers(num_items[0], num_items[1] + 1))
    hs, sz = [], []
    for _ in range(J):
        inc = rng.exponential(1.0, int(rng.integers(1, max_choices + 1))) * rng.exponential(1.0)
        if rng.random() < concave_share:
            inc = np.sort(inc)[::-1]
        hs.append(np.concatenate([[0.0], np.cumsum(inc)]))
        sz.append(int(rng.integers(sizes[0], sizes[1] + 1)))
    sz = np.array(sz)
    full = int(sum((len(h) - 1) * s for h, s in zip(hs, sz)))
    cap = int(rng.integers(max(1, full // 10), max(2, int(0.6 * full)) + 1))
    return hs, sz, cap


def stage_table_study(num: int, eps_values: Sequence[float], *, seed: int = 0) -> dict:
    """Algorithm 3 vs the exact DP on ``num`` random stages (:func:`random_stage_tables`).

    Returns
    -------
    dict
        ``ratios``: eps -> ndarray of value(accelerated) / value(DP) (1 when
        both are 0); ``exact_share``: eps -> fraction of stages needing no
        rounding; ``grid``: eps -> ndarray of the value grid sizes ``V``.
    """
    ratios = {float(e): [] for e in eps_values}
    grids = {float(e): [] for e in eps_values}
    exact = {float(e): [] for e in eps_values}
    for i in range(int(num)):
        hs, sz, cap = random_stage_tables([int(seed), i])
        _, v_dp, _, _ = combine_dp(hs, sz, cap)
        for e in ratios:
            _, v, inf = combine_accelerated(hs, sz.astype(float), float(cap), e)
            ratios[e].append(v / v_dp if v_dp > 0 else 1.0)
            grids[e].append(inf["grid"])
            exact[e].append(inf["exact"])
    return dict(ratios={e: np.array(r) for e, r in ratios.items()},
                grid={e: np.array(g) for e, g in grids.items()},
                exact_share={e: float(np.mean(x)) for e, x in exact.items()})


def exhaustive_stage(problem: Problem, placement: Placement, server: int, *, limit: int = 2 ** 16) -> float:
    """The stage optimum by brute force, scored by the evaluator (check of chapter *Successive decomposition*).

    Tries every set of (model, layer, expert) columns that fits in server
    ``n``'s storage, with the other servers' caches of ``placement`` fixed, and
    returns the largest increase of :func:`slimlib.latency_reduction`
    (weighted seconds, like :attr:`StageResult.value`).

    Raises ValueError when there are more than ``limit`` candidate sets.
    """
    base = placement.copy()
    for x in base.server:
        x[server] = False
    r0 = latency_reduction(problem, base)
    cols = [(u, l, e) for u, m in enumerate(problem.models) for l in range(m.num_layers)
            for e in range(m.num_experts)]
    if 2 ** len(cols) > limit:
        raise V.fail("problem", f"{len(cols)} columns", f"exhaustive stage search is limited to {limit} sets")
    Q = float(problem.network.server_capacity_bytes[server])
    best = 0.0
    for mask in range(1, 2 ** len(cols)):
        chosen = [cols[i] for i in range(len(cols)) if mask >> i & 1]
        if sum(problem.models[u].expert_bytes for u, _, _ in chosen) > Q * (1 + 1e-12):
            continue
        trial = base.copy()
        for u, l, e in chosen:
            trial.server[u][server, l, e] = True
        best = max(best, latency_reduction(problem, trial) - r0)
    return best



def compare_placements(problem: Problem, a: Placement, b: Placement) -> dict:
    """Where two placements differ, layer by layer (to explain a comparison; chapter *Experiments*, Figs. 6-7).

    Both are scored by the one evaluator; each layer's share of the average
    latency is ``sum_m w_m sum_G P_{m,l}(G) tau_m(l, G) / sum_m w_m`` (the
    terms of :func:`slimlib.average_latency`, grouped by layer).

    Parameters
    ----------
    problem : Problem
    a, b : Placement

    Returns
    -------
    dict
        ``latency_a``, ``latency_b`` (s); ``layer_a``, ``layer_b``: per model
        an ndarray ``(L_u,)`` of each layer's share (s; sums to the latency);
        ``edge_a``, ``edge_b``: per model an ndarray ``(L_u,)`` of distinct
        experts of each layer cached on some server; ``only_a``/``only_b``:
        (model, layer, expert) cached at the edge by one placement only;
        ``moved``: cached by both but not on the same servers; ``worst``:
        (model, layer) where ``a`` is slower than ``b`` by most, with
        ``worst_delta`` (s, positive when ``a`` is slower there) and ``rest_delta``
        (s, the difference ``a - b`` over all other layers).
    """
    a.check(problem)
    b.check(problem)
    calls = call_latency(problem)
    w = problem.network.user_weight
    out: dict = {}
    for tag, pl in (("a", a), ("b", b)):
        lay = [np.zeros(m.num_layers) for m in problem.models]
        for m, st in enumerate(problem.stats):
            u = problem.user_model[m]
            tau = expert_latency(problem, pl, m, calls=calls)
            g = group_latency(tau, st.group_layer, st.group_experts) * st.group_prob
            lay[u] += w[m] * np.bincount(st.group_layer, weights=g, minlength=problem.models[u].num_layers)
        out[f"layer_{tag}"] = [x / float(w.sum()) for x in lay]
        out[f"latency_{tag}"] = average_latency(problem, pl)
        out[f"edge_{tag}"] = [x.any(axis=0).sum(axis=1) for x in pl.server]
    ea = np.concatenate([x.any(axis=0).ravel() for x in a.server])
    eb = np.concatenate([x.any(axis=0).ravel() for x in b.server])
    xa = np.concatenate([x.reshape(x.shape[0], -1) for x in a.server], axis=1)
    xb = np.concatenate([x.reshape(x.shape[0], -1) for x in b.server], axis=1)
    out.update(only_a=int((ea & ~eb).sum()), only_b=int((eb & ~ea).sum()),
               moved=int((ea & eb & (xa != xb).any(axis=0)).sum()))
    diff = [(float(la[l] - lb[l]), u, l) for u, (la, lb) in enumerate(zip(out["layer_a"], out["layer_b"]))
            for l in range(len(la))]
    d, u, l = max(diff)
    out.update(worst=(u, l), worst_delta=d, rest_delta=float(sum(x for x, *_ in diff) - d))
    return out


def stage_comparison(problem: Problem, eps_values: Sequence[float], *, order="latency", unit=None,
                     max_units: int = MAX_UNITS, repeat: int = 1) -> list[dict]:
    """Exact DP vs accelerated combination on the same stages (chapter *Max-plus convolution*, Fig. 11 of the book).

    Follows Algorithm 2's stages; at each stage the per-layer gains are
    computed once and combined by :func:`combine_dp` (unit from
    :func:`dp_unit`) and by :func:`combine_accelerated` for each ``eps``.

    Returns
    -------
    list of dict
        One row per (stage, combination): ``server``, ``combine``
        (``"dp"`` or ``"accelerated"``), ``eps`` (NaN for the DP), ``value``
        (weighted seconds), ``ratio`` (to the DP's value; 1 when both are 0),
        ``time_s`` (best of ``repeat`` runs of the combination step alone),
        ``grid`` (value grid size ``V`` or capacity units), ``rounded``
        (the accelerated combination needed the value grid, i.e. was not
        solved exactly by merging alone).
    """
    placement = Placement.empty(problem)
    calls = call_latency(problem)
    rows = []
    for n in server_order(problem, order):
        items = layer_gains(problem, placement, n, calls=calls)
        Q = float(problem.network.server_capacity_bytes[n])
        sizes = np.array([it.size_bytes for it in items])
        hs = [it.h for it in items]
        u_bytes, _ = dp_unit(sizes if len(items) else [problem.models[0].expert_bytes], Q, unit, max_units)
        su = np.maximum(1, np.ceil(sizes / u_bytes - 1e-9)).astype(np.int64)
        qu = int(math.floor(Q / u_bytes + 1e-9))
        best = np.inf
        for _ in range(repeat):
            t = time.perf_counter()
            counts, v_dp, _, _ = combine_dp(hs, su, qu)
            best = min(best, time.perf_counter() - t)
        rows.append(dict(server=n, combine="dp", eps=float("nan"), value=v_dp, ratio=1.0, time_s=best, grid=qu,
                         rounded=False))
        for e in eps_values:
            best = np.inf
            for _ in range(repeat):
                t = time.perf_counter()
                _, v, inf = combine_accelerated(hs, sizes, Q, e)
                best = min(best, time.perf_counter() - t)
            rows.append(dict(server=n, combine="accelerated", eps=float(e), value=v,
                             ratio=v / v_dp if v_dp > 0 else 1.0, time_s=best, grid=inf["grid"],
                             rounded=not inf["exact"]))
        for it, c in zip(items, counts):
            placement.server[it.model][n, it.layer, it.sets[int(c)]] = True
    return rows
