"""Sentences that state a verdict, chosen by a condition on the numbers.

The chapter *Experiments* (:ref:`ch-experiments`) reads its figures in prose.
Whenever a sentence says "certifies", "at or below" or "stays above its
guarantee", the words come from a function here that looks at the computed
numbers first, so the text cannot contradict the figure beside it; the tests
(``tests/test_verdicts.py``) feed each function numbers on both sides of its
condition.  The functions only choose words; the numbers come from
:mod:`slimlib.experiments` (:func:`~slimlib.experiments.dominance`,
:func:`~slimlib.experiments.bound_gaps`) and the chapter glues them in.

Also here: :func:`results_markdown`, the per-figure table of the chapter in
the unit of its plot (ms per token), with no ``nan``.
"""
from __future__ import annotations

import math
from typing import Sequence

__all__ = ["CERTIFY_GAP", "percent", "at_or_below_sentence", "dominance_sentence", "bound_sentence",
           "guarantee_sentence", "results_markdown"]

#: Largest gap between a method and the MILP's lower bound that the book calls a certificate.
CERTIFY_GAP = 0.05


def percent(x: float) -> str:
    """A relative quantity as a percentage with as many digits as it needs.

    ``0.034 -> "3.4%"``, ``0.00042 -> "0.042%"``, ``3e-7 -> "less than 0.0001%"``,
    ``3.426 -> "343%"``; NaN gives ``"n/a"``.
    """
    if x is None or not math.isfinite(x):
        return "n/a"
    a = abs(x) * 100
    if a == 0:
        return "0%"
    if a < 1e-4:
        return "less than 0.0001%"
    if a >= 100:
        return f"{x * 100:.0f}%"
    if a >= 10:
        return f"{x * 100:.1f}%"
    digits = max(1, 1 - int(math.floor(math.log10(a))))     # two significant digits
    text = f"{x * 100:.{digits}f}".rstrip("0")
    return (text + "0" if text.endswith(".") else text) + "%"


def at_or_below_sentence(count: int, total: int, method: str, other: str, what: str = "points") -> str:
    """"``method`` is at or below ``other`` at k of n ``what``", worded by k.

    Parameters
    ----------
    count : int
        Points where ``method`` is at or below ``other`` (``0 <= count <= total``).
    total : int
        Points compared (> 0).
    """
    if total <= 0 or not 0 <= count <= total:
        raise ValueError(f"count, total: need 0 <= count <= total and total > 0 (got {count}, {total})")
    if count == total:
        return f"{method} is at or below {other} at all {total} {what}"
    if count == 0:
        return f"{method} is above {other} at all {total} {what}"
    return f"{method} is at or below {other} at {count} of the {total} {what} and above it at the other {total - count}"


def dominance_sentence(violations: Sequence[dict], total: int, method: str, unit: str = "GB") -> str:
    """One clause: ``method`` at or below every baseline everywhere, or where and by how much not.

    Parameters
    ----------
    violations : sequence of dict
        Rows of :func:`slimlib.experiments.dominance` for this method
        (``panel``, ``value``, ``baseline``, ``excess``); empty when it is never worse.
    total : int
        Number of (panel, value) points of the figure.
    method : str
        Name of the method inside the sentence (``"the decomposition"``).
    unit : str
        Unit of the swept value.
    """
    if not violations:
        return f"{method} is at or below every baseline at all {total} points"
    from .experiments import short_name
    from .plotting.experiments import _label
    pts = {(v["panel"], v["value"]) for v in violations}
    w = max(violations, key=lambda v: v["excess"])
    by = percent(w["excess"])
    by = by if by.startswith("less") else f"at most {by}"
    return (f"{method} is above some baseline at {len(pts)} of the {total} points, by {by} (above {short_name(w['baseline'])}, {_label(w['panel'])} at "
            f"{w['value']:g} {unit})")


def bound_sentence(gaps: dict, method: str, *, certify_at: float = CERTIFY_GAP) -> str:
    """What the MILP's optimum or lower bound says about ``method`` (the "certifies" sentence).

    Parameters
    ----------
    gaps : dict
        Output of :func:`slimlib.experiments.bound_gaps`: ``n`` instances,
        ``n_optimal`` of them solved to optimality, ``max`` and ``mean`` of
        ``T(method) / bound - 1``.
    method : str
        Name inside the sentence.
    certify_at : float
        Largest relative gap called a certificate (default :data:`CERTIFY_GAP`).

    Returns
    -------
    str
        "certifies" only when every gap is at most ``certify_at``; otherwise
        says the bound is too loose to certify anything.
    """
    n, nopt, gmax, gmean = gaps["n"], gaps["n_optimal"], gaps["max"], gaps["mean"]
    if n == 0:
        return f"the MILP gave neither an optimum nor a finite lower bound, so nothing certifies {method} here"
    ref = "the optimum" if nopt == n else "the optimum or, where the time limit was hit, the MILP's lower bound"
    if gmax <= certify_at:
        return (f"this certifies {method} within {percent(max(gmax, 0.0))} of the optimum on all {n} instances "
                f"(its latency is at most that far above {ref}; {percent(max(gmean, 0.0))} on average)")
    if nopt == n:
        return (f"{method} is up to {percent(gmax)} above the optimum ({percent(gmean)} on average), "
                f"more than the {percent(certify_at)} the book calls close")
    return (f"the lower bound is too loose to certify {method}: its latency is up to {percent(gmax)} above "
            f"{ref} ({percent(gmean)} on average), which bounds its distance to the optimum only from above")


def guarantee_sentence(margins: Sequence[float], what: str = "every stage of every run") -> str:
    """Whether every accelerated stage stays above its guarantee ``1 - ε``.

    Parameters
    ----------
    margins : sequence of float
        ``ratio - (1 - ε)`` per stage (≥ 0 when the guarantee holds); a
        tolerance of 1e-9 absorbs rounding.
    """
    if not len(margins):
        raise ValueError("margins: needs at least one stage")
    bad = sum(m < -1e-9 for m in margins)
    if bad == 0:
        return f"{what} stays at or above its guarantee 1 − ε"
    return f"{bad} of the {len(margins)} stages fall below their guarantee 1 − ε"


def results_markdown(table, *, y: str = "latency_s", scale: float = 1e3, unit: str = "ms",
                     methods: Sequence[str] | None = None, digits: int = 2, xlabel: str | None = None) -> str:
    """The numbers behind a figure as a Markdown table, in the unit of its plot.

    One row per (panel, swept value), one column per method, each cell the
    mean over the seeds of ``y * scale``; a point a method did not reach
    (failed, skipped or NaN) shows "–", never ``nan``.

    Parameters
    ----------
    table : slimlib.experiments.ResultTable
    y : str
        Column to show (``"latency_s"``, ``"comm_latency_s"``, ``"runtime_s"``, ...).
    scale, unit : float, str
        Factor and unit of the cells (default seconds → ms).
    methods : sequence of str, optional
        Columns, in order (default: the table's methods).
    digits : int
        Decimals.
    xlabel : str, optional
        Title of the swept-value column (default the table's ``meta["xlabel"]``).
    """
    from .plotting import series_style
    from .plotting.experiments import _label
    from .reporting import markdown_table
    methods = [m for m in (methods or table.unique("method")) if m in table.unique("method")]
    xlabel = xlabel or table.meta.get("xlabel", "value")
    if not isinstance(xlabel, str):                 # one x label per panel: the column says "value"
        xlabel = "value"
    rows = []
    for pan in table.unique("panel"):
        for v in table.where(panel=pan).unique("value"):
            row = {"panel": _label(pan), "value": f"{v:g}" if isinstance(v, float) else str(v)}
            for m in methods:
                x = table.mean(y, panel=pan, value=v, method=m)
                row[m] = "–" if not math.isfinite(x) else f"{x * scale:.{digits}f}"
            rows.append(row)
    heads = ["model / panel", xlabel] + [f"{series_style(m)['label']} ({unit})" for m in methods]
    return markdown_table(rows, ["panel", "value", *methods], heads, align="ll" + "r" * len(methods))
