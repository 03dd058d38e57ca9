"""How skewed routing is: per-layer summaries of activation statistics.

Chapter *Mixture of experts and where the experts go*, section "Skew".
:func:`routing_summary` turns an :class:`~slimlib.ActivationStats` — measured
(:mod:`slimlib.activations`), synthetic (:mod:`slimlib.synthetic`) or your
own — into the numbers the chapter compares: load entropy, the share of the
most popular expert and group, pair affinity and how much layers differ.
Caching feeds on exactly this skew: the more concentrated the routing, the
more a few cached experts save.
"""
from __future__ import annotations

import math
from itertools import combinations

import numpy as np

from .stats import ActivationStats

__all__ = ["routing_summary"]


def routing_summary(stats: ActivationStats) -> dict:
    """Per-layer numbers that describe how skewed routing is.

    Chapter *Mixture of experts and where the experts go*, section "Skew".

    Returns
    -------
    dict of ndarray, each shape (L,)
        ``entropy``: entropy of the expert load ``p_{l,e}/K`` divided by
        ``log E`` (1 = perfectly balanced); ``top_expert``: ``max_e p_{l,e}``,
        the probability that a token activates the layer's most popular expert
        (``K/E`` if balanced); ``group_entropy``: entropy of ``P_l(G)`` divided
        by ``log C(E, K)``; ``top_group``: ``max_G P_l(G)`` (``1/C(E,K)`` if
        uniform); ``pair_lift`` (``K >= 2``): the mean, over the pairs
        tokens actually activate (weighted by ``P_l(i, j)``), of the lift
        ``P_l(i, j) / (p_{l,i} p_{l,j})``, divided by its value
        ``(K-1) E / (K (E-1))`` under uniform routing (1 = pairs are as
        frequent as their experts' popularity predicts, > 1 = experts
        co-activate preferentially; NaN for ``K = 1``).  And ``layer_tv`` (scalar): mean
        total-variation distance between the expert loads of two layers (0 =
        every layer routes alike).
    """
    E, K, L = stats.num_experts, stats.top_k, stats.num_layers
    marg = stats.marginals()
    load = marg / K
    with np.errstate(divide="ignore", invalid="ignore"):
        ent = -np.sum(np.where(load > 0, load * np.log(load), 0.0), axis=1) / math.log(E) if E > 1 else np.ones(L)
    n_groups = math.comb(E, K)
    gent, topg, lift = np.zeros(L), np.zeros(L), np.full(L, np.nan)
    for l in range(L):
        p = stats.probs(l)
        gent[l] = -np.sum(p * np.log(p)) / math.log(n_groups) if n_groups > 1 else 1.0
        topg[l] = p.max()
        if K >= 2:
            C = stats.coactivation(l)
            iu = np.triu_indices(E, 1)
            c = C[iu]
            with np.errstate(divide="ignore", invalid="ignore"):
                r = np.where(c > 0, c / np.outer(marg[l], marg[l])[iu], 0.0)
            lift[l] = float((c * r).sum() / c.sum()) / ((K - 1) * E / (K * (E - 1)))
    tv = [0.5 * np.abs(load[a] - load[b]).sum() for a, b in combinations(range(L), 2)]
    return {"entropy": ent, "top_expert": marg.max(axis=1), "group_entropy": gent, "top_group": topg,
            "pair_lift": lift, "layer_tv": float(np.mean(tv)) if tv else 0.0}
