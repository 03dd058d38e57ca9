"""``python -m slimlib figures``: every figure of the paper as PNG, SVG and CSV (chapter *Using slimlib*).

The sweeps (Figures 1, 6–11) run through one :class:`slimlib.sweep.Runner`:
``--jobs N`` worker processes on this machine (default: every core),
``--scheduler ADDRESS`` an existing Dask cluster instead, each finished point
cached under ``--out``/``cache`` (a re-run skips finished points; ``--fresh``
recomputes them), ``--exact`` choosing the points that run the MILP, and
``--set FIG.KEY=VALUE`` overriding one keyword of a data function (e.g. a
shorter grid).  At the end it prints the wall time, the number of points and
the speed-up over a serial run.  Figures 2–5 (:data:`FIXED_FIGURES`) are drawn
from fixed inputs.

This is the only module of :mod:`slimlib.experiments` that draws (it imports
:mod:`slimlib.plotting` inside its functions); ``add_parser``/``run`` plug it
into :mod:`slimlib.cli`.
"""
from __future__ import annotations

import argparse
import csv
import inspect
import io
import json
import sys
import time
from pathlib import Path

from .. import _validate as V
from ..io import load_stats
from ..sweep import Runner, default_jobs, write_atomic
from .methods import EXACT_MODES
from .readings import table1, table1_markdown
from .registry import FIGURES, SCALES
from .table import write_rows

__all__ = ["FIXED_FIGURES", "FIG2_STATS", "FIG2_LAYER", "figure_names", "add_parser", "run"]


def _draw(name: str):
    from ..plotting import experiments as pe
    return getattr(pe, FIGURES[name][1])


#: Statistics of Figure 2 (as in chapter *Mixture of experts*, fig-expert-heatmap): the synthetic
#: profile of MoE-LLaVA-Phi2-2.7B-4e with Top-2 routing (``data/stats``, seed 0).
FIG2_STATS = "moe-llava-phi2-2.7b-4e-synthetic"
#: Layer of Figure 2's co-activation panel (outlined in its frequency panel).
FIG2_LAYER = 8


def _fig2():
    from ..plotting import moe
    stats = load_stats(FIG2_STATS)
    return moe.draw_expert_heatmap(stats, FIG2_LAYER), moe.expert_heatmap_data(stats, FIG2_LAYER)


def _fig3():
    from ..plotting import moe
    return moe.draw_moe_layer(num_experts=4, top_k=2), None


def _fig4():
    from ..plotting import schematics
    return schematics.draw_system(), None


def _fig5():
    from ..plotting import schematics
    from ..theory_study import routing_cases
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


#: Keywords of the data functions that ``--set`` may not change (the CLI sets them).
_RESERVED = ("progress", "runner")


def add_parser(sub) -> argparse.ArgumentParser:
    """Add the ``figures`` subcommand to ``sub`` (an ``argparse`` subparsers object) and return its parser."""
    f = sub.add_parser("figures", help="regenerate the book's figures as PNG, SVG and CSV",
                       description="Regenerate every figure of the paper as PNG, SVG and CSV. The sweeps run in "
                       "parallel and resume where an interrupted run stopped (cache under OUT/cache).")
    f.add_argument("--out", required=True, help="output folder")
    f.add_argument("--only", default=None, help="comma-separated figure names, e.g. fig6,fig7")
    f.add_argument("--seeds", type=int, default=None, help="number of seeds per point")
    f.add_argument("--scale", choices=["book", "paper"], default="book",
                   help="book: the sizes built in the book; paper: full-size sweeps (slow)")
    f.add_argument("--jobs", type=int, default=None, metavar="N",
                   help=f"worker processes on this machine (default: all cores, here {default_jobs()}); "
                   "1 runs in this process")
    f.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run the points on an existing Dask cluster, e.g. tcp://10.0.0.5:8786 "
                   "(needs slimlib[cluster]; --jobs is then ignored)")
    f.add_argument("--exact", choices=list(EXACT_MODES), default="small",
                   help="points that run the MILP: all, small (under each figure's size limit; default) or none")
    f.add_argument("--fresh", action="store_true", help="recompute every point, ignoring the cache under OUT/cache")
    f.add_argument("--set", action="append", default=[], metavar="FIG.KEY=VALUE", dest="overrides",
                   help="override one keyword of a figure's data function, e.g. --set 'fig6.storage_gb=[0.5,1]' "
                   "(VALUE parsed as JSON when possible; repeatable)")
    return f


def _overrides(items) -> dict:
    """``["fig6.seeds=1", ...]`` -> ``{"fig6": {"seeds": 1}}``, every name checked against the data function."""
    out: dict = {}
    for text in items or ():
        if "=" not in text or "." not in text.split("=", 1)[0]:
            raise V.fail("--set", text, "expected FIG.KEY=VALUE, e.g. fig6.seeds=1")
        lhs, value = text.split("=", 1)
        fig, key = lhs.split(".", 1)
        if fig not in FIGURES:
            raise V.fail("--set", text, f"unknown sweep figure {fig!r}; known: {','.join(FIGURES)}")
        names = [n for n in inspect.signature(FIGURES[fig][0]).parameters if n not in _RESERVED]
        if key not in names:
            raise V.fail("--set", text, f"{fig} has no keyword {key!r}; known: {','.join(names)}")
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            pass
        out.setdefault(fig, {})[key] = value
    return out


def _runner(args) -> Runner:
    jobs = getattr(args, "jobs", None)
    if jobs is not None:
        jobs = V.number("--jobs", jobs, integer=True, positive=True)
    scheduler = getattr(args, "scheduler", None)
    runner = Runner(jobs, scheduler=scheduler, fresh=bool(getattr(args, "fresh", False)), progress=None)
    try:
        runner.connect()
    except ImportError:
        raise V.fail("--scheduler", scheduler, "needs dask.distributed: pip install \"slimlib[cluster]\"") from None
    except ValueError as exc:
        raise V.fail("--scheduler", scheduler, str(exc).split(" (got ")[0].removeprefix("scheduler: ")) from None
    return runner


def run(args) -> int:
    """``python -m slimlib figures --out DIR [--only ...] [--seeds N] [--scale book|paper] [--jobs N]
    [--scheduler ADDRESS] [--exact all|small|none] [--fresh] [--set FIG.KEY=VALUE]``.

    Writes ``<name>.png`` and ``<name>.svg`` for every figure of the paper
    (``fig1``..``fig11``, :func:`figure_names`), ``<name>.csv`` with its
    numbers (every figure but the schematics ``fig3`` and ``fig4``), and
    ``table1.csv`` / ``table1.md`` into ``DIR`` (each file written
    atomically), with a progress bar per sweep.  ``--seeds``, ``--scale``,
    ``--exact`` and ``--set`` apply to the sweeps (Figures 1, 6–11), whose
    points are cached in ``DIR/cache/<figure>/`` (one JSON file per point);
    Figures 2–5 (:data:`FIXED_FIGURES`) have fixed inputs.  Every argument
    is checked before any work starts: a bad one raises ValueError naming it
    (the CLI turns it into one message and exit status 2).  Ends with one
    line on standard error: wall time, points, speed-up over serial.
    """
    import matplotlib.pyplot as plt
    from ..plotting import savefig

    t_start = time.perf_counter()
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
    exact = getattr(args, "exact", "small") or "small"
    if exact not in EXACT_MODES:
        raise V.fail("--exact", exact, f"must be one of {', '.join(EXACT_MODES)}")
    overrides = _overrides(getattr(args, "overrides", None))
    out = Path(args.out)
    runner = _runner(args) if any(n in FIGURES for n in names) else None
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name in names:
            if name == "table1":
                rows = table1()
                buf = io.StringIO()
                w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
                w.writeheader()
                w.writerows(rows)
                write_atomic(out / "table1.csv", buf.getvalue())
                write_atomic(out / "table1.md", table1_markdown(rows) + "\n")
                print(f"table1: {out / 'table1.csv'}, {out / 'table1.md'}", file=sys.stderr)
                continue
            if name in FIXED_FIGURES:
                fig, rows = FIXED_FIGURES[name]()
                for ext in ("png", "svg"):
                    savefig(fig, out / f"{name}.{ext}")
                plt.close(fig)
                exts = "png,svg"
                if rows:
                    write_rows(rows, out / f"{name}.csv")
                    exts += ",csv"
                what = f"{len(rows)} rows" if rows else "schematic, no data"
                print(f"{name}: {what} -> {out / name}.{{{exts}}}", file=sys.stderr)
                continue
            data_fn, _ = FIGURES[name]
            kw = dict(SCALES[scale][name])
            if seeds is not None:
                kw["seeds"] = seeds
            if "exact" in inspect.signature(data_fn).parameters:
                kw["exact"] = exact
            kw.update(overrides.get(name, {}))
            runner.cache_dir = out / "cache" / name
            table = data_fn(runner=runner, **kw)
            table.meta["scale"] = scale
            fig = _draw(name)(table)
            for ext in ("png", "svg"):
                savefig(fig, out / f"{name}.{ext}")
            plt.close(fig)
            table.to_csv(out / f"{name}.csv")
            miss = table.meta.get("missing_methods")
            note = f" (methods not available: {', '.join(miss)})" if miss else ""
            print(f"{name}: {len(table)} rows -> {out / name}.{{png,svg,csv}}{note}", file=sys.stderr)
    finally:
        if runner is not None:
            runner.close()
    wall = time.perf_counter() - t_start
    if runner is not None:
        print(f"figures: {wall:.1f} s wall time in total; sweeps: {runner.stats.summary(runner.workers)}",
              file=sys.stderr)
    else:
        print(f"figures: {wall:.1f} s wall time in total", file=sys.stderr)
    return 0


#: Names kept for ``slimlib.cli`` and earlier code: the parser hook and the runner of ``figures``.
add_figures_parser = add_parser
main_figures = run
