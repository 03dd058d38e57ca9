"""A load-aware placement: re-solve with queueing-inflated service times (chapter *A placement in a live network*).

The placements of the book minimise the *expected* latency, in which nothing
waits.  Under load, a server whose radio link carries many calls makes them
wait.  ``method="load-aware"`` wraps any solver (default the decomposition,
chapter *Successive decomposition*) in a fixed point:

1. solve; estimate the busy fraction ``rho`` of every server's uplink,
   downlink and compute at the offered token rate
   (:func:`~slimlib.simulation.routes.offered_load`);
2. inflate every service time by its mean waiting time in an M/M/c queue
   (links: one channel, ``1 / (1 - rho)``; compute: ``c = server_slots``,
   Erlang C), i.e. scale the server's link rates and FLOP/s down;
3. re-solve the inflated problem; damp ``rho`` and repeat (until the
   placement stops changing, or ``iterations`` times).

Among the placements met (the plain one included) it returns the one with the
lowest *surrogate* latency: :func:`slimlib.average_latency` of the placement on
the problem inflated at its own load.  The M/M/c numbers are an
approximation (arrivals are not Poisson, services not exponential, and the
inflated rates can move a user's best server for cloud calls, which the
simulator keeps fixed); whether the result is better is decided by the
simulator, in the chapter.  Only public API is used: the solvers are not
modified.
"""
from __future__ import annotations

import math

import numpy as np

from .. import _validate as V
from ..latency import average_latency
from ..problem import Placement, Problem
from . import register, solve

__all__ = ["load_aware", "erlang_c", "inflated_problem"]


def erlang_c(servers: int, offered: float) -> float:
    """Probability that an arrival waits in an M/M/c queue (Erlang C), ``offered = lambda / mu`` Erlangs.

    1 when ``offered >= servers`` (the queue is unstable).
    """
    c = V.number("servers", servers, integer=True, positive=True)
    a = V.number("offered", offered, nonneg=True)
    if a >= c:
        return 1.0
    term, total = 1.0, 1.0                      # sum_{k<c} a^k / k!, built term by term
    for k in range(1, c):
        term *= a / k
        total += term
    last = term * a / c * c / (c - a)           # a^c / c! * c / (c - a)
    return float(last / (total + last))


def _slowdown(rho: np.ndarray, slots: int, cap: float) -> np.ndarray:
    """Service time / (service time + mean M/M/c wait) for busy fractions ``rho`` (per slot)."""
    r = np.minimum(rho, cap)
    if slots == 1:
        return 1.0 - r
    out = np.empty_like(r)
    for i, x in enumerate(r):
        a = x * slots
        out[i] = 1.0 / (1.0 + erlang_c(slots, a) / (slots - a))
    return out


def inflated_problem(problem: Problem, load: dict, *, server_slots: int | None = 1,
                     max_utilisation: float = 0.95) -> Problem:
    """``problem`` with every server's link rates and FLOP/s scaled down by its M/M/c slowdown.

    Parameters
    ----------
    problem : Problem
    load : dict
        :func:`~slimlib.simulation.routes.offered_load` output (busy fractions, shape ``(N,)`` each).
    server_slots : int or None
        Compute slots (``None``: compute never waits).
    max_utilisation : float
        Busy fractions are capped here (an unstable queue would have infinite waits).
    """
    cap = V.number("max_utilisation", max_utilisation, positive=True, maximum=0.999)
    net = problem.network
    up = net.rate_up * _slowdown(load["uplink"], 1, cap)[None, :]
    down = net.rate_down * _slowdown(load["downlink"], 1, cap)[None, :]
    flops = net.server_flops * (1.0 if server_slots is None else _slowdown(load["compute"], server_slots, cap))
    return problem.replace(network=net.replace(rate_up=up, rate_down=down, server_flops=flops),
                           device_cache=problem.device_cache)


@register("load-aware")
def load_aware(problem: Problem, *, token_rate: float = 50.0, server_slots: int | None = 1,
               base: str = "decomposition", iterations: int = 6, damping: float = 0.5,
               max_utilisation: float = 0.95, **base_options) -> Placement:
    """Placement for a network under load: fixed point of solve → estimate load → inflate (module docstring).

    Parameters
    ----------
    problem : Problem
    token_rate : float
        Offered tokens/s per user the placement is made for (as
        :class:`~slimlib.simulation.config.SimulationConfig`'s ``token_rate``).
    server_slots : int or None
        Compute slots per server, as in the simulator.
    base : str
        The solver re-run on the inflated problems (any name of :func:`slimlib.methods`
        but this one).
    iterations : int
        Most fixed-point steps after the plain solve (fewer when a step
        returns the placement of the step before).
    damping : float
        In ``(0, 1]``: the new load estimate is ``(1 - damping) * old + damping * measured``.
    max_utilisation : float
        Cap of the busy fractions in the inflation.
    **base_options
        Passed to ``base``.

    Returns
    -------
    Placement
        ``info``: ``surrogate_s`` (the surrogate latency of every iterate met, the
        plain solve first), ``chosen`` (its index), ``max_utilisation`` (the
        busiest link or compute of the chosen placement, by the estimate).
    """
    from ..simulation.routes import call_stages, offered_load
    rate = V.number("token_rate", token_rate, positive=True)
    if server_slots is not None:
        server_slots = V.number("server_slots", server_slots, integer=True, positive=True)
    iterations = V.number("iterations", iterations, integer=True, nonneg=True)
    damping = V.number("damping", damping, positive=True, maximum=1.0)
    if base == "load-aware":
        raise V.fail("base", base, "must be another method")
    st = call_stages(problem)

    def load_of(pl):
        return offered_load(problem, pl, rate, server_slots=server_slots, stages=st)

    def surrogate(pl, load):
        return average_latency(inflated_problem(problem, load, server_slots=server_slots,
                                                max_utilisation=max_utilisation), pl)

    plain = solve(problem, method=base, **base_options)
    rho = load_of(plain)
    cands = [(surrogate(plain, rho), plain)]
    for _ in range(iterations):
        pb = inflated_problem(problem, rho, server_slots=server_slots, max_utilisation=max_utilisation)
        x = solve(pb, method=base, **base_options)
        pl = Placement(x.server, [y.copy() for y in problem.device_cache], method="load-aware")
        if pl == cands[-1][1]:
            break                       # a fixed point: re-solving returns the same placement
        new = load_of(pl)
        cands.append((surrogate(pl, new), pl))
        rho = {k: (1 - damping) * rho[k] + damping * new[k] for k in rho}
    chosen = int(np.argmin([c[0] for c in cands]))
    best = cands[chosen][1].copy()
    best.method = "load-aware"
    busy = load_of(best)
    best.info.update(surrogate_s=[float(c[0]) for c in cands], chosen=chosen, token_rate=rate,
                     max_utilisation=float(max(np.max(v) for k, v in busy.items() if k in ("uplink", "downlink",
                                                                                           "compute"))))
    if not math.isfinite(best.info["surrogate_s"][chosen]):
        raise RuntimeError("load-aware: the surrogate latency is not finite")
    return best
