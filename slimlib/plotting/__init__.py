"""The book's one plotting style, and deterministic figure export.

Every figure of the book is drawn by a function in this package (never in a
notebook).  Submodules hold the draw functions of one chapter each; this module
holds what they share: the house style, the colour, marker and label of every
named series (:data:`SERIES_STYLE`: methods, policies and the live network's
series, one table for every figure), and :func:`savefig`, which writes byte-identical PNG/SVG files for identical
figures (no timestamps or version strings in the metadata).
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import matplotlib

import matplotlib.pyplot as plt

__all__ = ["STYLE", "SERIES_STYLE", "COLUMN_WIDTH_IN", "MIN_FONT_PT", "series_style", "style", "new_figure",
           "savefig", "source_note"]

#: Width of the book's text column (672 px at 1280 px, i.e. 7 in at 96 px per inch).  Figures are
#: drawn at most this wide, so text keeps its size on the page: 8 pt is 10.7 px as shown.
COLUMN_WIDTH_IN = 7.0

#: Smallest font any figure uses (7 pt is 9.3 px at the column width).
MIN_FONT_PT = 7.0

#: rcParams of the house style (small, legible, colour-blind-safe cycle).
STYLE = {
    "figure.dpi": 100,
    "savefig.dpi": 120,
    "figure.figsize": (6.4, 3.8),
    "font.size": 10,
    "axes.titlesize": 10,
    "axes.labelsize": 10,
    "legend.fontsize": 8,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "lines.linewidth": 1.6,
    "lines.markersize": 5,
    "svg.hashsalt": "slimcaching",
    "axes.prop_cycle": matplotlib.cycler(color=["#0072B2", "#D55E00", "#009E73", "#CC79A7",
                                                "#E69F00", "#56B4E9", "#F0E442", "#000000"]),
}

#: Colour, marker, line style and legend label of every named series of the book's figures, in one
#: table so that a name looks the same in every figure: the methods (names of :func:`slimlib.solve`),
#: the re-placement policies of chapter *When the statistics drift* (:data:`slimlib.online.POLICIES`)
#: and the series of chapter *A placement in a live network*.  Read it with :func:`series_style`.
SERIES_STYLE = {
    # methods
    "exact": dict(color="#000000", marker="*", linestyle="--", label="Optimum (MILP)"),
    "brute-force": dict(color="#000000", marker="*", linestyle=":", label="Optimum (brute force)"),
    "greedy": dict(color="#0072B2", marker="o", linestyle="-", label="Greedy (Alg. 1)"),
    "decomposition": dict(color="#D55E00", marker="s", linestyle="-", label="Decomposition + DP (Alg. 2)"),
    "accelerated": dict(color="#E69F00", marker="^", linestyle="-", label="Accelerated, max-plus (Alg. 3)"),
    "blind-greedy": dict(color="#56B4E9", marker="v", linestyle="-.", label="Co-activation-blind greedy"),
    "popularity": dict(color="#009E73", marker="D", linestyle="-.", label="Popularity"),
    "coordinated-popularity": dict(color="#CC79A7", marker="P", linestyle="-.", label="Coordinated popularity"),
    "random": dict(color="#999999", marker="x", linestyle=":", label="Random"),
    "pipage": dict(color="#8C564B", marker="X", linestyle="--", label="LP + pipage rounding"),
    "none": dict(color="#666666", marker="", linestyle=":", label="No edge caching"),
    "u-shaped": dict(color="#7F3C8D", marker="h", linestyle="--", label="U-shaped split inference"),
    "slimcaching": dict(color="#D55E00", marker="s", linestyle="-", label="SlimCaching"),
    "load-aware": dict(color="#009E73", marker="o", linestyle="-", label="Load-aware (M/M/c fixed point)"),
    # re-placement policies (chapter When the statistics drift)
    "static": dict(color="#666666", marker="o", linestyle=":", label="static (never move)"),
    "periodic": dict(color="#0072B2", marker="s", linestyle="-", label="periodic re-solve"),
    "budgeted": dict(color="#D55E00", marker="^", linestyle="-", label="budgeted"),
    # series of chapter A placement in a live network that are not solver names
    "plain": dict(color="#D55E00", marker="s", linestyle="--", label="Decomposition (plain)"),
    "sampled": dict(color="#0072B2", marker="o", linestyle="-", label="Independent layers (sampled)"),
    "trace": dict(color="#E69F00", marker="^", linestyle="--", label="Trace replay"),
    "expected": dict(color="#000000", marker="", linestyle=":", label="Expected (no contention)"),
    "no-contention": dict(color="#0072B2", marker="o", linestyle="-", label="No contention"),
    "loaded": dict(color="#D55E00", marker="s", linestyle="--", label="Shared servers and links"),
}


def series_style(name: str) -> dict:
    """Plot keywords (color, marker, linestyle, label) of a method, policy or series name.

    The one lookup of :data:`SERIES_STYLE` every figure uses.  Returns a copy;
    a name not in the table gets only its label (``{"label": name}``).
    """
    return dict(SERIES_STYLE.get(name, dict(label=name)))


@contextlib.contextmanager
def style():
    """Context manager applying the house style.

    Only the keys of :data:`STYLE` are set and restored: ``matplotlib.rc_context``
    would also restore ``backend``, which detaches the notebook's inline display
    hooks so that later figures are no longer shown automatically.
    """
    saved = {k: matplotlib.rcParams[k] for k in STYLE}
    matplotlib.rcParams.update(STYLE)
    try:
        yield
    finally:
        matplotlib.rcParams.update(saved)


def new_figure(nrows: int = 1, ncols: int = 1, **kw):
    """``plt.subplots`` in the house style; returns ``(fig, axes)``.

    A ``figsize`` wider than the text column (:data:`COLUMN_WIDTH_IN`) is
    scaled down to it, aspect kept: the figure is drawn at the width it is
    shown, so its text is not shrunk by the browser (≥ 9 px at 1280 px).
    """
    w, h = kw.get("figsize") or STYLE["figure.figsize"]
    if w > COLUMN_WIDTH_IN:
        kw["figsize"] = (COLUMN_WIDTH_IN, h * COLUMN_WIDTH_IN / w)
    with style():
        fig, axes = plt.subplots(nrows, ncols, **kw)
    for ax in (axes.flat if hasattr(axes, "flat") else [axes]):
        ax.grid(True, alpha=STYLE["grid.alpha"])
        ax.spines["top"].set_visible(False)
        ax.spines["right"].set_visible(False)
    return fig, axes


def source_note(fig, text: str) -> None:
    """Write the statistics source (e.g. ``"statistics: synthetic"``) in the figure's corner."""
    fig.text(0.995, 0.005, text, ha="right", va="bottom", fontsize=MIN_FONT_PT, color="#555555")


def savefig(fig, path, **kw) -> Path:
    """Save ``fig`` deterministically (PNG/SVG/PDF chosen by suffix).

    Metadata that would change between runs (software version, creation date)
    is removed, so identical figures give identical bytes.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    md = {".png": {"Software": None}, ".svg": {"Date": None, "Creator": None},
          ".pdf": {"CreationDate": None, "Producer": None, "Creator": None}}.get(suffix)
    with style():
        fig.savefig(path, metadata=md, **kw)
    return path
