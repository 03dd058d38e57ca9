"""Draw functions of chapter *A placement in a live network*.

Every function returns a matplotlib Figure in the house style
(:func:`slimlib.plotting.new_figure`), latencies in ms per token, loads in
tokens/s per user; legends sit outside the data; each series has its own
colour and marker, from the book's one table :data:`slimlib.plotting.SERIES_STYLE` (methods as in
every other chapter).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
from matplotlib.ticker import NullLocator

from . import new_figure, series_style, source_note

__all__ = ["draw_live_network", "draw_cdf", "draw_load_sweep", "draw_load_point",
           "draw_comparison"]

MS = 1e3


def _style(name: str) -> dict:
    """:func:`slimlib.plotting.series_style`, always with a marker (a series without one gets a pentagon)."""
    st = series_style(name)
    if not st.get("marker"):
        st["marker"] = "p"
    return st


def _note(fig, note):
    """Source note in a bottom strip kept clear of the panels and the legend."""
    if not note:
        return
    eng = fig.get_layout_engine()
    if eng is not None and hasattr(eng, "set"):
        eng.set(rect=(0, 0.04, 1, 0.96))
    source_note(fig, note)


def draw_live_network():
    """The queueing picture of one expert call: which stages are shared, and how (chapter figure)."""
    fig, ax = new_figure(figsize=(6.4, 2.9), layout="constrained")
    ax.set_axis_off()
    ax.grid(False)
    ax.set_xlim(-0.15, 10.1)
    ax.set_ylim(0, 4.6)

    def box(x, y, w, text, color, h=0.8):
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.05", fc=color, ec="#333333", lw=0.8))
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=9)

    def arrow(x0, y0, x1, y1):
        ax.add_patch(FancyArrowPatch((x0, y0), (x1, y1), arrowstyle="-|>", mutation_scale=9, lw=0.9,
                                     color="#333333"))

    q = "#FCE3C8"      # shared, FIFO
    free = "#E4EEF8"   # never waits
    box(0.0, 1.9, 1.5, "user $m$\n(sessions)", free)
    box(2.1, 3.3, 1.9, "uplink of $n$\nFIFO, $\\theta/r_{up}$", q)
    box(4.5, 3.3, 1.9, "compute of $n$\n$c$ slots, $\\varphi/f_n$", q)
    box(6.9, 3.3, 1.9, "downlink of $n$\nFIFO, $\\theta/r_{dn}$", q)
    box(2.1, 1.9, 1.9, "device\n$\\varphi/f_m$", free)
    box(2.1, 0.4, 1.6, "uplink of $n_0$", q)
    box(4.1, 0.4, 2.9, "backhaul $\\rightleftarrows$ cloud\n$\\theta/r_{bh}$ FIFO, $d_{bh}$, $\\varphi/f_c$", q)
    box(7.4, 0.4, 1.4, "downlink\nof $n_0$", q)
    arrow(1.5, 2.5, 2.1, 3.7)
    arrow(1.5, 2.3, 2.1, 2.3)
    arrow(1.5, 2.1, 2.1, 0.8)
    arrow(4.0, 3.7, 4.5, 3.7)
    arrow(6.4, 3.7, 6.9, 3.7)
    arrow(3.7, 0.8, 4.1, 0.8)
    arrow(7.0, 0.8, 7.4, 0.8)
    ax.text(9.0, 3.7, "edge hit", va="center", fontsize=9)
    ax.text(4.2, 2.3, "local hit: never waits", va="center", fontsize=9)
    ax.text(9.0, 0.8, "miss", va="center", fontsize=9)
    ax.text(0.0, 4.45, "orange: shared by all users (waits); blue: never waits", fontsize=9, color="#444444")
    return fig


def draw_cdf(curves: Mapping[str, tuple], *, expected: Mapping[str, float] | None = None,
             title: str | None = None, note: str | None = None):
    """Latency CDFs: ``curves[name] = (latency_s, F)``; dotted lines at the expected latency (seconds).

    Parameters
    ----------
    curves : mapping of str to (ndarray, ndarray)
        Sorted latencies (s) and their CDF values (e.g. :meth:`~slimlib.simulation.result.SimulationResult.cdf`).
    expected : mapping of str to float, optional
        A vertical line per name at that latency (s), e.g. :func:`slimlib.average_latency`.
    """
    fig, ax = new_figure(figsize=(6.4, 3.2), layout="constrained")
    for name, (x, F) in curves.items():
        st = _style(name)
        ax.step(np.asarray(x) * MS, F, where="post", color=st.get("color"), linestyle=st.get("linestyle", "-"),
                label=st.get("label", name))
        idx = np.searchsorted(F, [0.5, 0.99])
        idx = np.minimum(idx, len(x) - 1)
        ax.plot(np.asarray(x)[idx] * MS, [0.5, 0.99], linestyle="none", marker=st.get("marker", "o"),
                color=st.get("color"))
    for name, v in (expected or {}).items():
        st = _style(name)
        ax.axvline(v * MS, color=st.get("color"), linestyle=":", linewidth=1.0)
    ax.set_xlabel("latency (ms per token)")
    ax.set_ylabel("fraction of tokens")
    ax.set_ylim(0, 1.02)
    if title:
        ax.set_title(title)
    fig.legend(loc="outside right upper", frameon=False)
    _note(fig, note)
    return fig


def _by_label(rows, label):
    rs = sorted((r for r in rows if r["label"] == label), key=lambda r: r["token_rate"])
    return (np.array([r["token_rate"] for r in rs]), rs)


def draw_load_sweep(rows: Sequence[dict], *, labels: Sequence[str] | None = None, title: str | None = None,
                    note: str | None = None, expected: bool = True):
    """Mean and p99 latency against offered load, one series per placement (two panels).

    Parameters
    ----------
    rows : sequence of dict
        :func:`slimlib.simulation.study.load_sweep` rows (one problem).
    labels : sequence of str, optional
        Series to draw (default every label, in row order).
    expected : bool
        Also draw each placement's expected latency (no contention) as a dotted line in the mean panel.
    """
    labels = list(dict.fromkeys(r["label"] for r in rows)) if labels is None else list(labels)
    fig, axes = new_figure(1, 2, figsize=(6.4, 3.3), layout="constrained", sharex=True)
    for lab in labels:
        x, rs = _by_label(rows, lab)
        if not rs:
            continue
        st = _style(lab)
        mean = np.array([r["mean_s"] for r in rs]) * MS
        ci = np.array([r["ci99_s"] for r in rs]) * MS
        axes[0].errorbar(x, mean, yerr=ci, capsize=2, **st)
        axes[1].plot(x, np.array([r["p99_s"] for r in rs]) * MS, **st)
        if expected:
            axes[0].axhline(rs[0]["expected_s"] * MS, color=st.get("color"), linestyle=":", linewidth=0.9)
    rates = sorted({r["token_rate"] for r in rows if r["label"] in labels})
    for ax, what in zip(axes, ("mean", "p99")):
        ax.set_xscale("log")
        ax.set_xticks(rates, [f"{v:g}" for v in rates])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("offered load (tokens/s per user)")
        ax.set_ylabel(f"{what} latency (ms per token)")
    axes[0].set_title("mean (dotted: expected)", fontsize=9)
    axes[1].set_title("99th percentile", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    handles, names = axes[1].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncol=2, frameon=False)
    _note(fig, note)
    return fig


def draw_load_point(rows: Sequence[dict], method: str, token_rate: float, *, note: str | None = None):
    """One placement at one load: its latency CDF against the same placement at the lightest load.

    The explorer frame of the chapter (dropdown ``method``, slider ``token_rate``).
    """
    x, rs = _by_label(rows, method)
    if not rs:
        raise ValueError(f"method: no rows for {method!r}")
    pick = next((r for r in rs if r["token_rate"] == token_rate), None)
    if pick is None:
        raise ValueError(f"token_rate: {token_rate!r} not simulated for {method!r} (have {x.tolist()})")
    base = rs[0]
    levels = np.linspace(0.0, 1.0, len(pick["cdf_s"]))   # the study's CDF levels, evenly spaced
    st = _style(method)
    fig, ax = new_figure(figsize=(6.4, 3.2), layout="constrained")
    ax.step(base["cdf_s"] * MS, levels, where="post", color="#999999", linestyle="--",
            label=f"{base['token_rate']:g} tokens/s per user")
    ax.step(pick["cdf_s"] * MS, levels, where="post", color=st.get("color"),
            label=f"{token_rate:g} tokens/s per user")
    ax.axvline(pick["expected_s"] * MS, color="#000000", linestyle=":", linewidth=1.0, label="expected latency")
    ax.set_xlabel("latency (ms per token)")
    ax.set_ylabel("fraction of tokens")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"{st.get('label', method)}: mean {pick['mean_s'] * MS:.1f} ms, p99 {pick['p99_s'] * MS:.1f} ms, "
                 f"busiest stage {100 * pick['utilisation']:.0f} % busy", fontsize=9)
    fig.legend(loc="outside right upper", frameon=False)
    _note(fig, note)
    return fig


def draw_comparison(rows: Sequence[dict], labels: Sequence[str], *, title: str | None = None,
                    note: str | None = None):
    """Two (or more) variants of one placement against load: mean and p99 (e.g. load-aware vs plain)."""
    return draw_load_sweep(rows, labels=labels, title=title, note=note, expected=True)
