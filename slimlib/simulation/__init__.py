"""A placement in a live network: token-level discrete-event simulation on SimPy.

Chapter *A placement in a live network*.  The book scores a placement by its
*expected* per-token latency (:func:`slimlib.average_latency`): every call
takes its nominal time, nothing waits.  :func:`~slimlib.simulate` runs the same
placement with users that decode tokens one after another, servers with a
limited number of compute slots, and radio links and backhauls shared first
come, first served — and reports the mean, the tail, the utilisation of every
shared stage and how much of the latency is waiting.

* :mod:`~slimlib.simulation.config` — :class:`~slimlib.simulation.config.SimulationConfig` (load, slots, sharing, routing, seed);
* :mod:`~slimlib.simulation.routes` — where each call goes, its stages, the offered load;
* :mod:`~slimlib.simulation.engine` — the SimPy model and :func:`~slimlib.simulate`;
* :mod:`~slimlib.simulation.result` — :class:`~slimlib.simulation.result.SimulationResult`;
* :mod:`~slimlib.simulation.study` — the chapter's load sweeps and verdicts;
* :mod:`~slimlib.simulation.cli` — ``python -m slimlib simulate``.
"""
from .config import SimulationConfig
from .engine import simulate
from .result import SimulationResult
from .routes import call_routes, call_stages, offered_load

__all__ = ["simulate", "SimulationConfig", "SimulationResult", "call_routes", "call_stages", "offered_load"]
