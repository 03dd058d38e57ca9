"""Data functions of Figures 1 and 6–10 (chapter *Experiments*): sweeps of independent points.

Each data function lists its points — one :class:`slimlib.sweep.Task` per
(seed, panel, swept value), whose JSON parameters hold everything the point
needs, its seed included — and hands them to a :class:`slimlib.sweep.Runner`
(serial by default; worker processes, a Dask cluster and a per-point cache on
request).  A point builds its problem (:func:`experiment_problem`), runs every
method and scores it with the one evaluator (``_run_methods``).  The table
lists the points' rows in task order (seed, then panel, then value), so it is
the same whatever ran the points and in which order; only the run-time columns
(:data:`RUNTIME_COLUMNS`) are measurements.
"""
from __future__ import annotations

from typing import Sequence

from ..io import load_parameters
from ..latency import average_latency, communication_latency
from ..network import Parameters
from ..problem import Placement, Problem
from ..sweep import Runner, Task
from .methods import (_available, _exact_mode, _exact_plan, _max_fill, _method_options, _methods_for, _milp_status,
                      _run_methods, _seeds, _solve)
from .problems import LLAVA_MODELS, MHZ, SWITCH_MODELS, experiment_problem
from .table import ResultTable

#: Public names are re-exported (and documented) by :mod:`slimlib.experiments`.
__all__: list[str] = []

#: Methods of Figure 6 (K = 1) and Figure 7 (K = 2), in legend order.  Co-activation-blind greedy is
#: left out of Figure 6: with K = 1 the marginals are the groups and it coincides with greedy.
FIG6_METHODS = ("greedy", "decomposition", "accelerated", "exact", "coordinated-popularity", "popularity", "random",
                "none")
FIG7_METHODS = ("decomposition", "accelerated", "exact", "greedy", "blind-greedy", "coordinated-popularity",
                "popularity", "random", "none")
#: Methods of Figures 8 and 9 (and of :func:`point_data`).
SWEEP_METHODS = ("greedy", "decomposition", "accelerated", "blind-greedy", "coordinated-popularity", "popularity",
                 "random", "none")
#: Methods of Figure 10 (run time vs size, K = 1: every method applies).
FIG10_METHODS = ("greedy", "decomposition", "accelerated", "exact", "coordinated-popularity", "popularity", "random")


# ---------------------------------------------------------------------------
# Points and sweeps
# ---------------------------------------------------------------------------
def _params_json(params: Parameters | None):
    return None if params is None else params.to_json()


def _problem(pt: dict):
    """The problem of one point: ``pt["model"]``, ``pt["seed"]`` and the keyword arguments ``pt["problem"]``."""
    params = None if pt.get("params") is None else Parameters.from_json(pt["params"])
    return experiment_problem(pt["model"], params=params, seed=pt["seed"], **pt["problem"])


def _base(pt: dict, problem: Problem, src: str) -> dict:
    mod = problem.models[0]
    return dict(figure=pt["figure"], panel=pt["panel"], sweep=pt["sweep"], value=pt["value"], model=mod.name,
                top_k=mod.top_k, bytes_per_param=mod.bytes_per_param, stats_source=src)


def methods_point(pt: dict) -> list[dict]:
    """One point of Figures 6–10: build its problem, run ``pt["methods"]`` (options ``pt["run"]``), one row each.

    Parameters
    ----------
    pt : dict
        JSON parameters: ``figure``, ``panel``, ``sweep``, ``value``, ``seed``,
        ``model``, ``params`` (:meth:`Parameters.to_json` or ``None`` for
        Table 1), ``problem`` (keyword arguments of
        :func:`experiment_problem`), ``methods``, ``run`` (keyword arguments of
        ``_run_methods``).

    Returns
    -------
    list of dict
        The point's rows (columns of :class:`ResultTable`).
    """
    problem, src = _problem(pt)
    return _run_methods(problem, pt["methods"], seed=pt["seed"], base=_base(pt, problem, src), **pt["run"])


def _best_proposed(problem: Problem, available) -> str:
    k = max(m.top_k for m in problem.models)
    for m in (("greedy", "decomposition") if k == 1 else ("decomposition", "greedy")):
        if m in available:
            return m
    return "none"


def _u_shaped(problem: Problem):
    """(latency, communication latency, server fill) of U-shaped split inference (:mod:`slimlib.split_inference`)."""
    from ..split_inference import u_shaped_latency, u_shaped_placement
    return (u_shaped_latency(problem), u_shaped_latency(problem, communication=True),
            _max_fill(problem, u_shaped_placement(problem)))


def fig1_point(pt: dict) -> list[dict]:
    """One point of Figure 1: SlimCaching (best proposed method), no edge cache, U-shaped split inference."""
    problem, src = _problem(pt)
    base, seed = _base(pt, problem, src), pt["seed"]
    best = _best_proposed(problem, _available())
    pl = _solve(problem, best, _method_options(best, seed, 0.05, 10.0, None))
    rows = [dict(base, method="slimcaching", seed=seed, latency_s=average_latency(problem, pl),
                 comm_latency_s=communication_latency(problem, pl),
                 runtime_s=float(pl.info.get("runtime_s", float("nan"))), status=f"ok ({best})",
                 max_fill=_max_fill(problem, pl))]
    empty = Placement.empty(problem)
    rows.append(dict(base, method="none", seed=seed, latency_s=average_latency(problem, empty),
                     comm_latency_s=communication_latency(problem, empty), runtime_s=0.0, status="ok", max_fill=0.0))
    u = _u_shaped(problem)
    rows.append(dict(base, method="u-shaped", seed=seed, latency_s=u[0], comm_latency_s=u[1], runtime_s=0.0,
                     status="ok", max_fill=u[2]))
    return _milp_status(rows)


def run_points(figure: str, tasks: Sequence[Task], *, runner: Runner | None, progress, meta: dict,
               seeds: list[int]) -> ResultTable:
    """Run the points of one figure and collect their rows, in task order, into a :class:`ResultTable`.

    ``runner=None`` runs them serially in this process without a cache (what
    the book does); ``meta`` gets ``figure``, ``seeds``, ``stats_source`` and
    ``missing_methods`` (methods of the points that are not registered).
    """
    runner = Runner(jobs=1, progress=progress) if runner is None else runner
    results = runner.run(tasks, desc=figure)
    rows = [r for res in results for r in res]
    available = set(_available())
    missing = {m for t in tasks for m in t.params.get("methods", ())
               if m not in available and m not in ("u-shaped", "slimcaching")}
    sources = {r["stats_source"] for r in rows}
    return ResultTable(rows, dict(meta, figure=figure, seeds=seeds, stats_source=sorted(sources),
                                  missing_methods=sorted(missing)))


def _method_tasks(figure: str, points, *, seeds: list[int], params, methods_of, run: dict, fn=methods_point):
    """Tasks in the table's order: for each seed, each ``(panel, value, model, sweep, problem kwargs)`` point."""
    pj = _params_json(params)
    tasks = []
    for seed in seeds:
        for pan, v, model, sweep, problem_kw in points:
            methods, max_size = methods_of(pan)
            r = dict(run) if "exact_max_size" not in run else dict(run, exact_max_size=max_size)
            tasks.append(Task(fn, dict(figure=figure, panel=pan, sweep=sweep, value=v, seed=seed, model=model,
                                       params=pj, problem=problem_kw, methods=list(methods), run=r)))
    return tasks


# ---------------------------------------------------------------------------
# The figures
# ---------------------------------------------------------------------------
def fig1_data(*, models: Sequence[str] = SWITCH_MODELS, device_storage_gb: Sequence[float] = (0.0, 0.5, 1.0, 2.0, 4.0),
              server_storage_gb: float = 1.5, seeds=3, params: Parameters | None = None,
              bytes_per_param: float | None = None, progress=None, runner: Runner | None = None) -> ResultTable:
    """Figure 1: per-token *communication* latency vs device storage, SlimCaching vs U-shaped split inference.

    One user, one edge server with ``server_storage_gb`` of expert storage, the
    cloud (chapter *Experiments*, first figure).  SlimCaching: the device caches its most
    activated experts (default device policy), the edge server's cache is
    optimised by the proposed method (greedy for K=1); U-shaped: whole layers
    on device, then edge, then cloud (:mod:`slimlib.split_inference`).  Rows
    with method ``"none"`` (device cache only, no edge cache) are included as
    a reference.  Seeds draw the user–server distance and the user's token
    sample.  ``runner`` (a :class:`slimlib.sweep.Runner`) runs the points in
    parallel and caches them; default: serially, with a progress bar when
    ``progress``.

    Returns
    -------
    ResultTable
        ``panel`` = model, ``sweep`` = ``"device_storage_gb"``.
    """
    seeds = _seeds(seeds)
    pts = [(m, v, m, "device_storage_gb",
            dict(num_users=1, num_servers=1, server_storage_gb=server_storage_gb, device_storage_gb=v,
                 bytes_per_param=bytes_per_param))
           for m in models for v in device_storage_gb]
    tasks = _method_tasks("fig1", pts, seeds=seeds, params=params, run={}, fn=fig1_point,
                          methods_of=lambda _: (["slimcaching", "u-shaped", "none"], None))
    return run_points("fig1", tasks, runner=runner, progress=progress, seeds=seeds,
                      meta=dict(title="Communication latency vs device storage (one user, one server, cloud)",
                                xlabel="device storage (GB)", ylabel="communication latency (ms per token)",
                                y="comm_latency_s", server_storage_gb=server_storage_gb))


def _storage_sweep(figure, models, storage_gb, methods, seeds, params, bytes_per_param, progress, num_users,
                   num_servers, eps, exact_time_limit_s, exact_max_size, method_options, title, exact_panels,
                   exact, runner):
    exact = _exact_mode(exact)
    seeds = _seeds(seeds)
    pts = [(m, v, m, "server_storage_gb", dict(num_users=num_users, num_servers=num_servers, server_storage_gb=v,
                                               bytes_per_param=bytes_per_param))
           for m in models for v in storage_gb]
    run = dict(eps=eps, exact_time_limit_s=exact_time_limit_s, exact_max_size=exact_max_size,
               method_options=method_options)
    tasks = _method_tasks(figure, pts, seeds=seeds, params=params, run=run,
                          methods_of=lambda pan: _exact_plan(methods, exact, exact_max_size,
                                                             exact_panels is None or pan in exact_panels))
    return run_points(figure, tasks, runner=runner, progress=progress, seeds=seeds,
                      meta=dict(title=title, xlabel="edge storage per server (GB)",
                                ylabel="average latency (ms per token)", y="latency_s",
                                exact_time_limit_s=exact_time_limit_s, exact=exact))


def fig6_data(*, models: Sequence[str] = ("switch-base-16", "switch-base-64", "switch-base-128"),
              storage_gb: Sequence[float] = (0.25, 0.5, 1.0, 1.5, 2.0, 3.0), methods: Sequence[str] | None = None,
              seeds=2, params: Parameters | None = None, bytes_per_param: float | None = None, progress=None,
              num_users: int | None = None, num_servers: int | None = None, eps: float = 0.05,
              exact_time_limit_s: float = 3.0, exact_max_size: int = 30_000, exact_panels: Sequence[str] | None = None,
              method_options: dict | None = None, exact: str = "small", runner: Runner | None = None) -> ResultTable:
    """Figure 6: average latency vs edge storage per server, K = 1 (Switch-base models).

    Greedy (Algorithm 1), decomposition (Algorithm 2) and its accelerated form
    (Algorithm 3) against the baselines, and the exact optimum (MILP) where it
    is proved optimal within ``exact_time_limit_s`` (rows of larger problems
    carry ``status="skipped (too large)"`` or ``"time limit"``; ``bound_s``
    holds HiGHS' lower bound).  ``exact`` chooses the points that run the
    MILP: ``"small"`` (default) those under ``exact_max_size`` variables in
    ``exact_panels`` (default: every model), ``"all"`` every point,
    ``"none"`` none; every row's ``milp_status`` says whether the MILP proved
    optimality at its point.  Users and servers default to Table 1.
    ``runner``: as in :func:`fig1_data`.

    Returns
    -------
    ResultTable
        ``panel`` = model, ``sweep`` = ``"server_storage_gb"``.
    """
    return _storage_sweep("fig6", models, storage_gb, _methods_for(methods, FIG6_METHODS), seeds, params,
                          bytes_per_param, progress, num_users, num_servers, eps, exact_time_limit_s, exact_max_size,
                          method_options, "Average latency vs edge storage, K = 1 (Switch-base)", exact_panels,
                          exact, runner)


def fig7_data(*, models: Sequence[str] = LLAVA_MODELS, storage_gb: Sequence[float] = (0.1, 0.25, 0.5, 0.75, 1.0, 1.5),
              methods: Sequence[str] | None = None, seeds=2, params: Parameters | None = None,
              bytes_per_param: float | None = None, progress=None, num_users: int | None = None,
              num_servers: int | None = None, eps: float = 0.05, exact_time_limit_s: float = 2.0,
              exact_max_size: int = 60_000, exact_panels: Sequence[str] | None = ("moe-llava-phi2-2.7b-4e",),
              method_options: dict | None = None, exact: str = "small", runner: Runner | None = None) -> ResultTable:
    """Figure 7: average latency vs edge storage per server, K = 2 (MoE-LLaVA models).

    Decomposition with the exact DP (Algorithm 2) and accelerated (Algorithm
    3), plain greedy, co-activation-blind greedy, popularity, coordinated
    popularity, random, no caching, and the MILP where proved optimal within
    the time limit (else its lower bound, ``bound_s``).  With co-activation
    (K = 2) the MILP is much harder than for K = 1: at the Table 1 size (10
    users, 5 servers) HiGHS rarely proves optimality within seconds, but its
    lower bound after 2 s is already within a few per cent of the best
    placement.  With ``exact="small"`` (default) it runs on the first model
    only (``exact_panels``; ``()`` switches it off, ``None`` runs it on every
    model); ``exact="all"`` runs it at every point, ``"none"`` nowhere.  The
    ``paper`` scale runs it on every model with a 60 s limit.  ``runner``: as
    in :func:`fig1_data`.

    Returns
    -------
    ResultTable
        ``panel`` = model, ``sweep`` = ``"server_storage_gb"``.
    """
    return _storage_sweep("fig7", models, storage_gb, _methods_for(methods, FIG7_METHODS), seeds, params,
                          bytes_per_param, progress, num_users, num_servers, eps, exact_time_limit_s, exact_max_size,
                          method_options, "Average latency vs edge storage, K = 2 (MoE-LLaVA)", exact_panels,
                          exact, runner)


def fig8_data(*, models: Sequence[str] = ("switch-base-64", "moe-llava-phi2-2.7b-4e"),
              num_servers: Sequence[int] = (1, 2, 3, 5, 8), methods: Sequence[str] | None = None, seeds=2,
              params: Parameters | None = None, bytes_per_param: float | None = None, progress=None,
              num_users: int | None = None, server_storage_gb: float | None = None, eps: float = 0.05,
              method_options: dict | None = None, runner: Runner | None = None) -> ResultTable:
    """Figure 8: average latency vs number of edge servers (one panel per model).

    Every server has the Table 1 storage (or ``server_storage_gb``).  The
    network of ``N`` servers is drawn with the point's seed.  ``runner``: as
    in :func:`fig1_data`.

    Returns
    -------
    ResultTable
        ``panel`` = model, ``sweep`` = ``"num_servers"``.
    """
    ms, seeds = _methods_for(methods, SWEEP_METHODS), _seeds(seeds)
    pts = [(m, int(n), m, "num_servers", dict(num_users=num_users, num_servers=int(n),
                                              server_storage_gb=server_storage_gb, bytes_per_param=bytes_per_param))
           for m in models for n in num_servers]
    tasks = _method_tasks("fig8", pts, seeds=seeds, params=params, methods_of=lambda _: (ms, None),
                          run=dict(eps=eps, method_options=method_options))
    return run_points("fig8", tasks, runner=runner, progress=progress, seeds=seeds,
                      meta=dict(title="Average latency vs number of edge servers", xlabel="number of edge servers",
                                ylabel="average latency (ms per token)", y="latency_s"))


def fig9_data(*, model: str = "moe-llava-phi2-2.7b-4e", bandwidth_mhz: Sequence[float] = (1, 2, 5, 10, 20, 40),
              distance_m: Sequence[float] = (50, 100, 175, 300, 500, 800), methods: Sequence[str] | None = None,
              seeds=2, params: Parameters | None = None, bytes_per_param: float | None = None, progress=None,
              num_users: int | None = None, num_servers: int | None = None, server_storage_gb: float | None = None,
              eps: float = 0.05, method_options: dict | None = None, runner: Runner | None = None) -> ResultTable:
    """Figure 9: average latency vs wireless bandwidth per link, and vs mean user–server distance.

    Two panels: ``"bandwidth"`` (``value`` in MHz, distances as in Table 1)
    and ``"distance"`` (``value`` = mean distance ``d`` in metres, distances
    drawn uniformly in ``[d/2, 3d/2]``, bandwidth as in Table 1).  ``runner``:
    as in :func:`fig1_data`.

    Returns
    -------
    ResultTable
        ``panel`` in ``{"bandwidth", "distance"}``; ``sweep`` = ``"bandwidth_mhz"`` / ``"mean_distance_m"``.
    """
    ms, seeds = _methods_for(methods, SWEEP_METHODS), _seeds(seeds)
    common = dict(num_users=num_users, num_servers=num_servers, server_storage_gb=server_storage_gb,
                  bytes_per_param=bytes_per_param)
    pts = ([("bandwidth", float(b), model, "bandwidth_mhz", dict(common, bandwidth_mhz=float(b)))
            for b in bandwidth_mhz]
           + [("distance", float(d), model, "mean_distance_m", dict(common, mean_distance_m=float(d)))
              for d in distance_m])
    tasks = _method_tasks("fig9", pts, seeds=seeds, params=params, methods_of=lambda _: (ms, None),
                          run=dict(eps=eps, method_options=method_options))
    return run_points("fig9", tasks, runner=runner, progress=progress, seeds=seeds,
                      meta=dict(title="Average latency vs bandwidth and vs user–server distance",
                                xlabel={"bandwidth": "bandwidth per link (MHz)",
                                        "distance": "mean user–server distance (m)"},
                                ylabel="average latency (ms per token)", y="latency_s"))


def fig10_data(*, experts: Sequence[int] = (8, 16, 32, 64, 128), servers: Sequence[int] = (1, 2, 5, 10),
               users: Sequence[int] = (2, 5, 10, 20), base_experts: int = 16, methods: Sequence[str] | None = None,
               seeds=1, params: Parameters | None = None, progress=None, eps: float = 0.05,
               exact_time_limit_s: float = 3.0, exact_max_size: int = 30_000, server_storage_gb: float | None = None,
               method_options: dict | None = None, exact: str = "small", runner: Runner | None = None) -> ResultTable:
    """Figure 10: run time vs problem size for every method, including the MILP (log scale).

    Three panels on Switch-base models (K = 1, where every method applies):
    ``"experts"`` (experts per layer ``E`` = the Switch-base-``E`` card, Table 1
    users and servers), ``"servers"`` (``N``, with ``E = base_experts``) and
    ``"users"`` (``M``, with ``E = base_experts``).  The MILP gets
    ``exact_time_limit_s``; with ``exact="small"`` (default) its rows above
    ``exact_max_size`` variables are marked ``"skipped (too large)"``
    (``"all"``: no size cap; ``"none"``: no MILP).  ``runner``: as in
    :func:`fig1_data`.

    Returns
    -------
    ResultTable
        ``panel`` in ``{"experts", "servers", "users"}``; ``runtime_s`` is the quantity plotted.
    """
    exact, ms, seeds = _exact_mode(exact), _methods_for(methods, FIG10_METHODS), _seeds(seeds)
    base_model = f"switch-base-{base_experts}"
    kw = dict(server_storage_gb=server_storage_gb)
    pts = ([("experts", int(e), f"switch-base-{int(e)}", "num_experts", kw) for e in experts]
           + [("servers", int(n), base_model, "num_servers", dict(kw, num_servers=int(n))) for n in servers]
           + [("users", int(m), base_model, "num_users", dict(kw, num_users=int(m))) for m in users])
    run = dict(eps=eps, exact_time_limit_s=exact_time_limit_s, exact_max_size=exact_max_size,
               method_options=method_options)
    tasks = _method_tasks("fig10", pts, seeds=seeds, params=params, run=run,
                          methods_of=lambda _: _exact_plan(ms, exact, exact_max_size, True))
    return run_points("fig10", tasks, runner=runner, progress=progress, seeds=seeds,
                      meta=dict(title="Run time vs problem size (Switch-base, K = 1)",
                                xlabel={"experts": "experts per layer E", "servers": "edge servers N",
                                        "users": "users M"},
                                ylabel="run time (s)", y="runtime_s", exact_time_limit_s=exact_time_limit_s,
                                exact=exact))


# ---------------------------------------------------------------------------
# One operating point (the chapter's explorer)
# ---------------------------------------------------------------------------
def point_data(*, model: str = "moe-llava-phi2-2.7b-4e", top_k: int | None = None, server_storage_gb: float = 1.5,
               num_servers: int | None = None, bandwidth_mhz: float | None = None, seed: int = 0,
               bytes_per_param: float | None = None, num_users: int | None = None,
               methods: Sequence[str] | None = None, params: Parameters | None = None) -> ResultTable:
    """Every method at one operating point — the data behind the chapter's explorer panel.

    Parameters as in :func:`experiment_problem`; ``top_k`` overrides the
    model card's Top-K (the statistics are generated for that K).  Cached, so
    redrawing the same point is free.
    """
    key = (model, top_k, float(server_storage_gb), num_servers, bandwidth_mhz, int(seed), bytes_per_param, num_users,
           tuple(methods) if methods is not None else None, id(params) if params is not None else None)
    if key not in _POINT_CACHE:
        problem, src = experiment_problem(model, params=params, seed=seed, num_users=num_users, num_servers=num_servers,
                                          server_storage_gb=server_storage_gb, bandwidth_mhz=bandwidth_mhz,
                                          bytes_per_param=bytes_per_param, top_k=top_k)
        mod = problem.models[0]
        ms = _methods_for(methods, SWEEP_METHODS)
        base = dict(figure="point", panel=mod.name, sweep="server_storage_gb", value=float(server_storage_gb),
                    model=mod.name, top_k=mod.top_k, bytes_per_param=mod.bytes_per_param, stats_source=src)
        rows = _run_methods(problem, ms, seed=seed, base=base)
        bw = bandwidth_mhz or (params or load_parameters()).bandwidth_hz / MHZ
        _POINT_CACHE[key] = ResultTable(rows, dict(figure="point", stats_source=[src], num_servers=problem.num_servers,
                                                   num_users=problem.num_users, bandwidth_mhz=bw))
    return _POINT_CACHE[key]


_POINT_CACHE: dict = {}
