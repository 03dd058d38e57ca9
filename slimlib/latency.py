"""The one evaluator: expected per-token latency of a placement.

Chapter *The system model*, eqs. (1.2)–(1.6).  Every method, figure and
test in the book scores placements with :func:`average_latency` (or its
communication-only variant); solvers may keep faster incremental forms, but
their tests compare against these functions.

Latency of one expert call for user ``m`` (``theta`` bits of hidden state,
``MoEModel.hidden_bits``; ``phi`` FLOP per expert, ``MoEModel.flops_per_expert``;
the chapter writes them :math:`\\theta_u` and :math:`\\phi_u`):

* local: ``phi / f_m``                                                       (eq. 1.2)
* edge server ``n``: ``theta/r_up[m,n] + phi/f_n + theta/r_dn[m,n]``          (eq. 1.3)
* cloud via the user's best server ``n0``:
  ``theta/r_up[m,n0] + theta/r_bh + d_bh + phi/f_c + d_bh + theta/r_bh + theta/r_dn[m,n0]`` (eq. 1.4)

An expert is served from the fastest location holding it (eq. 1.5); a Top-K group
waits for its slowest expert, and the per-token latency is the
probability-weighted sum over groups and layers (eq. 1.6).

:class:`BatchEvaluator` (and :func:`average_latencies`) score many placements
of one problem at once with the same formula — the numbers of
:func:`average_latency` to 1e-12 — for searches that try many candidates.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _validate as V
from .problem import Placement, Problem

__all__ = ["CallLatency", "call_latency", "expert_latency", "group_latency", "user_latency",
           "average_latency", "communication_latency", "latency_reduction", "best_server",
           "latency_breakdown", "BatchEvaluator", "average_latencies"]

#: Largest number of floats :class:`BatchEvaluator` holds at once per chunk of placements.
BATCH_CELLS = 2 ** 22


@dataclass(frozen=True)
class CallLatency:
    """Latency of one expert call from every location (chapter *The system model*, eqs. (1.2)–(1.4)).

    Every latency is in seconds.

    Attributes
    ----------
    local : ndarray, shape (M,)
    edge : ndarray, shape (M, N)
    cloud : ndarray, shape (M,)
    local_comm, edge_comm, cloud_comm : ndarray
        The same with the compute terms removed (communication only).
    best_server : ndarray of int, shape (M,)
        ``n0``: the server whose radio link a cloud call goes through.
    """

    local: np.ndarray
    edge: np.ndarray
    cloud: np.ndarray
    local_comm: np.ndarray
    edge_comm: np.ndarray
    cloud_comm: np.ndarray
    best_server: np.ndarray


def best_server(problem: Problem) -> np.ndarray:
    """``n0(m)``: the server with the fastest round trip ``h/r_up + h/r_dn`` (any ``h``), shape ``(M,)``."""
    net = problem.network
    return np.argmin(1.0 / net.rate_up + 1.0 / net.rate_down, axis=1)


def call_latency(problem: Problem) -> CallLatency:
    """Per-user latency of one expert call at each location, eqs. (1.2)–(1.4).

    Returns
    -------
    CallLatency
        All arrays in seconds; users indexed by ``m``, servers by ``n``.
    """
    net = problem.network
    M = net.num_users
    mods = [problem.models[u] for u in problem.user_model]
    F = np.array([m.flops_per_expert for m in mods])          # (M,) FLOP
    h = np.array([m.hidden_bits for m in mods])               # (M,) bit
    radio = h[:, None] / net.rate_up + h[:, None] / net.rate_down   # (M, N) s
    n0 = best_server(problem)
    radio0 = radio[np.arange(M), n0]
    backhaul = 2 * h / net.backhaul_rate_bps + 2 * net.backhaul_delay_s
    local = F / net.user_flops
    edge = radio + F[:, None] / net.server_flops[None, :]
    cloud = radio0 + backhaul + F / net.cloud_flops
    return CallLatency(local=local, edge=edge, cloud=cloud, local_comm=np.zeros(M), edge_comm=radio,
                       cloud_comm=radio0 + backhaul, best_server=n0)


def expert_latency(problem: Problem, placement: Placement, user: int, *, communication: bool = False,
                   calls: CallLatency | None = None) -> np.ndarray:
    """``tau_m(l, e)``: latency of each expert for user ``m``, eq. (1.5), shape ``(L, E)``, seconds.

    The expert is served from the location with the smallest total latency
    (device if cached there, any server caching it, else the cloud).  With
    ``communication=True`` the communication part of that same choice is
    returned.
    """
    c = call_latency(problem) if calls is None else calls
    u = problem.user_model[user]
    x = placement.server[u]                                   # (N, L, E)
    y = placement.device[user]                                # (L, E)
    edge_t = np.where(x, c.edge[user][:, None, None], np.inf)  # (N, L, E)
    cand = np.stack([np.where(y, c.local[user], np.inf),
                     np.full(y.shape, c.cloud[user])])        # (2, L, E)
    total = np.concatenate([cand, edge_t])                    # (2+N, L, E)
    choice = np.argmin(total, axis=0)
    if not communication:
        return np.take_along_axis(total, choice[None], 0)[0]
    comm = np.concatenate([np.stack([np.full(y.shape, c.local_comm[user]), np.full(y.shape, c.cloud_comm[user])]),
                           np.broadcast_to(c.edge_comm[user][:, None, None], x.shape)])
    return np.take_along_axis(comm, choice[None], 0)[0]


def group_latency(tau: np.ndarray, layer: np.ndarray, experts: np.ndarray) -> np.ndarray:
    """``tau(l, G) = max_{e in G} tau(l, e)``, eq. (1.6).

    Parameters
    ----------
    tau : ndarray, shape (L, E)
    layer : ndarray of int, shape (G,)
    experts : ndarray of int, shape (G, K)

    Returns
    -------
    ndarray, shape (G,)
    """
    return tau[layer[:, None], experts].max(axis=1)


def user_latency(problem: Problem, placement: Placement, *, communication: bool = False) -> np.ndarray:
    """``T_m``: expected per-token latency of every user, eq. (1.6), shape ``(M,)``, seconds."""
    placement.check(problem)
    c = call_latency(problem)
    out = np.empty(problem.num_users)
    for m, s in enumerate(problem.stats):
        tau = expert_latency(problem, placement, m, communication=communication, calls=c)
        out[m] = float(group_latency(tau, s.group_layer, s.group_experts) @ s.group_prob)
    return out


def average_latency(problem: Problem, placement: Placement, *, communication: bool = False) -> float:
    """Weighted average per-token latency ``sum_m w_m T_m / sum_m w_m``, objective of (P1), seconds.

    This is the one evaluator of the book: every method and figure is scored by it.

    Parameters
    ----------
    problem : Problem
    placement : Placement
        Must fit ``problem`` (checked; an infeasible placement raises ValueError).
    communication : bool
        Count only the communication part (Fig. 1).
    """
    w = problem.network.user_weight
    return float(w @ user_latency(problem, placement, communication=communication) / w.sum())


def communication_latency(problem: Problem, placement: Placement) -> float:
    """Average per-token communication latency (compute terms removed), seconds (Fig. 1)."""
    return average_latency(problem, placement, communication=True)


def latency_reduction(problem: Problem, placement: Placement) -> float:
    """``R(x) = sum_m w_m (T_m(no edge cache) - T_m(x))``, seconds, the maximisation form of (P1)."""
    w = problem.network.user_weight
    base = user_latency(problem, Placement.empty(problem))
    return float(w @ (base - user_latency(problem, placement)))


class BatchEvaluator:
    """:func:`average_latency` of many server placements of one problem at once.

    The same formula as :func:`average_latency` (eqs. (1.5)–(1.6)): every
    expert is served from the fastest location holding it, a group waits for
    its slowest expert, and the users' per-token latencies are averaged with
    the weights ``w_m``.  What does not depend on the server caches — the
    call latencies, the device-or-cloud latency of every expert, every user's
    groups and probabilities — is computed once, and a batch of placements is
    scored in one vectorised pass (in chunks of at most ``BATCH_CELLS``
    floats).  The results equal :func:`average_latency` to 1e-12 (relative;
    ``tests/test_latency.py``).  Use it where a search scores many candidate
    placements of one problem (the budgeted re-caching of chapter *When the
    statistics drift*, :func:`slimlib.online.budgeted_step`).

    Parameters
    ----------
    problem : Problem
        Its device caches (``problem.device_cache``) are used unless
        ``device`` is given.
    device : list of ndarray of bool, optional
        Device caches, one ``(L_u, E_u)`` array per user (e.g. ``placement.device``).

    Notes
    -----
    Unlike :func:`average_latency`, the placements are not checked against
    the capacities (a search may score infeasible candidates on purpose);
    only their shapes are checked.  Latencies include compute
    (``communication=False``).
    """

    def __init__(self, problem: Problem, device=None):
        if not isinstance(problem, Problem):
            raise V.fail("problem", problem, "must be a Problem")
        device = problem.device_cache if device is None else device
        if len(device) != problem.num_users:
            raise V.fail("device", f"{len(device)} arrays", f"must hold one per user ({problem.num_users})")
        c = call_latency(problem)
        w = problem.network.user_weight / problem.network.user_weight.sum()
        self.num_servers = problem.num_servers
        self.shapes = [(m.num_layers, m.num_experts) for m in problem.models]
        self._parts = []
        for u, (L, E) in enumerate(self.shapes):
            users = problem.users_of(u)
            if not len(users):
                self._parts.append(None)
                continue
            y = np.stack([np.asarray(device[m], bool) for m in users])
            if y.shape != (len(users), L, E):
                raise V.fail("device", f"shape {y.shape[1:]}", f"must be ({L}, {E}) for the users of model {u}")
            base = np.where(y, np.minimum(c.local[users], c.cloud[users])[:, None, None],
                            c.cloud[users][:, None, None])                       # (M_u, L, E) s
            stats = [problem.stats[m] for m in users]
            flat = np.concatenate([(i * L + s.group_layer)[:, None] * E + s.group_experts
                                   for i, s in enumerate(stats)])              # (G, K) into (M_u, L, E)
            weight = np.concatenate([w[m] * s.group_prob for m, s in zip(users, stats)])
            self._parts.append((base, c.edge[users], flat, weight))

    def __call__(self, servers) -> float | np.ndarray:
        """Average latency, seconds, of one placement or a batch of placements.

        Parameters
        ----------
        servers : list of ndarray of bool, one per model
            ``servers[u]`` has shape ``(N, L_u, E_u)`` (one placement, like
            ``Placement.server``) or ``(B, N, L_u, E_u)`` (``B`` placements,
            the same ``B`` for every model).

        Returns
        -------
        float, or ndarray of shape (B,)
        """
        if len(servers) != len(self.shapes):
            raise V.fail("servers", f"{len(servers)} arrays", f"must hold one per model ({len(self.shapes)})")
        xs = [np.asarray(x, bool) for x in servers]
        single = xs[0].ndim == 3
        xs = [x[None] if single else x for x in xs]
        B = xs[0].shape[0]
        for u, (x, (L, E)) in enumerate(zip(xs, self.shapes)):
            if x.shape != (B, self.num_servers, L, E):
                want = (self.num_servers, L, E) if single else (B, self.num_servers, L, E)
                raise V.fail(f"servers[{u}]", f"shape {x.shape[1:] if single else x.shape}", f"must be {want}")
        total = np.zeros(B)
        for part, x in zip(self._parts, xs):
            if part is None:
                continue
            base, edge, flat, weight = part
            per = max(base.size, flat.size)                     # floats held per placement
            step = max(1, BATCH_CELLS // per)
            for b0 in range(0, B, step):
                xb = x[b0:b0 + step]                                # (b, N, L, E)
                tau = np.broadcast_to(base, (len(xb),) + base.shape).copy()   # (b, M_u, L, E)
                for n in range(self.num_servers):
                    np.minimum(tau, np.where(xb[:, n, None], edge[None, :, n, None, None], np.inf), out=tau)
                slow = tau.reshape(len(xb), -1)[:, flat].max(axis=2)  # (b, G): tau(l, G) of every group
                total[b0:b0 + step] += slow @ weight
        return float(total[0]) if single else total


def average_latencies(problem: Problem, placements) -> np.ndarray:
    """:func:`average_latency` of every placement in ``placements``, shape ``(B,)``, seconds.

    Placements that share their device caches are scored together by one
    :class:`BatchEvaluator`.  Every placement is checked against ``problem``
    (as :func:`average_latency` does).

    Parameters
    ----------
    problem : Problem
    placements : sequence of Placement
    """
    placements = list(placements)
    for p in placements:
        if not isinstance(p, Placement):
            raise V.fail("placements", p, "must be a sequence of Placement")
        p.check(problem)
    out = np.empty(len(placements))
    todo = list(range(len(placements)))
    while todo:
        dev = placements[todo[0]].device
        same = [i for i in todo if all(np.array_equal(a, b) for a, b in zip(placements[i].device, dev))]
        servers = [np.stack([placements[i].server[u] for i in same]) for u in range(len(problem.models))]
        out[same] = BatchEvaluator(problem, device=dev)(servers)
        todo = [i for i in todo if i not in same]
    return out


def latency_breakdown(model, params, distance_m: float) -> dict:
    """Components of one expert call for one user at ``distance_m`` from one server (chapter *The system model*).

    Uses Table 1 (``params``) and eqs. (1.1)–(1.4) through :class:`~slimlib.Network` and
    :func:`call_latency`, so the numbers are those of the evaluator.

    Parameters
    ----------
    model : MoEModel
    params : Parameters
    distance_m : float
        User–server distance, metres.

    Returns
    -------
    dict
        Seconds: ``uplink``, ``downlink``, ``device_compute``, ``edge_compute``,
        ``cloud_compute``, ``backhaul`` (both directions, incl. delays), and the
        totals ``local``, ``edge``, ``cloud``; also ``rate_up_bps`` and ``rate_down_bps``.
    """
    from .network import Network
    from .stats import ActivationStats
    net = Network.from_parameters(params, num_users=1, num_servers=1, distance_m=[[distance_m]])
    stats = ActivationStats(model.num_experts, model.top_k,
                            [[list(range(model.top_k))]] * model.num_layers, probs=[[1.0]] * model.num_layers)
    prob = Problem(model, net.replace(user_capacity_bytes=[0.0]), stats)
    c = call_latency(prob)
    h, F = model.hidden_bits, model.flops_per_expert
    out = {"rate_up_bps": float(net.rate_up[0, 0]), "rate_down_bps": float(net.rate_down[0, 0]),
           "uplink": h / float(net.rate_up[0, 0]), "downlink": h / float(net.rate_down[0, 0]),
           "device_compute": F / float(net.user_flops[0]), "edge_compute": F / float(net.server_flops[0]),
           "cloud_compute": F / net.cloud_flops,
           "backhaul": 2 * h / net.backhaul_rate_bps + 2 * net.backhaul_delay_s,
           "local": float(c.local[0]), "edge": float(c.edge[0, 0]), "cloud": float(c.cloud[0])}
    return out
