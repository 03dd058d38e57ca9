"""The ``online`` command of ``python -m slimlib``: replay drifting statistics with a re-caching policy.

Chapter *When the statistics drift* (section "Explore"); the policies are
:mod:`slimlib.online`.  ``python -m slimlib online --help``
lists the options; the result is one CSV row per period.
"""
from __future__ import annotations

import math
import os

from .drift import DRIFT_KINDS
from .online import POLICIES, min_period_s, prepare, run_policy
from .problem import Problem

__all__ = ["add_parser", "run"]


def add_parser(sub):
    """Add the ``online`` command to the subparsers ``sub`` of ``python -m slimlib``; return its parser."""
    o = sub.add_parser("online", help="replay drifting statistics with a re-caching policy; write a CSV per period")
    o.add_argument("--problem", required=True, help="problem JSON (kind: problem); its statistics are the "
                   "offline profile")
    o.add_argument("--drift", required=True, choices=list(DRIFT_KINDS), help="drift schedule")
    o.add_argument("--policy", required=True, choices=list(POLICIES), help="re-caching policy")
    o.add_argument("--budget-mb", type=float, default=None,
                   help="bytes per period the budgeted policy may move, MB (required for --policy budgeted)")
    o.add_argument("--out", required=True, help="output folder (online.csv is written there)")
    o.add_argument("--to", default=None, help="statistics JSON of the profile drifted to (default: the model "
                   "card's synthetic profile with seed 1, slimlib.synthetic)")
    o.add_argument("--method", default="decomposition", help="solver of the initial placement and re-solves")
    o.add_argument("--periods", type=int, default=24, help="number of periods (default 24)")
    o.add_argument("--start", type=int, default=8, help="period where the drift begins (default 8)")
    o.add_argument("--duration", type=int, default=6, help="periods of a gradual mix (default 6)")
    o.add_argument("--tokens", type=int, default=500, help="tokens per user and period (default 500)")
    o.add_argument("--window", type=int, default=2, help="sliding window of the estimator, periods (default 2)")
    o.add_argument("--prior-tokens", type=float, default=50.0, help="weight of the offline prior, tokens")
    o.add_argument("--every", type=int, default=1, help="the periodic policy re-solves every this many periods")
    o.add_argument("--period-s", type=float, default=60.0, help="length of a period, seconds (default 60)")
    o.add_argument("--seed", type=int, default=0, help="seed of the workload (default 0)")

    def one_line_error(message):                              # argparse's own errors: one line too
        o.exit(2, f"{o.prog}: error: {message}\n")
    o.error = one_line_error
    return o


def _load(flag: str, path: str):
    from .io import load
    try:
        return load(path)
    except OSError as exc:
        raise ValueError(f"{flag}: cannot read {path!r} ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise ValueError(f"{flag}: {exc}") from None


def _check_args(args):
    """Validate every argument and load the inputs; raise ValueError naming the field."""
    from .stats import ActivationStats
    from .solvers import methods
    problem = _load("--problem", args.problem)
    if not isinstance(problem, Problem):
        raise ValueError(f"--problem: file {args.problem!r} holds a {type(problem).__name__}, not a problem")
    if len(problem.models) != 1:
        raise ValueError(f"--problem: {len(problem.models)} models; the online command supports one")
    if args.method not in methods():
        raise ValueError(f"--method: unknown method {args.method!r}; known: {methods()}")
    if args.policy == "budgeted":
        if args.budget_mb is None:
            raise ValueError("--budget-mb: required with --policy budgeted")
    if args.budget_mb is not None and (not math.isfinite(args.budget_mb) and args.budget_mb != math.inf
                                       or args.budget_mb < 0):
        raise ValueError(f"--budget-mb: must be >= 0 (or inf) (got {args.budget_mb!r})")
    for name, v, lo in (("--periods", args.periods, 2), ("--start", args.start, 0), ("--duration", args.duration, 1),
                        ("--tokens", args.tokens, 1), ("--window", args.window, 1), ("--every", args.every, 1),
                        ("--seed", args.seed, 0)):
        if v < lo:
            raise ValueError(f"{name}: must be >= {lo} (got {v})")
    if not (math.isfinite(args.prior_tokens) and args.prior_tokens >= 0):
        raise ValueError(f"--prior-tokens: must be a finite number >= 0 (got {args.prior_tokens!r})")
    need = min_period_s(problem)
    if not (math.isfinite(args.period_s) and args.period_s >= need):
        raise ValueError(f"--period-s: must be >= {need:.4g} s, the time to refill every server over the "
                         f"backhaul (got {args.period_s!r})")
    mod = problem.models[0]
    if args.to is None:
        from .synthetic import synthetic_stats
        to = synthetic_stats(mod, seed=1)
    else:
        to = _load("--to", args.to)
        if not isinstance(to, ActivationStats):
            raise ValueError(f"--to: file {args.to!r} holds a {type(to).__name__}, not activation statistics")
        for attr in ("num_layers", "num_experts", "top_k"):
            if getattr(to, attr) != getattr(mod, attr):
                raise ValueError(f"--to: {attr}={getattr(to, attr)} does not match model {mod.name!r} "
                                 f"({attr}={getattr(mod, attr)})")
    out = os.path.abspath(args.out)
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"--out: {args.out!r} exists and is not a folder")
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"--out: cannot create {args.out!r} ({exc.strerror or exc})") from None
    if not os.access(out, os.W_OK):
        raise ValueError(f"--out: folder {args.out!r} is not writable")
    return problem, to, out


def run(args) -> int:
    """Run the ``online`` command (arguments from :func:`add_parser`); returns the exit status."""
    import csv
    import tempfile
    from .drift import drifting_workload, estimate
    problem, to, out = _check_args(args)
    wl = drifting_workload(problem, to, kind=args.drift, periods=args.periods, start=args.start,
                           duration=args.duration, tokens=args.tokens, seed=args.seed)
    est = estimate(wl, window=args.window, prior_tokens=args.prior_tokens)
    ctx = prepare(problem, wl, est, method=args.method, progress=True)
    budget = math.inf if args.budget_mb is None else args.budget_mb * 1e6
    res = run_policy(ctx, args.policy, budget_bytes=budget, every=args.every, period_s=args.period_s)
    rows = res.rows(wl, est)
    fd, tmp = tempfile.mkstemp(prefix=".online-", suffix=".csv", dir=out)
    try:
        with os.fdopen(fd, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        path = os.path.join(out, "online.csv")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    print(f"policy            {args.policy} (drift: {args.drift}, method: {args.method})")
    print(f"average latency   {res.mean_latency_s * 1e3:.4f} ms per token over {args.periods} periods")
    print(f"moved             {res.total_bytes / 1e9:.3f} GB ({res.migration_s.sum():.1f} s of backhaul time)")
    print(f"estimation error  {est.error.mean():.4f} (mean total variation)")
    print(f"written           {path}")
    return 0

