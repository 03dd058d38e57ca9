"""Parameters of the live-network simulation (chapter *A placement in a live network*).

One frozen, validated dataclass, :class:`~slimlib.simulation.config.SimulationConfig`: how much traffic the
users offer, how many calls a server computes at once, how radio links and the
backhaul are shared, where the routing comes from, and the seed.  Every bad
value raises one ``ValueError`` naming the field, before any simulation starts.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

from .. import _validate as V

__all__ = ["SimulationConfig", "SHARING", "ROUTING", "QUEUEING", "MAX_CALLS"]

#: How a radio link or a backhaul link is shared by the calls that use it.
SHARING = ("fifo", "dedicated")
#: How a shared stage's FIFO queue is computed (same start times; see the engine).
QUEUEING = ("recursion", "resource")
#: Where each token's expert groups come from.
ROUTING = ("sampled", "trace")
#: Largest run accepted (tokens x layers x K over all users), checked before allocating.
MAX_CALLS = 20_000_000


@dataclass(frozen=True)
class SimulationConfig:
    """What the simulator assumes beyond the placement (chapter *A placement in a live network*).

    Attributes
    ----------
    tokens : int
        Tokens each user decodes and that enter the statistics (after
        ``warmup_tokens``).  Default 2000.
    warmup_tokens : int
        Tokens each user decodes first, left out of the latency statistics (the
        network starts empty).  Default 0.
    token_rate : float
        Offered load: tokens per second each user *asks for*.  Sessions
        (requests) arrive at every user as a Poisson process of rate
        ``token_rate / tokens_per_session`` sessions/s; a session decodes its
        tokens one after another (autoregressive: the next token starts when
        the previous one has left its last layer).  ``math.inf``: every
        session arrives at time 0.  Default 20 tokens/s.
    tokens_per_session : int
        Tokens of one session (a reply).  Default 64.
    max_sessions : int or None
        Sessions a user decodes at the same time (later ones wait, FIFO, a
        SimPy ``Resource``).  ``None`` (default): any number — a user stands
        for a device or gateway serving independent requests, and the offered
        load can exceed what the network serves.  ``1``: one reply at a time.
    server_slots : int or None
        Expert calls an edge server computes at the same time, each in
        ``phi / f_n`` seconds (a SimPy ``Resource`` with this capacity; FIFO).
        ``None``: unlimited.  Default 1.
    cloud_slots : int or None
        The same for the cloud (``phi / f_c`` per call).  Default ``None``
        (the cloud scales).
    device_slots : int or None
        The same for a user's device (``phi / f_m``).  Default ``None``: the
        ``K`` local experts of a group run in parallel, as the expected-latency
        model assumes.
    links : {"fifo", "dedicated"}
        Radio sharing.  ``"fifo"``: every server has one uplink and one
        downlink channel, shared by all users that send to it: one transfer
        at a time, at the full rate of the sender's link (``theta / r``),
        first come first served (time division).  ``"dedicated"``: no
        waiting (every transfer has its own channel, as in eq. (1.3)).
        Default ``"fifo"``.
    backhaul : {"fifo", "dedicated"}
        Sharing of each server's backhaul to the cloud (one link per direction
        and server, ``theta / r_bh`` per transfer, plus the propagation delay
        ``d_bh`` which never waits).  Default ``"fifo"``.
    routing : {"sampled", "trace"}
        ``"sampled"``: every token draws its group at every layer
        independently from the user's :class:`~slimlib.ActivationStats`.
        ``"trace"``: every user replays ``trace`` from a seeded random
        start, token after token (correlation across layers and tokens kept).
    trace : RoutingTrace or None
        Needed with ``routing="trace"``; must match the model's ``L, E, K``.
    seed : int
        Seeds the session arrivals, the sampled groups and the trace offsets
        (independent streams per user, so changing the load keeps the same
        groups: common random numbers).
    batches : int
        Batches per user for the batch-means confidence interval of the mean.
        Default 20.
    queueing : {"recursion", "resource"}
        How FIFO stages are computed.  ``"resource"``: SimPy ``Resource``
        objects (request, hold, release: three events per job).
        ``"recursion"``: the start of a job is computed when it arrives, as
        the later of its arrival and the earliest free slot (the
        Kiefer–Wolfowitz recursion of a FIFO multi-server queue), one event
        per job.  Both give the same latencies (tested); the recursion is
        about twice as fast.  Default ``"recursion"``.

    Examples
    --------
    >>> cfg = SimulationConfig(tokens=500, token_rate=40.0, server_slots=2)
    >>> SimulationConfig.no_contention().links
    'dedicated'
    """

    tokens: int = 2000
    warmup_tokens: int = 0
    token_rate: float = 20.0
    tokens_per_session: int = 64
    max_sessions: int | None = None
    server_slots: int | None = 1
    cloud_slots: int | None = None
    device_slots: int | None = None
    links: str = "fifo"
    backhaul: str = "fifo"
    routing: str = "sampled"
    trace: object = None
    seed: int = 0
    batches: int = 20
    queueing: str = "recursion"

    def __post_init__(self):
        def put(name, value):
            object.__setattr__(self, name, value)
        put("tokens", V.number("SimulationConfig.tokens", self.tokens, integer=True, positive=True))
        put("warmup_tokens", V.number("SimulationConfig.warmup_tokens", self.warmup_tokens, integer=True,
                                      nonneg=True))
        rate = self.token_rate
        if isinstance(rate, (int, float)) and not isinstance(rate, bool) and rate == math.inf:
            put("token_rate", math.inf)
        else:
            put("token_rate", V.number("SimulationConfig.token_rate", rate, positive=True))
        put("tokens_per_session", V.number("SimulationConfig.tokens_per_session", self.tokens_per_session,
                                           integer=True, positive=True))
        for name in ("max_sessions", "server_slots", "cloud_slots", "device_slots"):
            v = getattr(self, name)
            if v is not None:
                put(name, V.number(f"SimulationConfig.{name}", v, integer=True, positive=True))
        for name, allowed in (("links", SHARING), ("backhaul", SHARING), ("routing", ROUTING),
                              ("queueing", QUEUEING)):
            if getattr(self, name) not in allowed:
                raise V.fail(f"SimulationConfig.{name}", getattr(self, name), f"must be one of {list(allowed)}")
        from ..trace import RoutingTrace
        if self.routing == "trace" and not isinstance(self.trace, RoutingTrace):
            raise V.fail("SimulationConfig.trace", self.trace, "routing='trace' needs a RoutingTrace")
        if self.routing == "sampled" and self.trace is not None:
            raise V.fail("SimulationConfig.trace", self.trace, "given, but routing is 'sampled' (set routing='trace')")
        put("seed", V.number("SimulationConfig.seed", self.seed, integer=True, nonneg=True))
        put("batches", V.number("SimulationConfig.batches", self.batches, integer=True, minimum=2))
        if self.batches > self.tokens:
            raise V.fail("SimulationConfig.batches", self.batches, f"must be <= tokens={self.tokens}")

    @classmethod
    def no_contention(cls, **changes) -> "SimulationConfig":
        """Contention removed: unlimited slots everywhere, dedicated radio and backhaul links.

        The setting in which the simulated mean must equal
        :func:`slimlib.average_latency` (chapter *A placement in a live
        network*, "Validation").
        """
        base = dict(server_slots=None, cloud_slots=None, device_slots=None, links="dedicated",
                    backhaul="dedicated")
        base.update(changes)
        return cls(**base)

    @property
    def contention_free(self) -> bool:
        """True when no call can ever wait (see :meth:`no_contention`)."""
        return (self.server_slots is None and self.cloud_slots is None and self.device_slots is None
                and self.links == "dedicated" and self.backhaul == "dedicated")

    @property
    def session_rate(self) -> float:
        """Sessions per second arriving at each user, ``token_rate / tokens_per_session``."""
        return self.token_rate / self.tokens_per_session

    def replace(self, **changes) -> "SimulationConfig":
        """Copy with some fields changed (validated again; unknown names raise ValueError)."""
        known = {f.name for f in fields(self)}
        for k in changes:
            if k not in known:
                raise V.fail(f"SimulationConfig.{k}", changes[k], f"unknown field; known: {sorted(known)}")
        return replace(self, **changes)

    def to_dict(self) -> dict:
        """Fields as a plain dict (the trace by its ``repr``)."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        if d["trace"] is not None:
            d["trace"] = repr(d["trace"])
        return d
