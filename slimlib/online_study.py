"""The study of chapter *When the statistics drift*: both drift kinds, every policy, budgets and windows.

Chapter *When the statistics drift* draws every figure from one :class:`DriftStudy`
(:func:`drift_study`): the problem of :func:`drift_problem` (MoE-LLaVA-Phi2,
Table 1 with 1 GB per edge server, per-user variants of the shipped synthetic
profile), the drift target :func:`slimlib.drift.drift_profile`, and the
policies of :mod:`slimlib.online`, all scored by :func:`slimlib.average_latency`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import _validate as V
from .online import OnlineRun, _progress, prepare, run_policy
from .problem import Problem

__all__ = ["DriftStudy", "drift_problem", "drift_study", "recaching_verdict", "budget_verdict", "slower_verdict",
           "churn_verdict", "window_verdict"]


@dataclass
class DriftStudy:
    """Everything chapter *When the statistics drift* plots (build with :func:`drift_study`).

    Attributes
    ----------
    problem : Problem
    contexts : dict
        ``kind -> OnlineContext`` for the main window.
    runs : dict
        ``(kind, policy, budget_mb) -> OnlineRun``; ``budget_mb`` is 0 for static
        and ``inf`` for periodic.
    windows : dict
        ``(W, policy) -> OnlineRun`` under the switch (budgeted at ``budget_mb``).
    errors : dict
        ``W -> Estimates`` under the switch.
    budget_mb : float
        The budget of the main figures, MB per period.
    """

    problem: Problem
    contexts: dict
    runs: dict
    windows: dict
    errors: dict
    budget_mb: float
    window: int
    source: str = ""

    def run(self, kind: str, policy: str, budget_mb: float | None = None) -> OnlineRun:
        """The run of a policy (``budget_mb`` only for the budgeted policy; default: the main budget)."""
        b = 0.0 if policy == "static" else math.inf if policy == "periodic" else (
            self.budget_mb if budget_mb is None else float(budget_mb))
        return self.runs[kind, policy, b]

    def tradeoff(self, kind: str) -> list[tuple[float, float, float]]:
        """``(budget_mb, GB moved, mean latency ms)`` of every budgeted run of ``kind``, by budget."""
        pts = [(b, r.total_bytes / 1e9, r.mean_latency_s * 1e3) for (k, p, b), r in self.runs.items()
               if k == kind and p == "budgeted"]
        return sorted(pts)


def drift_problem(server_storage_gb: float = 1.0, *, num_users: int | None = None, seed: int = 0) -> Problem:
    """The chapter's problem: MoE-LLaVA-Phi2 at Table 1, per-user variants of its shipped synthetic profile.

    ``server_storage_gb`` replaces Table 1's 1.5 GB (chapter *When the
    statistics drift*, section "The setting", says why).
    """
    from .io import load_model_card, load_parameters, load_stats
    from .synthetic import user_stats
    from .drift import PROFILE_MODEL
    mod = load_model_card(PROFILE_MODEL)
    params = load_parameters()
    V.number("server_storage_gb", server_storage_gb, positive=True)
    params = params.replace(server_capacity_bytes=float(server_storage_gb) * 1e9)
    M = params.num_users if num_users is None else int(num_users)
    users = user_stats(load_stats(f"{PROFILE_MODEL}-synthetic"), M, seed=seed, tokens_per_user=None)
    return Problem.build(mod, users, params, num_users=M, seed=seed, name=f"{PROFILE_MODEL}-drift")


def drift_study(problem: Problem | None = None, *, budgets_mb=(0, 100, 250, 500, 1000, math.inf),
                budget_mb: float = 500, windows=(1, 2, 4, 8), window: int = 2, periods: int = 24,
                start: int = 6, duration: int = 6, tokens: int = 500, method: str = "decomposition",
                period_s: float = 60.0, seed: int = 0, progress: bool = False) -> DriftStudy:
    """Run the chapter's study: switch and gradual drift, three policies, budgets and windows.

    The offline profile is ``problem``'s statistics (default :func:`drift_problem`);
    the drift target is :func:`slimlib.drift.drift_profile`.  Every run is
    scored by :func:`slimlib.average_latency`.
    """
    from .drift import drift_profile, drifting_workload, estimate
    problem = drift_problem() if problem is None else problem
    budgets = sorted({float(b) for b in budgets_mb} | {float(budget_mb)})
    to = drift_profile(problem.models[0].name)
    contexts, runs, wins, errs = {}, {}, {}, {}
    steps = 2 * (len(budgets) + 2) + 2 * len(windows)
    with _progress(steps, "drift study", progress) as bar:
        for kind in ("switch", "gradual"):
            wl = drifting_workload(problem, to, kind=kind, periods=periods, start=start, duration=duration,
                                   tokens=tokens, seed=seed)
            est = estimate(wl, window=window)
            ctx = contexts[kind] = prepare(problem, wl, est, method=method)
            for policy, b in [("static", 0.0), ("periodic", math.inf)] + [("budgeted", b) for b in budgets]:
                runs[kind, policy, b] = run_policy(ctx, policy, budget_bytes=b * 1e6, period_s=period_s)
                bar.update()
            if kind == "switch":
                for w in windows:
                    e = errs[w] = estimate(wl, window=w)
                    c = ctx if w == window else prepare(problem, wl, e, method=method)
                    wins[w, "periodic"] = runs[kind, "periodic", math.inf] if w == window else run_policy(
                        c, "periodic", period_s=period_s)
                    bar.update()
                    wins[w, "budgeted"] = runs[kind, "budgeted", float(budget_mb)] if w == window else run_policy(
                        c, "budgeted", budget_bytes=budget_mb * 1e6, period_s=period_s)
                    bar.update()
    return DriftStudy(problem, contexts, runs, wins, errs, float(budget_mb), window, source="synthetic")


# ---------------------------------------------------------------------------
# Verdicts (sentences chosen by the numbers)
# ---------------------------------------------------------------------------
def recaching_verdict(static_ms: float, policy_ms: float, moved_gb: float, backhaul_s: float, label: str,
                      *, tol: float = 0.01) -> str:
    """One sentence: how much a re-caching policy saves against static, and what it moves.

    Lower by more than ``tol`` (relative) -> "lowers"; within ``tol`` ->
    "leaves ... unchanged"; higher -> "raises".
    """
    s, p = float(static_ms), float(policy_ms)
    cost = f"moving {moved_gb:.2f} GB over the backhaul ({backhaul_s:.0f} s of backhaul time)"
    if p < s * (1 - tol):
        return (f"{label} lowers the average latency from {s:.1f} ms to {p:.1f} ms per token "
                f"({100 * (s - p) / s:.0f} % less), {cost}.")
    if p <= s * (1 + tol):
        return (f"{label} leaves the average latency where the static placement has it "
                f"({p:.1f} ms against {s:.1f} ms per token), although {cost.replace('moving', 'it moves')}.")
    return (f"{label} raises the average latency from {s:.1f} ms to {p:.1f} ms per token: "
            f"the moves cost more than they gain, {cost}.")


def budget_verdict(static_ms: float, periodic_ms: float, budgeted_ms: float, budgeted_gb: float,
                   periodic_gb: float, budget_mb: float) -> str:
    """One sentence: which share of the periodic re-solve's saving a budget obtains, for which share of its bytes."""
    gain_full = static_ms - periodic_ms
    share = (static_ms - budgeted_ms) / gain_full if gain_full > 0 else float("nan")
    bytes_share = budgeted_gb / periodic_gb if periodic_gb > 0 else float("nan")
    head = f"A budget of {budget_mb:g} MB per period"
    if not gain_full > 0:
        return f"{head} has nothing to recover: the periodic re-solve is no faster than the static placement."
    if share > 1.0:
        words = "saves more than the periodic re-solve"
    elif share >= 0.9:
        words = "obtains nearly all of the periodic re-solve's saving"
    elif share >= 0.5:
        words = "obtains most of the periodic re-solve's saving"
    elif share > 0:
        words = "obtains only part of the periodic re-solve's saving"
    else:
        words = "obtains none of the periodic re-solve's saving"
    return (f"{head} {words} ({100 * share:.0f} %: {budgeted_ms:.1f} ms against {periodic_ms:.1f} ms per token) "
            f"while moving {100 * bytes_share:.0f} % of its bytes ({budgeted_gb:.2f} GB against "
            f"{periodic_gb:.2f} GB).")


def slower_verdict(ms: float, ref_ms: float, what: str, ref: str, *, tol: float = 0.01) -> str:
    """``"<what> is X % slower than <ref>"``, or faster, or "within 1 % of" (relative ``tol``)."""
    pct = 100 * (float(ms) - float(ref_ms)) / float(ref_ms)
    if abs(pct) <= 100 * tol:
        return f"{what} is within {100 * tol:g} % of {ref}"
    num = f"{abs(pct):.1f}" if abs(pct) < 10 else f"{abs(pct):.0f}"
    return f"{what} is {num} % {'slower' if pct > 0 else 'faster'} than {ref}"


def churn_verdict(gb: float, periods: int) -> str:
    """One sentence: what the periodic re-solve moves while nothing drifts (``gb`` over ``periods`` periods)."""
    head = f"In the {periods} periods before the drift, when nothing has changed, the periodic re-solve"
    if gb <= 0:
        return f"{head} moves nothing: its target does not change."
    return f"{head} already moves {gb:.2f} GB: on noisy estimates its target keeps changing."


def window_verdict(windows, ms, policy: str = "the periodic re-solve", *, tol: float = 0.01) -> str:
    """Which window ``W`` gives ``policy`` the lowest and the highest average latency (``ms`` per window)."""
    ws, ms = list(windows), [float(x) for x in ms]
    lo, hi = int(np.argmin(ms)), int(np.argmax(ms))
    if ms[hi] <= ms[lo] * (1 + tol):
        return (f"For {policy} the window changes the average latency by less than {100 * tol:g} % "
                f"({ms[lo]:.1f} to {ms[hi]:.1f} ms per token).")
    return (f"For {policy} the best window here is W = {ws[lo]:g} ({ms[lo]:.1f} ms per token) and the "
            f"worst W = {ws[hi]:g} ({ms[hi]:.1f} ms per token).")
