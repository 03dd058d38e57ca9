"""The registry of the evaluation's sweeps (chapter *Experiments*): data function and scale of each figure.

``python -m slimlib figures`` (:mod:`slimlib.experiments.cli`) reads
:data:`FIGURES` and :data:`SCALES`; the draw functions are named here, not
imported, so the data side never imports plotting code.
"""
from __future__ import annotations

from .acceleration import fig11_data
from .figures import fig1_data, fig6_data, fig7_data, fig8_data, fig9_data, fig10_data
from .problems import SWITCH_MODELS

#: Public names are re-exported (and documented) by :mod:`slimlib.experiments`.
__all__: list[str] = []

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

