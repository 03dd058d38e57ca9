"""Where every expert call goes, and the pieces its latency is made of.

Chapter *A placement in a live network*, section "The model".  The simulator
routes a call exactly as the evaluator does (chapter *The system model*,
eq. (1.5)): to the user's device if it holds the expert, else to the server
holding it with the smallest call latency, else to the cloud through the
user's best server, whichever is fastest.  The latencies are the evaluator's
(:func:`slimlib.latency.call_latency`, :func:`slimlib.latency.expert_latency`);
this module only splits each total into the stages that can queue (uplink,
server compute, downlink; backhaul and cloud compute), so that the stages of a
call add up to the evaluator's number.

:func:`~slimlib.simulation.routes.offered_load` turns a placement and a token rate into the expected busy
fraction of every shared stage — the input of the load-aware placement
(``slimlib.solve(..., method="load-aware")``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import _validate as V
from ..latency import call_latency, expert_latency
from ..problem import Placement, Problem

__all__ = ["DEVICE", "CLOUD", "CallStages", "call_stages", "call_routes", "offered_load"]

#: Location code of a call served on the user's own device.
DEVICE = -1
#: Location code of a call served by the cloud (through the user's best server).
CLOUD = -2


@dataclass(frozen=True)
class CallStages:
    """The stages of one expert call, in seconds, for every user (and server).

    Every total equals the evaluator's (:func:`slimlib.latency.call_latency`):
    ``up + compute + down == edge`` and
    ``up[n0] + 2 * (backhaul + backhaul_delay) + cloud_compute + down[n0] == cloud``.

    Attributes
    ----------
    device : ndarray, shape (M,)
        ``phi / f_m``.
    up, compute, down : ndarray, shape (M, N)
        Uplink ``theta / r_up``, server compute ``phi / f_n``, downlink ``theta / r_dn``.
    backhaul : ndarray, shape (M,)
        One backhaul transfer ``theta / r_bh`` (each direction).
    backhaul_delay : float
        ``d_bh`` (each direction; never waits).
    cloud_compute : ndarray, shape (M,)
        ``phi / f_c``.
    best_server : ndarray of int, shape (M,)
        ``n0``: the server a cloud call goes through.
    edge, cloud : ndarray, shape (M, N) and (M,)
        The evaluator's totals.
    """

    device: np.ndarray
    up: np.ndarray
    compute: np.ndarray
    down: np.ndarray
    backhaul: np.ndarray
    backhaul_delay: float
    cloud_compute: np.ndarray
    best_server: np.ndarray
    edge: np.ndarray
    cloud: np.ndarray


def call_stages(problem: Problem) -> CallStages:
    """Split the evaluator's call latencies into stages (no formula of its own).

    The compute part of an edge call is ``edge - edge_comm``; its radio part
    ``edge_comm`` is split between uplink and downlink in the ratio
    ``(1/r_up) : (1/r_dn)`` of the link rates; the backhaul part of a cloud
    call, ``cloud_comm - radio(n0)``, is two propagation delays ``d_bh`` and two
    equal transfers.

    Returns
    -------
    CallStages
    """
    c = call_latency(problem)
    net = problem.network
    M = problem.num_users
    inv_up, inv_dn = 1.0 / net.rate_up, 1.0 / net.rate_down
    up = c.edge_comm * inv_up / (inv_up + inv_dn)
    down = c.edge_comm - up
    compute = c.edge - c.edge_comm
    n0 = c.best_server
    radio0 = c.edge_comm[np.arange(M), n0]
    d = float(net.backhaul_delay_s)
    backhaul = (c.cloud_comm - radio0 - 2 * d) / 2
    return CallStages(device=c.local, up=up, compute=compute, down=down, backhaul=backhaul, backhaul_delay=d,
                      cloud_compute=c.cloud - c.cloud_comm, best_server=n0, edge=c.edge, cloud=c.cloud)


def call_routes(problem: Problem, placement: Placement, stages: CallStages | None = None):
    """Location and nominal latency of every expert call of every user.

    Parameters
    ----------
    problem : Problem
    placement : Placement
        Checked against ``problem``.
    stages : CallStages, optional
        Reused when given.

    Returns
    -------
    loc : list of ndarray of int, one ``(L, E)`` per user
        ``DEVICE``, ``CLOUD`` or the server index ``n``.  Ties go to
        the device, then the cloud, then the lowest server index — the order
        of :func:`slimlib.latency.expert_latency`.
    nominal : list of ndarray, one ``(L, E)`` per user
        The call's latency without waiting, seconds:
        :func:`slimlib.latency.expert_latency` itself.
    """
    placement.check(problem)
    st = call_stages(problem) if stages is None else stages
    locs, noms = [], []
    for m in range(problem.num_users):
        u = problem.user_model[m]
        x, y = placement.server[u], placement.device[m]
        total = np.concatenate([np.stack([np.where(y, st.device[m], np.inf), np.full(y.shape, st.cloud[m])]),
                                np.where(x, st.edge[m][:, None, None], np.inf)])      # (2 + N, L, E)
        choice = np.argmin(total, axis=0)
        loc = np.where(choice == 0, DEVICE, np.where(choice == 1, CLOUD, choice - 2))
        tau = expert_latency(problem, placement, m)
        chosen = np.take_along_axis(total, choice[None], 0)[0]
        if not np.array_equal(chosen, tau):       # the evaluator and the router must agree exactly
            raise RuntimeError(f"routing of user {m} disagrees with slimlib.expert_latency")
        locs.append(loc.astype(np.int64))
        noms.append(tau)
    return locs, noms


def offered_load(problem: Problem, placement: Placement, token_rate, *, server_slots: int | None = 1,
                 routes=None, stages: CallStages | None = None) -> dict:
    """Expected busy fraction of every shared stage when users decode ``token_rate`` tokens/s.

    A user ``m`` decoding ``lambda_m`` tokens per second activates group
    ``G`` of layer ``l`` ``lambda_m * P_{m,l}(G)`` times per second; the calls
    of the group bound for one place travel as one message (one uplink and
    one downlink transfer, one compute job per call), as in the simulator.
    Each message occupies the stages of its route for their nominal times;
    the busy fraction of a stage is the sum of these times per second — the
    utilisation ``rho`` of queueing theory (chapter *A placement in a live
    network*, "A load-aware placement").

    Parameters
    ----------
    problem, placement
    token_rate : float or array_like, shape (M,)
        Tokens per second of each user (``inf`` is not allowed here).
    server_slots : int or None
        Compute slots per server; the compute utilisation is divided by it
        (``None``: reported as the offered work, slots unlimited).
    routes : (loc, nominal), optional
        :func:`~slimlib.simulation.routes.call_routes` output, reused when given.
    stages : CallStages, optional

    Returns
    -------
    dict of ndarray
        ``uplink``, ``downlink``, ``compute``, ``backhaul_up``,
        ``backhaul_down``: each shape ``(N,)``, busy fraction (may exceed 1
        when the offered load is more than the stage can serve).
    """
    st = call_stages(problem) if stages is None else stages
    loc, _ = call_routes(problem, placement, st) if routes is None else routes
    M, N = problem.num_users, problem.num_servers
    lam = V.array("token_rate", np.broadcast_to(np.asarray(token_rate, float), (M,)), shape=(M,), nonneg=True)
    out = {k: np.zeros(N) for k in ("uplink", "downlink", "compute", "backhaul_up", "backhaul_down")}
    for m, s in enumerate(problem.stats):
        locs = loc[m][s.group_layer[:, None], s.group_experts]             # (G, K) destination of every call
        rate = lam[m] * s.group_prob                                         # (G,) groups per second
        n0 = st.best_server[m]
        for d in np.unique(locs).tolist():
            if d == DEVICE:
                continue
            hit = locs == d
            msgs = float(rate @ hit.any(axis=1))                             # messages per second to d
            jobs = float(rate @ hit.sum(axis=1))                             # calls per second to d
            n = n0 if d == CLOUD else d
            out["uplink"][n] += msgs * st.up[m, n]
            out["downlink"][n] += msgs * st.down[m, n]
            if d == CLOUD:
                out["backhaul_up"][n] += msgs * st.backhaul[m]
                out["backhaul_down"][n] += msgs * st.backhaul[m]
            else:
                out["compute"][n] += jobs * st.compute[m, n]
    if server_slots is not None:
        out["compute"] /= V.number("server_slots", server_slots, integer=True, positive=True)
    return out
