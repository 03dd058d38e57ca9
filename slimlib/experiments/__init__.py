"""The paper's evaluation, regenerated: one data function per figure (chapter *Experiments*).

Every figure of the evaluation (Figures 1 and 6–11 of the paper) has a *data
function* here that takes the simulation parameters (Table 1 defaults from
:func:`slimlib.load_parameters`) and a list of seeds and returns a tidy
:class:`ResultTable` — one row per (method, swept value, model, seed) with the
average per-token latency, the communication latency and the solver's run
time — and a *draw function* in :mod:`slimlib.plotting.experiments` that turns
the table into the figure.  ``python -m slimlib figures`` (:func:`slimlib.experiments.cli.run`)
runs both and writes PNG, SVG and CSV files; it also writes Figures 2–5 of
the earlier chapters (:data:`~slimlib.experiments.cli.FIXED_FIGURES`: the activation heatmap, the
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

from . import figures as _figures, methods as _methods, problems as _problems, readings as _readings
from . import registry as _registry, table as _table
from .acceleration import fig11_data
from .figures import _POINT_CACHE, fig1_data, fig6_data, fig7_data, fig8_data, fig9_data, fig10_data, point_data
from .problems import _base_stats, _user_stats_cached, experiment_problem, experiment_stats, stats_source_label
from .readings import (bound_gaps, dominance, dominance_sentence, gains, panel_label, passes_sentence,
                       residual_reading, short_name, storage_point_latency, storage_reading, table1, table1_markdown)
from .table import ResultTable

# Constants, documented here where readers use them (defined in the submodules).
#: Switch-base model cards of Figures 1, 6 and 10 (K = 1, fp32 checkpoints).
SWITCH_MODELS = _problems.SWITCH_MODELS
#: MoE-LLaVA model cards of Figures 7 and 11 (K = 2, fp16 checkpoints).
LLAVA_MODELS = _problems.LLAVA_MODELS
#: Figure name -> (data function, name of its draw function in :mod:`slimlib.plotting.experiments`).
FIGURES = _registry.FIGURES
#: Keyword arguments of each data function per scale: ``"book"`` (the defaults, what the book
#: builds) and ``"paper"`` (full-size sweeps: every model card, finer grids, more seeds, longer MILP limits).
SCALES = _registry.SCALES
#: Which points run the MILP (``exact=`` of Figures 6, 7 and 10; ``--exact`` of the command line):
#: ``"all"``, ``"small"`` (under the figure's size limit; default) or ``"none"``.
EXACT_MODES = _methods.EXACT_MODES
#: Columns holding wall-clock measurements: the only ones that may differ between two runs of a sweep.
RUNTIME_COLUMNS = _table.RUNTIME_COLUMNS
#: Methods of Figure 6 (K = 1), in legend order (co-activation-blind greedy coincides with greedy for K = 1).
FIG6_METHODS = _figures.FIG6_METHODS
#: Methods of Figure 7 (K = 2), in legend order.
FIG7_METHODS = _figures.FIG7_METHODS
#: Methods of Figure 10 (run time vs size, K = 1: every method applies).
FIG10_METHODS = _figures.FIG10_METHODS
#: Methods of Figures 8 and 9 and of :func:`point_data`.
SWEEP_METHODS = _figures.SWEEP_METHODS
#: Methods proposed by the paper (the rest are baselines or references).
PROPOSED = _readings.PROPOSED
#: Baselines (U-shaped split inference only in Figure 1).
BASELINES = _readings.BASELINES
#: Names of the methods inside sentences (:func:`short_name`).
SHORT_NAMES = _readings.SHORT_NAMES
#: Display names of the model cards (:func:`panel_label`).
PANEL_TITLES = _readings.PANEL_TITLES

__all__ = [
    "ResultTable", "RUNTIME_COLUMNS", "SWITCH_MODELS", "LLAVA_MODELS", "FIGURES", "SCALES", "EXACT_MODES",
    "experiment_stats", "experiment_problem", "stats_source_label",
    "fig1_data", "fig6_data", "fig7_data", "fig8_data", "fig9_data", "fig10_data", "fig11_data",
    "point_data", "table1", "table1_markdown", "dominance", "dominance_sentence", "gains", "storage_reading",
    "short_name", "storage_point_latency", "passes_sentence", "residual_reading", "bound_gaps", "panel_label",
    "FIG6_METHODS", "FIG7_METHODS", "FIG10_METHODS", "SWEEP_METHODS", "PROPOSED", "BASELINES", "SHORT_NAMES",
    "PANEL_TITLES",
]
