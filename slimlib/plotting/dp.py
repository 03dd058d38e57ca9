"""Figures of the chapters *Successive decomposition* and *Max-plus convolution*.

Draw functions only; the data come from :mod:`slimlib.solvers.decomposition`
(:func:`~slimlib.solvers.decomposition.solve_stage`,
:func:`~slimlib.studies.stage_comparison`) and
:mod:`slimlib.maxplus`.
"""
from __future__ import annotations

import numpy as np
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.patches import Rectangle

from . import SERIES_STYLE, new_figure, source_note, style

__all__ = ["draw_dp_step", "draw_value_dp_step", "draw_concave_merge", "draw_eps_tradeoff", "draw_stage_ratios",
           "gains_markdown"]

_CMAP = LinearSegmentedColormap.from_list("slim", ["#ffffff", "#F3C9A8", "#D55E00"])
_CMAP_B = LinearSegmentedColormap.from_list("slimb", ["#ffffff", "#BFD9EC", "#0072B2"])


def _item_label(it) -> str:
    return f"layer {it.layer}" if it.model == 0 else f"model {it.model}, layer {it.layer}"


def draw_dp_step(step: int, *, stage, scale: float = 1.0, unit_label: str = "experts",
                 source: str = "statistics: synthetic (random instance)"):
    """One frame of the DP of Algorithm 2 filling its table (chapter *Successive decomposition*, worked example).

    Parameters
    ----------
    step : int
        Rows ``F_0 .. F_step`` are shown filled (``0 <= step <= J``); at
        ``step = J`` the backtracked choice is outlined.
    stage : StageResult
        From :func:`slimlib.solvers.decomposition.solve_stage` with
        ``combine="dp", keep_table=True``.
    scale : float
        Multiplies the gains for display (e.g. ``1e3 / sum(w)`` for ms of
        average latency).
    unit_label : str
        Name of one capacity unit on the x axis.
    source : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    F = stage.table * scale                                   # (J+1, Q+1)
    choice = stage.choice                                     # (J, Q+1)
    J, Q1 = F.shape[0] - 1, F.shape[1]
    step = int(min(max(step, 0), J))
    su = stage.info["sizes_units"]
    with style():
        fig, (ax, bx) = new_figure(1, 2, figsize=(8.8, 0.55 * J + 2.6), gridspec_kw=dict(width_ratios=[3, 1.4]))
        shown = np.where(np.arange(J + 1)[:, None] <= step, F, np.nan)
        ax.imshow(shown, cmap=_CMAP, aspect="auto", vmin=0, vmax=max(F.max(), 1e-12), origin="upper")
        ax.grid(False)
        for k in range(J + 1):
            for q in range(Q1):
                if k <= step:
                    txt = f"{F[k, q]:.2f}"
                    if k >= 1:
                        txt += f"\nc={choice[k - 1, q]}"
                    ax.text(q, k, txt, ha="center", va="center", fontsize=8,
                            color="#000000" if F[k, q] < 0.7 * F.max() else "#ffffff")
        if 1 <= step:
            ax.add_patch(Rectangle((-0.5, step - 0.5), Q1, 1, fill=False, edgecolor="#000000", linewidth=1.6))
        if step == J and J > 0:
            q = Q1 - 1
            for k in range(J, 0, -1):
                ax.add_patch(Rectangle((q - 0.5, k - 0.5), 1, 1, fill=False, edgecolor="#0072B2", linewidth=2.2))
                q -= int(choice[k - 1, q]) * int(su[k - 1])
            ax.add_patch(Rectangle((q - 0.5, -0.5), 1, 1, fill=False, edgecolor="#0072B2", linewidth=2.2))
        ax.set_xticks(range(Q1))
        ax.set_yticks(range(J + 1))
        ax.set_yticklabels(["$F_0$"] + [f"$F_{k + 1}$: {_item_label(it)}" for k, it in enumerate(stage.items)],
                           fontsize=8)
        ax.set_xlabel(f"capacity q ({unit_label})")
        title = ("$F_k(q) = \\max_c\\, F_{k-1}(q - c\\,s_k) + h_k(c)$" if step < J else
                 "backtracking from $F_J(Q)$: the chosen $c_k$ (blue)")
        ax.set_title(title, fontsize=9)
        # right: h of the layer being added
        if step >= 1:
            it = stage.items[step - 1]
            h = it.h * scale
            bx.bar(range(len(h)), h, color=SERIES_STYLE["decomposition"]["color"], alpha=0.75)
            for c, v in enumerate(h):
                bx.text(c, v, f"{v:.2f}", ha="center", va="bottom", fontsize=8)
            bx.set_title(f"$h_{{{step}}}(c)$, {_item_label(it)}", fontsize=9)
            bx.set_xticks(range(len(h)))
            bx.set_xlabel("c (experts of this layer)")
            bx.set_ylim(0, max(h.max(), 1e-12) * 1.25)
        else:
            bx.axis("off")
            bx.text(0.5, 0.5, "$F_0(q) = 0$:\nnothing cached yet", ha="center", va="center", fontsize=9,
                    transform=bx.transAxes)
        source_note(fig, source)
        fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def draw_value_dp_step(step: int, *, stage, scale_bytes: float = 1.0, unit_label: str = "experts",
                       value_scale: float = 1.0, value_unit: str = "s",
                       source: str = "statistics: synthetic (random instance)"):
    """One frame of Algorithm 3's value-indexed table ``D_k(v)`` (chapter *Max-plus convolution*, worked example).

    Parameters
    ----------
    step : int
        Rows ``D_0 .. D_step`` are shown (``0 <= step <= J``).
    stage : StageResult
        From :func:`~slimlib.solvers.decomposition.solve_stage` with
        ``combine="accelerated", keep_table=True`` (and rounding needed, i.e.
        ``stage.table`` not ``None``).
    scale_bytes : float
        Bytes per displayed storage unit (e.g. the expert size).
    unit_label : str
    value_scale, value_unit : float, str
        The grid step ``δ`` (weighted seconds) is printed as ``δ * value_scale``
        ``value_unit`` (e.g. ``1e3 / W`` and ``"ms"`` for ms of average latency).
    source : str
    """
    D = stage.table / scale_bytes                              # (J+1, V+1)
    J, V1 = D.shape[0] - 1, D.shape[1]
    step = int(min(max(step, 0), J))
    Q = stage.capacity_bytes / scale_bytes
    with style():
        fig, ax = new_figure(1, 1, figsize=(9.0, 0.5 * J + 2.4))
        shown = np.where((np.arange(J + 1)[:, None] <= step) & np.isfinite(D), D, np.nan)
        ax.imshow(shown, cmap=_CMAP_B, aspect="auto", vmin=0, vmax=max(np.nanmax(np.where(np.isfinite(D), D, np.nan)), 1),
                  origin="upper")
        ax.grid(False)
        for k in range(step + 1):
            for v in range(V1):
                if np.isfinite(D[k, v]):
                    ok = D[k, v] <= Q * (1 + 1e-12)
                    ax.text(v, k, f"{D[k, v]:.0f}", ha="center", va="center", fontsize=8,
                            color="#000000" if ok else "#999999", fontweight="bold" if ok else "normal")
        if step >= 1:
            ax.add_patch(Rectangle((-0.5, step - 0.5), V1, 1, fill=False, edgecolor="#000000", linewidth=1.4))
        if step == J:
            ok = np.flatnonzero(D[J] <= Q * (1 + 1e-12))
            v = int(ok[-1])
            ax.add_patch(Rectangle((v - 0.5, J - 0.5), 1, 1, fill=False, edgecolor="#D55E00", linewidth=2.4))
            ax.set_title(f"largest rounded value within Q = {Q:.0f} {unit_label}: v* = {v}  "
                         "(gain ≥ v*·δ)", fontsize=9)
        else:
            ax.set_title("$D_k(v)$ = least storage reaching rounded value $v$ "
                         "(bold: fits in $Q$)", fontsize=9)
        ax.set_xticks(range(0, V1, max(1, V1 // 20)))
        ax.set_yticks(range(J + 1))
        merged = stage.info.get("merged") or []
        labels = ["$D_0$"]
        for j, (H, s, members, owner) in enumerate(merged):
            names = ", ".join(f"l{stage.items[k].layer}" for k in members)
            labels.append(f"$D_{{{j + 1}}}$: {names}")
        ax.set_yticklabels(labels[:J + 1], fontsize=8)
        delta = stage.info["delta"] * value_scale
        ax.set_xlabel(f"rounded value v (grid step δ = {delta:.3g} {value_unit})")
        source_note(fig, source + f"; storage in {unit_label}")
        fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def draw_concave_merge(a, b, *, source: str = "hand-made sequences"):
    """The linear-time (max,+) merge of two concave sequences (chapter *Max-plus convolution*).

    Left: the increments of ``a`` and ``b``; right: ``a (+) b`` from the
    merge, each increment coloured by the sequence it came from, and the naive
    convolution for comparison.
    """
    from ..maxplus import maxplus_concave, maxplus_naive, merge_concave
    a = np.asarray(a, float)
    b = np.asarray(b, float)
    c = maxplus_concave(a, b)
    _, owner = merge_concave([a, b])
    ref = maxplus_naive(a, b)
    ca, cb = SERIES_STYLE["greedy"]["color"], SERIES_STYLE["decomposition"]["color"]
    with style():
        fig, (ax, bx) = new_figure(1, 2, figsize=(8.4, 3.0))
        ax.bar(np.arange(1, len(a)) - 0.18, np.diff(a), width=0.36, color=ca, label="increments of a")
        ax.bar(np.arange(1, len(b)) + 0.18, np.diff(b), width=0.36, color=cb, label="increments of b")
        ax.set_xlabel("index i")
        ax.set_ylabel("x[i] - x[i-1]")
        ax.set_title("concave: non-increasing increments", fontsize=9)
        ax.legend(frameon=False)
        k = np.arange(len(c))
        bx.plot(k, ref, color="#999999", linewidth=4, alpha=0.5, label="naive O(nm)")
        for t in range(1, len(c)):
            bx.plot([t - 1, t], [c[t - 1], c[t]], color=ca if owner[t - 1] == 0 else cb, linewidth=2)
        bx.plot(k, c, "o", color="#000000", markersize=3, label="merge O(n+m)")
        bx.set_xlabel("k")
        bx.set_ylabel("(a ⊕ b)[k]")
        bx.set_title("merge: take the largest remaining increment", fontsize=9)
        bx.legend(frameon=False, loc="lower right")
        source_note(fig, source)
        fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def draw_eps_tradeoff(rows, *, source: str = "statistics: synthetic"):
    """Accuracy and run time of Algorithm 3 against ``ε`` (chapter *Max-plus convolution*).

    Parameters
    ----------
    rows : list of dict
        From :func:`slimlib.studies.stage_comparison` (several
        problems concatenated; an optional key ``label`` separates the DP
        variants, e.g. different capacity units, and ``problem`` the instances).
    source : str

    Returns
    -------
    matplotlib.figure.Figure
        Left: worst and mean stage value as a fraction of the exact DP's, with
        the guarantee ``1 − ε``; right: median time of the combination step
        (for Algorithm 3 over the stages that needed the value grid; the
        others are solved by merging alone).
    """
    acc = [r for r in rows if r["combine"] == "accelerated"]
    eps = np.array(sorted({r["eps"] for r in acc}))
    ratio_min = np.array([min(r["ratio"] for r in acc if r["eps"] == e) for e in eps])
    ratio_mean = np.array([np.mean([r["ratio"] for r in acc if r["eps"] == e]) for e in eps])
    grid_rows = [r for r in acc if r.get("rounded", True)] or acc
    t_acc = np.array([np.median([r["time_s"] for r in grid_rows if r["eps"] == e]) for e in eps])
    st = SERIES_STYLE["accelerated"]
    with style():
        fig, (ax, bx) = new_figure(1, 2, figsize=(8.6, 3.2))
        ax.plot(eps, ratio_min, marker=st["marker"], color=st["color"], label="worst stage")
        ax.plot(eps, ratio_mean, marker="o", color=st["color"], linestyle="--", label="mean over stages")
        ax.plot(eps, 1 - eps, color="#000000", linestyle=":", label="guarantee 1 − ε")
        ax.set_xscale("log")
        ax.set_xlabel("ε")
        ax.set_ylabel("stage value / exact DP")
        ax.set_ylim(min(0.5, float((1 - eps).min()) - 0.02), 1.01)
        ax.legend(frameon=False, fontsize=8)
        ax.set_title("accuracy", fontsize=9)
        bx.plot(eps, t_acc * 1e3, marker=st["marker"], color=st["color"],
                label="accelerated (stages that need the value grid)")
        dp_rows = [r for r in rows if r["combine"] == "dp"]
        labels = sorted({r.get("label", "exact DP") for r in dp_rows},
                        key=lambda lab: max(r["grid"] for r in dp_rows if r.get("label", "exact DP") == lab))
        dash = ["--", "-.", ":"]
        for i, lab in enumerate(labels):
            t = np.median([r["time_s"] for r in rows if r["combine"] == "dp" and r.get("label", "exact DP") == lab])
            bx.axhline(t * 1e3, color=SERIES_STYLE["decomposition"]["color"], linestyle=dash[i % 3],
                       label=f"exact DP, {lab}")
        bx.set_xscale("log")
        bx.set_yscale("log")
        bx.set_xlabel("ε")
        bx.set_ylabel("combination step, median ms")
        bx.set_ylim(top=bx.get_ylim()[1] * 4)
        bx.legend(frameon=False, fontsize=8, loc="upper right", ncol=2)
        bx.set_title("run time per stage", fontsize=9)
        source_note(fig, source)
        fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def draw_stage_ratios(ratios: dict, *, bounds: dict | None = None, source: str = "random stage tables"):
    """Histograms of per-stage value ratios, one colour per ``ε`` (chapter *Max-plus convolution*).

    Parameters
    ----------
    ratios : dict of str to array_like
        Label (e.g. ``"ε = 0.1"``) to ratios accelerated / exact DP.
    bounds : dict of str to float, optional
        Same labels to the guaranteed lower bound ``1 − ε`` (dotted lines).
    source : str
    """
    colors = ["#E69F00", "#0072B2", "#009E73", "#CC79A7", "#56B4E9"]
    vals = np.concatenate([np.asarray(v, float) for v in ratios.values()])
    lo = min(float(vals.min()), min((bounds or {1: 1.0}).values()))
    edges = np.linspace(np.floor(lo * 50) / 50 - 0.02, 1.0, 60)
    with style():
        fig, ax = new_figure(1, 1, figsize=(7.0, 3.0))
        for i, (lab, r) in enumerate(ratios.items()):
            r = np.asarray(r, float)
            col = colors[i % len(colors)]
            ax.hist(np.clip(r, edges[0], 1.0), bins=edges, histtype="step", linewidth=1.5, color=col,
                    label=f"{lab}: min {r.min():.4f}, mean {r.mean():.4f}")
            if bounds and lab in bounds:
                ax.axvline(bounds[lab], color=col, linestyle=":", linewidth=1.2)
        ax.set_yscale("log")
        ax.set_xlabel("stage value of Algorithm 3 / exact DP (dotted: guarantee 1 − ε)")
        ax.set_ylabel("stages")
        ax.legend(frameon=False, fontsize=8, loc="upper left")
        source_note(fig, source)
        fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def gains_markdown(stage, *, scale: float = 1.0, digits: int = 2) -> str:
    """The per-layer best gains ``h_k(c)`` of one stage as a Markdown table.

    Chapter *Successive decomposition*, worked example: one row per block
    (layer), one column per count ``c``; values times ``scale`` (e.g. ms of
    average per-token latency per weighted second).

    Parameters
    ----------
    stage : slimlib.solvers.decomposition.StageResult
        From ``solve_stage(..., keep_table=True)``.
    scale : float
    digits : int
    """
    C = max(len(it.h) for it in stage.items)
    rows = ["| block | " + " | ".join(f"c = {c}" for c in range(C)) + " |", "|---|" + "---|" * C]
    for it in stage.items:
        cells = [f"{v * scale:.{digits}f}" for v in it.h] + [""] * (C - len(it.h))
        rows.append(f"| layer {it.layer} | " + " | ".join(cells) + " |")
    return "\n".join(rows)
