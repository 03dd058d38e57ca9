"""Figures of chapter *Greedy for K = 1*.

* :func:`draw_greedy_step` — one step of Algorithm 1 on a small instance: the
  marginal saving per byte of every (server, expert) pair, what is cached, what
  no longer fits, and the pair the greedy adds (the widget of the worked example).
* :func:`draw_ratio_histograms` — measured ratios to the exact optimum.
* :func:`draw_k2_counterexample` — how far the natural greedy falls behind on
  the Top-2 counterexample as the probability of the "easy" group varies.

Data come from :mod:`slimlib.studies` (:func:`~slimlib.studies.greedy_trace`,
:func:`~slimlib.studies.ratio_study`, :func:`~slimlib.studies.k2_counterexample`).
"""
from __future__ import annotations

import math

import numpy as np
from matplotlib.patches import Rectangle

from . import SERIES_STYLE, new_figure, source_note, style

__all__ = ["draw_greedy_step", "draw_ratio_histograms", "draw_k2_counterexample"]

_MB = 1e6


def draw_greedy_step(step: int, *, pm, trace, optimum_s: float | None = None, source: str = "statistics: synthetic"):
    """One step of the density greedy (chapter *Greedy for K = 1*, worked example).

    Parameters
    ----------
    step : int
        Index into ``trace`` (clipped to its length).
    pm : slimlib.solvers.pairs.PairModel
        The instance (one model).
    trace : list of dict
        From :func:`slimlib.studies.greedy_trace`.
    optimum_s : float, optional
        ``R`` of the optimum (s), drawn as a reference line.
    source : str
        Statistics source note.

    Returns
    -------
    matplotlib.figure.Figure
    """
    prob = pm.problem
    if len(prob.models) != 1:
        raise ValueError(f"pm: the step drawing shows one model only (got {len(prob.models)} models)")
    mod = prob.models[0]
    L, E, N = mod.num_layers, mod.num_experts, pm.N
    s = int(min(max(step, 0), len(trace) - 1))
    st = trace[s]
    dens = st["gains"] / pm.col_bytes[:, None] * _MB * 1e3          # ms per token per MB
    vmax = max(float((trace[0]["gains"] / pm.col_bytes[:, None]).max()) * _MB * 1e3, 1e-12)
    fig, axes = new_figure(1, N + 1, figsize=(2.3 * N + 3.2, 2.9),
                           gridspec_kw=dict(width_ratios=[E] * N + [max(E, 4)]))
    for n in range(N):
        ax = axes[n]
        ax.grid(False)
        d = dens[:, n].reshape(L, E)
        x = st["x"][:, n].reshape(L, E)
        ok = st["fits"][:, n].reshape(L, E)
        img = np.where(x | ~ok, np.nan, d)
        ax.imshow(img, cmap="Blues", vmin=0, vmax=vmax, aspect="auto")
        for l in range(L):
            for e in range(E):
                if x[l, e]:
                    ax.add_patch(Rectangle((e - .5, l - .5), 1, 1, color="#009E73", alpha=.8))
                    ax.text(e, l, "cached", ha="center", va="center", fontsize=8, color="white")
                elif not ok[l, e]:
                    ax.add_patch(Rectangle((e - .5, l - .5), 1, 1, color="#dddddd"))
                    ax.text(e, l, "full", ha="center", va="center", fontsize=8, color="#555555")
                else:
                    ax.text(e, l, f"{d[l, e]:.2f}", ha="center", va="center", fontsize=8,
                            color="white" if d[l, e] > .6 * vmax else "black")
        if st["pick"] is not None and st["pick"][0] == n:
            c = st["pick"][1]
            ax.add_patch(Rectangle((pm.col_expert[c] - .5, pm.col_layer[c] - .5), 1, 1, fill=False,
                                   edgecolor="#D55E00", linewidth=2.5))
        used = (st["x"][:, n] * pm.col_bytes).sum()
        ax.set_title(f"server {n}: {used / mod.expert_bytes:.0f}/{pm.cap[n] / mod.expert_bytes:.0f} slots", fontsize=9)
        ax.set_xticks(range(E))
        ax.set_yticks(range(L))
        ax.set_xlabel("expert")
        if n == 0:
            ax.set_ylabel("layer")
    ax = axes[N]
    vals = [t["value"] * 1e3 for t in trace]
    ax.plot(range(len(vals)), vals, **{k: v for k, v in SERIES_STYLE["greedy"].items() if k != "label"},
            label="greedy")
    ax.plot([s], [vals[s]], "o", color="#D55E00", markersize=9, zorder=5)
    if optimum_s is not None:
        ax.axhline(optimum_s * 1e3, **{k: v for k, v in SERIES_STYLE["exact"].items()
                                       if k in ("color", "linestyle")}, label="optimum")
    ax.set_xlabel("step")
    ax.set_ylabel("R (ms per token)")
    ax.legend(loc="lower right")
    ax.set_xticks(range(len(vals)))
    if st["pick"] is not None:
        n, c = st["pick"]
        head = (f"step {s}: add expert {pm.col_expert[c]} of layer {pm.col_layer[c]} to server {n} — "
                f"R grows by {st['gain'] * 1e3:.3f} ms/token ({st['density'] * _MB * 1e3:.3f} per MB), "
                "the most of all pairs that fit")
    else:
        why = "no pair that still fits saves anything" if st["fits"].any() else "every server is full"
        head = f"step {s}: {why} — the greedy stops"
    fig.suptitle(head, fontsize=9)
    fig.text(0.005, 0.005, "cells: gain of R per MB of storage if the pair were added now (R: ms per token, summed over users)",
             fontsize=8, color="#555555", va="bottom")
    source_note(fig, source)
    fig.tight_layout(rect=(0, 0.04, 1, 0.95))
    return fig


_REF = {"1 - 1/e": 1 - 1 / math.e, "1/2": 0.5, "(1 - 1/e)/2": (1 - 1 / math.e) / 2}


def draw_ratio_histograms(panels, *, refs=None, source: str = "statistics: synthetic (random instances)"):
    """Histograms of ``R(method) / R(optimum)`` (chapter *Greedy for K = 1*, measured ratios).

    Each panel zooms on the range the ratios occupy (bins of 0.01, or 0.04
    when some ratio is below 0.5); proven bounds left of that range are named
    in the panel instead of drawn.

    Parameters
    ----------
    panels : list of (str, dict)
        ``(title, study)`` with ``study`` from :func:`slimlib.studies.ratio_study`.
    refs : list of list of str, optional
        Per panel, names of proven bounds to mark (keys ``"1 - 1/e"``, ``"1/2"``,
        ``"(1 - 1/e)/2"``).
    source : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    k = len(panels)
    ncol = 2 if k > 1 else 1
    nrow = math.ceil(k / ncol)
    colors = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9"]
    with style():
        fig, axes = new_figure(nrow, ncol, figsize=(7.6, 2.9 * nrow), squeeze=False)
        for i, (title, study) in enumerate(panels):
            ax = axes.flat[i]
            lo = min([1.0] + [float(r.min()) for r in study["ratios"].values() if len(r)])
            if lo < 0.5:
                edges = np.linspace(0.0, 1.0, 26)
            else:
                left = max(0.0, math.floor(lo * 20) / 20 - 0.05)
                edges = np.linspace(left, 1.0, int(round((1.0 - left) / 0.01)) + 1)
            for j, (name, r) in enumerate(study["ratios"].items()):
                style_ = SERIES_STYLE.get(name) if name in ("greedy", "blind-greedy") else None
                col = style_["color"] if style_ else colors[j % len(colors)]
                ax.hist(np.clip(r, edges[0], 1.0), bins=edges, histtype="stepfilled", alpha=0.25, color=col)
                ax.hist(np.clip(r, edges[0], 1.0), bins=edges, histtype="step", linewidth=1.4, color=col,
                        label=f"{name}: min {r.min():.3f}, mean {r.mean():.3f}")
            off = []
            for ref in (refs[i] if refs else []):
                x = _REF[ref]
                if x >= edges[0]:
                    ax.axvline(x, color="#333333", linestyle=":", linewidth=1.2)
                    ax.annotate(f"bound {ref}", (x, 0.6), xycoords=("data", "axes fraction"), fontsize=8,
                                rotation=90, ha="right", va="center", color="#333333")
                else:
                    off.append(ref)
            note = ("proven bound " + ", ".join(off) + " (left of the axis)") if off else (
                "" if refs and refs[i] else "no proven bound")
            if note:
                ax.text(0.02, 0.97, note, transform=ax.transAxes, fontsize=8, va="top", color="#333333")
            ax.set_yscale("log")
            ax.set_ylim(0.7, len(study["optimum_s"]) * 3)
            ax.set_title(f"{title}\n({len(study['optimum_s'])} instances)", fontsize=9)
            ax.set_xlabel("R / R(optimum)")
            ax.set_ylabel("instances")
            ax.legend(loc="upper left", bbox_to_anchor=(0.0, 0.9), fontsize=8, frameon=False)
        for j in range(k, nrow * ncol):
            axes.flat[j].set_visible(False)
        source_note(fig, source)
        fig.tight_layout(rect=(0, 0.03, 1, 1))
    return fig


def draw_k2_counterexample(qs, ratios, *, reference=None,
                           source: str = "statistics: synthetic (hand-made instance)"):
    """Ratio to the optimum on the Top-2 counterexample vs the probability ``π`` (argument ``q`` of ``k2_counterexample``) of the group ``{0, 1}``.

    Parameters
    ----------
    qs : array_like, shape (Q,)
    ratios : dict of str to array_like
        Method name -> ``R(method) / R(optimum)`` at each ``π``.
    reference : array_like, shape (Q,), optional
        The proven value of Algorithm 1 as stated, ``π / (1 − π)``
        (:prf:ref:`prop-greedy-k2`), drawn dotted.
    source : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, ax = new_figure(figsize=(5.2, 3.0))
    for name, r in ratios.items():
        ax.plot(qs, r, **SERIES_STYLE.get(name, dict(label=name)))
    if reference is not None:
        ax.plot(qs, reference, color="#000000", linestyle=":", linewidth=1.4,
                label="Algorithm 1 as stated: π / (1 − π)")
    ax.set_xlabel("π = P({0, 1})   (1 − π = P({2, 3}))")
    ax.set_ylabel("R / R(optimum)")
    ax.set_ylim(0, 1.05)
    ax.legend(loc="lower right")
    source_note(fig, source)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return fig
