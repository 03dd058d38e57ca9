"""slimlib — expert caching for distributed Mixture-of-Experts inference.

The library behind the SlimCaching book.  Every public name links back to the
chapter that defines it; see the book's *Naming guide*.
"""
from .model import MoEModel
from .stats import ActivationStats
from .network import Network, Parameters, path_loss_db, shannon_rate_bps
from .problem import Placement, Problem, default_device_cache
from .latency import (CallLatency, average_latency, call_latency, communication_latency,
                      expert_latency, group_latency, latency_reduction, user_latency)
from .io import (data_dir, data_dirs, load, load_model_card, load_parameters, load_stats, model_card_names, save)
from .solvers import methods, solve
from .simulation import simulate

__version__ = "0.2.0"  # the one place of the version (pyproject.toml reads it)

__all__ = [
    "MoEModel", "ActivationStats", "Network", "Parameters", "Problem", "Placement",
    "CallLatency", "average_latency", "communication_latency", "user_latency", "expert_latency",
    "group_latency", "call_latency", "latency_reduction", "default_device_cache",
    "path_loss_db", "shannon_rate_bps",
    "load", "save", "data_dir", "data_dirs", "load_model_card", "load_stats", "load_parameters", "model_card_names",
    "solve", "methods", "simulate",
]
