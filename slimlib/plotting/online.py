"""Figures of chapter *When the statistics drift*.

* :func:`draw_drift` — the picture first: one user's true group probabilities
  in one layer, period by period, under a switch and a gradual mix, with the
  online estimate;
* :func:`draw_latency` — latency per period of the three policies;
* :func:`draw_tradeoff` — average latency against bytes moved as the budget varies;
* :func:`draw_windows` — how the estimator's window changes the estimation
  error and the latency;
* :func:`draw_explorer` — one frame of the chapter's explorer (drift kind, budget).

Data come from :mod:`slimlib.drift`, :mod:`slimlib.online` and
:func:`slimlib.online_study.drift_study`; latencies are in ms per token, bytes in GB.
"""
from __future__ import annotations

import math

import numpy as np

from . import new_figure, series_style, source_note

__all__ = ["policy_style", "draw_drift", "draw_latency", "draw_tradeoff", "draw_windows",
           "draw_explorer"]

_WIDTH = 6.7            # inches: the text column of the book at 100 dpi
_KIND = {"switch": "sudden switch", "gradual": "gradual mix", "none": "no drift"}
_SHORT = {"static": "static", "periodic": "periodic re-solve", "budgeted": "budgeted"}
_GROUP_COLORS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#999999"]
_GROUP_MARKERS = ["o", "s", "^", "D", "v", "P", "X", "h"]


def policy_style(policy: str, budget_mb: float | None = None) -> dict:
    """Plot keywords of a policy: :func:`slimlib.plotting.series_style`, the budget (MB) in the budgeted label."""
    st = series_style(policy)
    if policy == "budgeted" and budget_mb is not None:
        st["label"] = f"budgeted, B = {_mb(budget_mb)}"
    return st


def _mb(b: float) -> str:
    return "∞" if math.isinf(b) else f"{b:g} MB"


def _shade(ax, workload):
    """Shade the periods where the statistics are moving or moved (mean drifted share > 0)."""
    from matplotlib.ticker import MaxNLocator
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    mix = workload.mix()
    t = np.arange(len(mix))
    ax.fill_between(t, 0, 1, where=mix > 0, transform=ax.get_xaxis_transform(), color="#E69F00",
                    alpha=0.10, linewidth=0, step="mid")


def draw_drift(workloads: dict, estimates: dict, *, user: int = 0, layer: int = 0, top: int = 4,
               source: str = "statistics: synthetic"):
    """True ``P_{t,m,l}(G)`` (solid) and its online estimate (dashed) per period, one panel per drift kind.

    Parameters
    ----------
    workloads : dict
        ``kind -> DriftingWorkload``.
    estimates : dict
        ``kind -> Estimates`` of the same workloads.
    user, layer : int
        Which user and MoE layer to show.
    top : int
        Show the ``top`` groups with the largest probability at any period.
    """
    kinds = list(workloads)
    fig, axes = new_figure(1, len(kinds), layout="constrained", figsize=(_WIDTH, 2.9), sharey=True,
                           squeeze=False)
    handles = []
    for ax, kind in zip(axes[0], kinds):
        wl, est = workloads[kind], estimates[kind]
        sel = np.flatnonzero(wl.group_layer == layer)
        p = wl.truth[:, user, sel]
        q = est.probs[:, user, sel]
        show = np.argsort(-p.max(axis=0), kind="stable")[:top]
        t = np.arange(wl.num_periods)
        _shade(ax, wl)
        handles = []
        for i, g in enumerate(show):
            c, mk = _GROUP_COLORS[i % 8], _GROUP_MARKERS[i % 8]
            name = "{" + ", ".join(str(e) for e in wl.group_experts[sel[g]]) + "}"
            h, = ax.plot(t, p[:, g], color=c, marker=mk, markersize=4, label=f"G = {name}")
            ax.plot(t, q[:, g], color=c, linestyle="--", linewidth=1.0)
            handles.append(h)
        ax.set_title(_KIND.get(kind, kind))
        ax.set_xlabel("period t")
    axes[0, 0].set_ylabel(f"P(G), user {user}, layer {layer}")
    from matplotlib.lines import Line2D
    handles += [Line2D([], [], color="#333333", label="true"),
                Line2D([], [], color="#333333", linestyle="--", label=f"estimate ({est.label})")]
    fig.legend(handles=handles, loc="outside lower center", ncol=3, frameon=False)
    source_note(fig, source)
    return fig


def draw_latency(runs: dict, workloads: dict, *, budget_mb: float | None = None,
                 source: str = "statistics: synthetic"):
    """Latency per period of each policy, one panel per drift kind.

    Parameters
    ----------
    runs : dict
        ``kind -> list of OnlineRun`` (any of static, periodic, budgeted).
    workloads : dict
        ``kind -> DriftingWorkload`` (shades the drifted periods).
    budget_mb : float, optional
        Budget of the budgeted runs, for the legend.
    """
    kinds = list(runs)
    fig, axes = new_figure(1, len(kinds), layout="constrained", figsize=(_WIDTH, 3.0), sharey=True,
                           squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        _shade(ax, workloads[kind])
        for r in runs[kind]:
            st = policy_style(r.policy, budget_mb)
            ax.plot(np.arange(len(r.latency_s)), r.latency_s * 1e3, markersize=4, **st)
        ax.set_title(_KIND.get(kind, kind))
        ax.set_xlabel("period t")
    axes[0, 0].set_ylabel("average latency (ms per token)")
    h, lab = axes[0, 0].get_legend_handles_labels()
    fig.legend(h, lab, loc="outside lower center", ncol=3, frameon=False)
    source_note(fig, source)
    return fig


def draw_tradeoff(study, *, source: str = "statistics: synthetic"):
    """Average latency against GB moved as the budget ``B`` varies, one curve per drift kind.

    Static (no byte moved) and the periodic re-solve are marked as the two ends;
    the points of the curves are the budgets of ``study`` in increasing order.
    """
    fig, ax = new_figure(layout="constrained", figsize=(_WIDTH, 3.9))
    kind_style = {"switch": dict(color="#D55E00", marker="^"), "gradual": dict(color="#009E73", marker="v")}
    for kind in ("switch", "gradual"):
        pts = study.tradeoff(kind)
        gb = np.array([p[1] for p in pts])
        ms = np.array([p[2] for p in pts])
        st = kind_style[kind]
        ax.plot(gb, ms, linestyle="-", label=f"budgeted, {kind}", **st)
        for pol in ("static", "periodic"):
            r = study.run(kind, pol)
            ps = series_style(pol)
            ax.plot([r.total_bytes / 1e9], [r.mean_latency_s * 1e3], linestyle="none", marker=ps["marker"],
                    markersize=8, markerfacecolor="none" if kind == "gradual" else ps["color"],
                    color=ps["color"], label=f"{_SHORT[pol]}, {kind}")
    ax.set_xscale("symlog", linthresh=0.1)
    T = len(study.run("switch", "static").latency_s)
    ax.set_xlabel(f"GB moved over the backhaul in {T} periods (symlog scale)")
    ax.set_ylabel("average latency (ms per token)")
    h, lab = ax.get_legend_handles_labels()                 # one column per policy: budgeted, static, periodic
    order = sorted(range(len(lab)), key=lambda i: (["budgeted", "static", "periodic"].index(
        lab[i].split(",")[0].split()[0]), i))
    fig.legend([h[i] for i in order], [lab[i] for i in order], loc="outside lower center", ncol=3,
               frameon=False)
    source_note(fig, source)
    return fig


def draw_windows(study, *, source: str = "statistics: synthetic"):
    """(a) Estimation error per period for each window ``W``; (b) average latency against ``W``."""
    fig, (a, b) = new_figure(1, 2, layout="constrained", figsize=(_WIDTH, 3.0))
    wl = study.contexts["switch"].workload
    _shade(a, wl)
    ws = sorted(study.errors)
    for i, w in enumerate(ws):
        e = study.errors[w].error
        a.plot(np.arange(len(e)), e, color=_GROUP_COLORS[i % 8], marker=_GROUP_MARKERS[i % 8], markersize=3,
               label=f"W = {w}")
    a.set_xlabel("period t")
    a.set_ylabel("estimation error (TV)")
    a.set_title("(a) error of the estimate")
    for pol in ("periodic", "budgeted"):
        st = policy_style(pol, study.budget_mb)
        b.plot(ws, [study.windows[w, pol].mean_latency_s * 1e3 for w in ws], **st)
    s = study.run("switch", "static").mean_latency_s * 1e3
    b.axhline(s, **{k: v for k, v in series_style("static").items() if k != "marker"})
    b.set_xscale("log", base=2)
    b.set_xticks(ws, [str(w) for w in ws])
    b.set_xlabel("window W (periods)")
    b.set_ylabel("average latency (ms per token)")
    b.set_title("(b) average latency")
    h, lab = a.get_legend_handles_labels()
    h2, lab2 = b.get_legend_handles_labels()
    fig.legend(h + h2, lab + lab2, loc="outside lower center", ncol=4, frameon=False)
    source_note(fig, source)
    return fig


def draw_explorer(drift: str, budget_mb: float, *, study, source: str = "statistics: synthetic"):
    """One frame of the chapter's explorer: latency per period of the three policies for one drift and budget."""
    ctx = study.contexts[drift]
    runs = [study.run(drift, "static"), study.run(drift, "periodic"), study.run(drift, "budgeted", budget_mb)]
    fig, ax = new_figure(layout="constrained", figsize=(_WIDTH, 3.6))
    _shade(ax, ctx.workload)
    for r in runs:
        st = policy_style(r.policy, budget_mb)
        st["label"] += f": {r.mean_latency_s * 1e3:.1f} ms, {r.total_bytes / 1e9:.2f} GB moved"
        ax.plot(np.arange(len(r.latency_s)), r.latency_s * 1e3, markersize=4, **st)
    ax.set_xlabel("period t")
    ax.set_title(f"{_KIND.get(drift, drift)}, budget B = {_mb(budget_mb)} per period")
    ax.set_ylabel("latency (ms per token)")
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", frameon=False)
    source_note(fig, source)
    return fig
