"""Draw functions of chapter *Experiments* (:numref:`fig-exp-comm` to :numref:`fig-exp-eps`).

Each ``draw_figN(table)`` takes the :class:`~slimlib.experiments.ResultTable`
of ``slimlib.experiments.figN_data`` and returns a matplotlib Figure in the
house style.  Lines are means across seeds; the shaded band is ±1 standard
deviation across seeds (drawn when there is more than one seed).  Every figure
carries a :func:`~slimlib.plotting.source_note` with the statistics source,
the storage precision (bytes per parameter) and the number of seeds.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..experiments.readings import panel_label
from . import MIN_FONT_PT, SERIES_STYLE, STYLE, new_figure, series_style, source_note

STYLE_LABEL = STYLE["axes.labelsize"]

__all__ = ["draw_sweep", "draw_fig1", "draw_fig6", "draw_fig7", "draw_fig8", "draw_fig9", "draw_fig10",
           "draw_fig11", "draw_point", "figure_note", "redraw", "draw_explorer"]

_PRECISION = {4: "fp32", 2: "fp16", 1: "int8"}
_label = panel_label     # panel titles live with the data (slimlib.experiments.readings)


def figure_note(table) -> str:
    """The source note of a figure: statistics source, precision, seeds (and scale)."""
    from ..experiments import stats_source_label
    srcs = table.meta.get("stats_source") or table.unique("stats_source")
    src = ", ".join(stats_source_label(s) for s in srcs if s) or "unknown"
    bpp = sorted({float(b) for b in table.column("bytes_per_param") if b is not None})
    prec = ", ".join(f"{b:g} B/param ({_PRECISION.get(b, '?')})" for b in bpp)
    seeds = table.unique("seed")
    band = ", band ±1 std" if len(seeds) > 1 else ""
    return f"statistics: {src} · weights {prec} · {len(seeds)} seed(s){band}"


def _finite(x) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x))


def _series(table, panel, method, y: str, complete_only: bool, optimal_only: bool = True):
    """x, mean, std of one method in one panel (rows with NaN or, by default, a non-optimal exact solve dropped)."""
    nseeds = len(table.unique("seed"))
    rows = [r for r in table.rows if r["panel"] == panel and r["method"] == method and _finite(r.get(y))
            and _finite(r.get("value"))
            and not (optimal_only and method in ("exact", "brute-force") and r.get("status") != "optimal")]
    by: dict = {}
    for r in rows:
        by.setdefault(r["value"], []).append(float(r[y]))
    xs = sorted(v for v, ys in by.items() if not complete_only or len(ys) == nseeds)
    mean = np.array([np.mean(by[v]) for v in xs])
    std = np.array([np.std(by[v]) for v in xs])
    return np.array(xs, float), mean, std


_BOUND_STYLE = dict(color="#000000", marker="*", markerfacecolor="none", markersize=8, linestyle="none",
                    label="MILP lower bound (time limit hit)")


def _bound_series(table, panel):
    """Mean MILP lower bound at the points where the MILP ran on every seed but did not prove optimality.

    Optimal seeds contribute their optimum (their bound), time-limited ones HiGHS' dual bound.
    """
    nseeds = len(table.unique("seed"))
    by: dict = {}
    for r in table.rows:
        if r["panel"] == panel and r["method"] == "exact" and _finite(r.get("bound_s")):
            by.setdefault(r["value"], []).append((r["status"] == "optimal", float(r["bound_s"])))
    xs = sorted(v for v, b in by.items() if len(b) == nseeds and not all(o for o, _ in b))
    return np.array(xs, float), np.array([np.mean([x for _, x in by[v]]) for v in xs])


def _relative(table, y: str, reference: str):
    """Copy of ``table`` with ``y`` divided by the reference method's ``y`` at the same (panel, value, seed)."""
    from ..experiments import ResultTable
    ref = {(r["panel"], r["value"], r["seed"]): r.get(y) for r in table.rows if r["method"] == reference}
    rows = []
    for r in table.rows:
        d = ref.get((r["panel"], r["value"], r["seed"]))
        if _finite(d) and d > 0 and _finite(r.get(y)):
            q = dict(r)
            q[y] = float(r[y]) / float(d)
            if _finite(r.get("bound_s")) and y == "latency_s":
                q["bound_s"] = float(r["bound_s"]) / float(d)
            rows.append(q)
    return ResultTable(rows, table.meta)


def _legend(fig, axes, ncol: int = 4, spare=None):
    """One legend for the figure: in a spare (hidden) axes if there is one, else below the panels.

    Below, not beside: a legend to the right would leave a single panel half the column wide.
    """
    handles, labels = [], []
    for ax in axes:
        for h, l in zip(*ax.get_legend_handles_labels()):
            if l not in labels:
                handles.append(h)
                labels.append(l)
    if not handles:
        return
    if spare is not None:
        spare.set_visible(True)
        spare.axis("off")
        spare.legend(handles, labels, loc="center", frameon=False)
    else:
        # at most 3 columns: a wider legend would make the saved figure wider than the text column
        ncol = 2 if len(axes) == 1 else min(ncol, 3)
        fig.legend(handles, labels, loc="outside lower center", ncol=min(ncol, len(labels)), frameon=False)


def _note(fig, table):
    """Source note: the title of the figure's legend when it has one (so the two never overlap),
    else a line in the bottom strip, kept clear of the panels."""
    if fig.legends:
        leg = fig.legends[-1]
        leg.set_title(figure_note(table), prop={"size": MIN_FONT_PT})
        leg.get_title().set_color("#555555")
        return
    eng = fig.get_layout_engine()
    if eng is not None and hasattr(eng, "set"):
        eng.set(rect=(0, 0.045, 1, 0.955))
    source_note(fig, figure_note(table))


def _draw_axes(ax, table, pan, methods, y, scale, band, exact_as_points, hlines=()):
    """One panel: a line (mean over seeds, ±1 std band) per method, MILP optima/bounds, reference lines."""
    for m in methods:
        exact = m in ("exact", "brute-force")
        xs, mu, sd = _series(table, pan, m, y, complete_only=exact and exact_as_points, optimal_only=exact_as_points)
        if xs.size == 0:
            continue
        st = series_style(m)
        if exact and exact_as_points:
            st = dict(st, linestyle="none", markersize=8)
        line, = ax.plot(xs, mu * scale, **st)
        if band and len(table.unique("seed")) > 1 and not exact:
            ax.fill_between(xs, (mu - sd) * scale, (mu + sd) * scale, color=line.get_color(), alpha=0.12, linewidth=0)
    if "exact" in methods and y == "latency_s" and exact_as_points:
        xs, lb = _bound_series(table, pan)
        if xs.size:
            ax.plot(xs, lb * scale, **_BOUND_STYLE)
    for yv, lab in hlines:
        ax.axhline(yv * scale, color="#000000", linewidth=0.8, linestyle=":", alpha=0.7, label=lab)


def draw_sweep(table, *, y: str | None = None, methods: Sequence[str] | None = None,
               panels: Sequence | None = None, ncols: int | None = None, scale: float = 1e3,
               xlabel=None, ylabel: str | None = None, title: str | None = None, logx: bool = False,
               logy: bool = False, band: bool = True, sharey: bool = False, figsize=None, legend_ncol: int = 4,
               exact_as_points: bool = True, relative_to: str | None = None, hlines: Sequence = ()):
    """Generic sweep figure: one axes per panel, one line per method (mean across seeds ± 1 std band).

    Parameters
    ----------
    table : ResultTable
    y : str
        Column plotted (default ``table.meta["y"]``), multiplied by ``scale``
        (default 1e3: seconds to milliseconds).
    methods, panels : sequence, optional
        Subset and order (default: as in the table).
    xlabel : str or dict
        A dict maps panel to its label.
    exact_as_points : bool
        Draw the MILP as markers only, at the points where it proved
        optimality on every seed, plus its lower bound where the time limit
        was hit (latency figures).  ``False``: a line through every MILP run,
        time-limited ones included (run-time figures).
    relative_to : str, optional
        Plot ``y`` divided by this method's ``y`` at the same (panel, value,
        seed), in per cent, instead of the absolute value.
    hlines : sequence of (float, str)
        Horizontal reference lines (in the unit of ``y``, before ``scale``) with their legend labels.
    """
    y = y or table.meta.get("y", "latency_s")
    if relative_to is not None:
        table = _relative(table, y, relative_to)
        scale = 100.0
        ylabel = f"{ylabel or table.meta.get('ylabel', y)} / {series_style(relative_to)['label']} (%)".replace(
            " (ms/token) /", " /").replace(" (ms per token) /", " /")
    panels = list(table.unique("panel") if panels is None else panels)
    methods = [m for m in (table.unique("method") if methods is None else methods) if m in table.unique("method")]
    n = max(1, len(panels))
    ncols = ncols or min(n, 3)
    nrows = math.ceil(n / ncols)
    # drawn at the column width (slimlib.plotting.COLUMN_WIDTH_IN), rows tall enough for their labels
    figsize = figsize or ((7.0, 3.6) if n == 1 else (7.0, 2.5 * nrows + 1.3))
    fig, axes = new_figure(nrows, ncols, figsize=figsize, squeeze=False, layout="constrained", sharey=sharey)
    flat = list(axes.flat)
    xlabel = xlabel if xlabel is not None else table.meta.get("xlabel", "")
    for ax, pan in zip(flat, panels):
        _draw_axes(ax, table, pan, methods, y, scale, band, exact_as_points, hlines)
        ax.set_title(_label(pan), fontsize=9)
        ax.set_xlabel(xlabel.get(pan, "") if isinstance(xlabel, dict) else xlabel)
        if logx:
            ax.set_xscale("log")
        if logy:
            ax.set_yscale("log")
    for ax in flat[len(panels):]:
        ax.set_visible(False)
    if nrows == 1:
        axes[0, 0].set_ylabel(ylabel or table.meta.get("ylabel", y))
    else:                                           # one label for all rows: no overlap
        fig.supylabel(ylabel or table.meta.get("ylabel", y), fontsize=STYLE_LABEL)
    if title:
        fig.suptitle(title)
    _legend(fig, flat[:len(panels)], min(legend_ncol, max(2, ncols + (ncols > 2))),
            spare=flat[-1] if len(flat) > len(panels) else None)
    _note(fig, table)
    return fig


def draw_fig1(table, *, methods: Sequence[str] = ("slimcaching", "u-shaped", "none"), **kw):
    """:numref:`fig-exp-comm`: communication latency (ms per token) vs device storage, one panel per Switch-base model."""
    kw.setdefault("ncols", 3)
    return draw_sweep(table, y="comm_latency_s", methods=methods, ylabel="communication latency (ms/token)",
                      legend_ncol=3, **kw)


#: Methods left out of the relative rows (far above the others, they would flatten the plot).
_WEAK = ("none", "random", "popularity")


def draw_storage(table, reference: str, *, relative_row: bool = True, weak: Sequence[str] = _WEAK, **kw):
    """Latency vs edge storage (Figures 6 and 7): absolute latency, and a second row relative to ``reference``.

    The second row shows every method's latency as a percentage of
    ``reference``'s on the same instance (mean over the seeds), without the
    methods in ``weak`` (default: no caching, random, popularity), so that
    differences of a few per cent between the strong methods become visible.  With
    ``relative_row=False`` (or ``relative_to=...``, or a missing reference)
    this is :func:`draw_sweep`.
    """
    if not relative_row or "relative_to" in kw or reference not in table.unique("method"):
        return draw_sweep(table, y="latency_s", ylabel=kw.pop("ylabel", "average latency (ms/token)"), **kw)
    panels = list(kw.pop("panels", None) or table.unique("panel"))
    methods = [m for m in (kw.pop("methods", None) or table.unique("method")) if m in table.unique("method")]
    n = len(panels)
    fig, axes = new_figure(2, n, figsize=kw.pop("figsize", None) or (7.0, 6.6), squeeze=False,
                           layout="constrained", sharex="col")
    rel = _relative(table, "latency_s", reference)
    xlabel = table.meta.get("xlabel", "")
    for j, pan in enumerate(panels):
        _draw_axes(axes[0, j], table, pan, methods, "latency_s", 1e3, True, True)
        _draw_axes(axes[1, j], rel, pan, [m for m in methods if m not in weak], "latency_s", 100.0, True, True)
        axes[0, j].set_title(_label(pan), fontsize=9)
        axes[1, j].set_xlabel(xlabel)
    axes[0, 0].set_ylabel("average latency (ms/token)")
    from ..experiments import short_name
    axes[1, 0].set_ylabel(f"relative to {short_name(reference)} (%)")
    _legend(fig, list(axes[0]), 4 if n > 2 else 2)
    _note(fig, table)
    return fig


def draw_fig6(table, **kw):
    """:numref:`fig-exp-k1`: average latency (ms per token) vs edge storage per server, K = 1; second row relative to greedy."""
    return draw_storage(table, "greedy", **kw)


def draw_fig7(table, **kw):
    """:numref:`fig-exp-k2`: average latency (ms per token) vs edge storage per server, K = 2; second row relative to the
    decomposition."""
    kw.setdefault("weak", _WEAK + ("greedy",))
    return draw_storage(table, "decomposition", **kw)


def draw_fig8(table, **kw):
    """:numref:`fig-exp-servers`: average latency (ms per token) vs number of edge servers, one panel per model."""
    return draw_sweep(table, y="latency_s", ylabel="average latency (ms/token)", **kw)


def draw_fig9(table, **kw):
    """:numref:`fig-exp-radio`: average latency vs bandwidth per link (left) and vs mean user–server distance (right)."""
    kw.setdefault("title", _label(table.unique("model")[0]) if len(table) else None)
    fig = draw_sweep(table, y="latency_s", ylabel="average latency (ms/token)", **kw)
    for ax in fig.axes:
        if ax.get_title() == "bandwidth":
            ax.set_xscale("log")
            ax.set_title("vs bandwidth")
        elif ax.get_title() == "distance":
            ax.set_title("vs distance")
    return fig


def draw_fig10(table, **kw):
    """:numref:`fig-exp-runtime`: solver run time (s, log scale) vs problem size — E, N and M."""
    lim = table.meta.get("exact_time_limit_s")
    hl = [(lim, "MILP time limit (HiGHS)")] if lim and "exact" in table.unique("method") else []
    fig = draw_sweep(table, y="runtime_s", scale=1.0, ylabel="run time (s)", logy=True, band=False,
                     sharey=True, exact_as_points=False, hlines=hl, **kw)
    titles = {"experts": "vs experts per layer", "servers": "vs edge servers", "users": "vs users"}
    for ax in fig.axes:
        t = ax.get_title()
        if t == "experts":
            ax.set_xscale("log", base=2)
        if t in titles:
            ax.set_title(titles[t])
    return fig


def draw_fig11(table, *, scale: float = 1.0):
    """:numref:`fig-exp-eps`: accelerated decomposition against ε — fraction of the exact DP's value (left), run time (right).

    Left: sum of the stage values of the accelerated combination over the
    exact DP's (solid), the end-to-end latency reduction relative to the DP's
    (dashed), and the guarantee 1 − ε (dotted).  Right: time of the
    combination step summed over the stages, accelerated (solid) and exact DP
    (dashed horizontal line, storage in ``table.meta["dp_unit_bytes"]`` units).
    """
    panels = table.unique("panel")
    fig, axes = new_figure(1, 2, figsize=(7.0, 4.4), layout="constrained")
    colors = ["#D55E00", "#0072B2", "#009E73", "#CC79A7", "#E69F00"]
    acc = table.where(method="accelerated")
    dp = table.where(method="decomposition")
    band = len(table.unique("seed")) > 1
    for i, pan in enumerate(panels):
        c = colors[i % len(colors)]
        xs, mu, sd = _series(acc, pan, "accelerated", "fraction", complete_only=False)
        if xs.size:
            axes[0].plot(xs, mu, color=c, marker="^", label=_label(pan))
            if band:
                axes[0].fill_between(xs, mu - sd, mu + sd, color=c, alpha=0.12, linewidth=0)
        xs, mu, _ = _series(acc, pan, "accelerated", "fraction_end_to_end", complete_only=False)
        if xs.size:
            axes[0].plot(xs, mu, color=c, linestyle="--", linewidth=1.0)
        xs, mu, sd = _series(acc, pan, "accelerated", "runtime_s", complete_only=False)
        if xs.size:
            axes[1].plot(xs, mu * scale, color=c, marker="^", label=f"accelerated, {_label(pan)}")
        t_dp = [float(r["runtime_s"]) for r in dp.rows if r["panel"] == pan and _finite(r.get("runtime_s"))]
        if t_dp:
            axes[1].axhline(np.mean(t_dp) * scale, color=c, linestyle="--", linewidth=1.0,
                            label=f"exact DP, {_label(pan)}")
    e = sorted(v for v in acc.unique("value") if _finite(v))
    if e:
        axes[0].plot(e, [1 - x for x in e], color="#666666", linestyle=":", label="guarantee 1 − ε")
        axes[0].plot([], [], color="#666666", linestyle="--", linewidth=1.0, label="end to end (latency reduction)")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("ε")
    axes[0].set_ylabel("fraction of the exact DP's value")
    unit = table.meta.get("dp_unit_bytes")
    axes[1].set_ylabel("combination time per solve (s)")
    axes[1].set_yscale("log")
    axes[0].set_title("value (stage sum)")
    axes[1].set_title("run time" + (f" (DP unit {unit / 1024:g} KiB)" if unit else ""))
    _legend(fig, list(axes), 2)                     # below the panels, off the data
    _note(fig, table)
    return fig


def draw_point(table, *, scale: float = 1e3, title: str | None = None):
    """Bar chart of every method at one operating point (the chapter's explorer panel).

    Bars: average latency (ms per token); hatched part: its communication share.
    """
    fig, ax = new_figure(1, 1, figsize=(6.4, 3.4), layout="constrained")
    rows = [r for r in table.rows if _finite(r.get("latency_s"))]
    rows.sort(key=lambda r: r["latency_s"])
    names = [series_style(r["method"]).get("label", r["method"]) for r in rows]
    lat = np.array([r["latency_s"] for r in rows]) * scale
    comm = np.array([r["comm_latency_s"] for r in rows]) * scale
    colors = [SERIES_STYLE.get(r["method"], {}).get("color", "#777777") for r in rows]
    yy = np.arange(len(rows))
    ax.barh(yy, lat, color=colors, alpha=0.85)
    ax.barh(yy, comm, color="none", edgecolor="#333333", hatch="///", linewidth=0.0, label="communication part")
    for i, v in enumerate(lat):
        ax.text(v, i, f" {v:.2f}", va="center", fontsize=7)
    ax.set_yticks(yy, names)
    ax.invert_yaxis()
    ax.set_xlabel("average latency (ms per token); hatched: communication")
    ax.set_xlim(0, (lat.max() if lat.size else 1) * 1.18)
    if title is None and len(table):
        r = table.rows[0]
        m = table.meta
        title = (f"{_label(r['model'])} (K={r['top_k']}), {r['value']:g} GB per server, "
                 f"N={m.get('num_servers')}, {m.get('bandwidth_mhz', 0):g} MHz, seed {r['seed']}")
    if title:
        ax.set_title(title)
    _note(fig, table)
    return fig


# ---------------------------------------------------------------------------
# Panels for slimlib.widgets.explore (cheap frames: re-draw a cached table, or one operating point)
# ---------------------------------------------------------------------------
_DRAW = {"fig1": "draw_fig1", "fig6": "draw_fig6", "fig7": "draw_fig7", "fig8": "draw_fig8", "fig9": "draw_fig9",
         "fig10": "draw_fig10", "fig11": "draw_fig11"}


def redraw(table, *, panel="all", seed="all", methods="all", view: str = "absolute", **kw):
    """Re-draw a figure from a subset of its table — the frames of the chapter's per-figure panels.

    Parameters
    ----------
    table : ResultTable
        Output of one ``figN_data``; ``table.meta["figure"]`` picks the draw function.
    panel : str
        One panel (model, or ``"bandwidth"``/``"distance"``, ...), or ``"all"``.
    seed : int or "all"
        One seed, or the mean (± band) over all seeds.
    methods : str or sequence
        ``"all"``, ``"proposed vs best baselines"`` or a list of method names.
    view : str
        ``"absolute"``, or ``"relative to <method>"``: latency as a percentage
        of that method's on the same instance (no-caching and the weakest
        baselines are then left out, they would flatten the plot).
    """
    from ..experiments import ResultTable
    rows = table.rows
    if panel != "all":
        rows = [r for r in rows if r["panel"] == panel]
    if seed != "all":
        rows = [r for r in rows if r["seed"] == seed]
    if methods == "proposed vs best baselines":
        methods = ["greedy", "decomposition", "accelerated", "exact", "blind-greedy", "coordinated-popularity",
                   "slimcaching", "u-shaped", "none"]
    if methods != "all":
        rows = [r for r in rows if r["method"] in set(methods)]
    if view != "absolute":
        if not view.startswith("relative to "):
            raise ValueError(f"view: must be 'absolute' or 'relative to <method>' (got {view!r})")
        kw["relative_to"] = view[len("relative to "):]
        if methods == "all":
            weak = _WEAK + (("greedy",) if table.meta.get("figure") == "fig7" else ())
            rows = [r for r in rows if r["method"] not in weak]
    sub = ResultTable(rows, table.meta)
    fig = globals()[_DRAW[table.meta["figure"]]](sub, **kw)
    return fig


def draw_explorer(model: str = "moe-llava-phi2-2.7b-4e", K="card", storage_gb: float = 1.5, servers: int = 5,
                  bandwidth_mhz: float = 10.0, seed: int = 0, **kw):
    """Every method at one operating point as a bar chart (the chapter's explorer panel).

    Computes :func:`slimlib.experiments.point_data` (cached) and draws it with :func:`draw_point`.
    ``K="card"`` keeps the model card's Top-K; an integer overrides it (statistics generated for that K).
    """
    from ..experiments import point_data
    t = point_data(model=model, top_k=None if K == "card" else int(K), server_storage_gb=storage_gb,
                   num_servers=int(servers), bandwidth_mhz=bandwidth_mhz, seed=int(seed), **kw)
    return draw_point(t)
