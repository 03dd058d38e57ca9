"""The paper's evaluation, regenerated: one data function per figure (chapter *Experiments*).

Every figure of the evaluation (Figures 1 and 6–11 of the paper, SPEC §4) has a
*data function* here that takes the simulation parameters (Table 1 defaults
from :func:`slimlib.load_parameters`) and a list of seeds and returns a tidy
:class:`ResultTable` — one row per (method, swept value, model, seed) with the
average per-token latency, the communication latency and the solver's run
time — and a *draw function* in :mod:`slimlib.plotting.experiments` that turns
the table into the figure.  ``python -m slimlib figures`` (:func:`main_figures`)
runs both and writes PNG, SVG and CSV files; it also writes Figures 2–5 of
the earlier chapters (:data:`FIXED_FIGURES`: the activation heatmap, the
schematics and the routing cases, drawn by their own chapters' functions), so
one command regenerates every figure of the paper.

Every latency is scored by the one evaluator, :func:`slimlib.average_latency`
(communication part: :func:`slimlib.communication_latency`).  Statistics
come from :func:`experiment_stats`: the synthetic profile of each model card
(``data/stats/<model>-synthetic.json``) sampled per user; the source is a
column of every table and is written on every figure.

Determinism: the same parameters and seeds give the same table (every column
except ``runtime_s``, a wall-clock measurement) and, for figures that do not
plot run time, the same PNG bytes (:func:`slimlib.plotting.savefig`).  One
exception: a MILP run stopped by its time limit (``status="time limit"``)
returns what HiGHS had found by then, which depends on the machine's speed;
such runs are not drawn as optima (only their lower bound is).
"""
from __future__ import annotations

import csv
import functools
import inspect
import io
import math
import os
import sys
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from . import _validate as V
from .io import data_dir, load_model_card, load_parameters, load_stats
from .latency import average_latency, communication_latency
from .model import MoEModel
from .network import Network, Parameters
from .problem import Placement, Problem

__all__ = [
    "ResultTable", "SWITCH_MODELS", "LLAVA_MODELS", "FIGURES", "SCALES",
    "experiment_stats", "experiment_problem", "stats_source_label",
    "fig1_data", "fig6_data", "fig7_data", "fig8_data", "fig9_data", "fig10_data", "fig11_data",
    "point_data", "table1", "table1_markdown", "dominance", "dominance_sentence", "gains", "storage_reading",
    "short_name", "storage_point_latency", "passes_sentence", "residual_reading", "bound_gaps", "main_figures",
    "FIXED_FIGURES", "FIG2_STATS", "FIG2_LAYER", "figure_names",
]

#: Switch-base model cards of Figures 1, 6 and 10 (K = 1, fp32 checkpoints).
SWITCH_MODELS = ("switch-base-8", "switch-base-16", "switch-base-32", "switch-base-64", "switch-base-128")
#: MoE-LLaVA model cards of Figure 7 (K = 2, fp16 checkpoints).
LLAVA_MODELS = ("moe-llava-phi2-2.7b-4e", "moe-llava-qwen-1.8b-4e", "moe-llava-stablelm-1.6b-4e")

#: Methods proposed by the paper (the rest are baselines or references).
PROPOSED = ("greedy", "decomposition", "accelerated", "slimcaching")
#: Baselines of SPEC §3 (U-shaped split inference only in Figure 1).
BASELINES = ("none", "random", "popularity", "coordinated-popularity", "blind-greedy", "u-shaped")

GB = 1e9
MHZ = 1e6


# ---------------------------------------------------------------------------
# The tidy table
# ---------------------------------------------------------------------------
class ResultTable:
    """A tidy table of experiment results: a list of row dicts plus metadata.

    Columns (always present, in this order): ``figure``, ``panel``, ``method``,
    ``sweep`` (name of the swept quantity), ``value`` (its value, in the unit
    the name ends with), ``model``, ``top_k``, ``bytes_per_param``, ``seed``,
    ``latency_s`` (average per-token latency, seconds), ``comm_latency_s``
    (its communication part, seconds), ``runtime_s`` (solver wall-clock time,
    seconds), ``status`` (``"ok"``, ``"optimal"``, ``"time limit"``, ...),
    ``stats_source``; further columns follow (e.g. ``fraction`` in Figure 11).

    Parameters
    ----------
    rows : iterable of dict
    meta : dict, optional
        ``figure``, ``title``, ``xlabel``, ``scale`` and whatever the draw
        function needs; not part of the CSV.
    """

    COLUMNS = ("figure", "panel", "method", "sweep", "value", "model", "top_k", "bytes_per_param", "seed",
               "latency_s", "comm_latency_s", "runtime_s", "status", "stats_source")

    def __init__(self, rows: Iterable[dict] = (), meta: dict | None = None):
        self.rows = [dict(r) for r in rows]
        self.meta = dict(meta or {})

    # -- access --------------------------------------------------------------
    @property
    def columns(self) -> list[str]:
        """Column names: ``COLUMNS`` first, then extra columns in first-seen order."""
        extra = []
        for r in self.rows:
            for k in r:
                if k not in self.COLUMNS and k not in extra:
                    extra.append(k)
        return list(self.COLUMNS) + extra

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    def __getitem__(self, i):
        return self.rows[i]

    def column(self, name: str) -> list:
        """Values of one column (``None`` where a row lacks it)."""
        return [r.get(name) for r in self.rows]

    def unique(self, name: str) -> list:
        """Distinct values of a column in first-seen order."""
        out = []
        for v in self.column(name):
            if v not in out:
                out.append(v)
        return out

    def where(self, **conditions) -> "ResultTable":
        """Rows whose columns equal the given values (a list/tuple/set value means 'any of')."""
        def ok(r):
            for k, v in conditions.items():
                if isinstance(v, (list, tuple, set, frozenset)):
                    if r.get(k) not in v:
                        return False
                elif r.get(k) != v:
                    return False
            return True
        return ResultTable([r for r in self.rows if ok(r)], self.meta)

    def summary(self, y: str = "latency_s", by: Sequence[str] = ("panel", "method", "value")) -> list[dict]:
        """Mean and spread of column ``y`` across the other columns (typically across seeds).

        Returns
        -------
        list of dict
            One per distinct ``by`` combination (first-seen order), with the
            ``by`` columns and ``mean``, ``std`` (population), ``min``, ``max``,
            ``n``; rows whose ``y`` is missing or NaN are skipped.
        """
        groups: dict[tuple, list[float]] = {}
        for r in self.rows:
            x = r.get(y)
            if x is None or (isinstance(x, float) and math.isnan(x)):
                continue
            groups.setdefault(tuple(r.get(b) for b in by), []).append(float(x))
        out = []
        for key, xs in groups.items():
            a = np.asarray(xs)
            out.append({**dict(zip(by, key)), "mean": float(a.mean()), "std": float(a.std()),
                        "min": float(a.min()), "max": float(a.max()), "n": int(a.size)})
        return out

    def mean(self, y: str = "latency_s", **conditions) -> float:
        """Mean of column ``y`` over the rows matching ``conditions`` (NaN if none).

        Example: ``t.mean("latency_s", method="greedy", value=1.5)``.
        """
        xs = [float(x) for x in self.where(**conditions).column(y)
              if x is not None and not (isinstance(x, float) and math.isnan(x))]
        return float(np.mean(xs)) if xs else float("nan")

    # -- comparison and export ------------------------------------------------
    def equals(self, other: "ResultTable", ignore: Sequence[str] = ("runtime_s",)) -> bool:
        """Same rows in the same order, ignoring the columns in ``ignore`` (wall-clock times)."""
        if not isinstance(other, ResultTable) or len(self) != len(other):
            return False
        strip = lambda r: {k: v for k, v in r.items() if k not in ignore}  # noqa: E731
        return all(_same(strip(a), strip(b)) for a, b in zip(self.rows, other.rows))

    def to_csv(self, path=None) -> str:
        """CSV text (floats written with ``repr``, so they round-trip exactly); also written to ``path``."""
        buf = io.StringIO()
        cols = self.columns
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(cols)
        for r in self.rows:
            w.writerow([_cell(r.get(c)) for c in cols])
        text = buf.getvalue()
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(text, encoding="utf-8")
        return text

    @classmethod
    def from_csv(cls, path_or_text) -> "ResultTable":
        """Read :meth:`to_csv` output back (numbers parsed, empty cells as ``None``)."""
        text = str(path_or_text)
        if "\n" not in text:
            text = Path(text).read_text(encoding="utf-8")
        rows = []
        for r in csv.DictReader(io.StringIO(text)):
            rows.append({k: _parse(v) for k, v in r.items()})
        return cls(rows)

    def __repr__(self):
        return (f"ResultTable({self.meta.get('figure', '?')}: {len(self)} rows, methods={self.unique('method')}, "
                f"panels={self.unique('panel')})")

    def _repr_html_(self):  # pragma: no cover - notebook display
        cols = [c for c in ("panel", "method", "value", "seed", "latency_s", "comm_latency_s", "runtime_s", "status")
                if c in self.columns]
        head = "".join(f"<th>{c}</th>" for c in cols)

        def fmt(v):
            if isinstance(v, float):
                return f"{v:.4g}"
            return "" if v is None else str(v)
        body = "".join("<tr>" + "".join(f"<td>{fmt(r.get(c))}</td>" for c in cols) + "</tr>" for r in self.rows[:6])
        cap = (f"{self.meta.get('figure', 'table')}: {len(self)} rows; methods {', '.join(map(str, self.unique('method')))}; "
               f"first rows shown (times in seconds); all columns: <code>.to_csv()</code>")
        return f"<table><caption>{cap}</caption><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(v):
    if v is None:
        return ""
    if isinstance(v, (float, np.floating)):
        return repr(float(v))
    if isinstance(v, (np.integer,)):
        return str(int(v))
    return str(v)


def _parse(v: str):
    if v == "":
        return None
    for f in (int, float):
        try:
            return f(v)
        except ValueError:
            pass
    return v


def _same(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    for k in a:
        x, y = a[k], b[k]
        if isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y):
            continue
        if x != y:
            return False
    return True


# ---------------------------------------------------------------------------
# Statistics and problems
# ---------------------------------------------------------------------------
def _synthetic_module():
    try:
        from . import synthetic
    except ImportError:
        return None
    if not (hasattr(synthetic, "synthetic_stats") and hasattr(synthetic, "user_stats")):
        return None
    return synthetic


@functools.lru_cache(maxsize=64)
def _base_stats(name: str, L: int, E: int, K: int):
    """The model's population statistics: ``data/stats/<name>-synthetic.json`` if present, else generated."""
    syn = _synthetic_module()
    path = data_dir() / "stats" / f"{name}-synthetic.json"
    if path.exists():
        s = load_stats(f"{name}-synthetic")
        if (s.num_layers, s.num_experts, s.top_k) == (L, E, K):
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
    from .io import model_card_names
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
    from .instances import random_stats
    rng = np.random.default_rng([seed, L, E, K, 7])
    users = tuple(random_stats(rng, L, E, K, concentration=0.3, max_groups=64, model=name) for _ in range(num_users))
    return users, "random (stand-in)"


def experiment_stats(model: MoEModel, num_users: int, seed: int = 0, *, tokens_per_user: int | None = None):
    """Per-user activation statistics of the experiments (chapter *Experiments*, "Statistics").

    The population profile of ``model`` is ``data/stats/<model>-synthetic.json``
    (:mod:`slimlib.synthetic`; SPEC §6, source 3); every user gets a sample of
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


# ---------------------------------------------------------------------------
# Running methods
# ---------------------------------------------------------------------------
def _available() -> list[str]:
    from .solvers import methods
    return methods()


def _accepts(method: str) -> set | None:
    """Keyword options a solver accepts (``None`` = anything, it takes ``**kwargs``)."""
    from .solvers import _METHODS, _load_all
    _load_all()
    sig = inspect.signature(_METHODS[method])
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        return None
    return {n for n, p in list(sig.parameters.items())[1:]}


def _solve(problem: Problem, method: str, options: dict) -> Placement:
    from .solvers import solve
    ok = _accepts(method)
    opts = {k: v for k, v in options.items() if ok is None or k in ok}
    return solve(problem, method=method, **opts)


def _optimal(info: dict) -> bool:
    """Did an exact solver prove optimality?  (reads the MILP's status / gap in ``info``)."""
    for k in ("optimal", "proved_optimal"):
        if k in info:
            return bool(info[k])
    st = str(info.get("status", "")).lower()
    if st:
        return st in ("optimal", "0", "ok")
    gap = info.get("gap", info.get("mip_gap"))
    if gap is not None:
        try:
            return float(gap) <= 1e-6
        except (TypeError, ValueError):
            return False
    return True


def _exact_size(problem: Problem) -> int:
    """Rough number of MILP variables: routing shares ``z[m,l,e,j]`` dominate."""
    return sum(len(problem.users_of(u)) * m.num_layers * m.num_experts * (problem.num_servers + 2)
               for u, m in enumerate(problem.models))


def _method_options(method: str, seed: int, eps: float, exact_time_limit_s: float, extra: dict | None) -> dict:
    opts: dict = {}
    if method == "random":
        opts["seed"] = seed
    if method == "accelerated":
        opts["eps"] = eps
    if method in ("exact",):
        opts["time_limit"] = exact_time_limit_s
        opts["time_limit_s"] = exact_time_limit_s
    if extra and method in extra:
        opts.update(extra[method])
    return opts


def _run_methods(problem: Problem, methods: Sequence[str], *, seed: int, base: dict, eps: float = 0.05,
                 exact_time_limit_s: float = 10.0, exact_max_size: int = 200_000,
                 method_options: dict | None = None, available: Sequence[str] | None = None) -> list[dict]:
    """Solve ``problem`` with every method and score it with the one evaluator."""
    available = _available() if available is None else available
    rows = []
    for meth in methods:
        row = dict(base, method=meth, seed=seed)
        if meth not in available:
            continue
        if meth in ("exact", "brute-force") and _exact_size(problem) > exact_max_size:
            rows.append(dict(row, latency_s=float("nan"), comm_latency_s=float("nan"), runtime_s=float("nan"),
                             status="skipped (too large)"))
            continue
        try:
            pl = _solve(problem, meth, _method_options(meth, seed, eps, exact_time_limit_s, method_options))
        except ValueError as exc:
            if meth in ("exact", "brute-force"):
                rows.append(dict(row, latency_s=float("nan"), comm_latency_s=float("nan"),
                                 runtime_s=float("nan"), status=f"failed: {str(exc)[:60]}"))
                continue
            raise
        status, extra = "ok", {}
        lat = average_latency(problem, pl)
        if meth in ("exact", "brute-force"):
            status = "optimal" if _optimal(pl.info) else "time limit"
            bound = pl.info.get("bound_s", lat if status == "optimal" else None)
            gap = float(pl.info.get("gap", 0.0 if status == "optimal" else float("nan")))
            if bound is None or not math.isfinite(gap) or not float(bound) > 0:
                bound = float("nan")                    # no incumbent / no useful bound within the limit
            extra = dict(bound_s=float(bound), gap=gap)
        rows.append(dict(row, latency_s=lat, comm_latency_s=communication_latency(problem, pl),
                         runtime_s=float(pl.info.get("runtime_s", float("nan"))), status=status,
                         max_fill=_max_fill(problem, pl), **extra))
    return rows


def _max_fill(problem: Problem, pl: Placement) -> float:
    """Largest used/capacity ratio over the servers (<= 1 for a feasible placement; 0 without storage)."""
    cap = problem.network.server_capacity_bytes
    used = pl.used_bytes(problem)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(cap > 0, used / np.where(cap > 0, cap, 1), np.where(used > 0, np.inf, 0.0))
    return float(r.max())


def _seeds(seeds) -> list[int]:
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        n = V.number("seeds", seeds, integer=True, positive=True)
        return list(range(n))
    out = [V.number("seeds[]", s, integer=True, nonneg=True) for s in seeds]
    if not out:
        raise V.fail("seeds", seeds, "needs at least one seed")
    return out


def _progress(total: int, desc: str, progress):
    from tqdm.auto import tqdm
    if progress is None:
        progress = os.environ.get("SLIMLIB_STATIC", "") != "1" and os.environ.get("SLIMLIB_PROGRESS", "1") != "0"
    return tqdm(total=total, desc=desc, disable=not progress, leave=False)


def _methods_for(methods, default) -> list[str]:
    ms = list(default if methods is None else methods)
    for m in ms:
        V.text("methods[]", m)
    return ms


def _sweep(figure: str, *, panels: Sequence, values_of: Callable, build: Callable, methods_of: Callable,
           seeds, progress, sweep: str, meta: dict, run_kw: dict, per_point: Callable | None = None) -> ResultTable:
    """Generic sweep: for every seed, panel and swept value build a problem and run every method."""
    seeds = _seeds(seeds)
    available = _available()
    todo = [(s, pan, v) for s in seeds for pan in panels for v in values_of(pan)]
    rows, sources, missing = [], set(), set()
    with _progress(len(todo), figure, progress) as bar:
        for seed, pan, v in todo:
            problem, src = build(pan, v, seed)
            sources.add(src)
            mod = problem.models[0]
            base = dict(figure=figure, panel=pan, sweep=sweep, value=v, model=mod.name, top_k=mod.top_k,
                        bytes_per_param=mod.bytes_per_param, stats_source=src)
            ms = methods_of(pan)
            missing |= {m for m in ms if m not in available and m not in ("u-shaped", "slimcaching")}
            if per_point is not None:
                rows += per_point(problem, seed, base, ms)
            else:
                rows += _run_methods(problem, ms, seed=seed, base=base, available=available, **run_kw)
            bar.update(1)
    meta = dict(meta, figure=figure, seeds=seeds, stats_source=sorted(sources), missing_methods=sorted(missing))
    return ResultTable(rows, meta)


# ---------------------------------------------------------------------------
# The figures
# ---------------------------------------------------------------------------
def _best_proposed(problem: Problem, available) -> str:
    k = max(m.top_k for m in problem.models)
    for m in (("greedy", "decomposition") if k == 1 else ("decomposition", "greedy")):
        if m in available:
            return m
    return "none"


def _u_shaped(problem: Problem):
    """(latency, communication latency, server fill) of U-shaped split inference (:mod:`slimlib.split_inference`)."""
    from .split_inference import u_shaped_latency, u_shaped_placement
    return (u_shaped_latency(problem), u_shaped_latency(problem, communication=True),
            _max_fill(problem, u_shaped_placement(problem)))


def fig1_data(*, models: Sequence[str] = SWITCH_MODELS, device_storage_gb: Sequence[float] = (0.0, 0.5, 1.0, 2.0, 4.0),
              server_storage_gb: float = 1.5, seeds=3, params: Parameters | None = None,
              bytes_per_param: float | None = None, progress=None) -> ResultTable:
    """Figure 1: per-token *communication* latency vs device storage, SlimCaching vs U-shaped split inference.

    One user, one edge server with ``server_storage_gb`` of expert storage, the
    cloud (SPEC §4, Fig. 1).  SlimCaching: the device caches its most
    activated experts (default device policy), the edge server's cache is
    optimised by the proposed method (greedy for K=1); U-shaped: whole layers
    on device, then edge, then cloud (:mod:`slimlib.split_inference`).  Rows
    with method ``"none"`` (device cache only, no edge cache) are included as
    a reference.  Seeds draw the user–server distance and the user's token
    sample.

    Returns
    -------
    ResultTable
        ``panel`` = model, ``sweep`` = ``"device_storage_gb"``.
    """
    p = load_parameters() if params is None else params

    def build(model, v, seed):
        return experiment_problem(model, params=p, seed=seed, num_users=1, num_servers=1,
                                  server_storage_gb=server_storage_gb, device_storage_gb=v,
                                  bytes_per_param=bytes_per_param)

    def point(problem, seed, base, ms):
        available = _available()
        rows = []
        best = _best_proposed(problem, available)
        pl = _solve(problem, best, _method_options(best, seed, 0.05, 10.0, None))
        rows.append(dict(base, method="slimcaching", seed=seed, latency_s=average_latency(problem, pl),
                         comm_latency_s=communication_latency(problem, pl),
                         runtime_s=float(pl.info.get("runtime_s", float("nan"))), status=f"ok ({best})",
                         max_fill=_max_fill(problem, pl)))
        empty = Placement.empty(problem)
        rows.append(dict(base, method="none", seed=seed, latency_s=average_latency(problem, empty),
                         comm_latency_s=communication_latency(problem, empty), runtime_s=0.0, status="ok",
                         max_fill=0.0))
        u = _u_shaped(problem)
        if u is not None:
            rows.append(dict(base, method="u-shaped", seed=seed, latency_s=u[0], comm_latency_s=u[1],
                             runtime_s=0.0, status="ok", max_fill=u[2]))
        return rows

    return _sweep("fig1", panels=list(models), values_of=lambda _: list(device_storage_gb), build=build,
                  methods_of=lambda _: ["slimcaching", "u-shaped", "none"], seeds=seeds, progress=progress,
                  sweep="device_storage_gb", per_point=point, run_kw={},
                  meta=dict(title="Communication latency vs device storage (one user, one server, cloud)",
                            xlabel="device storage (GB)", ylabel="communication latency (ms per token)",
                            y="comm_latency_s", server_storage_gb=server_storage_gb))


#: Methods of Figure 6 (K = 1) and Figure 7 (K = 2), in legend order.  Co-activation-blind greedy is
#: left out of Figure 6: with K = 1 the marginals are the groups and it coincides with greedy.
FIG6_METHODS = ("greedy", "decomposition", "accelerated", "exact", "coordinated-popularity", "popularity", "random",
                "none")
FIG7_METHODS = ("decomposition", "accelerated", "exact", "greedy", "blind-greedy", "coordinated-popularity",
                "popularity", "random", "none")


def _storage_sweep(figure, models, storage_gb, methods, seeds, params, bytes_per_param, progress, num_users,
                   num_servers, eps, exact_time_limit_s, exact_max_size, method_options, title, exact_panels=None):
    p = load_parameters() if params is None else params

    def methods_of(pan):
        if exact_panels is None or pan in exact_panels:
            return list(methods)
        return [m for m in methods if m not in ("exact", "brute-force")]

    def build(model, v, seed):
        return experiment_problem(model, params=p, seed=seed, num_users=num_users, num_servers=num_servers,
                                  server_storage_gb=v, bytes_per_param=bytes_per_param)

    return _sweep(figure, panels=list(models), values_of=lambda _: list(storage_gb), build=build,
                  methods_of=methods_of, seeds=seeds, progress=progress, sweep="server_storage_gb",
                  run_kw=dict(eps=eps, exact_time_limit_s=exact_time_limit_s, exact_max_size=exact_max_size,
                              method_options=method_options),
                  meta=dict(title=title, xlabel="edge storage per server (GB)",
                            ylabel="average latency (ms per token)", y="latency_s",
                            exact_time_limit_s=exact_time_limit_s))


def fig6_data(*, models: Sequence[str] = ("switch-base-16", "switch-base-64", "switch-base-128"),
              storage_gb: Sequence[float] = (0.25, 0.5, 1.0, 1.5, 2.0, 3.0), methods: Sequence[str] | None = None,
              seeds=2, params: Parameters | None = None, bytes_per_param: float | None = None, progress=None,
              num_users: int | None = None, num_servers: int | None = None, eps: float = 0.05,
              exact_time_limit_s: float = 3.0, exact_max_size: int = 30_000, exact_panels: Sequence[str] | None = None,
              method_options: dict | None = None) -> ResultTable:
    """Figure 6: average latency vs edge storage per server, K = 1 (Switch-base models).

    Greedy (Algorithm 1), decomposition (Algorithm 2) and its accelerated form
    (Algorithm 3) against the baselines, and the exact optimum (MILP) where it
    is proved optimal within ``exact_time_limit_s`` (rows of larger problems
    carry ``status="skipped (too large)"`` or ``"time limit"``; ``bound_s``
    holds HiGHS' lower bound).  ``exact_panels`` restricts the MILP to some
    models (default: every model under ``exact_max_size`` variables).  Users
    and servers default to Table 1.

    Returns
    -------
    ResultTable
        ``panel`` = model, ``sweep`` = ``"server_storage_gb"``.
    """
    return _storage_sweep("fig6", models, storage_gb, _methods_for(methods, FIG6_METHODS), seeds, params,
                          bytes_per_param, progress, num_users, num_servers, eps, exact_time_limit_s, exact_max_size,
                          method_options, "Average latency vs edge storage, K = 1 (Switch-base)", exact_panels)


def fig7_data(*, models: Sequence[str] = LLAVA_MODELS, storage_gb: Sequence[float] = (0.1, 0.25, 0.5, 0.75, 1.0, 1.5),
              methods: Sequence[str] | None = None, seeds=2, params: Parameters | None = None,
              bytes_per_param: float | None = None, progress=None, num_users: int | None = None,
              num_servers: int | None = None, eps: float = 0.05, exact_time_limit_s: float = 2.0,
              exact_max_size: int = 60_000, exact_panels: Sequence[str] | None = ("moe-llava-phi2-2.7b-4e",),
              method_options: dict | None = None) -> ResultTable:
    """Figure 7: average latency vs edge storage per server, K = 2 (MoE-LLaVA models).

    Decomposition with the exact DP (Algorithm 2) and accelerated (Algorithm
    3), plain greedy, co-activation-blind greedy, popularity, coordinated
    popularity, random, no caching, and the MILP where proved optimal within
    the time limit (else its lower bound, ``bound_s``).  With co-activation
    (K = 2) the MILP is much harder than for K = 1: at the Table 1 size (10
    users, 5 servers) HiGHS rarely proves optimality within seconds, but its
    lower bound after 2 s is already within a few per cent of the best
    placement.  By default it runs on the first model only (``exact_panels``;
    ``()`` switches it off, ``None`` runs it on every model); the ``paper``
    scale runs it on every model with a 60 s limit.

    Returns
    -------
    ResultTable
        ``panel`` = model, ``sweep`` = ``"server_storage_gb"``.
    """
    return _storage_sweep("fig7", models, storage_gb, _methods_for(methods, FIG7_METHODS), seeds, params,
                          bytes_per_param, progress, num_users, num_servers, eps, exact_time_limit_s, exact_max_size,
                          method_options, "Average latency vs edge storage, K = 2 (MoE-LLaVA)", exact_panels)


SWEEP_METHODS = ("greedy", "decomposition", "accelerated", "blind-greedy", "coordinated-popularity", "popularity",
                 "random", "none")


def fig8_data(*, models: Sequence[str] = ("switch-base-64", "moe-llava-phi2-2.7b-4e"),
              num_servers: Sequence[int] = (1, 2, 3, 5, 8), methods: Sequence[str] | None = None, seeds=2,
              params: Parameters | None = None, bytes_per_param: float | None = None, progress=None,
              num_users: int | None = None, server_storage_gb: float | None = None, eps: float = 0.05,
              method_options: dict | None = None) -> ResultTable:
    """Figure 8: average latency vs number of edge servers (one panel per model).

    Every server has the Table 1 storage (or ``server_storage_gb``).  The
    network of ``N`` servers is drawn with the point's seed.

    Returns
    -------
    ResultTable
        ``panel`` = model, ``sweep`` = ``"num_servers"``.
    """
    p = load_parameters() if params is None else params

    def build(model, v, seed):
        return experiment_problem(model, params=p, seed=seed, num_users=num_users, num_servers=int(v),
                                  server_storage_gb=server_storage_gb, bytes_per_param=bytes_per_param)

    return _sweep("fig8", panels=list(models), values_of=lambda _: [int(n) for n in num_servers], build=build,
                  methods_of=lambda _: _methods_for(methods, SWEEP_METHODS), seeds=seeds, progress=progress,
                  sweep="num_servers", run_kw=dict(eps=eps, method_options=method_options),
                  meta=dict(title="Average latency vs number of edge servers", xlabel="number of edge servers",
                            ylabel="average latency (ms per token)", y="latency_s"))


def fig9_data(*, model: str = "moe-llava-phi2-2.7b-4e", bandwidth_mhz: Sequence[float] = (1, 2, 5, 10, 20, 40),
              distance_m: Sequence[float] = (50, 100, 175, 300, 500, 800), methods: Sequence[str] | None = None,
              seeds=2, params: Parameters | None = None, bytes_per_param: float | None = None, progress=None,
              num_users: int | None = None, num_servers: int | None = None, server_storage_gb: float | None = None,
              eps: float = 0.05, method_options: dict | None = None) -> ResultTable:
    """Figure 9: average latency vs wireless bandwidth per link, and vs mean user–server distance.

    Two panels: ``"bandwidth"`` (``value`` in MHz, distances as in Table 1)
    and ``"distance"`` (``value`` = mean distance ``d`` in metres, distances
    drawn uniformly in ``[d/2, 3d/2]``, bandwidth as in Table 1).

    Returns
    -------
    ResultTable
        ``panel`` in ``{"bandwidth", "distance"}``; ``sweep`` = ``"bandwidth_mhz"`` / ``"mean_distance_m"``.
    """
    p = load_parameters() if params is None else params
    values = {"bandwidth": [float(b) for b in bandwidth_mhz], "distance": [float(d) for d in distance_m]}

    def build(panel, v, seed):
        kw = dict(bandwidth_mhz=v) if panel == "bandwidth" else dict(mean_distance_m=v)
        return experiment_problem(model, params=p, seed=seed, num_users=num_users, num_servers=num_servers,
                                  server_storage_gb=server_storage_gb, bytes_per_param=bytes_per_param, **kw)

    table = _sweep("fig9", panels=["bandwidth", "distance"], values_of=lambda pan: values[pan], build=build,
                   methods_of=lambda _: _methods_for(methods, SWEEP_METHODS), seeds=seeds, progress=progress,
                   sweep="", run_kw=dict(eps=eps, method_options=method_options),
                   meta=dict(title="Average latency vs bandwidth and vs user–server distance",
                             xlabel={"bandwidth": "bandwidth per link (MHz)", "distance": "mean user–server distance (m)"},
                             ylabel="average latency (ms per token)", y="latency_s"))
    for r in table.rows:
        r["sweep"] = "bandwidth_mhz" if r["panel"] == "bandwidth" else "mean_distance_m"
    return table


FIG10_METHODS = ("greedy", "decomposition", "accelerated", "exact", "coordinated-popularity", "popularity", "random")


def fig10_data(*, experts: Sequence[int] = (8, 16, 32, 64, 128), servers: Sequence[int] = (1, 2, 5, 10),
               users: Sequence[int] = (2, 5, 10, 20), base_experts: int = 16, methods: Sequence[str] | None = None,
               seeds=1, params: Parameters | None = None, progress=None, eps: float = 0.05,
               exact_time_limit_s: float = 3.0, exact_max_size: int = 30_000, server_storage_gb: float | None = None,
               method_options: dict | None = None) -> ResultTable:
    """Figure 10: run time vs problem size for every method, including the MILP (log scale).

    Three panels on Switch-base models (K = 1, where every method applies):
    ``"experts"`` (experts per layer ``E`` = the Switch-base-``E`` card, Table 1
    users and servers), ``"servers"`` (``N``, with ``E = base_experts``) and
    ``"users"`` (``M``, with ``E = base_experts``).  The MILP gets
    ``exact_time_limit_s``; its rows above ``exact_max_size`` variables are
    marked ``"skipped (too large)"``.

    Returns
    -------
    ResultTable
        ``panel`` in ``{"experts", "servers", "users"}``; ``runtime_s`` is the quantity plotted.
    """
    p = load_parameters() if params is None else params
    values = {"experts": [int(e) for e in experts], "servers": [int(n) for n in servers],
              "users": [int(m) for m in users]}

    def build(panel, v, seed):
        E = v if panel == "experts" else base_experts
        kw = dict(num_servers=v) if panel == "servers" else dict(num_users=v) if panel == "users" else {}
        return experiment_problem(f"switch-base-{E}", params=p, seed=seed, server_storage_gb=server_storage_gb, **kw)

    table = _sweep("fig10", panels=["experts", "servers", "users"], values_of=lambda pan: values[pan], build=build,
                   methods_of=lambda _: _methods_for(methods, FIG10_METHODS), seeds=seeds, progress=progress,
                   sweep="", run_kw=dict(eps=eps, exact_time_limit_s=exact_time_limit_s, exact_max_size=exact_max_size,
                                         method_options=method_options),
                   meta=dict(title="Run time vs problem size (Switch-base, K = 1)",
                             xlabel={"experts": "experts per layer E", "servers": "edge servers N",
                                     "users": "users M"},
                             ylabel="run time (s)", y="runtime_s", exact_time_limit_s=exact_time_limit_s))
    names = {"experts": "num_experts", "servers": "num_servers", "users": "num_users"}
    for r in table.rows:
        r["sweep"] = names[r["panel"]]
    return table


def fig11_data(*, models: Sequence[str] = LLAVA_MODELS, eps: Sequence[float] = (0.5, 0.3, 0.2, 0.1, 0.05, 0.02, 0.01),
               seeds=2, dp_unit_bytes: float | None = 2 ** 16, repeat: int = 3, params: Parameters | None = None,
               bytes_per_param: float | None = None, progress=None, num_users: int | None = None,
               num_servers: int | None = None, server_storage_gb: float | None = None) -> ResultTable:
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
    itself have ``method="decomposition"`` and ``value = NaN``.

    Returns
    -------
    ResultTable
        ``panel`` = model, ``sweep`` = ``"eps"``.
    """
    from .studies import stage_comparison
    p = load_parameters() if params is None else params
    eps = [V.number("eps[]", e, positive=True, maximum=0.999) for e in eps]
    seeds_l = _seeds(seeds)
    rows, sources = [], set()
    with _progress(len(seeds_l) * len(models), "fig11", progress) as bar:
        for seed in seeds_l:
            for model in models:
                problem, src = experiment_problem(model, params=p, seed=seed, num_users=num_users,
                                                  num_servers=num_servers, server_storage_gb=server_storage_gb,
                                                  bytes_per_param=bytes_per_param)
                sources.add(src)
                mod = problem.models[0]
                base = dict(figure="fig11", panel=model, sweep="eps", model=mod.name, top_k=mod.top_k,
                            bytes_per_param=mod.bytes_per_param, stats_source=src, seed=seed)
                stages = stage_comparison(problem, eps, unit=dp_unit_bytes, repeat=repeat)
                dp_st = [r for r in stages if r["combine"] == "dp"]
                v_dp = sum(r["value"] for r in dp_st)
                t0 = average_latency(problem, Placement.empty(problem))
                full = _solve(problem, "decomposition", {"unit": dp_unit_bytes})
                lat_dp = average_latency(problem, full)
                rows.append(dict(base, method="decomposition", value=float("nan"), latency_s=lat_dp,
                                 comm_latency_s=communication_latency(problem, full),
                                 runtime_s=sum(r["time_s"] for r in dp_st), status="ok", max_fill=_max_fill(problem, full),
                                 fraction=1.0, min_stage_ratio=1.0, fraction_end_to_end=1.0,
                                 solve_runtime_s=float(full.info.get("runtime_s", float("nan"))),
                                 dp_units=int(max(r["grid"] for r in dp_st))))
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
                bar.update(1)
    return ResultTable(rows, dict(figure="fig11", title="Accelerated decomposition vs eps", xlabel="eps",
                                  seeds=seeds_l, stats_source=sorted(sources), dp_unit_bytes=dp_unit_bytes,
                                  missing_methods=[]))


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
        _POINT_CACHE[key] = ResultTable(rows, dict(figure="point", stats_source=[src], num_servers=problem.num_servers,
                                                   num_users=problem.num_users,
                                                   bandwidth_mhz=(bandwidth_mhz or (params or load_parameters()).bandwidth_hz / MHZ)))
    return _POINT_CACHE[key]


_POINT_CACHE: dict = {}


# ---------------------------------------------------------------------------
# Table 1 and readings
# ---------------------------------------------------------------------------
def table1(params: Parameters | None = None, *, precision: bool = True) -> list[dict]:
    """Rows of Table 1 (simulation parameters) from ``data/`` — the same files the code reads.

    Parameters
    ----------
    params : Parameters, optional
        Default: :func:`slimlib.load_parameters`.
    precision : bool
        Append the storage precision of each model family from ``data/models``
        (bytes per weight and per activation).

    Returns
    -------
    list of dict
        ``name``, ``label``, ``value``, ``unit``, ``display``, ``source`` (as :meth:`Parameters.table`).
    """
    p = load_parameters() if params is None else params
    rows = p.table()
    if precision:
        for fam, name in (("Switch-base", "switch-base-8"), ("MoE-LLaVA", LLAVA_MODELS[0])):
            m = load_model_card(name)
            kind = {4: "fp32", 2: "fp16", 1: "int8"}.get(m.bytes_per_param, "")
            rows.append({"name": f"bytes_per_param[{fam}]", "label": f"Weight precision, {fam}",
                         "value": m.bytes_per_param, "unit": "B/param",
                         "display": f"{m.bytes_per_param:g} B per parameter ({kind})", "source": "model card"})
        m = load_model_card("switch-base-8")
        rows.append({"name": "act_bytes", "label": "Activation precision (hidden state on the air)",
                     "value": m.act_bytes, "unit": "B", "display": f"{m.act_bytes:g} B per element",
                     "source": "model card"})
    return rows


def table1_markdown(rows: Sequence[dict] | None = None) -> str:
    """Table 1 as a Markdown table (parameter, value, slimlib name, source)."""
    from .reporting import markdown_table
    rows = table1() if rows is None else rows
    return markdown_table(rows, ["label", "display", "name", "source"], ["Parameter", "Value", "slimlib name", "Source"])


def dominance(table: ResultTable, proposed: Sequence[str] | None = None, baselines: Sequence[str] | None = None,
              *, y: str | None = None, rtol: float = 1e-9) -> list[dict]:
    """Points where a proposed method is *worse* than a baseline (seed means).

    Returns
    -------
    list of dict
        ``panel``, ``value``, ``method``, ``baseline``, ``latency``,
        ``baseline_latency`` (seconds) and ``excess`` (relative) for every
        violation; empty when every proposed method is at or below every
        baseline at every point.
    """
    y = y or table.meta.get("y", "latency_s")
    ms = table.unique("method")
    proposed = [m for m in (PROPOSED if proposed is None else proposed) if m in ms]
    baselines = [m for m in (BASELINES if baselines is None else baselines) if m in ms]
    mean = {(s["panel"], s["value"], s["method"]): s["mean"] for s in table.summary(y)}
    out = []
    for (pan, v, m), lat in mean.items():
        if m not in proposed:
            continue
        for b in baselines:
            lb = mean.get((pan, v, b))
            if lb is not None and lat > lb * (1 + rtol) + 1e-15:
                out.append(dict(panel=pan, value=v, method=m, baseline=b, latency=lat, baseline_latency=lb,
                                excess=lat / lb - 1))
    return out


def gains(table: ResultTable, method: str, against: str, *, y: str | None = None) -> dict:
    """Relative latency reduction of ``method`` against ``against`` over all points (seed means).

    Returns
    -------
    dict
        ``mean``, ``min``, ``max`` of ``1 - T(method)/T(against)`` over the
        (panel, value) points, and ``at_max`` = (panel, value) where it is largest.
    """
    y = y or table.meta.get("y", "latency_s")
    mean = {(s["panel"], s["value"], s["method"]): s["mean"] for s in table.summary(y)}
    red = {}
    for (pan, v, m), lat in mean.items():
        if m == method and (pan, v, against) in mean and mean[(pan, v, against)] > 0:
            red[(pan, v)] = 1 - lat / mean[(pan, v, against)]
    if not red:
        return dict(mean=float("nan"), min=float("nan"), max=float("nan"), at_max=None)
    vals = np.array(list(red.values()))
    return dict(mean=float(vals.mean()), min=float(vals.min()), max=float(vals.max()),
                at_max=max(red, key=red.get))


def storage_point_latency(model: str, storage_gb: float, seeds, method: str, *, params: Parameters | None = None,
                          **options) -> float:
    """Mean latency (s) of ``method`` (with solver ``options``) at one point of Figure 6/7, over ``seeds``.

    The problems are those of :func:`fig6_data`/:func:`fig7_data` with default sizes, so a point of
    their tables can be re-solved with other options (e.g. ``passes=3`` for the decomposition).
    """
    lats = []
    for seed in _seeds(seeds):
        problem, _ = experiment_problem(model, params=params, seed=seed, server_storage_gb=storage_gb)
        lats.append(average_latency(problem, _solve(problem, method, dict(options))))
    return float(np.mean(lats))


def passes_sentence(table: ResultTable, baselines: Sequence[str], *, method: str = "decomposition",
                    passes: int = 3) -> str:
    """A sentence on the worst point where ``method`` is above a baseline, re-solved with ``passes`` passes.

    Empty string when ``method`` is at or below every baseline everywhere.
    """
    from .plotting.experiments import _label
    bad = dominance(table, [method], baselines)
    if not bad:
        return ""
    w = max(bad, key=lambda b: b["excess"])
    again = storage_point_latency(w["panel"], w["value"], table.meta["seeds"], method, passes=passes)
    verb = "brings it to" if again < w["latency"] * (1 - 1e-9) else "leaves it at"
    return (f"At the worst point ({_label(w['panel'])}, {w['value']:g} GB) {short_name(method)} needs "
            f"{w['latency'] * 1e3:.2f} ms against {short_name(w['baseline'])}'s {w['baseline_latency'] * 1e3:.2f} ms; "
            f"revisiting every server {passes - 1} more times (option passes={passes}, block coordinate ascent) "
            f"{verb} {again * 1e3:.2f} ms.")


def bound_gaps(table: ResultTable, method: str) -> dict:
    """How far ``method`` is from the MILP: its latency over the MILP's optimum or lower bound, per instance.

    For every MILP row with a proved optimum (its latency) or a finite lower
    bound ``bound_s``, the ratio ``T(method) / bound - 1`` on the same
    (panel, value, seed) is an upper bound on ``method``'s excess over the
    optimum.

    Returns
    -------
    dict
        ``n`` (instances), ``n_optimal`` (MILP proved optimal), ``max``,
        ``mean`` (relative excess, NaN when ``n = 0``), ``panels`` (labels of the
        models where the MILP ran, joined by commas).
    """
    from .plotting.experiments import _label
    gaps, nopt, panels = [], 0, []
    for r in table.where(method="exact"):
        ref = r["latency_s"] if r["status"] == "optimal" else r.get("bound_s")
        if ref is None or not math.isfinite(ref) or ref <= 0:
            continue
        q = table.where(panel=r["panel"], value=r["value"], seed=r["seed"], method=method)
        if not len(q):
            continue
        gaps.append(q[0]["latency_s"] / ref - 1)
        nopt += r["status"] == "optimal"
        if _label(r["panel"]) not in panels:
            panels.append(_label(r["panel"]))
    g = np.array(gaps)
    return dict(n=len(gaps), n_optimal=nopt, max=float(g.max()) if g.size else float("nan"),
                mean=float(g.mean()) if g.size else float("nan"), panels=", ".join(panels))


#: Short names of the methods for sentences in the chapter.
SHORT_NAMES = {"greedy": "greedy", "decomposition": "the decomposition", "accelerated": "the accelerated decomposition",
               "exact": "the MILP", "blind-greedy": "co-activation-blind greedy", "popularity": "popularity",
               "coordinated-popularity": "coordinated popularity", "random": "random caching",
               "none": "no edge caching", "u-shaped": "U-shaped split inference", "slimcaching": "SlimCaching"}


def short_name(method: str) -> str:
    """Name of a method inside a sentence (``"the decomposition"``, ``"coordinated popularity"``, ...)."""
    return SHORT_NAMES.get(method, method)


def dominance_sentence(table: ResultTable, proposed: Sequence[str], baselines: Sequence[str],
                       unit: str = "GB") -> str:
    """One clause per proposed method: at or below every baseline everywhere, or where and by how much not.

    Uses :func:`dominance` (means over the seeds).
    """
    from .plotting.experiments import _label
    npts = len({(r["panel"], r["value"]) for r in table})
    parts = []
    for m in proposed:
        if m not in table.unique("method"):
            continue
        bad = dominance(table, [m], baselines)
        if not bad:
            parts.append(f"{short_name(m)} is at or below every baseline at all {npts} points")
            continue
        pts = {(b["panel"], b["value"]) for b in bad}
        w = max(bad, key=lambda b: b["excess"])
        parts.append(f"{short_name(m)} is above some baseline at {len(pts)} of the {npts} points, by at most "
                     f"{w['excess']:.2%} (above {short_name(w['baseline'])}, {_label(w['panel'])} at "
                     f"{w['value']:g} {unit})")
    return "; ".join(parts)


def _compare_phrase(red: float, other: str) -> str:
    if red >= 0.005:
        return f"{red:.0%} less than the best baseline there, {other}"
    if red >= -0.005:
        return (f"practically the same as the best baseline there, {other} "
                f"({abs(red):.2%} {'lower' if red >= 0 else 'higher'})")
    return f"{-red:.1%} more than the best baseline there, {other}"


def storage_reading(table: ResultTable, proposed: Sequence[str], baselines: Sequence[str], lead: str,
                    at_gb: float) -> dict:
    """The numbers and clauses the chapter reads off a storage sweep (Figures 6 and 7).

    Parameters
    ----------
    table : ResultTable
        Output of :func:`fig6_data` or :func:`fig7_data`.
    proposed, baselines : sequence of str
        Method names for the dominance check (:func:`dominance_sentence`).
    lead : str
        The method quoted (e.g. ``"greedy"``).
    at_gb : float
        The storage point quoted (must be in the sweep).

    Returns
    -------
    dict
        ``dom`` (clauses, see :func:`dominance_sentence`), ``violations``
        (number of (point, method, baseline) violations), ``big`` (label of the
        last panel), ``lat``/``none`` (ms per token of ``lead``/no caching
        there), ``red_none``, ``vs_best`` (clause comparing ``lead`` with the
        best baseline there), ``adv``/``adv_at`` (largest relative advantage of
        ``lead`` over the best baseline at any point, and where), ``n_opt``/``gap_opt``
        (instances with a proved MILP optimum and ``lead``'s largest relative
        excess over it).
    """
    from .plotting.experiments import _label
    methods = table.unique("method")
    base = [b for b in baselines if b != "none" and b in methods]
    big = table.unique("panel")[-1]

    def best_baseline(pan, v):
        means = {b: table.mean(panel=pan, value=v, method=b) for b in base}
        b = min(means, key=means.get)
        return b, means[b]

    b, lb = best_baseline(big, at_gb)
    lat = table.mean(panel=big, value=at_gb, method=lead)
    none = table.mean(panel=big, value=at_gb, method="none")
    adv, adv_at = -np.inf, None
    for pan in table.unique("panel"):
        for v in table.where(panel=pan).unique("value"):
            bb, lbb = best_baseline(pan, v)
            a = 1 - table.mean(panel=pan, value=v, method=lead) / lbb
            if a > adv:
                adv, adv_at = a, f"{_label(pan)} at {v:g} GB, against {short_name(bb)}"
    ratios = []
    for r in table.where(method="exact", status="optimal"):
        q = table.where(panel=r["panel"], value=r["value"], seed=r["seed"], method=lead)
        if len(q):
            ratios.append(q[0]["latency_s"] / r["latency_s"] - 1)
    return dict(dom=dominance_sentence(table, proposed, baselines), violations=len(dominance(table, proposed, baselines)),
                big=_label(big), lat=lat * 1e3, none=none * 1e3, red_none=1 - lat / none,
                vs_best=_compare_phrase(1 - lat / lb, short_name(b)), adv=adv, adv_at=adv_at,
                n_opt=len(ratios), gap_opt=max(ratios) if ratios else float("nan"))


def residual_reading(table: ResultTable, proposed: Sequence[str], baselines: Sequence[str]) -> str:
    """Explain, in sentences, every storage point where a proposed method is above a baseline.

    Used by the chapter *Experiments* to read Figures 6 and 7: after
    :func:`storage_reading` has said *whether* the decomposition is ever above
    a baseline, this says *why* at each such point.  The points come from
    :func:`dominance` (means over the seeds; for each point the baseline with
    the largest relative excess).  Each point is re-solved on the same
    problems and seeds as the table (:func:`experiment_problem` with the
    table's ``meta["seeds"]``, every solver with its default options) and, on
    the seed where the proposed method loses most, its placement is compared
    layer by layer with the baseline's
    (:func:`slimlib.studies.compare_placements`).  The sentence
    then says either that both cache the same experts on other servers (the
    stages' order), or which layer the last stage could not complete, what it
    costs, and the mean latency after a second pass over the servers
    (``passes=2``, :func:`storage_point_latency`).  The explanation reads the
    re-solved placements, so it is meaningful for tables made by the data
    functions with the same solvers; the head of each sentence quotes the
    table.

    Parameters
    ----------
    table : ResultTable
        Output of :func:`fig6_data` or :func:`fig7_data`: panels are model
        card names, values the edge storage per server in GB, and
        ``meta["seeds"]`` the seeds.
    proposed, baselines : sequence of str
        Method names, as for :func:`dominance`.

    Returns
    -------
    str
        One sentence (two for a layer the stages could not complete) per
        point, ordered by increasing relative excess and joined by spaces;
        ``""`` when no proposed method is above any baseline at any point.
        Latencies are printed in ms per token.
    """
    from .plotting.experiments import _label
    from .solvers import solve
    from .studies import compare_placements
    worst = {}
    for b in dominance(table, proposed, baselines):
        key = (b["panel"], b["value"])
        if key not in worst or b["excess"] > worst[key]["excess"]:
            worst[key] = b
    parts = []
    for (pan, v), b in sorted(worst.items(), key=lambda kv: kv[1]["excess"]):
        cases = []
        for seed in table.meta["seeds"]:
            p, _ = experiment_problem(pan, seed=seed, server_storage_gb=v)
            pl = solve(p, b["method"])
            d = compare_placements(p, pl, solve(p, b["baseline"]))
            cases.append((d["latency_a"] - d["latency_b"], seed, p, pl, d))
        _, seed, p, pl, d = max(cases, key=lambda c: c[0])
        name, base = short_name(b["method"]), short_name(b["baseline"])
        diff = (b["latency"] - b["baseline_latency"]) * 1e3
        if b["excess"] < 1e-3:
            head = (f"At {_label(pan)}, {v:g} GB, {name} needs {diff:.1e} ms ({b['excess']:.0e} relative) "
                    f"more than {base}")
        else:
            head = (f"At {_label(pan)}, {v:g} GB, {name} needs {b['latency'] * 1e3:.2f} ms against {base}'s "
                    f"{b['baseline_latency'] * 1e3:.2f} ms ({b['excess']:.1%} more)")
        if d["only_a"] == d["only_b"] == 0:
            k = int(sum(x.sum() for x in d["edge_a"]))
            parts.append(f"{head}: both cache the same {k} experts at the edge and {d['moved']} of them sit on other "
                         f"servers, because a stage ranks the uncached experts by what they save against the cloud, "
                         f"not by which server will serve them best once the later stages are done.")
        else:
            u, l = d["worst"]
            slots = int(p.network.server_capacity_bytes.min() // p.models[u].expert_bytes)
            before = int(pl.server[u][pl.info["order"][:-1], l].any(axis=0).sum())
            again = storage_point_latency(pan, v, table.meta["seeds"], b["method"], passes=2)
            parts.append(f"{head}: with seed {seed} every {slots}-expert stage completes the groups that pay off "
                         f"within its own storage, so layer {l} still had {before} of its {p.models[u].num_experts} "
                         f"experts at the edge before the last stage and {int(d['edge_a'][u][l])} after it "
                         f"({base}: {int(d['edge_b'][u][l])}); that layer alone costs "
                         f"{d['layer_a'][u][l] * 1e3:.2f} ms per token against {d['layer_b'][u][l] * 1e3:.2f} ms, more "
                         f"than the {-d['rest_delta'] * 1e3:.2f} ms the stages save on all other layers together. "
                         f"Visiting every server once more (option passes=2, block coordinate ascent) brings the "
                         f"mean over the seeds to {again * 1e3:.2f} ms.")
    return " ".join(parts)


# ---------------------------------------------------------------------------
# Registry of figures and the command line
# ---------------------------------------------------------------------------
#: Figure name -> (data function, name of the draw function in slimlib.plotting.experiments).
FIGURES = {
    "fig1": (fig1_data, "draw_fig1"),
    "fig6": (fig6_data, "draw_fig6"),
    "fig7": (fig7_data, "draw_fig7"),
    "fig8": (fig8_data, "draw_fig8"),
    "fig9": (fig9_data, "draw_fig9"),
    "fig10": (fig10_data, "draw_fig10"),
    "fig11": (fig11_data, "draw_fig11"),
}

#: Keyword arguments of each data function per scale.  ``book`` = the defaults (what the book builds);
#: ``paper`` = full-size sweeps (every model card, finer grids, more seeds, longer MILP limits).
SCALES = {
    "book": {name: {} for name in FIGURES},
    "paper": {
        "fig1": dict(device_storage_gb=(0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0), seeds=5),
        "fig6": dict(models=SWITCH_MODELS, storage_gb=(0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0), seeds=5,
                     exact_time_limit_s=60.0, exact_max_size=400_000),
        "fig7": dict(storage_gb=(0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.25, 1.5), seeds=5, exact_time_limit_s=60.0,
                     exact_max_size=400_000, exact_panels=None),
        "fig8": dict(models=("switch-base-128", "moe-llava-phi2-2.7b-4e"), num_servers=(1, 2, 3, 4, 5, 6, 8, 10),
                     seeds=5),
        "fig9": dict(bandwidth_mhz=(1, 2, 5, 10, 20, 40, 80), distance_m=(50, 100, 150, 200, 300, 400, 600, 800),
                     seeds=5),
        "fig10": dict(experts=(8, 16, 32, 64, 128, 256), servers=(1, 2, 5, 10, 20), users=(2, 5, 10, 20, 50),
                      seeds=3, exact_time_limit_s=120.0, exact_max_size=400_000),
        "fig11": dict(eps=(0.5, 0.3, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002), seeds=5),
    },
}


def _draw(name: str):
    from .plotting import experiments as pe
    return getattr(pe, FIGURES[name][1])


#: Statistics of Figure 2 (as in chapter *Mixture of experts*, fig-expert-heatmap): the synthetic
#: profile of MoE-LLaVA-Phi2-2.7B-4e with Top-2 routing (``data/stats``, seed 0).
FIG2_STATS = "moe-llava-phi2-2.7b-4e-synthetic"
#: Layer of Figure 2's co-activation panel (outlined in its frequency panel).
FIG2_LAYER = 8


def _fig2():
    from .plotting import moe
    stats = load_stats(FIG2_STATS)
    return moe.draw_expert_heatmap(stats, FIG2_LAYER), moe.expert_heatmap_data(stats, FIG2_LAYER)


def _fig3():
    from .plotting import moe
    return moe.draw_moe_layer(num_experts=4, top_k=2), None


def _fig4():
    from .plotting import schematics
    return schematics.draw_system(), None


def _fig5():
    from .plotting import schematics
    from .theory import routing_cases
    cases = routing_cases()
    return schematics.draw_routing_cases(cases), schematics.routing_cases_data(cases)


#: Figures drawn from fixed inputs rather than sweeps (chapters *Mixture of experts* and *Problem and
#: structure*): name -> function returning ``(figure, CSV rows or None)``.  ``--seeds`` and ``--scale``
#: do not change them; the schematics (3, 4) have no data, hence no CSV.
FIXED_FIGURES = {"fig2": _fig2, "fig3": _fig3, "fig4": _fig4, "fig5": _fig5}


def figure_names() -> list[str]:
    """Every name ``python -m slimlib figures --only`` accepts, in the paper's order (``fig1``..``fig11``, ``table1``)."""
    figs = sorted(set(FIGURES) | set(FIXED_FIGURES), key=lambda n: int(n[3:]))
    return figs + ["table1"]


def _write_rows(rows: Sequence[dict], path) -> None:
    """CSV of dict rows (columns in first-seen order, floats with ``repr``, ``None`` as empty)."""
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in rows:
        w.writerow([_cell(r.get(c)) for c in cols])
    Path(path).write_text(buf.getvalue(), encoding="utf-8")


def main_figures(args) -> int:
    """``python -m slimlib figures --out DIR [--only fig2,fig6] [--seeds N] [--scale book|paper]``.

    Writes ``<name>.png`` and ``<name>.svg`` for every figure of the paper
    (``fig1``..``fig11``, :func:`figure_names`), ``<name>.csv`` with its
    numbers (every figure but the schematics ``fig3`` and ``fig4``), and
    ``table1.csv`` / ``table1.md`` into ``DIR``, with a progress bar per
    sweep.  ``--seeds`` and ``--scale`` apply to the sweeps (Figures 1,
    6–11); Figures 2–5 (:data:`FIXED_FIGURES`) have fixed inputs.  Unknown
    figure names or a bad seed count raise ValueError (the CLI turns it into
    one message and exit status 2).
    """
    import matplotlib.pyplot as plt
    from .plotting import savefig

    known = figure_names()
    if args.only:
        names = [s.strip() for s in str(args.only).split(",") if s.strip()]
        for n in names:
            if n not in known:
                raise V.fail("--only", n, f"unknown figure; known: {','.join(known)}")
    else:
        names = known
    seeds = None
    if getattr(args, "seeds", None) is not None:
        seeds = V.number("--seeds", args.seeds, integer=True, positive=True)
    scale = getattr(args, "scale", "book") or "book"
    if scale not in SCALES:
        raise V.fail("--scale", scale, f"must be one of {sorted(SCALES)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        if name == "table1":
            rows = table1()
            buf = io.StringIO()
            w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
            w.writeheader()
            w.writerows(rows)
            (out / "table1.csv").write_text(buf.getvalue(), encoding="utf-8")
            (out / "table1.md").write_text(table1_markdown(rows) + "\n", encoding="utf-8")
            print(f"table1: {out / 'table1.csv'}, {out / 'table1.md'}", file=sys.stderr)
            continue
        if name in FIXED_FIGURES:
            fig, rows = FIXED_FIGURES[name]()
            for ext in ("png", "svg"):
                savefig(fig, out / f"{name}.{ext}")
            plt.close(fig)
            exts = "png,svg"
            if rows:
                _write_rows(rows, out / f"{name}.csv")
                exts += ",csv"
            what = f"{len(rows)} rows" if rows else "schematic, no data"
            print(f"{name}: {what} -> {out / name}.{{{exts}}}", file=sys.stderr)
            continue
        data_fn, _ = FIGURES[name]
        kw = dict(SCALES[scale][name])
        if seeds is not None:
            kw["seeds"] = seeds
        table = data_fn(progress=True, **kw)
        table.meta["scale"] = scale
        fig = _draw(name)(table)
        for ext in ("png", "svg"):
            savefig(fig, out / f"{name}.{ext}")
        plt.close(fig)
        table.to_csv(out / f"{name}.csv")
        miss = table.meta.get("missing_methods")
        note = f" (methods not available: {', '.join(miss)})" if miss else ""
        print(f"{name}: {len(table)} rows -> {out / name}.{{png,svg,csv}}{note}", file=sys.stderr)
    return 0
