"""Data function of Figure 11 (chapter *Experiments*): the accelerated decomposition against the exact DP.

One point per (seed, model): Algorithm 2's stages, the exact DP and the
accelerated combination for every ``eps`` (a :class:`slimlib.sweep.Task`, run
by a :class:`slimlib.sweep.Runner` like the other figures).
"""
from __future__ import annotations

from typing import Sequence

from .. import _validate as V
from ..latency import average_latency, communication_latency
from ..network import Parameters
from ..problem import Placement
from ..sweep import Runner, Task
from .figures import _params_json, _problem, run_points
from .methods import _max_fill, _milp_status, _seeds, _solve
from .problems import LLAVA_MODELS
from .table import ResultTable

#: Public names are re-exported (and documented) by :mod:`slimlib.experiments`.
__all__: list[str] = []


def fig11_point(pt: dict) -> list[dict]:
    """One point of Figure 11 (a model and a seed): the DP row, then one accelerated row per ``pt["eps"]``."""
    from ..studies import stage_comparison
    problem, src = _problem(pt)
    mod, seed, eps, unit = problem.models[0], pt["seed"], pt["eps"], pt["dp_unit_bytes"]
    base = dict(figure="fig11", panel=pt["panel"], sweep="eps", model=mod.name, top_k=mod.top_k,
                bytes_per_param=mod.bytes_per_param, stats_source=src, seed=seed)
    stages = stage_comparison(problem, eps, unit=unit, repeat=pt["repeat"])
    dp_st = [r for r in stages if r["combine"] == "dp"]
    v_dp = sum(r["value"] for r in dp_st)
    t0 = average_latency(problem, Placement.empty(problem))
    full = _solve(problem, "decomposition", {"unit": unit})
    lat_dp = average_latency(problem, full)
    rows = [dict(base, method="decomposition", value=float("nan"), latency_s=lat_dp,
                 comm_latency_s=communication_latency(problem, full),
                 runtime_s=sum(r["time_s"] for r in dp_st), status="ok", max_fill=_max_fill(problem, full),
                 fraction=1.0, min_stage_ratio=1.0, fraction_end_to_end=1.0,
                 solve_runtime_s=float(full.info.get("runtime_s", float("nan"))),
                 dp_units=int(max(r["grid"] for r in dp_st)))]
    for e in eps:
        st = [r for r in stages if r["combine"] == "accelerated" and r["eps"] == e]
        pl = _solve(problem, "accelerated", {"eps": e})
        lat = average_latency(problem, pl)
        rows.append(dict(base, method="accelerated", value=e, latency_s=lat,
                         comm_latency_s=communication_latency(problem, pl),
                         runtime_s=sum(r["time_s"] for r in st), status="ok", max_fill=_max_fill(problem, pl),
                         fraction=sum(r["value"] for r in st) / v_dp if v_dp > 0 else 1.0,
                         min_stage_ratio=min(r["ratio"] for r in st),
                         fraction_end_to_end=(t0 - lat) / (t0 - lat_dp) if t0 > lat_dp else 1.0,
                         solve_runtime_s=float(pl.info.get("runtime_s", float("nan"))),
                         value_grid=int(max(r["grid"] for r in st))))
    return _milp_status(rows)


def fig11_data(*, models: Sequence[str] = LLAVA_MODELS, eps: Sequence[float] = (0.5, 0.3, 0.2, 0.1, 0.05, 0.02, 0.01),
               seeds=2, dp_unit_bytes: float | None = 2 ** 16, repeat: int = 3, params: Parameters | None = None,
               bytes_per_param: float | None = None, progress=None, num_users: int | None = None,
               num_servers: int | None = None, server_storage_gb: float | None = None,
               runner: Runner | None = None) -> ResultTable:
    """Figure 11: accelerated decomposition — fraction of the exact DP's value and run time vs ``eps``.

    Algorithm 3 replaces the capacity DP of each stage of Algorithm 2 by a
    combination over a value grid set by ``eps``.  Following Algorithm 2's
    stages, the per-layer gains of every stage are computed once and combined
    both ways (:func:`slimlib.studies.stage_comparison`):

    * ``fraction``: sum over stages of the accelerated stage values divided by
      the sum of the exact DP's (guarantee: ``>= 1 - eps`` stage by stage;
      ``min_stage_ratio`` is the worst stage);
    * ``runtime_s``: time of the combination step summed over the stages.
      The DP counts storage in units of ``dp_unit_bytes`` (default 64 KiB, a
      divisor of every model card's expert size, so the DP stays exact; its
      cost grows with the number of units, ``Q / unit``, while the
      accelerated combination's does not).  Each timing is the best of
      ``repeat`` runs (wall clock, so it varies between runs and machines).

    Each row also carries the end-to-end result of a full solve
    (``latency_s``, ``fraction_end_to_end`` = latency reduction against no
    edge caching relative to the DP's, ``solve_runtime_s``).  Rows of the DP
    itself have ``method="decomposition"`` and ``value = NaN``.  ``runner``: as in
    :func:`slimlib.experiments.fig1_data`.

    Returns
    -------
    ResultTable
        ``panel`` = model, ``sweep`` = ``"eps"``.
    """
    eps = [V.number("eps[]", e, positive=True, maximum=0.999) for e in eps]
    seeds = _seeds(seeds)
    pj = _params_json(params)
    tasks = [Task(fig11_point, dict(figure="fig11", panel=m, seed=seed, model=m, params=pj, eps=eps,
                                    dp_unit_bytes=dp_unit_bytes, repeat=int(repeat),
                                    problem=dict(num_users=num_users, num_servers=num_servers,
                                                 server_storage_gb=server_storage_gb,
                                                 bytes_per_param=bytes_per_param)))
             for seed in seeds for m in models]
    return run_points("fig11", tasks, runner=runner, progress=progress, seeds=seeds,
                      meta=dict(title="Accelerated decomposition vs eps", xlabel="eps", dp_unit_bytes=dp_unit_bytes))
