"""Per-layer stage gains ``h_{u,l}(c)`` of the successive decomposition (chapter *Successive decomposition*, eq. (H)).

At the stage of server ``n`` every other server's cache is fixed; writing
``tau_b(m, l, e)`` for user ``m``'s latency of expert ``e`` without server
``n`` and ``tau_a = min(tau_b, t_{m,n})`` for an expert cached on ``n``, the
stage objective is a sum over (model ``u``, layer ``l``) of

.. math::  g_{u,l}(S) = \\sum_{m: u(m) = u} w_m \\sum_G P_{m,l}(G)
           \\Big(\\max_{e \\in G} \\tau_b(m,l,e) - \\max_{e \\in G} \\tau_{S}(m,l,e)\\Big)

(eq. (STAGE) of chapter *Successive decomposition*).  :func:`layer_gains`
computes ``h_{u,l}(c)``, the best ``g`` with at most ``c`` experts:

* ``K = 1``: ``g`` is modular, ``h(c)`` is the sum of the ``c`` largest single
  gains (concave; exact).  Over the stages of one solve the single gains of
  the experts that no other server caches come from one matrix product for
  all servers, and only the experts cached elsewhere are summed again at each
  stage (one pass over their users; memory ``O(M L E)`` once per solve);
* ``K >= 2``: exact enumeration of the subsets of the *useful* experts (those
  that some user would reach faster on ``n``) while their number,
  ``sum_{c <= c_max} C(E', c)``, is at most ``enum_limit`` (default ``2**16``);
  beyond it the heuristic :func:`~slimlib.solvers.group_search.grow_heuristic`
  (documented there), whose work is over the observed groups only; for
  ``K > TABLE_MAX_K`` :func:`~slimlib.solvers.group_search.group_completion`.
  The ``K >= 2`` searches live in :mod:`slimlib.solvers.group_search`.

The layers are then combined under the server's storage by
:mod:`slimlib.solvers.knapsack`.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..latency import CallLatency, call_latency
from ..problem import Placement, Problem
from ._single_gains import SingleGains
from .group_search import (TABLE_MAX_K, GroupTerms, enumerate_subsets, group_completion, grow_heuristic,
                           subset_count)

__all__ = ["LayerGain", "stage_latency", "layer_gains", "ENUM_LIMIT"]

#: Default largest number of subsets enumerated per (model, layer) and stage.
ENUM_LIMIT = 2 ** 16
#: Models with at most this many experts per layer are enumerated for all layers at once.
DENSE_MAX_EXPERTS = 10

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
        ``"top-c"`` (K = 1, exact), ``"enumeration"`` (exact), ``"heuristic"``
        (:func:`~slimlib.solvers.group_search.grow_heuristic`) or ``"completion"``
        (:func:`~slimlib.solvers.group_search.group_completion`).
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
        return self.how not in ("heuristic", "completion")


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
        ``t_{m,n}``, seconds (eq. (1.3) of chapter *The system model*).
    """
    c = call_latency(problem) if calls is None else calls
    tau, t_srv, _ = _Context(problem, placement, c).stage_latency(placement, server)
    return list(tau), t_srv


class _UserLatency(Sequence):
    """``tau_b`` of every user, ``(L, E)`` each, read from the models' stacks or :class:`SingleGains` on access."""

    def __init__(self, ctx: "_Context", stacks: list):
        self._ctx, self._stacks = ctx, stacks

    def __len__(self) -> int:
        return self._ctx.problem.num_users

    def __getitem__(self, m):
        if isinstance(m, slice):
            return [self[i] for i in range(*m.indices(len(self)))]
        u, i = self._ctx.where[m]
        if self._stacks[u] is not None:
            return self._stacks[u][i]
        return self._ctx.single[u].latency(i)


class _Context:
    """What the stages of one run share (private; built once per solve; besides lazily built tables it keeps
    a running minimum of the other servers' latencies, checked against their caches at every stage).

    Per ``K >= 2`` model ``u`` with users ``m_1 < m_2 < ...``: the latency of
    every expert with no server at all (device if cached, else cloud), stacked
    over the users, ``(M_u, L, E)``; the users' call latency through each
    server, ``(M_u, N)``; and lazily the merged groups of ``_dense_gains``
    and the DP's capacity units.  The stage computations use exactly the
    floating-point operations of the per-user formulas (minima and maxima are
    exact; sums keep their order), so the results are identical bit for bit.
    Per ``K = 1`` model: a :class:`SingleGains` (column-major, gains of
    untouched columns from one matrix product).
    """

    def __init__(self, problem: Problem, placement: Placement, calls: CallLatency):
        self.problem = problem
        self.calls = calls
        self.users = [problem.users_of(u) for u in range(len(problem.models))]
        self.where = [None] * problem.num_users                                  # user -> (model, row)
        self.device_tau, self.edge, self.single = [], [], {}
        for u, us in enumerate(self.users):
            for i, m in enumerate(us.tolist()):
                self.where[m] = (u, i)
            if len(us) == 0 or problem.models[u].top_k == 1:
                self.device_tau.append(None)
                self.edge.append(None)
                if len(us):
                    self.single[u] = SingleGains(problem, u, us, placement, calls)
                continue
            y = np.stack([placement.device[m] for m in us])                      # (M_u, L, E)
            near = np.minimum(calls.local[us], calls.cloud[us])
            self.device_tau.append(np.where(y, near[:, None, None], calls.cloud[us][:, None, None]))
            self.edge.append(calls.edge[us])                                      # (M_u, N)
        self._dense: dict = {}
        self.units: dict = {}
        self._masks: dict = {}
        # per model: the servers already folded into a running minimum, with their caches then, and that minimum;
        # successive stages (pass 1: the servers before n) only add servers, so each stage costs O(M_u x new cached)
        self._running: dict = {}
        self.server, self._stage_single = None, {}

    def stage_latency(self, placement: Placement, server: int):
        """``(tau_before, t_server (M,), stacks)`` at the stage of ``server``.

        ``tau_before`` is a sequence of per-user ``(L, E)`` arrays, built on
        access for ``K = 1`` users; ``stacks[u]`` is ``tau_before`` stacked
        over the users of a ``K >= 2`` model, ``(M_u, L, E)``, and ``None``
        for a ``K = 1`` model, whose state is in ``self.single[u]`` (valid
        until the next call).
        """
        N = self.problem.num_servers
        stacks = []
        for u, us in enumerate(self.users):
            if u in self.single:
                self.single[u].update(placement.server[u], server)
            if self.device_tau[u] is None:
                stacks.append(None)
                continue
            x = placement.server[u]                                               # (N, L, E)
            want = [k for k in range(N) if k != server and x[k].any()]           # empty servers change nothing
            snaps, t = self._running.get(u, ({}, None))
            if t is None or any(k not in want or not np.array_equal(x[k], sx) for k, sx in snaps.items()):
                snaps, t = {}, self.device_tau[u].copy()                          # start again from the devices
            for k in want:                         # only the cached experts of the servers not yet applied
                if k in snaps:
                    continue
                li, ei = np.nonzero(x[k])
                t[:, li, ei] = np.minimum(t[:, li, ei], self.edge[u][:, k, None])
                snaps[k] = x[k].copy()
            self._running[u] = (snaps, t)
            stacks.append(t.copy())
        self.server, self._stage_single = server, {}
        return _UserLatency(self, stacks), self.calls.edge[:, server].copy(), stacks

    def single_gains(self, u: int, server: int) -> np.ndarray:
        """``(L, E)`` single-expert gains of the ``K = 1`` model ``u`` at the stage of ``server`` (weighted seconds;
        computed once per stage)."""
        if self.server != server:
            raise ValueError(f"stage_latency was last called for server {self.server}, not {server}")
        if u not in self._stage_single:
            self._stage_single[u] = self.single[u].gains(server)
        return self._stage_single[u]

    def mask_sets(self, E: int) -> list:
        """``np.flatnonzero`` of the bits of every mask ``0 .. 2^E - 1``."""
        if E not in self._masks:
            self._masks[E] = [np.flatnonzero((x >> np.arange(E)) & 1) for x in range(2 ** E)]
        return self._masks[E]


def _slots(capacity_bytes: float, size_bytes: float) -> int:
    return int(math.floor(capacity_bytes / size_bytes + 1e-9))


def _layer_terms(problem, u, l, tau_b, t_srv, stack=None, users=None):
    """Per (user, group) of model ``u``, layer ``l``: groups (T,K), before (T,K), after (T,K), weight (T,)."""
    w = problem.network.user_weight
    if stack is not None:                                  # vectorised over the users (same values)
        st = [problem.stats[m] for m in users]
        # group_layer is sorted (stats are stored layer by layer): slices, not masks
        sl = [slice(*np.searchsorted(s_.group_layer, [l, l + 1])) for s_ in st]
        G = np.concatenate([s_.group_experts[k] for s_, k in zip(st, sl)])
        who = np.repeat(np.arange(len(st)), [k.stop - k.start for k in sl])
        B = stack[who[:, None], l, G]
        A = np.minimum(B, t_srv[np.asarray(users)][who][:, None])
        W = np.concatenate([w[m] * s_.group_prob[k] for m, s_, k in zip(users, st, sl)])
        return G, B, A, W
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
        it :func:`~slimlib.solvers.group_search.grow_heuristic` is used.
    calls : CallLatency, optional
        Precomputed :func:`slimlib.call_latency`.

    Returns
    -------
    list of LayerGain
        Only layers with a positive gain for some ``c``.
    """
    if _ctx is None:                                          # _lat is the context's stage_latency(placement, server)
        _ctx, _lat = _Context(problem, placement, call_latency(problem) if calls is None else calls), None
    if _lat is None:
        _lat = _ctx.stage_latency(placement, server)
    tau_b, t_srv = _lat[0], _lat[1]
    stacks = _lat[2]
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
            single = _ctx.single_gains(u, server)                  # (L, E), see SingleGains
            order = np.argsort(-single, axis=1, kind="stable")
            ranked = np.take_along_axis(single, order, axis=1)     # decreasing: the positive ones first
            npos = np.minimum((ranked > 0).sum(axis=1), cap)
            cum = np.zeros((mod.num_layers, mod.num_experts + 1))
            np.cumsum(ranked, axis=1, out=cum[:, 1:])          # row l: h of layer l (0, then running sums)
            for l in np.flatnonzero(npos).tolist():
                c = int(npos[l])
                items.append(_prefix_gain(u, l, s, cum[l, :c + 1], order[l, :c], mod.num_experts))
            continue
        if mod.num_experts <= DENSE_MAX_EXPERTS and subset_count(mod.num_experts, cap) <= enum_limit:
            items += _dense_gains(problem, u, tau_b, t_srv, cap, _ctx, stacks[u])
            continue
        big = mod.top_k > TABLE_MAX_K
        # chains stop at a few times the layer's share of the server (the DP splits cap over all layers)
        layers = sum(m.num_layers for m in problem.models)
        hint = min(cap, max(4 * mod.top_k, int(math.ceil(4 * cap / layers))))
        for l in range(mod.num_layers):
            if big:                                             # no 2^K tables: group completion over terms
                res = group_completion(*_layer_terms(problem, u, l, tau_b, t_srv, stacks[u], users), cap,
                                       limit=hint)
                if res is not None:
                    h, sets, ev = res
                    items.append(LayerGain(u, l, s, h, sets, "completion", ev))
                continue
            terms = GroupTerms(*_layer_terms(problem, u, l, tau_b, t_srv), mod.top_k)
            if terms.E == 0 or not (terms.table > 0).any():
                continue
            cmax = min(cap, terms.E)
            if subset_count(terms.E, cmax) <= enum_limit:
                h, sets, ev = enumerate_subsets(terms, cmax)
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

