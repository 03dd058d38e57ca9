"""What the chapter reads off the tables (chapter *Experiments*): Table 1, dominance, gains, sentences.

Every verdict sentence of the chapter ("at or below every baseline", "needs
x ms more") is chosen here from the computed numbers, so the prose follows the
build.  Nothing here draws; :func:`panel_label` is the display name of a
panel, shared with :mod:`slimlib.plotting.experiments`.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..io import load_model_card, load_parameters
from ..latency import average_latency
from ..network import Parameters
from .methods import _seeds, _solve
from .problems import LLAVA_MODELS, experiment_problem
from .table import ResultTable

#: Public names are re-exported (and documented) by :mod:`slimlib.experiments`.
__all__: list[str] = []

#: Methods proposed by the paper (the rest are baselines or references).
PROPOSED = ("greedy", "decomposition", "accelerated", "slimcaching")
#: Baselines of chapter *Experiments* (U-shaped split inference only in Figure 1).
BASELINES = ("none", "random", "popularity", "coordinated-popularity", "blind-greedy", "u-shaped")

#: Display names of the model cards (panel titles of the figures, names in sentences).
PANEL_TITLES = {
    "switch-base-8": "Switch-base-8", "switch-base-16": "Switch-base-16", "switch-base-32": "Switch-base-32",
    "switch-base-64": "Switch-base-64", "switch-base-128": "Switch-base-128", "switch-base-256": "Switch-base-256",
    "moe-llava-phi2-2.7b-4e": "MoE-LLaVA-Phi2-2.7B-4e", "moe-llava-qwen-1.8b-4e": "MoE-LLaVA-Qwen-1.8B-4e",
    "moe-llava-stablelm-1.6b-4e": "MoE-LLaVA-StableLM-1.6B-4e",
}


def panel_label(panel) -> str:
    """Display name of a panel: the model card's name as the paper writes it, else ``str(panel)``."""
    return PANEL_TITLES.get(panel, str(panel))


def table1(params: Parameters | None = None, *, precision: bool = True) -> list[dict]:
    """Rows of Table 1 (simulation parameters) from ``data/`` — the same files the code reads.

    Parameters
    ----------
    params : Parameters, optional
        Default: :func:`slimlib.load_parameters`.
    precision : bool
        Append the storage precision of each model family from ``data/models``
        (bytes per weight and per activation).

    Returns
    -------
    list of dict
        ``name``, ``label``, ``value``, ``unit``, ``display``, ``source`` (as :meth:`Parameters.table`).
    """
    p = load_parameters() if params is None else params
    rows = p.table()
    if precision:
        for fam, name in (("Switch-base", "switch-base-8"), ("MoE-LLaVA", LLAVA_MODELS[0])):
            m = load_model_card(name)
            kind = {4: "fp32", 2: "fp16", 1: "int8"}.get(m.bytes_per_param, "")
            rows.append({"name": f"bytes_per_param[{fam}]", "label": f"Weight precision, {fam}",
                         "value": m.bytes_per_param, "unit": "B/param",
                         "display": f"{m.bytes_per_param:g} B per parameter ({kind})", "source": "model card"})
        m = load_model_card("switch-base-8")
        rows.append({"name": "act_bytes", "label": "Activation precision (hidden state on the air)",
                     "value": m.act_bytes, "unit": "B", "display": f"{m.act_bytes:g} B per element",
                     "source": "model card"})
    return rows


def table1_markdown(rows: Sequence[dict] | None = None) -> str:
    """Table 1 as a Markdown table (parameter, value, slimlib name, source)."""
    from ..reporting import markdown_table
    rows = table1() if rows is None else rows
    return markdown_table(rows, ["label", "display", "name", "source"], ["Parameter", "Value", "slimlib name", "Source"])


def dominance(table: ResultTable, proposed: Sequence[str] | None = None, baselines: Sequence[str] | None = None,
              *, y: str | None = None, rtol: float = 1e-9) -> list[dict]:
    """Points where a proposed method is *worse* than a baseline (seed means).

    Returns
    -------
    list of dict
        ``panel``, ``value``, ``method``, ``baseline``, ``latency``,
        ``baseline_latency`` (seconds) and ``excess`` (relative) for every
        violation; empty when every proposed method is at or below every
        baseline at every point.
    """
    y = y or table.meta.get("y", "latency_s")
    ms = table.unique("method")
    proposed = [m for m in (PROPOSED if proposed is None else proposed) if m in ms]
    baselines = [m for m in (BASELINES if baselines is None else baselines) if m in ms]
    mean = {(s["panel"], s["value"], s["method"]): s["mean"] for s in table.summary(y)}
    out = []
    for (pan, v, m), lat in mean.items():
        if m not in proposed:
            continue
        for b in baselines:
            lb = mean.get((pan, v, b))
            if lb is not None and lat > lb * (1 + rtol) + 1e-15:
                out.append(dict(panel=pan, value=v, method=m, baseline=b, latency=lat, baseline_latency=lb,
                                excess=lat / lb - 1))
    return out


def gains(table: ResultTable, method: str, against: str, *, y: str | None = None) -> dict:
    """Relative latency reduction of ``method`` against ``against`` over all points (seed means).

    Returns
    -------
    dict
        ``mean``, ``min``, ``max`` of ``1 - T(method)/T(against)`` over the
        (panel, value) points, and ``at_max`` = (panel, value) where it is largest.
    """
    y = y or table.meta.get("y", "latency_s")
    mean = {(s["panel"], s["value"], s["method"]): s["mean"] for s in table.summary(y)}
    red = {}
    for (pan, v, m), lat in mean.items():
        if m == method and (pan, v, against) in mean and mean[(pan, v, against)] > 0:
            red[(pan, v)] = 1 - lat / mean[(pan, v, against)]
    if not red:
        return dict(mean=float("nan"), min=float("nan"), max=float("nan"), at_max=None)
    vals = np.array(list(red.values()))
    return dict(mean=float(vals.mean()), min=float(vals.min()), max=float(vals.max()),
                at_max=max(red, key=red.get))


def storage_point_latency(model: str, storage_gb: float, seeds, method: str, *, params: Parameters | None = None,
                          **options) -> float:
    """Mean latency (s) of ``method`` (with solver ``options``) at one point of Figure 6/7, over ``seeds``.

    The problems are those of :func:`fig6_data`/:func:`fig7_data` with default sizes, so a point of
    their tables can be re-solved with other options (e.g. ``passes=3`` for the decomposition).
    """
    lats = []
    for seed in _seeds(seeds):
        problem, _ = experiment_problem(model, params=params, seed=seed, server_storage_gb=storage_gb)
        lats.append(average_latency(problem, _solve(problem, method, dict(options))))
    return float(np.mean(lats))


def passes_sentence(table: ResultTable, baselines: Sequence[str], *, method: str = "decomposition",
                    passes: int = 3) -> str:
    """A sentence on the worst point where ``method`` is above a baseline, re-solved with ``passes`` passes.

    Empty string when ``method`` is at or below every baseline everywhere.
    """
    bad = dominance(table, [method], baselines)
    if not bad:
        return ""
    w = max(bad, key=lambda b: b["excess"])
    again = storage_point_latency(w["panel"], w["value"], table.meta["seeds"], method, passes=passes)
    verb = "brings it to" if again < w["latency"] * (1 - 1e-9) else "leaves it at"
    return (f"At the worst point ({panel_label(w['panel'])}, {w['value']:g} GB) {short_name(method)} needs "
            f"{w['latency'] * 1e3:.2f} ms against {short_name(w['baseline'])}'s {w['baseline_latency'] * 1e3:.2f} ms; "
            f"revisiting every server {passes - 1} more times (option passes={passes}, block coordinate ascent) "
            f"{verb} {again * 1e3:.2f} ms.")


def bound_gaps(table: ResultTable, method: str) -> dict:
    """How far ``method`` is from the MILP: its latency over the MILP's optimum or lower bound, per instance.

    For every MILP row with a proved optimum (its latency) or a finite lower
    bound ``bound_s``, the ratio ``T(method) / bound - 1`` on the same
    (panel, value, seed) is an upper bound on ``method``'s excess over the
    optimum.

    Returns
    -------
    dict
        ``n`` (instances), ``n_optimal`` (MILP proved optimal), ``max``,
        ``mean`` (relative excess, NaN when ``n = 0``), ``panels`` (labels of the
        models where the MILP ran, joined by commas).
    """
    gaps, nopt, panels = [], 0, []
    for r in table.where(method="exact"):
        ref = r["latency_s"] if r["status"] == "optimal" else r.get("bound_s")
        if ref is None or not math.isfinite(ref) or ref <= 0:
            continue
        q = table.where(panel=r["panel"], value=r["value"], seed=r["seed"], method=method)
        if not len(q):
            continue
        gaps.append(q[0]["latency_s"] / ref - 1)
        nopt += r["status"] == "optimal"
        if panel_label(r["panel"]) not in panels:
            panels.append(panel_label(r["panel"]))
    g = np.array(gaps)
    return dict(n=len(gaps), n_optimal=nopt, max=float(g.max()) if g.size else float("nan"),
                mean=float(g.mean()) if g.size else float("nan"), panels=", ".join(panels))


#: Short names of the methods for sentences in the chapter.
SHORT_NAMES = {"greedy": "greedy", "decomposition": "the decomposition", "accelerated": "the accelerated decomposition",
               "exact": "the MILP", "blind-greedy": "co-activation-blind greedy", "popularity": "popularity",
               "coordinated-popularity": "coordinated popularity", "random": "random caching",
               "none": "no edge caching", "u-shaped": "U-shaped split inference", "slimcaching": "SlimCaching"}


def short_name(method: str) -> str:
    """Name of a method inside a sentence (``"the decomposition"``, ``"coordinated popularity"``, ...)."""
    return SHORT_NAMES.get(method, method)


def dominance_sentence(table: ResultTable, proposed: Sequence[str], baselines: Sequence[str],
                       unit: str = "GB") -> str:
    """One clause per proposed method: at or below every baseline everywhere, or where and by how much not.

    Uses :func:`dominance` (means over the seeds).
    """
    npts = len({(r["panel"], r["value"]) for r in table})
    parts = []
    for m in proposed:
        if m not in table.unique("method"):
            continue
        bad = dominance(table, [m], baselines)
        if not bad:
            parts.append(f"{short_name(m)} is at or below every baseline at all {npts} points")
            continue
        pts = {(b["panel"], b["value"]) for b in bad}
        w = max(bad, key=lambda b: b["excess"])
        parts.append(f"{short_name(m)} is above some baseline at {len(pts)} of the {npts} points, by at most "
                     f"{w['excess']:.2%} (above {short_name(w['baseline'])}, {panel_label(w['panel'])} at "
                     f"{w['value']:g} {unit})")
    return "; ".join(parts)


def _compare_phrase(red: float, other: str) -> str:
    if red >= 0.005:
        return f"{red:.0%} less than the best baseline there, {other}"
    if red >= -0.005:
        return (f"practically the same as the best baseline there, {other} "
                f"({abs(red):.2%} {'lower' if red >= 0 else 'higher'})")
    return f"{-red:.1%} more than the best baseline there, {other}"


def storage_reading(table: ResultTable, proposed: Sequence[str], baselines: Sequence[str], lead: str,
                    at_gb: float) -> dict:
    """The numbers and clauses the chapter reads off a storage sweep (Figures 6 and 7).

    Parameters
    ----------
    table : ResultTable
        Output of :func:`fig6_data` or :func:`fig7_data`.
    proposed, baselines : sequence of str
        Method names for the dominance check (:func:`dominance_sentence`).
    lead : str
        The method quoted (e.g. ``"greedy"``).
    at_gb : float
        The storage point quoted (must be in the sweep).

    Returns
    -------
    dict
        ``dom`` (clauses, see :func:`dominance_sentence`), ``violations``
        (number of (point, method, baseline) violations), ``big`` (label of the
        last panel), ``lat``/``none`` (ms per token of ``lead``/no caching
        there), ``red_none``, ``vs_best`` (clause comparing ``lead`` with the
        best baseline there), ``adv``/``adv_at`` (largest relative advantage of
        ``lead`` over the best baseline at any point, and where), ``n_opt``/``gap_opt``
        (instances with a proved MILP optimum and ``lead``'s largest relative
        excess over it).
    """
    methods = table.unique("method")
    base = [b for b in baselines if b != "none" and b in methods]
    big = table.unique("panel")[-1]

    def best_baseline(pan, v):
        means = {b: table.mean(panel=pan, value=v, method=b) for b in base}
        b = min(means, key=means.get)
        return b, means[b]

    b, lb = best_baseline(big, at_gb)
    lat = table.mean(panel=big, value=at_gb, method=lead)
    none = table.mean(panel=big, value=at_gb, method="none")
    adv, adv_at = -np.inf, None
    for pan in table.unique("panel"):
        for v in table.where(panel=pan).unique("value"):
            bb, lbb = best_baseline(pan, v)
            a = 1 - table.mean(panel=pan, value=v, method=lead) / lbb
            if a > adv:
                adv, adv_at = a, f"{panel_label(pan)} at {v:g} GB, against {short_name(bb)}"
    ratios = []
    for r in table.where(method="exact", status="optimal"):
        q = table.where(panel=r["panel"], value=r["value"], seed=r["seed"], method=lead)
        if len(q):
            ratios.append(q[0]["latency_s"] / r["latency_s"] - 1)
    return dict(dom=dominance_sentence(table, proposed, baselines), violations=len(dominance(table, proposed, baselines)),
                big=panel_label(big), lat=lat * 1e3, none=none * 1e3, red_none=1 - lat / none,
                vs_best=_compare_phrase(1 - lat / lb, short_name(b)), adv=adv, adv_at=adv_at,
                n_opt=len(ratios), gap_opt=max(ratios) if ratios else float("nan"))


def residual_reading(table: ResultTable, proposed: Sequence[str], baselines: Sequence[str]) -> str:
    """Explain, in sentences, every storage point where a proposed method is above a baseline.

    Used by the chapter *Experiments* to read Figures 6 and 7: after
    :func:`storage_reading` has said *whether* the decomposition is ever above
    a baseline, this says *why* at each such point.  The points come from
    :func:`dominance` (means over the seeds; for each point the baseline with
    the largest relative excess).  Each point is re-solved on the same
    problems and seeds as the table (:func:`experiment_problem` with the
    table's ``meta["seeds"]``, every solver with its default options) and, on
    the seed where the proposed method loses most, its placement is compared
    layer by layer with the baseline's
    (:func:`slimlib.studies.compare_placements`).  The sentence
    then says either that both cache the same experts on other servers (the
    stages' order), or which layer the last stage could not complete, what it
    costs, and the mean latency after a second pass over the servers
    (``passes=2``, :func:`storage_point_latency`).  The explanation reads the
    re-solved placements, so it is meaningful for tables made by the data
    functions with the same solvers; the head of each sentence quotes the
    table.

    Parameters
    ----------
    table : ResultTable
        Output of :func:`fig6_data` or :func:`fig7_data`: panels are model
        card names, values the edge storage per server in GB, and
        ``meta["seeds"]`` the seeds.
    proposed, baselines : sequence of str
        Method names, as for :func:`dominance`.

    Returns
    -------
    str
        One sentence (two for a layer the stages could not complete) per
        point, ordered by increasing relative excess and joined by spaces;
        ``""`` when no proposed method is above any baseline at any point.
        Latencies are printed in ms per token.
    """
    from ..solvers import solve
    from ..studies import compare_placements
    worst = {}
    for b in dominance(table, proposed, baselines):
        key = (b["panel"], b["value"])
        if key not in worst or b["excess"] > worst[key]["excess"]:
            worst[key] = b
    parts = []
    for (pan, v), b in sorted(worst.items(), key=lambda kv: kv[1]["excess"]):
        cases = []
        for seed in table.meta["seeds"]:
            p, _ = experiment_problem(pan, seed=seed, server_storage_gb=v)
            pl = solve(p, b["method"])
            d = compare_placements(p, pl, solve(p, b["baseline"]))
            cases.append((d["latency_a"] - d["latency_b"], seed, p, pl, d))
        _, seed, p, pl, d = max(cases, key=lambda c: c[0])
        name, base = short_name(b["method"]), short_name(b["baseline"])
        diff = (b["latency"] - b["baseline_latency"]) * 1e3
        if b["excess"] < 1e-3:
            head = (f"At {panel_label(pan)}, {v:g} GB, {name} needs {diff:.1e} ms ({b['excess']:.0e} relative) "
                    f"more than {base}")
        else:
            head = (f"At {panel_label(pan)}, {v:g} GB, {name} needs {b['latency'] * 1e3:.2f} ms against {base}'s "
                    f"{b['baseline_latency'] * 1e3:.2f} ms ({b['excess']:.1%} more)")
        if d["only_a"] == d["only_b"] == 0:
            k = int(sum(x.sum() for x in d["edge_a"]))
            parts.append(f"{head}: both cache the same {k} experts at the edge and {d['moved']} of them sit on other "
                         f"servers, because a stage ranks the uncached experts by what they save against the cloud, "
                         f"not by which server will serve them best once the later stages are done.")
        else:
            u, l = d["worst"]
            slots = int(p.network.server_capacity_bytes.min() // p.models[u].expert_bytes)
            before = int(pl.server[u][pl.info["order"][:-1], l].any(axis=0).sum())
            again = storage_point_latency(pan, v, table.meta["seeds"], b["method"], passes=2)
            parts.append(f"{head}: with seed {seed} every {slots}-expert stage completes the groups that pay off "
                         f"within its own storage, so layer {l} still had {before} of its {p.models[u].num_experts} "
                         f"experts at the edge before the last stage and {int(d['edge_a'][u][l])} after it "
                         f"({base}: {int(d['edge_b'][u][l])}); that layer alone costs "
                         f"{d['layer_a'][u][l] * 1e3:.2f} ms per token against {d['layer_b'][u][l] * 1e3:.2f} ms, more "
                         f"than the {-d['rest_delta'] * 1e3:.2f} ms the stages save on all other layers together. "
                         f"Visiting every server once more (option passes=2, block coordinate ascent) brings the "
                         f"mean over the seeds to {again * 1e3:.2f} ms.")
    return " ".join(parts)

