"""The paper's evaluation, regenerated: one data function per figure (chapter *Experiments*).

Every figure of the evaluation (Figures 1 and 6–11 of the paper) has a *data
function* here that takes the simulation parameters (Table 1 defaults from
:func:`slimlib.load_parameters`) and a list of seeds and returns a tidy
:class:`ResultTable` — one row per (method, swept value, model, seed) with the
average per-token latency, the communication latency and the solver's run
time — and a *draw function* in :mod:`slimlib.plotting.experiments` that turns
the table into the figure.  ``python -m slimlib figures`` (:func:`main_figures`)
runs both and writes PNG, SVG and CSV files; it also writes Figures 2–5 of
the earlier chapters (:data:`FIXED_FIGURES`: the activation heatmap, the
schematics and the routing cases, drawn by their own chapters' functions), so
one command regenerates every figure of the paper.

The package, one concept per module:

* :mod:`~slimlib.experiments.table` — :class:`ResultTable`, the tidy table;
* :mod:`~slimlib.experiments.problems` — statistics and problems of a point
  (:func:`experiment_problem`);
* :mod:`~slimlib.experiments.methods` — every method on one problem, scored
  by the one evaluator, and which points run the MILP (``exact``);
* :mod:`~slimlib.experiments.figures` — Figures 1 and 6–10 and
  :func:`point_data`; :mod:`~slimlib.experiments.acceleration` — Figure 11;
* :mod:`~slimlib.experiments.registry` — :data:`FIGURES` and :data:`SCALES`;
* :mod:`~slimlib.experiments.readings` — Table 1 and the sentences the chapter
  reads off the tables;
* :mod:`~slimlib.experiments.cli` — the ``figures`` command (the only module
  that draws; loaded on first use of its names).

A sweep's points are independent :class:`slimlib.sweep.Task` objects run by a
:class:`slimlib.sweep.Runner` (serially by default; ``runner=Runner(jobs=4)``
or a Dask scheduler in parallel, with a per-point cache).

Every latency is scored by the one evaluator, :func:`slimlib.average_latency`
(communication part: :func:`slimlib.communication_latency`).  Statistics
come from :func:`experiment_stats`: the synthetic profile of each model card
(``data/stats/<model>-synthetic.json``) sampled per user; the source is a
column of every table and is written on every figure.

Determinism: the same parameters and seeds give the same table (every column
except the run-time columns :data:`RUNTIME_COLUMNS`, wall-clock measurements),
whatever the number of workers and the order the points ran in, and, for
figures that do not plot run time, the same PNG bytes
(:func:`slimlib.plotting.savefig`).  One exception: a MILP run stopped by its
time limit (``status="time limit"``) returns what HiGHS had found by then,
which depends on the machine's speed (and load); such runs are not drawn as
optima (only their lower bound is), and ``milp_status`` says so on every row
of the point.
"""
from __future__ import annotations

from .acceleration import fig11_data
from .figures import (FIG6_METHODS, FIG7_METHODS, FIG10_METHODS, SWEEP_METHODS, _POINT_CACHE, fig1_data, fig6_data,
                      fig7_data, fig8_data, fig9_data, fig10_data, point_data)
from .methods import EXACT_MODES
from .problems import (LLAVA_MODELS, SWITCH_MODELS, _base_stats, _user_stats_cached, experiment_problem,
                       experiment_stats, stats_source_label)
from .readings import (BASELINES, PANEL_TITLES, PROPOSED, SHORT_NAMES, bound_gaps, dominance, dominance_sentence,
                       gains, panel_label, passes_sentence, residual_reading, short_name, storage_point_latency,
                       storage_reading, table1, table1_markdown)
from .registry import FIGURES, SCALES
from .table import RUNTIME_COLUMNS, ResultTable

__all__ = [
    "ResultTable", "RUNTIME_COLUMNS", "SWITCH_MODELS", "LLAVA_MODELS", "FIGURES", "SCALES", "EXACT_MODES",
    "experiment_stats", "experiment_problem", "stats_source_label",
    "fig1_data", "fig6_data", "fig7_data", "fig8_data", "fig9_data", "fig10_data", "fig11_data",
    "point_data", "table1", "table1_markdown", "dominance", "dominance_sentence", "gains", "storage_reading",
    "short_name", "storage_point_latency", "passes_sentence", "residual_reading", "bound_gaps", "main_figures",
    "FIXED_FIGURES", "FIG2_STATS", "FIG2_LAYER", "figure_names", "panel_label", "add_figures_parser",
    "FIG6_METHODS", "FIG7_METHODS", "FIG10_METHODS", "SWEEP_METHODS", "PROPOSED", "BASELINES", "SHORT_NAMES",
    "PANEL_TITLES",
]

#: Names served by :mod:`slimlib.experiments.cli`, imported on first use so that the data side
#: (everything above) never loads plotting code.
_CLI_NAMES = ("FIXED_FIGURES", "FIG2_STATS", "FIG2_LAYER", "figure_names", "main_figures", "add_figures_parser")


def __getattr__(name):
    if name in _CLI_NAMES:
        from . import cli
        return getattr(cli, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_CLI_NAMES))
