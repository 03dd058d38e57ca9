"""Small random instances of (P1) for tests, proofs-by-example and ratio histograms.

Chapter *Problem and structure* (numerical checks) and the algorithm chapters
(ratios to the exact optimum) draw their problems here, so that every check in
the book uses the same family of instances.
"""
from __future__ import annotations

import math
from itertools import combinations

import numpy as np

from . import _validate as V
from .model import MoEModel
from .network import Network
from .problem import Problem
from .stats import ActivationStats

__all__ = ["random_stats", "random_problem", "random_mixed_problem", "MAX_GROUPS"]


def _check_sizes(**sizes) -> None:
    """One ValueError naming the field for a non-positive size or ``top_k > num_experts``."""
    for name, v in sizes.items():
        V.number(name, v, integer=True, positive=True)
    if sizes["top_k"] > sizes["num_experts"]:
        raise V.fail("top_k", sizes["top_k"], f"must be <= num_experts={sizes['num_experts']}")


#: Largest number of groups per layer :func:`random_stats` lists (``C(E, K)`` above it is sampled).
MAX_GROUPS = 2 ** 20


def _sample_groups(rng, E: int, K: int, n: int) -> np.ndarray:
    """``n`` distinct random ``K``-subsets of ``range(E)``, sorted rows in lexicographic order (no ``C(E, K)`` list)."""
    out = np.zeros((0, K), np.int64)
    while len(out) < n:
        m = int(1.2 * (n - len(out))) + 8
        g = np.sort(np.argpartition(rng.random((m, E)), K - 1, axis=1)[:, :K], axis=1)
        out = np.unique(np.concatenate([out, g]), axis=0)
    keep = np.sort(rng.choice(len(out), size=n, replace=False))
    return out[keep]


def random_stats(rng, num_layers: int, num_experts: int, top_k: int, *, concentration: float = 0.5,
                 max_groups: int | None = None, model: str = "random") -> ActivationStats:
    """Random per-layer group distributions (Dirichlet over the ``C(E, K)`` groups).

    Parameters
    ----------
    rng : numpy.random.Generator or int
    num_layers, num_experts, top_k : int
    concentration : float
        Dirichlet parameter; small values give skewed routing.
    max_groups : int, optional
        Keep at most this many groups per layer (drawn at random) when ``C(E, K)`` is large.
        Above ``MAX_GROUPS`` groups the ``C(E, K)`` groups are never listed: ``max_groups``
        distinct random groups are sampled directly (and ``max_groups`` is then required).
    """
    rng = np.random.default_rng(rng)
    _check_sizes(num_layers=num_layers, num_experts=num_experts, top_k=top_k)
    if max_groups is not None:
        max_groups = V.number("max_groups", max_groups, integer=True, positive=True, maximum=MAX_GROUPS)
    total = math.comb(num_experts, top_k)
    if max_groups is None and total > MAX_GROUPS:
        raise V.fail("max_groups", None, f"C({num_experts}, {top_k}) = {total:.3g} groups per layer exceed "
                                         f"{MAX_GROUPS}; give max_groups")
    listed = total <= MAX_GROUPS
    all_groups = np.array(list(combinations(range(num_experts), top_k))) if listed else None
    groups, probs = [], []
    for _ in range(num_layers):
        g = all_groups
        if not listed:
            g = _sample_groups(rng, num_experts, top_k, max_groups)
        elif max_groups is not None and len(g) > max_groups:
            g = g[np.sort(rng.choice(len(g), size=max_groups, replace=False))]
        p = rng.dirichlet(np.full(len(g), concentration))
        p = np.maximum(p, 1e-12)
        groups.append(g)
        probs.append(p / p.sum())
    return ActivationStats(num_experts, top_k, groups, probs=probs, model=model,
                           provenance={"source": "synthetic", "generator": "slimlib.instances.random_stats"})


def random_problem(seed=0, *, num_users: int = 2, num_servers: int = 2, num_layers: int = 2,
                   num_experts: int = 3, top_k: int = 1, server_slots=(0, 3), device_slots=(0, 1),
                   max_groups: int | None = None, concentration: float = 0.5, weights: bool = False) -> Problem:
    """A small random instance of (P1) with one model.

    Expert size is 1 byte-unit (``params_per_expert = 1``, ``bytes_per_param = 1``), so capacities
    count experts.  Rates, compute speeds and the backhaul are drawn so that every location
    (device, each server, cloud) can be the fastest for some user.

    Parameters
    ----------
    seed : int or numpy.random.Generator
    num_users, num_servers, num_layers, num_experts, top_k : int
    server_slots, device_slots : (int, int)
        Inclusive ranges of the number of experts each server / device can hold.
    max_groups : int, optional
        See :func:`random_stats`.
    concentration : float
        See :func:`random_stats`.
    weights : bool
        Draw user weights ``w_m`` in ``[0.5, 2]`` instead of all ones.
    """
    rng = np.random.default_rng(seed)
    _check_sizes(num_users=num_users, num_servers=num_servers, num_layers=num_layers,
                 num_experts=num_experts, top_k=top_k)
    model = MoEModel("random", num_layers, num_experts, top_k, hidden_size=1000, params_per_expert=10**6,
                     bytes_per_param=1, act_bytes=1)
    stats = [random_stats(rng, num_layers, num_experts, top_k, concentration=concentration,
                          max_groups=max_groups) for _ in range(num_users)]
    eb = model.expert_bytes
    net = Network(
        server_capacity_bytes=rng.integers(server_slots[0], server_slots[1] + 1, num_servers) * eb,
        server_flops=rng.uniform(5e12, 40e12, num_servers),
        user_capacity_bytes=rng.integers(device_slots[0], device_slots[1] + 1, num_users) * eb,
        user_flops=rng.uniform(0.2e9, 2e9, num_users),  # slow devices: local is not always best
        rate_up=rng.uniform(2e6, 60e6, (num_users, num_servers)),
        rate_down=rng.uniform(2e6, 60e6, (num_users, num_servers)),
        backhaul_rate_bps=1e9, backhaul_delay_s=rng.uniform(1e-3, 10e-3), cloud_flops=100e12,
        user_weight=rng.uniform(0.5, 2.0, num_users) if weights else None)
    return Problem(model, net, stats, name=f"random-{num_users}x{num_servers}x{num_layers}x{num_experts}k{top_k}")


def random_mixed_problem(seed=0, *, num_users: int = 3, num_servers: int = 2, num_layers: int = 2,
                         num_experts: int = 3, top_k: int = 1, sizes=(1, 2, 3), server_units=(0, 6),
                         device_units=(0, 2), concentration: float = 0.5, weights: bool = False) -> Problem:
    """A small random instance with several models of different expert sizes (knapsack structure).

    One model per entry of ``sizes`` (model ``i`` has experts of ``sizes[i]`` units of 1 MB);
    users are spread over the models round-robin; server and device capacities are drawn in
    whole units from ``server_units`` / ``device_units`` (inclusive), so an expert may not fit
    where a smaller one does.  Other draws as :func:`random_problem`.
    Chapter *Greedy for K = 1* (ratios to the optimum) and the solver tests.
    """
    rng = np.random.default_rng(seed)
    _check_sizes(num_users=num_users, num_servers=num_servers, num_layers=num_layers,
                 num_experts=num_experts, top_k=top_k)
    if len(sizes) == 0:
        raise V.fail("sizes", sizes, "needs at least one expert size")
    unit = 10**6
    models = [MoEModel(f"random-s{s}", num_layers, num_experts, top_k, hidden_size=1000,
                       params_per_expert=int(V.number(f"sizes[{i}]", s, integer=True, positive=True)) * unit,
                       bytes_per_param=1, act_bytes=1) for i, s in enumerate(sizes)]
    user_model = np.arange(num_users) % len(models)
    stats = [random_stats(rng, num_layers, num_experts, top_k, concentration=concentration)
             for _ in range(num_users)]
    net = Network(
        server_capacity_bytes=rng.integers(server_units[0], server_units[1] + 1, num_servers) * float(unit),
        server_flops=rng.uniform(5e12, 40e12, num_servers),
        user_capacity_bytes=rng.integers(device_units[0], device_units[1] + 1, num_users) * float(unit),
        user_flops=rng.uniform(0.2e9, 2e9, num_users),
        rate_up=rng.uniform(2e6, 60e6, (num_users, num_servers)),
        rate_down=rng.uniform(2e6, 60e6, (num_users, num_servers)),
        backhaul_rate_bps=1e9, backhaul_delay_s=rng.uniform(1e-3, 10e-3), cloud_flops=100e12,
        user_weight=rng.uniform(0.5, 2.0, num_users) if weights else None)
    return Problem(models, net, stats, user_model=user_model,
                   name=f"mixed-{num_users}x{num_servers}x{num_layers}x{num_experts}k{top_k}")
