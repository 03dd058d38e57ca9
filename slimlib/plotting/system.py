"""Figures of chapter *The system model*: the latency of one expert call."""
from __future__ import annotations

import numpy as np

from ..latency import latency_breakdown
from . import new_figure

__all__ = ["draw_call_latencies", "draw_latency_vs_distance"]

_COLORS = {"local": "#009E73", "edge": "#0072B2", "cloud": "#D55E00"}


def draw_call_latencies(model, params, distance_m: float = 150.0, bandwidth_mhz: float | None = None):
    """Bar chart of the local, edge and cloud latency of one expert call (eqs. (4)–(6)), log scale.

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
    fig, ax = new_figure(figsize=(6.4, 3.0))
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
    """Edge and cloud latency of one expert call against distance, one colour per model.

    The local latency (no radio) is drawn as a horizontal line.
    """
    d = np.linspace(params.distance_min_m, params.distance_max_m, 26) if distances_m is None else np.asarray(distances_m)
    fig, ax = new_figure()
    for i, model in enumerate(models):
        rows = [latency_breakdown(model, params, float(x)) for x in d]
        color = f"C{i}"
        ax.plot(d, [r["edge"] * 1e3 for r in rows], color=color, label=f"{model.name}: edge")
        ax.plot(d, [r["cloud"] * 1e3 for r in rows], color=color, linestyle="--", label=f"{model.name}: cloud")
        ax.axhline(rows[0]["local"] * 1e3, color=color, linestyle=":", label=f"{model.name}: local")
    ax.set_yscale("log")
    ax.set_xlabel("user–server distance (m)")
    ax.set_ylabel("latency of one expert call (ms)")
    ax.legend(ncol=2, loc="center right")
    fig.tight_layout()
    return fig
