"""Problems of the experiments (chapter *Experiments*, "Statistics"): model cards, networks, statistics.

:func:`experiment_problem` builds the problem of one point of a sweep from a
model card, a network drawn from Table 1 with the point's seed, and per-user
statistics (:func:`experiment_stats`).
"""
from __future__ import annotations

import functools

import numpy as np

from .. import _validate as V
from ..io import load_model_card, load_parameters, load_stats
from ..model import MoEModel
from ..network import Network, Parameters
from ..problem import Problem

#: Public names are re-exported (and documented) by :mod:`slimlib.experiments`.
__all__: list[str] = []

#: Switch-base model cards of Figures 1, 6 and 10 (K = 1, fp32 checkpoints).
SWITCH_MODELS = ("switch-base-8", "switch-base-16", "switch-base-32", "switch-base-64", "switch-base-128")
#: MoE-LLaVA model cards of Figure 7 (K = 2, fp16 checkpoints).
LLAVA_MODELS = ("moe-llava-phi2-2.7b-4e", "moe-llava-qwen-1.8b-4e", "moe-llava-stablelm-1.6b-4e")

GB = 1e9
MHZ = 1e6


def _synthetic_module():
    try:
        from .. import synthetic
    except ImportError:
        return None
    if not (hasattr(synthetic, "synthetic_stats") and hasattr(synthetic, "user_stats")):
        return None
    return synthetic


@functools.lru_cache(maxsize=64)
def _base_stats(name: str, L: int, E: int, K: int):
    """The model's population statistics: ``<name>-synthetic`` (:func:`slimlib.load_stats`) if known, else generated."""
    syn = _synthetic_module()
    try:
        s = load_stats(f"{name}-synthetic")   # a shipped file, or a large card's generated statistics
    except ValueError:
        s = None
    if s is not None and (s.num_layers, s.num_experts, s.top_k) == (L, E, K):
        return s
    model = MoEModel(name, L, E, K, hidden_size=1, params_per_expert=1)
    if name in _card_names():
        model = load_model_card(name)
        if (model.num_layers, model.num_experts, model.top_k) != (L, E, K):
            model = MoEModel(name, L, E, K, model.hidden_size, model.params_per_expert, model.bytes_per_param,
                             model.act_bytes)
    return syn.synthetic_stats(model, seed=0)


@functools.lru_cache(maxsize=1)
def _card_names() -> tuple:
    from ..io import model_card_names
    return tuple(model_card_names())


@functools.lru_cache(maxsize=256)
def _user_stats_cached(name: str, L: int, E: int, K: int, num_users: int, seed: int, tokens_per_user):
    syn = _synthetic_module()
    if syn is not None:
        base = _base_stats(name, L, E, K)
        kw = {} if tokens_per_user is None else {"tokens_per_user": tokens_per_user}
        users = syn.user_stats(base, num_users, seed=seed, **kw)
        if not isinstance(users, (list, tuple)):
            users = [users] * num_users
        return tuple(users), str(base.provenance.get("source", "synthetic"))
    # Stand-in until slimlib.synthetic exists: Dirichlet routing per user (slimlib.instances).
    from ..instances import random_stats
    rng = np.random.default_rng([seed, L, E, K, 7])
    users = tuple(random_stats(rng, L, E, K, concentration=0.3, max_groups=64, model=name) for _ in range(num_users))
    return users, "random (stand-in)"


def experiment_stats(model: MoEModel, num_users: int, seed: int = 0, *, tokens_per_user: int | None = None):
    """Per-user activation statistics of the experiments (chapter *Experiments*, "Statistics").

    The population profile of ``model`` is ``data/stats/<model>-synthetic.json``
    (:mod:`slimlib.synthetic`); every user gets a sample of
    ``tokens_per_user`` tokens drawn from it with ``seed``.  Results are cached.

    Parameters
    ----------
    model : MoEModel
    num_users : int
        ``M``.
    seed : int
    tokens_per_user : int, optional
        Passed to :func:`slimlib.synthetic.user_stats` (its default when omitted).

    Returns
    -------
    (list of ActivationStats, str)
        ``M`` statistics and the source label (``"synthetic"``, ``"measured"``, ...).
    """
    V.number("num_users", num_users, integer=True, positive=True)
    users, src = _user_stats_cached(model.name, model.num_layers, model.num_experts, model.top_k,
                                    int(num_users), int(seed), tokens_per_user)
    return list(users), src


def stats_source_label(source: str) -> str:
    """Human-readable statistics source for figure notes."""
    return {"synthetic": "synthetic profile (slimlib.synthetic)", "measured": "measured routing",
            "measured-tiny": "measured on the book's tiny MoE"}.get(source, source)


def _model(name_or_model, bytes_per_param=None, top_k=None) -> MoEModel:
    m = name_or_model if isinstance(name_or_model, MoEModel) else load_model_card(name_or_model)
    if bytes_per_param is not None:
        m = m.with_precision(bytes_per_param)
    if top_k is not None and top_k != m.top_k:
        m = MoEModel(m.name, m.num_layers, m.num_experts, int(top_k), m.hidden_size, m.params_per_expert,
                     m.bytes_per_param, m.act_bytes, m.description)
    return m


def experiment_problem(model, *, params: Parameters | None = None, seed: int = 0, num_users: int | None = None,
                       num_servers: int | None = None, server_storage_gb: float | None = None,
                       device_storage_gb: float | None = None, bandwidth_mhz: float | None = None,
                       mean_distance_m: float | None = None, bytes_per_param: float | None = None,
                       top_k: int | None = None, tokens_per_user: int | None = None):
    """One problem of the experiments: a model card, a network drawn from Table 1, per-user statistics.

    Everything not given comes from ``params`` (Table 1).  The network is drawn
    with ``seed`` (user–server distances uniform in
    ``[distance_min_m, distance_max_m]``, or in ``[d/2, 3d/2]`` when
    ``mean_distance_m = d`` is given), and the statistics of user ``m`` are
    :func:`experiment_stats` with the same seed.

    Returns
    -------
    (Problem, str)
        The problem and the statistics source label.
    """
    p = load_parameters() if params is None else params
    changes = {}
    if server_storage_gb is not None:
        changes["server_capacity_bytes"] = float(server_storage_gb) * GB
    if device_storage_gb is not None:
        changes["device_capacity_bytes"] = float(device_storage_gb) * GB
    if bandwidth_mhz is not None:
        changes["bandwidth_hz"] = float(bandwidth_mhz) * MHZ
    if mean_distance_m is not None:
        d = V.number("mean_distance_m", mean_distance_m, positive=True)
        changes.update(distance_min_m=d / 2, distance_max_m=1.5 * d)
    if changes:
        p = p.replace(**changes)
    mod = _model(model, bytes_per_param, top_k)
    M = p.num_users if num_users is None else int(num_users)
    N = p.num_servers if num_servers is None else int(num_servers)
    net = Network.from_parameters(p, num_users=M, num_servers=N, seed=seed)
    stats, src = experiment_stats(mod, M, seed, tokens_per_user=tokens_per_user)
    return Problem(mod, net, stats, name=f"{mod.name}-M{M}-N{N}-s{seed}"), src

