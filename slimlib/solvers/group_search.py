"""Stage gains of one layer for Top-``K`` groups (``K >= 2``): exact subset search and its scalable heuristics.

Chapter *Successive decomposition*, eq. (H).  With ``K >= 2`` the stage gain
``g(S)`` of a set ``S`` of experts cached on the server is not modular (a
group saves only what its slowest member allows), so ``h(c)``, the best ``g``
with at most ``c`` experts, needs a search over sets:

* :class:`GroupTerms` tabulates ``g`` over the observed (user, group) terms
  (one ``2^K`` table per distinct group);
* :func:`enumerate_subsets` is exact (every subset of the useful experts);
* :func:`grow_heuristic` grows nested sets by experts and sub-groups;
* :func:`group_completion` (``K > TABLE_MAX_K``) completes whole observed
  groups, with no ``2^K`` table.

:func:`slimlib.solvers.gains.layer_gains` chooses among them per layer.
"""
from __future__ import annotations

import math
from itertools import combinations

import numpy as np

__all__ = ["GroupTerms", "subset_count", "enumerate_subsets", "grow_heuristic", "group_completion",
           "TABLE_MAX_K", "HEURISTIC_GROUPS"]

#: Group candidates tried per step by :func:`grow_heuristic`.
HEURISTIC_GROUPS = 16


class GroupTerms:
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


#: Largest ``K`` whose stage gains use ``2^K`` tables; above it :func:`group_completion`.
TABLE_MAX_K = 4


def group_completion(groups, before, after, weight, cmax: int, limit: int | None = None):
    """Stage gains ``h(c)`` of one layer by greedy group completion (``K > TABLE_MAX_K``; chapter *Successive decomposition*).

    Works over the observed (user, group) terms only (``O(T K)`` memory, no
    ``2^K`` table, no subset enumeration).  A *move* completes one distinct
    observed group: it adds the group's useful experts (those that some user
    would reach faster on the server) that are not yet in ``S``.  Starting
    from ``S = {}``, the move with the largest *own gain per added expert*
    (the summed gain of the terms of that group once it is complete) that
    keeps ``|S| <= cmax`` is applied; the chain stops when no move fits or
    gains.  The value recorded for a chain set is the summed gain of the
    terms whose useful experts are all in it (``O(D K)`` per move for ``D``
    distinct groups; terms covered in part can only add to it, so it is a
    lower bound on ``g(S)``).  ``h(c)`` is the best chain value with at most
    ``c`` experts, a lower bound on the exact ``h`` (each value is attained,
    or exceeded, by a set of that size or smaller).  Measured against exact enumeration in the tests and in
    ``benchmarks/bench_scale.py``.

    Parameters
    ----------
    groups, before, after : ndarray, shape (T, K)
        Experts, latency without and with the server, s.
    weight : ndarray, shape (T,)
        ``w_m P_{m,l}(G)``.
    cmax : int
        Largest number of experts.
    limit : int, optional
        Stop the chain once ``|S| >= limit`` (``layer_gains`` passes
        ``max(4 K, 4 Q_n / (s J))``, four times a layer's share of the server
        for ``J`` layers; ``h`` is flat beyond the chain).

    Returns
    -------
    (h, sets, evaluated) or None when nothing gains.
    """
    useful = after < before                                            # (T, K)
    keep = useful.any(axis=1) & (weight > 0)
    if not keep.any():
        return None
    groups, before, after, weight, useful = groups[keep], before[keep], after[keep], weight[keep], useful[keep]
    bmax = before.max(axis=1)
    full = weight * (bmax - after.max(axis=1))                         # gain of the term when complete
    # distinct groups by their useful members (sorted, -1 padded)
    mem = np.sort(np.where(useful, groups, -1), axis=1)
    E = int(groups.max()) + 1
    K = groups.shape[1]
    if K * math.log2(E + 1) < 62:                                      # one integer key per row
        key = ((mem + 1) * (E + 1) ** np.arange(K, dtype=np.int64)).sum(axis=1)
        _, first, gid = np.unique(key, return_index=True, return_inverse=True)
        gid = gid.ravel()
        dmem = mem[first]
        D = len(first)
    else:
        order = np.lexsort(mem.T[::-1])
        ms = mem[order]
        new = np.ones(len(ms), bool)
        new[1:] = (ms[1:] != ms[:-1]).any(axis=1)
        gid = np.empty(len(ms), np.int64)
        gid[order] = np.cumsum(new) - 1
        D = int(gid.max()) + 1
        dmem = ms[new]                                                 # (D, K) experts, -1 = none
    own = np.bincount(gid, weights=full, minlength=D)
    S = np.zeros(E + 1, bool)                                          # last entry: the -1 padding
    S[-1] = True
    chain_sets, chain_vals = [np.zeros(0, np.int64)], [0.0]
    evaluated = 0
    done = np.zeros(D, bool)
    Dm = np.zeros((D, E + 1), np.float32)                              # membership, (D, E + 1)
    Dm[np.repeat(np.arange(D), dmem.shape[1]), np.where(dmem < 0, E, dmem).ravel()] = 1.0
    Dm[:, E] = 0.0
    miss = Dm.sum(axis=1)
    size = 0
    while True:
        if limit is not None and size >= limit:
            break
        ok = ~done & (miss > 0) & (size + miss <= cmax) & (own > 0)
        if not ok.any():
            break
        ratio = np.where(ok, own / np.maximum(miss, 1), -np.inf)
        d = int(np.argmax(ratio))
        add = np.flatnonzero(Dm[d, :E] > 0)
        add = add[~S[add]]
        S[add] = True
        size += len(add)
        miss = miss - Dm[:, add].sum(axis=1)                           # experts each group still needs
        done = miss <= 0.5                                             # groups complete now
        val = float(own[done].sum())
        evaluated += 1
        if val > chain_vals[-1]:
            chain_vals.append(val)
            chain_sets.append(np.flatnonzero(S[:-1]))
    # values and sizes both increase along the chain: h(c) is the last chain set with at most c experts
    sizes = np.array([len(st) for st in chain_sets])
    idx = np.searchsorted(sizes, np.arange(cmax + 1), side="right") - 1
    h = np.asarray(chain_vals)[idx]
    sets = [chain_sets[i] for i in idx.tolist()]
    top = int(np.flatnonzero(h >= h[-1])[0])
    if not h[top] > 0:
        return None
    return h[:top + 1], sets[:top + 1], evaluated


def subset_count(E: int, cmax: int) -> int:
    return sum(math.comb(E, c) for c in range(cmax + 1))


def enumerate_subsets(terms: GroupTerms, cmax: int):
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


def grow_heuristic(terms: GroupTerms, cmax: int, groups_per_step: int = HEURISTIC_GROUPS):
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
    # candidate group moves: the useful part of every observed group (>= 2 experts); never all 2^K
    # subsets of every group.  Ranked by the group's own term (a lower bound on its stand-alone value);
    # only the groups tried are evaluated exactly, over every term.
    # K <= 3: also every sub-group of >= 2 members (at most 4 per group)
    pats = [(1 << K) - 1] if K > 3 else [b for b in range(1 << K) if bin(b).count("1") >= 2]
    gl = np.where(terms.groups < 0, E, terms.groups)
    sels, owns = [], []
    for b in pats:
        sels.append(np.sort(np.where((b >> np.arange(K)) & 1, gl, E), axis=1))   # (T, K): members in b
        owns.append(terms.table[:, b] if T else np.zeros(0))
    sel = np.concatenate(sels) if sels else np.zeros((0, K), np.int64)
    own = np.concatenate(owns) if owns else np.zeros(0)
    if len(sel):                                           # one row per distinct set, with its best own term
        order = np.lexsort(sel.T[::-1])
        sel, own = sel[order], own[order]
        new = np.ones(len(sel), bool)
        new[1:] = (sel[1:] != sel[:-1]).any(axis=1)
        gid = np.cumsum(new) - 1
        o = np.full(int(gid[-1]) + 1, -np.inf)
        np.maximum.at(o, gid, own)
        sel, own = sel[new], o
    gmask = np.zeros((len(sel), E + 1), bool)
    gmask[np.repeat(np.arange(len(sel)), K), sel.ravel()] = True
    gmask = gmask[:, :E]
    T_c = len(gmask)
    gsize = gmask.sum(axis=1)
    own = np.where((gsize >= 2) & (gsize <= cmax), own, -np.inf)
    rank = np.argsort(-own, kind="stable")
    rank = rank[np.isfinite(own[rank]) & (own[rank] > 0)]
    gval = np.full(T_c, -np.inf)
    if len(rank):
        ntop = max(groups_per_step, (1 << 20) // max(1, T * K))          # all of them when that is cheap
        top = rank[:ntop]
        gval[top] = terms.values(gmask[top])
        rank = top[np.argsort(-gval[top], kind="stable")].tolist() + rank[ntop:].tolist()
        rank = np.array(rank)
    best = np.full(cmax + 1, -np.inf)
    best[0] = 0.0
    best_set = [np.zeros(0, np.int64)] + [None] * cmax
    evaluated = int(np.isfinite(gval).sum())
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

    for t in np.flatnonzero(np.isfinite(gval)):            # every group evaluated alone is a candidate too
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
                miss = (gmask[rank] & ~S).sum(axis=1)
                okc = (miss >= 2) & (miss + int(S.sum()) <= cmax)
                cand = rank[okc][:groups_per_step].tolist()
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
