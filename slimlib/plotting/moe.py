"""Figures of chapter *Mixture of experts and where the experts go*.

* :func:`draw_moe_layer` — :numref:`fig-moe-layer`: one MoE layer (gate, ``E`` experts,
  Top-``K`` selection, weighted sum), drawn with matplotlib patches.
* :func:`draw_expert_heatmap` — :numref:`fig-expert-heatmap`: expert activation frequency per MoE
  layer and pair co-activation of one layer, for any
  :class:`~slimlib.ActivationStats`; :func:`expert_heatmap_data` returns the
  numbers it draws (the CSV of ``python -m slimlib figures``).
* :func:`draw_activation_panel` — the chapter's widget frame: the heatmap of
  :numref:`fig-expert-heatmap` for a (model, statistics source, layer)
  choice, or ``None`` when that source does not exist for the model (the
  widget then offers only the combinations that exist).
* :func:`draw_skew_comparison` — per-layer skew numbers of two statistics
  (e.g. the tiny MoE at initialisation and after training).

Every statistics figure writes its source in the corner (:func:`source_note`).
"""
from __future__ import annotations

import math

import numpy as np
from matplotlib.patches import Ellipse, FancyArrowPatch, FancyBboxPatch, Rectangle

from . import STYLE, new_figure, source_note

__all__ = ["draw_moe_layer", "draw_expert_heatmap", "expert_heatmap_data", "draw_activation_panel",
           "activation_panel_grid",
           "draw_skew_comparison", "source_label"]

_PAL = STYLE["axes.prop_cycle"].by_key()["color"]
_INK = "#333333"
_IDLE = "#EDEDED"
_ACTIVE = [_PAL[1], _PAL[0], _PAL[2], _PAL[3], _PAL[4], _PAL[5]]


def source_label(stats) -> str:
    """``"statistics: <source>"`` from a statistics object's provenance (with model and token count)."""
    p = stats.provenance
    src = p.get("source", "unknown source")
    extra = []
    if "tokens" in p:
        extra.append(f"{int(p['tokens']):,} tokens")
    if src == "synthetic":
        extra.append(f"seed {p.get('seed', '?')}")
    return f"statistics: {src} ({stats.model}; {', '.join(extra)})" if extra else f"statistics: {src} ({stats.model})"


# -----------------------------------------------------------------------------
# The MoE layer (fig-moe-layer)
# -----------------------------------------------------------------------------
def _box(ax, cx, cy, w, h, text, fc="white", ec=_INK, ls="-", fontsize=8.5, color=_INK, lw=1.0, zorder=2):
    ax.add_patch(FancyBboxPatch((cx - w / 2, cy - h / 2), w, h, boxstyle="round,pad=0.01,rounding_size=0.02",
                                fc=fc, ec=ec, lw=lw, ls=ls, zorder=zorder))
    ax.text(cx, cy, text, ha="center", va="center", fontsize=fontsize, color=color, zorder=zorder + 1)


def _arrow(ax, p, q, color=_INK, lw=1.1, ls="-", rad=0.0, zorder=3):
    ax.add_patch(FancyArrowPatch(p, q, arrowstyle="-|>", mutation_scale=9, color=color, lw=lw, ls=ls,
                                 connectionstyle=f"arc3,rad={rad}", shrinkA=1, shrinkB=1, zorder=zorder))


def draw_moe_layer(num_experts: int = 4, top_k: int = 2, gate_probs=None, *, title: str | None = None):
    """An MoE layer (:numref:`fig-moe-layer`) with ``E`` experts and Top-``K`` routing (schematic).

    The token's hidden state ``x`` goes to the gate, which scores every
    expert (``softmax(W_g x)``, bars); only the ``K`` best experts run (coloured;
    the others stay idle, grey), and their outputs are mixed with the
    renormalised gate weights, ``y = sum_{e in TopK} g_e FFN_e(x)``.

    Parameters
    ----------
    num_experts : int
        ``E`` (boxes; more than 8 are elided with "...").
    top_k : int
        ``K``.
    gate_probs : array_like, shape (E,), optional
        Gate probabilities to draw; default a fixed illustrative vector.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    E, K = int(num_experts), int(top_k)
    if not 1 <= K <= E:
        raise ValueError(f"top_k: must be in 1..num_experts={E} (got {top_k})")
    if gate_probs is None:
        raw = np.array([0.9, 2.1, 0.3, 1.6, 0.6, 1.1, 0.1, 0.8] * (E // 8 + 1))[:E]
        gate_probs = np.exp(raw) / np.exp(raw).sum()
    p = np.asarray(gate_probs, float)
    if p.shape != (E,):
        raise ValueError(f"gate_probs: must have shape ({E},) (got {p.shape})")
    chosen = [int(e) for e in np.argsort(-p, kind="stable")[:K]]
    g = p[chosen] / p[chosen].sum()
    if E <= 8:
        shown = list(range(E))
    else:  # a few experts, every chosen one, the last one; "..." marks the gaps
        keep = sorted(set(range(3)) | set(chosen) | {E - 1})
        shown = []
        for e in keep:
            if shown and e != shown[-1] + 1:
                shown.append(None)
            shown.append(e)
        shown = [e for i, e in enumerate(shown) if e is not None or shown[i - 1] is not None]

    fig, ax = new_figure(figsize=(7.2, 4.0))
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.99)
    ax.set_xlim(0, 1)
    ax.set_ylim(0.02, 0.97)
    ax.axis("off")
    # MoE layer frame
    ax.add_patch(FancyBboxPatch((0.03, 0.17), 0.94, 0.66, boxstyle="round,pad=0.0,rounding_size=0.02",
                                fc="#FAFAFA", ec="#999999", lw=0.9, ls="--", zorder=0))
    ax.text(0.045, 0.805, f"MoE layer: E = {E} experts, Top-{K}", ha="left", va="top", fontsize=8.5,
            color="#555555")
    # input and gate
    _box(ax, 0.5, 0.07, 0.34, 0.075, r"hidden state $x$ of one token", fc="#E8F1FA")
    _box(ax, 0.2, 0.3, 0.22, 0.09, "gate (router)\n" + r"$\mathrm{softmax}(W_g x)$", fc="white")
    _arrow(ax, (0.42, 0.085), (0.24, 0.255), rad=-0.15)
    # gate probability bars
    bx0, bw, by0, bh = 0.34, 0.2, 0.235, 0.12
    nb = min(E, 16)
    bar_w = bw / nb
    for i in range(nb):
        e = i if E <= 16 else int(round(i * (E - 1) / (nb - 1)))
        h = bh * p[e] / p.max()
        col = _ACTIVE[chosen.index(e) % len(_ACTIVE)] if e in chosen else "#BBBBBB"
        ax.add_patch(Rectangle((bx0 + i * bar_w + bar_w * 0.1, by0), bar_w * 0.8, h, fc=col, ec="none", zorder=2))
    ax.plot([bx0, bx0 + bw], [by0, by0], color=_INK, lw=0.8)
    ax.text(bx0 + bw / 2, by0 - 0.025, "gate probabilities", ha="center", va="top", fontsize=7, color="#555555")
    _arrow(ax, (0.31, 0.3), (bx0 - 0.005, 0.3))
    # Top-K selector
    _box(ax, 0.7, 0.3, 0.14, 0.075, f"Top-{K}\nkeep {K} of {E}", fc="#FFF3E0", fontsize=8)
    _arrow(ax, (bx0 + bw + 0.005, 0.3), (0.63, 0.3))
    # experts
    n = len(shown)
    xs = np.linspace(0.12, 0.88, n)
    ey, ew, eh = 0.56, min(0.095, 0.7 / n), 0.1
    centers = {}
    for x, e in zip(xs, shown):
        if e is None:
            ax.text(x, ey, "...", ha="center", va="center", fontsize=12, color="#777777")
            continue
        on = e in chosen
        col = _ACTIVE[chosen.index(e) % len(_ACTIVE)] if on else _IDLE
        _box(ax, x, ey, ew, eh, f"FFN$_{{{e + 1}}}$", fc=col, ec=_INK if on else "#AAAAAA", ls="-" if on else ":",
             color="white" if on else "#999999", fontsize=8.5)
        centers[e] = x
    ax.text(0.955, 0.805, "grey: idle for this token (not run, but stored somewhere)",
            ha="right", va="top", fontsize=7, color="#777777")
    # routing arrows: Top-K -> chosen experts, experts -> weighted sum
    sx, sy = 0.5, 0.76
    for k, e in enumerate(chosen):
        if e not in centers:
            continue
        col = _ACTIVE[k % len(_ACTIVE)]
        _arrow(ax, (0.7, 0.34), (centers[e], ey - eh / 2), color=col, lw=1.4)
        _arrow(ax, (centers[e], ey + eh / 2), (sx, sy - 0.03), color=col, lw=1.4)
        mx, my = (centers[e] + sx) / 2, (ey + eh / 2 + sy - 0.03) / 2
        ax.text(mx + (0.025 if centers[e] > sx else -0.025), my, f"$g_{{{e + 1}}}={g[k]:.2f}$",
                ha="left" if centers[e] > sx else "right", va="center", fontsize=8, color=col)
    ax.add_patch(Ellipse((sx, sy), 0.2 / 7.2, 0.2 / 3.8, fc="white", ec=_INK, lw=1.1, zorder=4))  # 0.2 in circle
    ax.text(sx, sy, r"$\Sigma$", ha="center", va="center", fontsize=10, zorder=5)
    _box(ax, 0.5, 0.92, 0.46, 0.075, r"$y = \sum_{e \in \mathrm{TopK}(x)} g_e\,\mathrm{FFN}_e(x)$", fc="#E8F1FA")
    _arrow(ax, (sx, sy + 0.03), (0.5, 0.88))
    if title:
        ax.set_title(title)
    return fig


# -----------------------------------------------------------------------------
# Heatmaps (fig-expert-heatmap)
# -----------------------------------------------------------------------------
def draw_expert_heatmap(stats, layer: int = 0, *, title: str | None = None, annotate: bool | None = None,
                        source: str | None = None):
    """Expert activation frequency per layer (:numref:`fig-expert-heatmap`), and pair co-activation of one layer.

    Left: ``p_{l,e}``, the probability that a token activates expert ``e`` at
    MoE layer ``l`` (rows: layers; each row sums to ``K``), with ``layer``
    outlined.  Right (``K >= 2``): ``P_l(i and j)``, the probability that a
    token activates both ``i`` and ``j`` at that layer (diagonal left blank).

    Parameters
    ----------
    stats : ActivationStats
    layer : int
        Layer of the co-activation panel.
    title : str, optional
    annotate : bool, optional
        Write the values in the cells (default: when ``E <= 8``).
    source : str, optional
        Corner note; default from the provenance (:func:`source_label`).

    Returns
    -------
    matplotlib.figure.Figure
    """
    L, E, K = stats.num_layers, stats.num_experts, stats.top_k
    if not 0 <= int(layer) < L:
        raise ValueError(f"layer: must be in 0..{L - 1} (got {layer})")
    layer = int(layer)
    annotate = E <= 8 if annotate is None else annotate
    marg = stats.marginals()
    fig, axes = new_figure(1, 2, figsize=(8.4, 4.3 if L <= 16 else 4.8),
                           gridspec_kw={"width_ratios": [1.25, 1.0]})
    fig.subplots_adjust(left=0.08, right=0.93, bottom=0.15, top=0.84 if title else 0.9, wspace=0.42)
    ax = axes[0]
    vmax = 1.0 if K >= 2 and E <= 16 else float(marg.max())
    im = ax.imshow(marg, aspect="auto", cmap="Blues", vmin=0, vmax=vmax, interpolation="nearest")
    ax.grid(False)
    ax.set_xlabel("expert $e$")
    ax.set_ylabel("MoE layer $\\ell$")
    ax.set_title(f"activation frequency $p_{{\\ell,e}}$ (Top-{K})")
    if E <= 16:
        ax.set_xticks(range(E))
    if L <= 16:
        ax.set_yticks(range(L))
    ax.add_patch(Rectangle((-0.5, layer - 0.5), E, 1, fill=False, ec=_PAL[1], lw=1.8))
    if annotate and L <= 24:
        for l in range(L):
            for e in range(E):
                v = marg[l, e]
                ax.text(e, l, f"{v:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if v > 0.6 * vmax else _INK)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
    ax = axes[1]
    ax.grid(False)
    if K >= 2:
        C = stats.coactivation(layer).copy()
        np.fill_diagonal(C, np.nan)
        cmax = float(np.nanmax(C)) if np.isfinite(C).any() else 1.0
        im2 = ax.imshow(C, cmap="Oranges", vmin=0, vmax=max(cmax, 1e-12), interpolation="nearest")
        ax.set_title(f"pair co-activation, layer {layer}: $P(i \\wedge j)$")
        ax.set_xlabel("expert $j$")
        ax.set_ylabel("expert $i$")
        if E <= 16:
            ax.set_xticks(range(E))
            ax.set_yticks(range(E))
        if annotate:
            for i in range(E):
                for j in range(E):
                    if i != j:
                        v = C[i, j]
                        ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7 if E <= 5 else 5.5,
                                color="white" if v > 0.6 * cmax else _INK)
        fig.colorbar(im2, ax=ax, fraction=0.046, pad=0.03)
    else:
        order = np.argsort(-marg[layer])
        ax.bar(range(E), marg[layer][order], color=_PAL[0], width=1.0 if E > 32 else 0.8)
        ax.axhline(1 / E, color=_INK, lw=0.9, ls="--", label=f"balanced load 1/E = {1 / E:.3g}")
        ax.set_title(f"layer {layer}: experts by popularity (Top-1)")
        ax.set_xlabel("expert rank")
        ax.set_ylabel("$p_{\\ell,e}$")
        ax.legend(loc="upper right")
        ax.grid(True, alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10, y=0.985)
    source_note(fig, source or source_label(stats))
    return fig


def expert_heatmap_data(stats, layer: int = 0) -> list[dict]:
    """The numbers of :numref:`fig-expert-heatmap` (:func:`draw_expert_heatmap`) as tidy rows.

    One row per (layer, expert) with the activation frequency ``p_{l,e}``
    (``quantity="frequency"``, ``partner`` empty), then, for ``K >= 2``, one
    row per layer and unordered pair ``i < j`` with the co-activation
    probability ``P_l(i and j)`` (``quantity="coactivation"``).  Every layer's
    pairs are listed; ``drawn`` is 1 on the rows the figure shows (all
    frequencies, the pairs of ``layer``).

    Parameters
    ----------
    stats : ActivationStats
    layer : int
        The layer of the co-activation panel.

    Returns
    -------
    list of dict
        Keys ``quantity``, ``layer``, ``expert``, ``partner``, ``probability``
        (dimensionless), ``drawn``, ``model``, ``stats_source``.
    """
    L, E, K = stats.num_layers, stats.num_experts, stats.top_k
    if not 0 <= int(layer) < L:
        raise ValueError(f"layer: must be in 0..{L - 1} (got {layer})")
    layer = int(layer)
    base = dict(model=stats.model, stats_source=stats.provenance.get("source", "unknown"))
    marg = stats.marginals()
    rows = [dict(quantity="frequency", layer=l, expert=e, partner=None, probability=float(marg[l, e]), drawn=1,
                 **base) for l in range(L) for e in range(E)]
    if K >= 2:
        for l in range(L):
            C = stats.coactivation(l)
            rows += [dict(quantity="coactivation", layer=l, expert=i, partner=j, probability=float(C[i, j]),
                          drawn=int(l == layer), **base) for i in range(E) for j in range(i + 1, E)]
    return rows


def draw_activation_panel(model: str, source: str, layer: int, *, stats: dict | None = None):
    """One frame of the chapter's widget: the heatmap for (model, statistics source, layer).

    Parameters
    ----------
    model : str
        Model card name.
    source : str
        ``"synthetic"``, ``"measured-tiny"``, or a path to a statistics file
        (e.g. one written by ``python -m slimlib collect``).
    layer : int
        Co-activation layer; clipped to the model's last layer (the title says so).
    stats : dict, optional
        ``{(model, source): ActivationStats}`` to use instead of the files in
        ``data/stats`` (the chapter passes the statistics it computed).

    Returns
    -------
    matplotlib.figure.Figure
        The heatmap, or ``None`` when the statistics do not exist for this
        model (:func:`slimlib.widgets.explore` then offers no such frame).
    """
    from ..io import load_activation_stats
    s = (stats or {}).get((model, source))
    if s is None:
        try:
            s = load_activation_stats(model, source)
        except ValueError:
            return None
    l = min(int(layer), s.num_layers - 1)
    note = "" if l == int(layer) else f" (layer {layer} clipped to {l})"
    return draw_expert_heatmap(s, l, title=f"{model}: {s.provenance.get('source', source)} statistics{note}")


def activation_panel_grid(models, sources=("synthetic", "measured-tiny"), *, stats: dict | None = None) -> dict:
    """Grid and validity test of the widget over :func:`draw_activation_panel`.

    Returns ``{"grid": ..., "valid": ...}`` to pass to
    :func:`slimlib.widgets.explore` (``explore(draw_activation_panel,
    **activation_panel_grid(models), stats=...)``): models and sources become
    dropdowns, the layer slider covers every layer of the deepest model, and
    only (model, source, layer) combinations that exist are offered (a source
    the model has no statistics for, or a layer past the model's last, gets
    no frame).

    Parameters
    ----------
    models : sequence of str
        Model card names.
    sources : sequence of str
        Statistics sources (see :func:`draw_activation_panel`).
    stats : dict, optional
        ``{(model, source): ActivationStats}`` that exist besides the files.
    """
    from ..io import load_activation_stats
    layers = {}
    for m in models:
        for src in sources:
            s = (stats or {}).get((m, src))
            if s is None:
                try:
                    s = load_activation_stats(m, src)
                except ValueError:
                    continue
            layers[(m, src)] = s.num_layers
    if not layers:
        raise ValueError(f"models: no statistics for any of {list(models)} from {list(sources)}")
    grid = {"model": list(models), "source": list(sources), "layer": list(range(max(layers.values())))}

    def valid(model, source, layer):
        return layer < layers.get((model, source), 0)
    return {"grid": grid, "valid": valid}


def draw_skew_comparison(named_stats: dict, *, confidence: dict | None = None):
    """Per-layer skew of several statistics side by side (chapter section "Skew").

    Panels: normalised entropy of the expert load (1 = balanced), probability
    of the most popular expert, mean pair lift (``K >= 2``), and optionally the
    router confidence (probability mass on the chosen experts).

    Parameters
    ----------
    named_stats : dict of str to ActivationStats
        Label -> statistics (same number of layers is not required).
    confidence : dict of str to array_like, optional
        Label -> per-layer router confidence (:func:`slimlib.tinymoe.router_confidence`).

    Returns
    -------
    matplotlib.figure.Figure
    """
    from ..skew import routing_summary
    panels = [("entropy", "load entropy / log E\n(1 = balanced)"),
              ("top_expert", "P(most popular expert)"),
              ("pair_lift", "mean pair lift\n(1 = no affinity)")]
    if confidence:
        panels.append(("confidence", "router confidence\n(mass on chosen experts)"))
    fig, axes = new_figure(1, len(panels), figsize=(2.35 * len(panels) + 0.6, 3.0), sharex=False)
    markers = ["o", "s", "^", "D"]
    for i, (label, s) in enumerate(named_stats.items()):
        r = routing_summary(s)
        if confidence and label in confidence:
            r["confidence"] = np.asarray(confidence[label], float)
        for ax, (key, ylab) in zip(axes, panels):
            if key not in r:
                continue
            v = np.asarray(r[key], float)
            ax.plot(range(len(v)), v, marker=markers[i % 4], color=_PAL[i % len(_PAL)], label=label)
    for ax, (key, ylab) in zip(axes, panels):
        ax.set_xlabel("MoE layer")
        ax.set_title(ylab, fontsize=8.5)
        ax.xaxis.set_major_locator(__import__("matplotlib").ticker.MaxNLocator(integer=True))
    s0 = next(iter(named_stats.values()))
    axes[0].axhline(1.0, color="#999999", ls=":", lw=1)
    axes[1].axhline(s0.top_k / s0.num_experts, color="#999999", ls=":", lw=1)
    axes[2].axhline(1.0, color="#999999", ls=":", lw=1)
    if confidence:
        axes[-1].axhline(s0.top_k / s0.num_experts, color="#999999", ls=":", lw=1)
    axes[0].legend(loc="lower left", fontsize=7)
    fig.tight_layout()
    srcs = sorted({s.provenance.get("source", "?") for s in named_stats.values()})
    source_note(fig, "statistics: " + ", ".join(srcs))
    return fig
