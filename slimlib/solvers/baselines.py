"""Baselines that need no optimisation (chapter *Experiments*).

* ``"none"``: no edge caching.
* ``"random"``: every server fills itself with experts drawn uniformly at
  random (option ``seed``), independently of the other servers.
* ``"popularity"``: every server independently caches the most requested
  experts that fit (uncoordinated, so servers of equal size hold the same
  experts).
* ``"coordinated-popularity"``: the same ranking, but no expert is cached
  twice: experts in decreasing popularity go to the fastest server that still
  has room.

The popularity of expert ``e`` of layer ``l`` of model ``u`` is the weighted
rate at which it is requested *from the network*,
``pi_{u,l,e} = sum_{m : u(m) = u} w_m p_{m,l,e} [e not cached on m's device]``
(calls served by the device never reach an edge server).  Ties are broken by
model, layer, expert index.  The co-activation-blind greedy (``"blind-greedy"``)
lives with Algorithm 1 in :mod:`slimlib.solvers.greedy`.
"""
from __future__ import annotations

import numpy as np

from .. import _validate as V
from ..latency import call_latency
from ..problem import Placement, Problem
from . import register

__all__ = ["no_edge_caching", "random_caching", "popularity", "coordinated_popularity", "expert_popularity"]


@register("none")
def no_edge_caching(problem: Problem) -> Placement:
    """No expert on any edge server: every call not served locally goes to the cloud."""
    return Placement.empty(problem, method="none")


def _columns(problem: Problem):
    """Flat columns over all models: (model, layer, expert, bytes)."""
    u_, l_, e_, s_ = [], [], [], []
    for u, mod in enumerate(problem.models):
        L, E = mod.num_layers, mod.num_experts
        u_.append(np.full(L * E, u)); l_.append(np.repeat(np.arange(L), E)); e_.append(np.tile(np.arange(E), L))
        s_.append(np.full(L * E, float(mod.expert_bytes)))
    return np.concatenate(u_), np.concatenate(l_), np.concatenate(e_), np.concatenate(s_)


def _placement(problem: Problem, cols_per_server: list[list[int]], method: str) -> Placement:
    cu, cl, ce, _ = _columns(problem)
    pl = Placement.empty(problem, method=method)
    for n, cols in enumerate(cols_per_server):
        for c in cols:
            pl.server[cu[c]][n, cl[c], ce[c]] = True
    return pl


def _fill(order, sizes, free) -> tuple[list[int], float]:
    """Take columns in ``order`` while they fit into ``free`` bytes (skipping those that do not)."""
    taken = []
    for c in order:
        if sizes[c] <= free * (1 + 1e-12):
            taken.append(int(c))
            free -= sizes[c]
    return taken, free


def expert_popularity(problem: Problem) -> list[np.ndarray]:
    """``pi_{u,l,e}``: weighted request rate of every expert from the network, one ``(L, E)`` array per model.

    ``sum_{m : u(m) = u} w_m p_{m,l,e}`` over the users whose device does not
    hold the expert (module docstring).
    """
    w = problem.network.user_weight
    out = [np.zeros((m.num_layers, m.num_experts)) for m in problem.models]
    for m, s in enumerate(problem.stats):
        out[problem.user_model[m]] += w[m] * s.marginals() * ~problem.device_cache[m]
    return out


def _ranking(problem: Problem) -> np.ndarray:
    pop = np.concatenate([p.ravel() for p in expert_popularity(problem)])
    return np.argsort(-pop, kind="stable")


@register("random")
def random_caching(problem: Problem, *, seed: int = 0) -> Placement:
    """Random caching: each server takes experts in a random order (seeded) while they fit.

    Parameters
    ----------
    seed : int
        Seed of :func:`numpy.random.default_rng`; each server draws its own
        permutation of all experts of all models.
    """
    seed = V.number("seed", seed, integer=True, nonneg=True)
    rng = np.random.default_rng(seed)
    _, _, _, sizes = _columns(problem)
    cols = [_fill(rng.permutation(len(sizes)), sizes, float(q))[0] for q in problem.network.server_capacity_bytes]
    pl = _placement(problem, cols, "random")
    pl.info["seed"] = seed
    return pl


@register("popularity")
def popularity(problem: Problem) -> Placement:
    """Uncoordinated popularity caching: every server caches the most requested experts that fit."""
    _, _, _, sizes = _columns(problem)
    order = _ranking(problem)
    cols = [_fill(order, sizes, float(q))[0] for q in problem.network.server_capacity_bytes]
    return _placement(problem, cols, "popularity")


@register("coordinated-popularity")
def coordinated_popularity(problem: Problem) -> Placement:
    """Coordinated popularity caching: no duplicates across servers.

    Servers are ranked by their mean edge latency over users (weighted by
    ``w_m``, fastest first); experts, in decreasing popularity, are placed on
    the first server in that ranking with room for them (skipped when none has).
    """
    _, _, _, sizes = _columns(problem)
    order = _ranking(problem)
    w = problem.network.user_weight
    speed = w @ call_latency(problem).edge / w.sum()
    servers = np.argsort(speed, kind="stable")
    free = problem.network.server_capacity_bytes.astype(float).copy()
    cols = [[] for _ in range(problem.num_servers)]
    for c in order:
        for n in servers:
            if sizes[c] <= free[n] * (1 + 1e-12):
                cols[n].append(int(c))
                free[n] -= sizes[c]
                break
    pl = _placement(problem, cols, "coordinated-popularity")
    pl.info["server_order"] = [int(n) for n in servers]
    return pl
