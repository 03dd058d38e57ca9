"""``python -m slimlib simulate``: a placement in a live network from the command line.

Chapter *A placement in a live network*, section "From the command line"::

    python -m slimlib simulate --problem P.json --placement X.json --tokens 2000 \\
        --token-rate 50 --out results.csv

prints :meth:`~slimlib.simulation.result.SimulationResult.summary` and writes the tidy table
(:meth:`~slimlib.simulation.result.SimulationResult.table`) as CSV, atomically.  Every argument is checked
(and the files read) before the simulation starts; a bad one ends with one line
naming it and exit status 2.
"""
from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

__all__ = ["add_parser", "run"]


def _optional_int(text: str):
    return None if text.lower() in ("none", "inf", "unlimited") else int(text)


def add_parser(sub) -> argparse.ArgumentParser:
    """Add the ``simulate`` sub-command to an ``argparse`` sub-parser collection."""
    s = sub.add_parser("simulate", help="simulate a placement token by token with shared servers and links (SimPy)")
    s.add_argument("--problem", required=True, help="problem JSON (kind: problem)")
    s.add_argument("--placement", default=None,
                   help="placement JSON (kind: placement); default: solve the problem with --method")
    s.add_argument("--method", default="decomposition", help="solver used when no --placement is given")
    s.add_argument("--tokens", type=int, default=2000, help="tokens per user in the statistics (default 2000)")
    s.add_argument("--warmup-tokens", type=int, default=0, help="tokens per user decoded first and left out")
    s.add_argument("--token-rate", type=float, default=20.0, help="offered tokens/s per user (default 20; inf: "
                   "every session at time 0)")
    s.add_argument("--tokens-per-session", type=int, default=64, help="tokens of one session (default 64)")
    s.add_argument("--max-sessions", type=_optional_int, default=None,
                   help="sessions a user decodes at once (default: unlimited)")
    s.add_argument("--server-slots", type=_optional_int, default=1,
                   help="expert calls a server computes at once (default 1; 'none' = unlimited)")
    s.add_argument("--links", choices=["fifo", "dedicated"], default="fifo", help="radio sharing (default fifo)")
    s.add_argument("--backhaul", choices=["fifo", "dedicated"], default="fifo",
                   help="backhaul sharing (default fifo)")
    s.add_argument("--no-contention", action="store_true",
                   help="unlimited slots and dedicated links: the expected-latency model")
    s.add_argument("--trace", default=None,
                   help="replay a routing trace (a name in data/traces or a file) instead of sampling groups")
    s.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    s.add_argument("--out", default=None, help="write the tidy result table here as CSV")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    return s


def _config(args):
    from .config import SimulationConfig
    kw = dict(tokens=args.tokens, warmup_tokens=args.warmup_tokens,
              token_rate=math.inf if args.token_rate == math.inf else args.token_rate,
              tokens_per_session=args.tokens_per_session, max_sessions=args.max_sessions,
              server_slots=args.server_slots, links=args.links, backhaul=args.backhaul, seed=args.seed)
    if args.trace is not None:
        from ..trace import load_trace
        kw.update(routing="trace", trace=load_trace(args.trace))
    if args.no_contention:
        return SimulationConfig.no_contention(**{k: v for k, v in kw.items()
                                                 if k not in ("server_slots", "links", "backhaul")})
    return SimulationConfig(**kw)


def _load(path: str, kind, flag: str):
    from ..io import load
    try:
        obj = load(path)
    except OSError as exc:
        raise ValueError(f"{flag}: cannot read {path!r} ({exc.strerror or exc})") from None
    if not isinstance(obj, kind):
        raise ValueError(f"{flag}: file {path!r} holds a {type(obj).__name__}, not a {kind.__name__}")
    return obj


def run(args) -> int:
    """Run ``python -m slimlib simulate`` (arguments of :func:`add_parser`); returns the exit status.

    Raises
    ------
    ValueError
        Any bad argument or file (the caller prints it as one line, exit 2).
    """
    from ..problem import Placement, Problem
    from ..solvers import solve
    from .engine import simulate
    problem = _load(args.problem, Problem, "--problem")
    cfg = _config(args)
    if args.out is not None:
        folder = Path(args.out).resolve().parent
        if not folder.is_dir():
            raise ValueError(f"--out: folder {str(folder)!r} does not exist")
        if not os.access(folder, os.W_OK):
            raise ValueError(f"--out: folder {str(folder)!r} is not writable")
    if args.placement is not None:
        placement = _load(args.placement, Placement, "--placement")
        try:
            placement.check(problem)
        except ValueError as exc:
            raise ValueError(f"--placement: does not fit the problem: {exc}") from None
    else:
        placement = solve(problem, method=args.method)
    res = simulate(problem, placement, cfg, progress=False if args.no_progress else True)
    print(res.summary())
    if args.out is not None:
        res.to_csv(args.out)
        print(f"table       written to {args.out}")
    return 0
