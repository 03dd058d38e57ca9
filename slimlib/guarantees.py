"""Every approximation guarantee of the book, with its measured ratios, and verdict sentences.

Chapter *Problem and structure*, section "Every guarantee at a glance"
(the table), and the algorithm chapters *Greedy for K = 1*, *Successive
decomposition* and *Max-plus convolution*, whose propositions the rows cite.

* ``GUARANTEES`` — one row per (method, setting): the proven bound, whether
  it is tight, and the proposition.
* :func:`measure_guarantees` — min and mean of ``R(method) / OPT`` on random
  instances of each row's setting (``OPT`` from the MILP).
* :func:`bound_verdict`, :func:`ratio_verdict`, :func:`zero_share_sentence`,
  :func:`lead_sentence` — sentences chosen by the
  numbers (the chapters print them; the tests feed both sides of each
  condition).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import _validate as V

__all__ = ["Guarantee", "GUARANTEES", "FAMILIES", "family_problem", "measure_guarantees",
           "bound_verdict", "ratio_verdict", "zero_share_sentence", "lead_sentence",
           "times_sentence", "curve_sentence"]


@dataclass(frozen=True)
class Guarantee:
    """One row of the guarantee table.

    Attributes
    ----------
    key : str
        Short identifier (glue names ``gt_<key>_min``, ``gt_<key>_mean``).
    method : str
        What the reader runs (``sl.solve`` method and options, in words).
    setting : str
        Instance class (Top-K, servers, expert sizes).
    bound : float or None
        Proven ``R(ALG) / OPT`` lower bound; ``None`` when no constant holds.
    tight : str
        ``"yes"`` (an instance reaches it), ``"no constant"`` (a gadget drives
        the ratio to 0), or ``"open"``.
    family : str
        Key of :data:`FAMILIES`: the random instances measured.
    solve : tuple
        ``(method, options)`` for :func:`slimlib.solve`.
    """

    key: str
    method: str
    setting: str
    bound: float | None
    tight: str
    family: str
    solve: tuple


_E = 1 - 1 / math.e
GUARANTEES: list[Guarantee] = [
    Guarantee("g_n1", "greedy", "K = 1, one server, equal sizes", 1.0, "yes", "k1_n1_eq", ("greedy", {})),
    Guarantee("g_n1_sizes", "greedy", "K = 1, one server, two sizes", 0.5, "yes", "k1_n1_mix", ("greedy", {})),
    Guarantee("g3_n1_sizes", "greedy, enumeration=3", "K = 1, one server, two sizes", _E, "open", "k1_n1_mix",
              ("greedy", {"enumeration": 3})),
    Guarantee("g_eq", "greedy (any seed size)", "K = 1, N ≥ 2, equal sizes", 0.5, "yes", "k1_eq",
              ("greedy", {})),
    Guarantee("g_sizes", "greedy (any seed size)", "K = 1, N ≥ 2, two sizes", None, "no constant", "k1_mix",
              ("greedy", {})),
    Guarantee("pipage", "pipage", "K = 1, one size", _E, "open", "k1_eq", ("pipage", {})),
    Guarantee("dec_k1", "decomposition", "K = 1, any sizes", 0.5, "yes", "k1_mix", ("decomposition", {})),
    Guarantee("acc_k1", "accelerated, ε = 0.05", "K = 1, any sizes", 0.95 / 1.95, "open", "k1_mix",
              ("accelerated", {"eps": 0.05})),
    Guarantee("dec_n1", "decomposition", "K ≥ 2, one server, E ≤ enumeration limit", 1.0, "yes", "k2_n1",
              ("decomposition", {})),
    Guarantee("dec_k2", "decomposition", "K ≥ 2, N ≥ 2", None, "no constant", "k2", ("decomposition", {})),
    Guarantee("g_k2", "greedy", "K ≥ 2", None, "no constant", "k2", ("greedy", {})),
]

#: Random instance families of the table: (top_k, servers (lo, hi), two expert sizes?).
FAMILIES = {"k1_n1_eq": (1, (1, 1), False), "k1_n1_mix": (1, (1, 1), True), "k1_eq": (1, (2, 3), False),
            "k1_mix": (1, (2, 3), True), "k2_n1": (2, (1, 1), False), "k2": (2, (2, 3), False)}


def family_problem(family: str, seed: int):
    """Instance ``seed`` of a family of :data:`FAMILIES` (1–3 weighted users, 1–2 layers of 3–4 experts)."""
    from .instances import random_mixed_problem, random_problem
    if family not in FAMILIES:
        raise V.fail("family", family, f"must be one of {sorted(FAMILIES)}")
    top_k, (lo, hi), mixed = FAMILIES[family]
    rng = np.random.default_rng([int(seed), 97, list(FAMILIES).index(family)])
    kw = dict(num_users=int(rng.integers(1, 4)), num_servers=int(rng.integers(lo, hi + 1)),
              num_layers=int(rng.integers(1, 3)), num_experts=int(rng.integers(3, 5)), top_k=top_k,
              weights=True)
    if mixed:
        kw["num_users"] = max(kw["num_users"], 2)
        return random_mixed_problem(rng, sizes=(1, 2), server_units=(1, 6), **kw)
    return random_problem(rng, server_slots=(1, 4), **kw)


def measure_guarantees(num_problems: int = 30, *, seed: int = 0, progress: bool = False) -> dict:
    """Min and mean of ``R(method) / OPT`` for every row of ``GUARANTEES``.

    ``OPT`` is the MILP (``"exact"``) on :func:`family_problem` instances;
    instances with ``OPT = 0`` are skipped.

    Parameters
    ----------
    num_problems : int
        Instances per family (at most 500).
    seed : int
        First instance seed.
    progress : bool
        Show a tqdm bar over the families.

    Returns
    -------
    dict
        ``key -> {"min", "mean", "n", "below"}``: ratios (dimensionless), the
        number of instances, and how many fell below the proven bound (must be 0).
    """
    from tqdm.auto import tqdm

    from .latency import latency_reduction
    from .solvers import solve
    num_problems = V.number("num_problems", num_problems, integer=True, positive=True)
    if num_problems > 500:
        raise V.fail("num_problems", num_problems, "must be <= 500 (one MILP per instance)")
    ratios: dict[str, list] = {g.key: [] for g in GUARANTEES}
    fams = sorted({g.family for g in GUARANTEES})
    for fam in tqdm(fams, desc="guarantee table", disable=not progress):
        rows = [g for g in GUARANTEES if g.family == fam]
        for s in range(seed, seed + num_problems):
            p = family_problem(fam, s)
            opt = latency_reduction(p, solve(p, "exact"))
            if opt <= 1e-12:
                continue
            for g in rows:
                method, opts = g.solve
                ratios[g.key].append(latency_reduction(p, solve(p, method, **opts)) / opt)
    out = {}
    for g in GUARANTEES:
        r = np.array(ratios[g.key])
        below = int(np.sum(r < g.bound - 1e-9)) if g.bound is not None else 0
        out[g.key] = {"min": float(r.min()), "mean": float(r.mean()), "n": len(r), "below": below}
    return out


def bound_verdict(measured_min: float, bound: float | None, *, tol: float = 1e-9) -> str:
    """How a measured worst ratio relates to a proven bound, in words.

    Returns "at or above the proven bound" when ``measured_min >= bound - tol``,
    "below the proven bound — a contradiction to report" otherwise, and
    "no bound is proven" for ``bound=None``.
    """
    if bound is None:
        return "no bound is proven"
    if measured_min >= bound - tol:
        return "at or above the proven bound"
    return "below the proven bound — a contradiction to report"


def ratio_verdict(ratio: float, target: float, *, tol: float = 1e-9) -> str:
    """"reaches" / "falls short of" ``target`` (e.g. the optimum, ratio 1), chosen by ``ratio >= target - tol``."""
    return "reaches" if ratio >= target - tol else "falls short of"


def zero_share_sentence(zero: int, total: int, method: str = "it") -> str:
    """"``method`` saved nothing at all on k of the n instances" or "… saved something on every one …".

    Chosen by ``zero > 0`` (chapter *Greedy for K = 1*, section "Why not for K ≥ 2").
    """
    zero = V.number("zero", zero, integer=True, nonneg=True)
    total = V.number("total", total, integer=True, positive=True)
    if zero > total:
        raise V.fail("zero", zero, f"must be <= total={total}")
    if zero == 0:
        return f"{method} saved something on every one of the {total} instances"
    return f"{method} saved nothing at all on {zero} of the {total} instances"


def lead_sentence(name_a: str, value_a: float, name_b: str, value_b: float, *, tol: float = 5e-4,
                  better: str = "higher", unit: str = "") -> str:
    """Which of two numbers is ahead, with both numbers (3 decimals, optional unit).

    "A is ahead of B (0.990 against 0.950)", "A is behind B (…)" or "A and B are
    level (…)" when they differ by at most ``tol``.  ``better="lower"`` for
    latencies (smaller is ahead).
    """
    if better not in ("higher", "lower"):
        raise V.fail("better", better, "must be 'higher' or 'lower'")
    u = f" {unit}" if unit else ""
    nums = f"({value_a:.3f}{u} against {value_b:.3f}{u})"
    if abs(value_a - value_b) <= tol:
        return f"{name_a} and {name_b} are level {nums}"
    ahead = value_a > value_b if better == "higher" else value_a < value_b
    return f"{name_a} is {'ahead of' if ahead else 'behind'} {name_b} {nums}"


def times_sentence(ratio: float, *, digits: int = 0) -> str:
    """A run-time ratio ``t_other / t_this`` in words: "12 times faster than", "3 times slower than", "as fast as".

    Chosen by ``ratio > 1`` / ``< 1`` after rounding to ``digits`` decimals
    (chapter *Max-plus convolution*, run times).
    """
    ratio = V.number("ratio", ratio, positive=True)
    fast = round(ratio, digits)
    slow = round(1 / ratio, digits)
    if fast > 1:
        return f"{fast:.{digits}f} times faster than"
    if slow > 1:
        return f"{slow:.{digits}f} times slower than"
    return "as fast as"


def curve_sentence(measured, reference, name: str, *, rtol: float = 1e-9) -> str:
    """How a measured curve relates to a proven one, point by point, in words.

    "… follows it exactly" (equal to ``rtol``), "… stays at or above it and
    exceeds it at k of n points", or "… falls below it at k of n points"
    (chapter *Greedy for K = 1*, the Top-2 counterexample).
    """
    m = np.asarray(measured, float)
    r = np.asarray(reference, float)
    if m.shape != r.shape or m.size == 0:
        raise V.fail("measured", m.shape, f"must have the non-empty shape of reference {r.shape}")
    close = np.isclose(m, r, rtol=rtol, atol=1e-15)
    if close.all():
        return f"{name} follows it exactly"
    below = int(np.sum((m < r) & ~close))
    if below:
        return f"{name} falls below it at {below} of {m.size} points"
    return f"{name} stays at or above it and exceeds it at {int(np.sum(~close))} of {m.size} points"
