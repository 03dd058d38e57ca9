"""Schematics and the structure widget of chapter *Problem and structure*.

* :func:`draw_system` — :numref:`fig-slimcaching-system`: (a) local hit, edge hit and miss to the cloud
  in a wireless edge network; (b) the operations of one MoE layer under
  SlimCaching.
* :func:`draw_routing_cases` — :numref:`fig-routing-cases`: the hidden-state routing cases of a
  Top-2 group ``{i, j}``, each annotated with its latency from the evaluator
  (:func:`slimlib.theory_study.routing_cases`); :func:`routing_cases_data` returns
  those latencies as rows (the CSV of ``python -m slimlib figures``).
* :func:`draw_gain_path` — the widget: marginal gains of one (server, expert)
  pair along a growing cache (:func:`slimlib.theory_study.gain_path_example`).

Everything is drawn with matplotlib patches and arrows; no image files.
"""
from __future__ import annotations

import numpy as np
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch, Polygon, Rectangle

from . import STYLE, new_figure, source_note

__all__ = ["draw_system", "draw_network_figure", "draw_network", "draw_layer_operations", "draw_routing_cases", "routing_cases_data",
           "draw_gain_path", "EXPERT_COLORS", "LOCATION_COLORS"]

_PAL = STYLE["axes.prop_cycle"].by_key()["color"]
#: Colours of the experts in the schematics.
EXPERT_COLORS = [_PAL[1], _PAL[0], _PAL[2], _PAL[3], _PAL[4], _PAL[5]]
#: Colours of the three kinds of location.
LOCATION_COLORS = {"device": "#E8F1FA", "edge": "#FFF3E0", "cloud": "#F2F2F2"}
_INK = "#333333"


# -----------------------------------------------------------------------------
# Primitives
# -----------------------------------------------------------------------------
def _blank(ax, xlim, ylim):
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_aspect("equal")
    ax.axis("off")


def _box(ax, x, y, w, h, text="", fc="white", ec=_INK, fontsize=8, lw=1.0, weight="normal", pad=0.04, **kw):
    """Rounded box with its lower-left corner at ``(x, y)``; text centred."""
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle=f"round,pad={pad},rounding_size=0.08", fc=fc, ec=ec, lw=lw))
    if text:
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=fontsize, color=_INK,
                weight=weight, **kw)


def _arrow(ax, p, q, color=_INK, lw=1.2, style="-|>", rad=0.0, ls="-", both=False, mutation=9, zorder=3):
    st = "<|-|>" if both else style
    ax.add_patch(FancyArrowPatch(p, q, arrowstyle=st, mutation_scale=mutation, color=color, lw=lw, ls=ls,
                                 connectionstyle=f"arc3,rad={rad}", shrinkA=2, shrinkB=2, zorder=zorder))


def _cloud(ax, cx, cy, s=1.0, text="", fc=LOCATION_COLORS["cloud"], fontsize=8):
    for dx, dy, r in [(-0.55, 0.0, 0.38), (-0.15, 0.22, 0.48), (0.35, 0.15, 0.42), (0.7, -0.05, 0.3),
                      (0.1, -0.12, 0.4)]:
        ax.add_patch(Circle((cx + dx * s, cy + dy * s), r * s, fc=fc, ec=_INK, lw=1.0, zorder=1))
    for dx, dy, r in [(-0.55, 0.0, 0.38), (-0.15, 0.22, 0.48), (0.35, 0.15, 0.42), (0.7, -0.05, 0.3),
                      (0.1, -0.12, 0.4)]:
        ax.add_patch(Circle((cx + dx * s, cy + dy * s), r * s - 0.02, fc=fc, ec="none", zorder=1.5))
    if text:
        ax.text(cx + 0.05 * s, cy + 0.05 * s, text, ha="center", va="center", fontsize=fontsize, zorder=2)


def _tower(ax, cx, y, h=0.9, color=_INK):
    """A base-station mast with its foot at ``(cx, y)``."""
    ax.add_patch(Polygon([(cx - 0.18, y), (cx + 0.18, y), (cx + 0.03, y + h), (cx - 0.03, y + h)],
                         closed=True, fc="white", ec=color, lw=1.0, zorder=2))
    for r in (0.15, 0.27):
        for sgn in (-1, 1):
            th = np.linspace(-0.6, 0.6, 12) + (0 if sgn > 0 else np.pi)
            ax.plot(cx + r * np.cos(th), y + h + r * np.sin(th), color=color, lw=0.8, zorder=2)


def _phone(ax, cx, cy, w=0.55, h=0.9, text=""):
    ax.add_patch(FancyBboxPatch((cx - w / 2, cy - h / 2), w, h, boxstyle="round,pad=0.02,rounding_size=0.08",
                                fc=LOCATION_COLORS["device"], ec=_INK, lw=1.0, zorder=2))
    ax.add_patch(Rectangle((cx - w / 2 + 0.06, cy - h / 2 + 0.12), w - 0.12, h - 0.26, fc="white", ec=_INK,
                           lw=0.5, zorder=2))
    if text:
        ax.text(cx, cy - h / 2 - 0.12, text, ha="center", va="top", fontsize=7.5)


def _chip(ax, x, y, label, color, size=0.3, fontsize=7, zorder=4):
    """A small coloured square standing for one expert, centred at ``(x, y)``."""
    ax.add_patch(Rectangle((x - size / 2, y - size / 2), size, size, fc=color, ec=_INK, lw=0.6, zorder=zorder))
    ax.text(x, y, label, ha="center", va="center", fontsize=fontsize, color="white", weight="bold", zorder=zorder + 1)


def _wireless(ax, p, q, color="#888888"):
    ax.plot([p[0], q[0]], [p[1], q[1]], color=color, lw=0.8, ls=(0, (1, 2)), zorder=1)


# -----------------------------------------------------------------------------
# The system (fig-system-network, fig-slimcaching-system)
# -----------------------------------------------------------------------------
def draw_network(ax) -> None:
    """Panel (a) of :numref:`fig-slimcaching-system`: local hit, edge hit and miss to the cloud in a wireless edge network.

    Three users run the same MoE layer; each token needs one expert (colour).
    User 1 finds it on its device, user 2 on edge server 1, user 3 nowhere at
    the edge, so its hidden state travels through its best server and the
    backhaul to the cloud.  Latency terms follow chapter *The system model*,
    :eq:`eq-t-local`–:eq:`eq-t-cloud`.
    """
    _blank(ax, (-0.2, 10.4), (-0.9, 6.6))
    red, blue, green, purple = EXPERT_COLORS[0], EXPERT_COLORS[1], EXPERT_COLORS[2], EXPERT_COLORS[3]
    # cloud and backhaul
    _cloud(ax, 5.0, 5.6, s=1.35, text="cloud\n(all experts, $f_c$)")
    servers = {1: (2.4, 2.7), 2: (7.6, 2.7)}
    for n, (x, y) in servers.items():
        ax.plot([x + 0.05, 5.0 + (x - 5.0) * 0.25], [y + 1.2, 4.95], color=_INK, lw=1.4, zorder=1)
        _tower(ax, x - 0.85, y, h=0.9)
        _box(ax, x - 0.45, y - 0.25, 1.3, 1.25, fc=LOCATION_COLORS["edge"], pad=0.03)
        ax.text(x + 0.2, y + 0.78, f"edge server {n}", ha="center", va="center", fontsize=7.5)
        ax.text(x + 0.2, y - 0.07, f"$Q_{n}$ bytes, $f_{n}$", ha="center", va="center", fontsize=7)
    ax.text(2.75, 4.3, "backhaul\n$r_{bh}$, $d_{bh}$", fontsize=7, ha="right", va="center", color="#555555")
    # server caches: server 1 holds blue and purple, server 2 holds purple and red
    _chip(ax, servers[1][0] - 0.05, servers[1][1] + 0.35, "2", blue)
    _chip(ax, servers[1][0] + 0.45, servers[1][1] + 0.35, "4", purple)
    _chip(ax, servers[2][0] - 0.05, servers[2][1] + 0.35, "4", purple)
    _chip(ax, servers[2][0] + 0.45, servers[2][1] + 0.35, "1", red)
    # users
    users = {1: (0.7, 0.55), 2: (3.9, 0.55), 3: (9.3, 0.55)}
    chips = {1: [("1", red)], 2: [("1", red)], 3: [("4", purple)]}
    for m, (x, y) in users.items():
        _phone(ax, x, y, text=f"user {m}")
        for k, (lab, col) in enumerate(chips[m]):
            _chip(ax, x, y + 0.12, lab, col, size=0.26)
    for m, (x, y) in users.items():
        for n, (sx, sy) in servers.items():
            _wireless(ax, (x, y + 0.45), (sx - 0.85, sy + 0.9))
    # ① local hit: user 1 needs expert 1 (on its device)
    _arrow(ax, (users[1][0] + 0.3, users[1][1] + 0.3), (users[1][0] + 0.3, users[1][1] - 0.25), color=red, rad=-1.6,
           lw=1.5)
    ax.text(users[1][0] + 0.75, users[1][1] - 0.05, "① local hit\nneeds 1: $F/f_m$", fontsize=7, color=red,
            va="center")
    # ② edge hit: user 2 needs expert 2 (on server 1)
    _arrow(ax, (users[2][0] - 0.1, users[2][1] + 0.5), (servers[1][0] + 0.3, servers[1][1] - 0.3), color=blue,
           lw=1.6, both=True)
    ax.text(3.55, 1.95, "② edge hit, needs 2:\n$h/r_{up}+F/f_n+h/r_{dn}$", fontsize=7, color=blue, ha="left",
            va="center")
    # ③ miss: user 3 needs expert 3, cached nowhere: via server 2 and the backhaul to the cloud
    _arrow(ax, (users[3][0] - 0.1, users[3][1] + 0.5), (servers[2][0] + 0.55, servers[2][1] - 0.3), color=green,
           lw=1.6, both=True)
    _arrow(ax, (servers[2][0] + 0.35, servers[2][1] + 1.1), (5.95, 4.95), color=green, lw=1.6, both=True, rad=0.15)
    ax.text(9.55, 3.55, "③ miss, needs 3:\nvia best server $n_0$\nand the backhaul\nto the cloud",
            fontsize=7, color=green, ha="center", va="center")
    _chip(ax, 6.55, 5.55, "3", green)
    ax.text(5.0, -0.85, "colours/numbers: experts of one MoE layer; dotted: wireless links", fontsize=7,
            ha="center", va="bottom", color="#555555")


def draw_layer_operations(ax) -> None:
    """Panel (b) of :numref:`fig-slimcaching-system`: the operations of one MoE layer under SlimCaching.

    The device runs the gate, picks the Top-``K`` group, dispatches the hidden
    state of each selected expert to the fastest place holding it (device,
    an edge server, or the cloud), waits for the slowest, and combines the
    outputs (chapter *The system model*, :eq:`eq-tau-expert` and :eq:`eq-token-latency`).
    """
    _blank(ax, (-0.2, 13.4), (-0.3, 4.6))
    dev = LOCATION_COLORS["device"]
    _box(ax, 0.0, 1.6, 1.55, 1.0, "hidden state\n$x_\\ell$ of\nthe token", fc=dev)
    _box(ax, 2.05, 1.6, 1.5, 1.0, "gate\n$g(x_\\ell)$\n(on device)", fc=dev)
    _box(ax, 4.05, 1.6, 1.5, 1.0, "Top-$K$\n$G=\\{i,j\\}$", fc=dev)
    _arrow(ax, (1.6, 2.1), (2.0, 2.1))
    _arrow(ax, (3.6, 2.1), (4.0, 2.1))
    opts = [(3.35, "device cache holds $e$:\nrun locally", dev, EXPERT_COLORS[0]),
            (1.85, "edge server $n$ holds $e$:\nsend $x_\\ell$ up, run, send back", LOCATION_COLORS["edge"],
             EXPERT_COLORS[1]),
            (0.35, "no cache holds $e$: via $n_0$\nand the backhaul to the cloud", LOCATION_COLORS["cloud"],
             EXPERT_COLORS[2])]
    for y, text, fc, col in opts:
        _box(ax, 6.1, y, 3.1, 0.85, text, fc=fc, fontsize=7.2)
        _arrow(ax, (5.6, 2.1), (6.05, y + 0.42), color=col)
        _arrow(ax, (9.25, y + 0.42), (9.7, 2.1), color=col)
    ax.text(7.65, 4.45, "for each $e\\in G$: the fastest holder, $\\tau(\\ell,e)$", ha="center", fontsize=7.5,
            style="italic")
    _box(ax, 9.75, 1.5, 1.5, 1.2, "wait for the\nslowest:\n$\\max_{e\\in G}\\,\\tau(\\ell,e)$", fc=dev, fontsize=7.2)
    _box(ax, 11.65, 1.5, 1.6, 1.2, "combine\n$\\sum_{e\\in G} g_e(x_\\ell) E_e(x_\\ell)$\n→ layer $\\ell{+}1$",
         fc=dev, fontsize=7.0)
    _arrow(ax, (11.3, 2.1), (11.6, 2.1))


def draw_system():
    """:numref:`fig-slimcaching-system`: SlimCaching in a wireless edge network — (a) hits and misses, (b) one MoE layer.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, axes = new_figure(2, 1, figsize=(8.6, 7.0), gridspec_kw=dict(height_ratios=[7.5, 4.9]))
    draw_network(axes[0])
    draw_layer_operations(axes[1])
    axes[0].set_title("(a) local cache hit, edge cache hit, and local/edge cache miss", fontsize=9, loc="left")
    axes[1].set_title("(b) operations of SlimCaching within one MoE layer", fontsize=9, loc="left")
    fig.subplots_adjust(left=0.01, right=0.99, top=0.96, bottom=0.01, hspace=0.08)
    return fig


def draw_network_figure():
    """:numref:`fig-system-network` of chapter *The system model*: the network alone.

    Panel (a) of :func:`draw_system` at the width of the text column: users
    with device caches, edge servers with their storage, the backhaul and the
    cloud, and one local hit, one edge hit and one miss.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, ax = new_figure(1, 1, figsize=(7.0, 4.9))
    draw_network(ax)
    fig.subplots_adjust(left=0.01, right=0.99, top=0.99, bottom=0.01)
    return fig


# -----------------------------------------------------------------------------
# Routing cases (fig-routing-cases)
# -----------------------------------------------------------------------------
def _fmt_ms(t: float) -> str:
    return f"{t * 1e3:.3f} ms"


def draw_routing_cases(cases=None):
    """:numref:`fig-routing-cases`: hidden-state routing cases of a Top-2 group ``{i, j}``.

    Parameters
    ----------
    cases : list of slimlib.theory_study.RoutingCase, optional
        Default :func:`slimlib.theory_study.routing_cases` (MoE-LLaVA-Phi2 expert,
        Table 1, servers at 100 m and 250 m).  Each panel is annotated with
        ``tau(l, i)``, ``tau(l, j)`` and the group latency
        ``tau(l, {i, j}) = max``, all computed by the evaluator; the group
        latency text carries the gid ``"group-latency:<key>"``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from ..theory_study import routing_cases
    cases = routing_cases() if cases is None else cases
    ncols = 3
    nrows = (len(cases) + 1 + ncols - 1) // ncols          # one extra panel: the call latencies
    fig, axes = new_figure(nrows, ncols, figsize=(7.6, 3.55 * nrows))
    axes = np.atleast_1d(axes).ravel()
    ci, cj = EXPERT_COLORS[0], EXPERT_COLORS[1]
    from ..latency import best_server
    n0 = int(best_server(cases[0].problem)[0])        # the server a cloud call goes through
    pos = {"device": (1.5, 0.75), "server 1": (0.65, 2.35), "server 2": (2.35, 2.35), "cloud": (1.5, 3.85)}
    for k, (ax, case) in enumerate(zip(axes, cases)):
        _blank(ax, (-0.1, 3.1), (-1.55, 4.55))
        _cloud(ax, *pos["cloud"], s=0.62)
        ax.text(pos["cloud"][0], pos["cloud"][1] + 0.5, "cloud", ha="center", va="bottom", fontsize=7)
        for name in ("server 1", "server 2"):
            x, y = pos[name]
            _box(ax, x - 0.5, y - 0.32, 1.0, 0.64, "", fc=LOCATION_COLORS["edge"], pad=0.02)
            ax.text(x, y + 0.18, name.replace("server", "server"), ha="center", va="center", fontsize=7)
            ax.plot([x, pos["cloud"][0] + (x - 1.5) * 0.3], [y + 0.34, pos["cloud"][1] - 0.3], color="#999999",
                    lw=0.8, zorder=0.5)
        x, y = pos["device"]
        _box(ax, x - 0.55, y - 0.42, 1.1, 0.84, "", fc=LOCATION_COLORS["device"], pad=0.02)
        ax.text(x, y + 0.25, "device", ha="center", va="center", fontsize=7)
        # where the experts are served
        slots = {}
        for lab, col, where, dx in (("i", ci, case.where[0], -0.2), ("j", cj, case.where[1], 0.2)):
            bx, by = pos[where]
            off = dx if case.where[0] == case.where[1] else 0.0
            cy = by - 0.08 if where != "cloud" else by - 0.05
            _chip(ax, bx + off, cy, lab, col, size=0.28, fontsize=7)
            slots[lab] = (where, col)
        # routes of the hidden state
        for lab, (where, col) in slots.items():
            if where == "device":
                ax.add_patch(FancyArrowPatch((x - 0.45 + (0 if lab == "i" else 0.9), y - 0.45),
                                             (x - 0.2 + (0 if lab == "i" else 0.4), y - 0.45),
                                             arrowstyle="-|>", mutation_scale=7, color=col, lw=1.2,
                                             connectionstyle="arc3,rad=1.2"))
                continue
            if where == "cloud":
                # via the best server n0 and the backhaul
                s0 = pos[f"server {n0 + 1}"]
                _arrow(ax, (x + 0.1, y + 0.45), (s0[0] + 0.3, s0[1] - 0.35), color=col, both=True, lw=1.3, rad=-0.15)
                _arrow(ax, (s0[0] + 0.3, s0[1] + 0.35),
                       (pos["cloud"][0] + 0.15, pos["cloud"][1] - 0.3), color=col, both=True, lw=1.3, rad=-0.15)
                continue
            sx, sy = pos[where]
            shift = -0.12 if lab == "i" else 0.12
            _arrow(ax, (x + shift + (sx - x) * 0.02, y + 0.45), (sx + shift, sy - 0.35), color=col, both=True,
                   lw=1.3)
        ax.set_title(f"({chr(97 + k)}) {case.title}", fontsize=9)
        ti, tj = case.tau
        via = lambda w: f"cloud via server {n0 + 1}" if w == "cloud" else w  # noqa: E731
        ax.text(1.5, -0.12, f"$\\tau_i$ = {_fmt_ms(ti)} ({via(case.where[0])})\n"
                f"$\\tau_j$ = {_fmt_ms(tj)} ({via(case.where[1])})", ha="center", va="top", fontsize=7.5)
        ax.text(1.5, -1.0, f"$\\tau(\\ell,\\{{i,j\\}})$ = {_fmt_ms(case.latency)}", ha="center", va="top", fontsize=8.5, weight="bold",
                gid=f"group-latency:{case.key}")
    prob = cases[0].problem
    # the extra panel: the call latencies of the example, from the evaluator
    from ..latency import call_latency
    c = call_latency(prob)
    for ax in axes[len(cases):]:
        _blank(ax, (-0.1, 3.1), (-1.55, 4.55))
    ax = axes[len(cases)]
    d = prob.network.distance_m[0] if prob.network.distance_m is not None else None
    lines = ["one call of an expert (evaluator):", "",
             f"device:  $t^{{loc}}$ = {_fmt_ms(c.local[0])}",
             f"server 1:  $t^{{edge}}_1$ = {_fmt_ms(c.edge[0, 0])}",
             f"server 2:  $t^{{edge}}_2$ = {_fmt_ms(c.edge[0, 1])}",
             f"cloud:  $t^{{cloud}}$ = {_fmt_ms(c.cloud[0])}", "",
             "group: $\\tau(\\ell,\\{i,j\\}) = \\max(\\tau_i, \\tau_j)$"]
    if d is not None:
        lines.insert(1, f"(servers at {d[0]:.0f} m and {d[1]:.0f} m)")
    ax.text(0.0, 3.9, "\n".join(lines), ha="left", va="top", fontsize=8, linespacing=1.7)
    source_note(fig, f"latencies: slimlib evaluator, {prob.models[0].name} expert, Table 1 parameters")
    fig.subplots_adjust(left=0.01, right=0.99, top=0.95, bottom=0.04, wspace=0.05, hspace=0.12)
    return fig


def routing_cases_data(cases=None) -> list[dict]:
    """The numbers of :numref:`fig-routing-cases` (:func:`draw_routing_cases`) as rows, one per routing case.

    Parameters
    ----------
    cases : list of slimlib.theory_study.RoutingCase, optional
        Default :func:`slimlib.theory_study.routing_cases` (the figure's default).

    Returns
    -------
    list of dict
        Keys ``panel`` (a, b, ...), ``case`` (key), ``title``, ``expert_i_at``,
        ``expert_j_at`` (where each expert is served: ``device``,
        ``server 1``, ``server 2`` or ``cloud``), ``tau_i_s``, ``tau_j_s``
        (:func:`slimlib.expert_latency`, seconds), ``group_latency_s``
        (:func:`slimlib.group_latency`; equals
        :func:`slimlib.average_latency` of the case), the one-call latencies of
        the figure's last panel ``call_local_s``, ``call_edge_<n>_s``,
        ``call_cloud_s`` (:func:`slimlib.call_latency`, seconds),
        ``cloud_via_server`` (1-based), ``distance_server_<n>_m`` and ``model``.
    """
    from ..latency import best_server, call_latency
    from ..theory_study import routing_cases
    cases = routing_cases() if cases is None else cases
    rows = []
    for k, case in enumerate(cases):
        prob = case.problem
        c = call_latency(prob)
        N = prob.network.num_servers
        d = prob.network.distance_m
        row = dict(panel=chr(97 + k), case=case.key, title=case.title, expert_i_at=case.where[0],
                   expert_j_at=case.where[1], tau_i_s=float(case.tau[0]), tau_j_s=float(case.tau[1]),
                   group_latency_s=float(case.latency), call_local_s=float(c.local[0]))
        row.update({f"call_edge_{n + 1}_s": float(c.edge[0, n]) for n in range(N)})
        row.update(call_cloud_s=float(c.cloud[0]), cloud_via_server=int(best_server(prob)[0]) + 1)
        if d is not None:
            row.update({f"distance_server_{n + 1}_m": float(d[0][n]) for n in range(N)})
        row["model"] = prob.models[0].name
        rows.append(row)
    return rows


# -----------------------------------------------------------------------------
# Widget: marginal gains along a growing cache
# -----------------------------------------------------------------------------
def draw_gain_path(top_k: int = 1, num_experts: int = 4, seed: int = 0, *, tol: float = 1e-12):
    """Marginal gain of one (server, expert) pair as the cache grows (the chapter's widget).

    Data from :func:`slimlib.theory_study.gain_path_example`: a random one-layer
    problem with two users and two servers, the element ``e*`` (user 0's most
    activated expert on its fastest server) and a seeded order in which the
    other pairs are added.  Under submodularity (Proposition 1, ``K = 1``)
    the bars never grow; rises (marked) show non-submodularity.

    Parameters
    ----------
    top_k, num_experts, seed : int
    tol : float
        Rises smaller than this (seconds) are not marked.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from ..theory_study import gain_path_example
    prob, elem, order, gains = gain_path_example(int(top_k), int(num_experts), int(seed))
    g = gains * 1e3
    rise = np.r_[False, np.diff(gains) > tol]
    fall = np.r_[False, np.diff(gains) < -tol]
    fig, ax = new_figure(figsize=(7.2, 3.6))
    colors = [_PAL[1] if r else (_PAL[0] if f else "#7FA7C9") for r, f in zip(rise, fall)]
    colors[0] = "#BBBBBB"          # S_0 = empty set: the reference
    ax.bar(np.arange(len(g)), g, color=colors, edgecolor=_INK, lw=0.5, width=0.7)
    labels = ["∅"] + [f"+({n},{e})" for n, u, l, e in order]
    ax.set_xticks(np.arange(len(g)))
    ax.set_xticklabels(labels, rotation=60, fontsize=7)
    ax.set_xlabel("cache $S_i$ (pair (server, expert) added at step $i$)")
    ax.set_ylabel(f"gain of $e^*$=({elem[0]},{elem[3]}) [ms]")
    verdict = (f"rises at {int(rise.sum())} step(s): not submodular" if rise.any()
               else "never rises (diminishing returns)")
    ax.set_title(f"K={top_k}, E={num_experts}, seed={seed}: $R(S_i+e^*)-R(S_i)$ — {verdict}", fontsize=9)
    ax.set_ylim(0, max(1e-9, g.max()) * 1.15)
    from matplotlib.patches import Patch
    ax.legend(handles=[Patch(color=_PAL[1], label="gain rose"), Patch(color=_PAL[0], label="gain fell"),
                       Patch(color="#7FA7C9", label="unchanged"), Patch(color="#BBBBBB", label="at $S_0=\\emptyset$")],
              fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    source_note(fig, "statistics: synthetic (slimlib.instances.random_problem)")
    fig.subplots_adjust(left=0.09, right=0.8, bottom=0.27, top=0.9)
    return fig
