"""U-shaped split inference: the layer-wise baseline of chapter *Experiments*.

Chapter *Experiments*, Figure 1.  Split inference places *whole MoE layers*
(all ``E`` experts of a layer, ``E * s_u`` bytes) instead of single experts:

* the device holds the first ``L_d`` layers that fit into its storage ``C_m``,
* the user's edge server (``n0``, the one the cloud path goes through, see
  :func:`slimlib.latency.best_server`) the next ``L_e`` layers that fit into
  its storage ``Q_{n0}``,
* the cloud the remaining ``L_c = L - L_d - L_e`` layers.

A token's hidden state then travels device → edge → cloud → back to the
device **once per token**, not once per layer as in expert caching:

.. math::

    \\begin{aligned}
    T^{SI}_m = {} & L_d \\frac{F}{f_m}
      + [L_e + L_c > 0]\\Big(\\frac{h}{r^{up}_{m,n_0}} + \\frac{h}{r^{dn}_{m,n_0}}\\Big)
      + L_e \\frac{F}{f_{n_0}} \\\\
      & + [L_c > 0]\\Big(2\\frac{h}{r_{bh}} + 2 d_{bh}\\Big) + L_c \\frac{F}{f_c}.
    \\end{aligned}

Reconstruction notes (the paper's text is not available here): per layer the
``K`` activated experts run in parallel on whichever node holds the layer, so a
layer costs one expert's compute ``F`` (as in SlimCaching's group latency);
non-expert parts run on the device in both schemes and are not counted; the
return trip from the cloud goes through the same edge server; every user is
given the whole storage of its server (the baseline of the first figure of chapter
*Experiments* has one user
and one server, where this is exact).  The communication-only variant drops
the compute terms and keeps the radio and backhaul terms.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _validate as V
from .latency import best_server
from .problem import Placement, Problem

__all__ = ["SplitPlan", "u_shaped_plan", "u_shaped_user_latency", "u_shaped_latency",
           "u_shaped_communication_latency", "u_shaped_placement"]


@dataclass(frozen=True)
class SplitPlan:
    """Where the layers of one user's model run under U-shaped split inference.

    Attributes
    ----------
    user : int
    server : int
        ``n0``, the edge server used.
    device_layers, edge_layers, cloud_layers : int
        ``L_d``, ``L_e``, ``L_c`` (consecutive: device first, then edge, then cloud).
    """

    user: int
    server: int
    device_layers: int
    edge_layers: int
    cloud_layers: int


def u_shaped_plan(problem: Problem, user: int) -> SplitPlan:
    """Layer split of one user: device first, then its edge server, then the cloud.

    Parameters
    ----------
    problem : Problem
    user : int
        ``m``.

    Returns
    -------
    SplitPlan
    """
    user = V.number("user", user, integer=True, minimum=0, maximum=problem.num_users - 1)
    mod = problem.models[problem.user_model[user]]
    layer_bytes = mod.num_experts * mod.expert_bytes
    n0 = int(best_server(problem)[user])
    L = mod.num_layers

    def fit(cap):
        return int(np.floor(cap / layer_bytes * (1 + 1e-12)))

    ld = min(L, fit(problem.network.user_capacity_bytes[user]))
    le = min(L - ld, fit(problem.network.server_capacity_bytes[n0]))
    return SplitPlan(user, n0, ld, le, L - ld - le)


def u_shaped_user_latency(problem: Problem, *, communication: bool = False) -> np.ndarray:
    """``T^SI_m``: per-token latency of every user under U-shaped split inference, shape ``(M,)``, seconds.

    Parameters
    ----------
    problem : Problem
    communication : bool
        Count only the communication part (Fig. 1).
    """
    net = problem.network
    out = np.empty(problem.num_users)
    for m in range(problem.num_users):
        pl = u_shaped_plan(problem, m)
        mod = problem.models[problem.user_model[m]]
        h, F, n = mod.hidden_bits, mod.flops_per_expert, pl.server
        radio = (h / net.rate_up[m, n] + h / net.rate_down[m, n]) if pl.edge_layers + pl.cloud_layers > 0 else 0.0
        backhaul = (2 * h / net.backhaul_rate_bps + 2 * net.backhaul_delay_s) if pl.cloud_layers > 0 else 0.0
        t = radio + backhaul
        if not communication:
            t += (pl.device_layers * F / net.user_flops[m] + pl.edge_layers * F / net.server_flops[n]
                  + pl.cloud_layers * F / net.cloud_flops)
        out[m] = t
    return out


def u_shaped_latency(problem: Problem, *, communication: bool = False) -> float:
    """Weighted average per-token latency of U-shaped split inference, seconds (baseline of Fig. 1).

    The split-inference counterpart of :func:`slimlib.average_latency`
    (``sum_m w_m T^SI_m / sum_m w_m``).
    """
    w = problem.network.user_weight
    return float(w @ u_shaped_user_latency(problem, communication=communication) / w.sum())


def u_shaped_communication_latency(problem: Problem) -> float:
    """Average per-token communication latency of U-shaped split inference, seconds (Fig. 1)."""
    return u_shaped_latency(problem, communication=True)


def u_shaped_placement(problem: Problem) -> Placement:
    """The storage layout of U-shaped split inference as a :class:`~slimlib.Placement`.

    Device caches hold each user's first ``L_d`` layers and server ``n0`` the
    next ``L_e`` layers (of every user that goes through it; a shared server
    may therefore be over-full when several users split differently, and the
    placement is then *not* feasible for (P1)).  Only for showing and
    comparing storage; score split inference with :func:`u_shaped_latency`,
    never with :func:`slimlib.average_latency`.
    """
    pl = Placement.empty(problem, method="u-shaped")
    for m in range(problem.num_users):
        sp = u_shaped_plan(problem, m)
        u = problem.user_model[m]
        pl.device[m][:] = False
        pl.device[m][:sp.device_layers] = True
        pl.server[u][sp.server, sp.device_layers:sp.device_layers + sp.edge_layers] = True
    pl.info["plans"] = [u_shaped_plan(problem, m) for m in range(problem.num_users)]
    return pl
