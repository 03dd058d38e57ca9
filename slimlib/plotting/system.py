"""Figures of chapter *The system model*: the latency of one expert call (:numref:`fig-call-latency-distance`)."""
from __future__ import annotations

import numpy as np

from ..latency import latency_breakdown
from . import new_figure

__all__ = ["draw_call_latencies", "draw_latency_vs_distance"]

_COLORS = {"local": "#009E73", "edge": "#0072B2", "cloud": "#D55E00"}
_MARKERS = {"local": "o", "edge": "s", "cloud": "^"}


def draw_call_latencies(model, params, distance_m: float = 150.0, bandwidth_mhz: float | None = None):
    """Bar chart of the local, edge and cloud latency of one expert call, log scale.

    The three times of :eq:`eq-t-local`–:eq:`eq-t-cloud` (chapter *The system model*).

    Parameters
    ----------
    model : MoEModel
    params : Parameters
    distance_m : float
        User–server distance, metres.
    bandwidth_mhz : float, optional
        Overrides ``params.bandwidth_hz`` (in MHz).
    """
    if bandwidth_mhz is not None:
        params = params.replace(bandwidth_hz=bandwidth_mhz * 1e6)
    b = latency_breakdown(model, params, distance_m)
    fig, ax = new_figure(figsize=(7.0, 3.0))
    names = ["local", "edge", "cloud"]
    vals = np.array([b[n] for n in names]) * 1e3
    bars = ax.barh(names, vals, color=[_COLORS[n] for n in names])
    ax.set_xscale("log")
    ax.set_xlim(min(vals.min(), 1e-3) / 2, max(vals.max(), 20) * 8)
    for bar, v in zip(bars, vals):
        ax.text(v * 1.15, bar.get_y() + bar.get_height() / 2, f"{v:.3g} ms", va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("latency of one expert call (ms, log scale)")
    ax.set_title(f"{model.name}, {distance_m:g} m, {params.bandwidth_hz / 1e6:g} MHz "
                 f"(up {b['rate_up_bps'] / 1e6:.0f} / down {b['rate_down_bps'] / 1e6:.0f} Mbit/s)")
    fig.tight_layout()
    return fig


def draw_latency_vs_distance(models, params, distances_m=None):
    """Local, edge and cloud latency of one expert call against distance (:numref:`fig-call-latency-distance`).

    One colour and one marker per place (local, edge, cloud), one line style
    per model; the local latency (no radio) does not depend on the distance.
    The legend sits below the axes, off the data.

    Parameters
    ----------
    models : sequence of MoEModel
    params : Parameters
    distances_m : array_like, optional
        Distances in metres (default: 26 points across Table 1's range).
    """
    d = np.linspace(params.distance_min_m, params.distance_max_m, 26) if distances_m is None else np.asarray(distances_m)
    fig, ax = new_figure(figsize=(7.0, 4.2), layout="constrained")
    styles = ["-", "--", "-.", ":"]
    every = max(1, len(d) // 6)
    for i, model in enumerate(models):
        rows = [latency_breakdown(model, params, float(x)) for x in d]
        for place in ("local", "edge", "cloud"):
            ax.plot(d, [r[place] * 1e3 for r in rows], color=_COLORS[place], marker=_MARKERS[place],
                    markevery=every, linestyle=styles[i % len(styles)], label=f"{model.name}: {place}")
    ax.set_yscale("log")
    ax.set_xlabel("user–server distance (m)")
    ax.set_ylabel("latency of one expert call (ms)")
    fig.legend(loc="outside lower center", ncol=2, frameon=False)
    return fig
