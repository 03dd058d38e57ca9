"""Running every method on one problem and scoring it with the one evaluator (chapter *Experiments*).

``_run_methods`` solves a problem with each method by name
(:func:`slimlib.solve`), scores the placement with
:func:`slimlib.average_latency` and returns one tidy row per method.  The MILP
(``"exact"``) runs where the sweep's ``exact`` mode allows it
(:data:`EXACT_MODES`), and every row of a point carries ``milp_status``: whether
the MILP proved optimality there.
"""
from __future__ import annotations

import inspect
import math
from typing import Sequence

import numpy as np

from .. import _validate as V
from ..latency import average_latency, communication_latency
from ..problem import Placement, Problem

#: Public names are re-exported (and documented) by :mod:`slimlib.experiments`.
__all__: list[str] = []

#: Which points run the MILP: ``"all"`` (every point of every panel, whatever its size, within the
#: time limit), ``"small"`` (points under the figure's ``exact_max_size`` variables, in its
#: ``exact_panels``; the default), ``"none"`` (no MILP rows).
EXACT_MODES = ("all", "small", "none")
#: Methods that search for a proved optimum (and can be switched off by ``exact="none"``).
EXACT_METHODS = ("exact", "brute-force")


def _available() -> list[str]:
    from ..solvers import methods
    return methods()


def _accepts(method: str) -> set | None:
    """Keyword options a solver accepts (``None`` = anything, it takes ``**kwargs``)."""
    from ..solvers import _METHODS, _load_all
    _load_all()
    sig = inspect.signature(_METHODS[method])
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        return None
    return {n for n, p in list(sig.parameters.items())[1:]}


def _solve(problem: Problem, method: str, options: dict) -> Placement:
    from ..solvers import solve
    ok = _accepts(method)
    opts = {k: v for k, v in options.items() if ok is None or k in ok}
    return solve(problem, method=method, **opts)


def _optimal(info: dict) -> bool:
    """Did an exact solver prove optimality?  (reads the MILP's status / gap in ``info``)."""
    for k in ("optimal", "proved_optimal"):
        if k in info:
            return bool(info[k])
    st = str(info.get("status", "")).lower()
    if st:
        return st in ("optimal", "0", "ok")
    gap = info.get("gap", info.get("mip_gap"))
    if gap is not None:
        try:
            return float(gap) <= 1e-6
        except (TypeError, ValueError):
            return False
    return True


def _exact_size(problem: Problem) -> int:
    """Rough number of MILP variables: routing shares ``z[m,l,e,j]`` dominate."""
    return sum(len(problem.users_of(u)) * m.num_layers * m.num_experts * (problem.num_servers + 2)
               for u, m in enumerate(problem.models))


def _method_options(method: str, seed: int, eps: float, exact_time_limit_s: float, extra: dict | None) -> dict:
    opts: dict = {}
    if method == "random":
        opts["seed"] = seed
    if method == "accelerated":
        opts["eps"] = eps
    if method in ("exact",):
        opts["time_limit"] = exact_time_limit_s
        opts["time_limit_s"] = exact_time_limit_s
    if extra and method in extra:
        opts.update(extra[method])
    return opts


def _run_methods(problem: Problem, methods: Sequence[str], *, seed: int, base: dict, eps: float = 0.05,
                 exact_time_limit_s: float = 10.0, exact_max_size: int | None = 200_000,
                 method_options: dict | None = None, available: Sequence[str] | None = None) -> list[dict]:
    """Solve ``problem`` with every method and score it with the one evaluator.

    MILP rows of problems above ``exact_max_size`` variables (``None``: no
    cap) are ``"skipped (too large)"``; every row gets ``milp_status``.
    """
    available = _available() if available is None else available
    rows = []
    for meth in methods:
        row = dict(base, method=meth, seed=seed)
        if meth not in available:
            continue
        if meth in EXACT_METHODS and exact_max_size is not None and _exact_size(problem) > exact_max_size:
            rows.append(dict(row, latency_s=float("nan"), comm_latency_s=float("nan"), runtime_s=float("nan"),
                             status="skipped (too large)"))
            continue
        try:
            pl = _solve(problem, meth, _method_options(meth, seed, eps, exact_time_limit_s, method_options))
        except ValueError as exc:
            if meth in ("exact", "brute-force"):
                rows.append(dict(row, latency_s=float("nan"), comm_latency_s=float("nan"),
                                 runtime_s=float("nan"), status=f"failed: {str(exc)[:60]}"))
                continue
            raise
        status, extra = "ok", {}
        lat = average_latency(problem, pl)
        if meth in ("exact", "brute-force"):
            status = "optimal" if _optimal(pl.info) else "time limit"
            bound = pl.info.get("bound_s", lat if status == "optimal" else None)
            gap = float(pl.info.get("gap", pl.info.get("mip_gap", 0.0 if status == "optimal" else float("nan"))))
            if bound is None or not math.isfinite(gap) or not float(bound) > 0:
                bound = float("nan")                    # no incumbent / no useful bound within the limit
            extra = dict(bound_s=float(bound), gap=gap)
        rows.append(dict(row, latency_s=lat, comm_latency_s=communication_latency(problem, pl),
                         runtime_s=float(pl.info.get("runtime_s", float("nan"))), status=status,
                         max_fill=_max_fill(problem, pl), **extra))
    return _milp_status(rows)


def _max_fill(problem: Problem, pl: Placement) -> float:
    """Largest used/capacity ratio over the servers (<= 1 for a feasible placement; 0 without storage)."""
    cap = problem.network.server_capacity_bytes
    used = pl.used_bytes(problem)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(cap > 0, used / np.where(cap > 0, cap, 1), np.where(used > 0, np.inf, 0.0))
    return float(r.max())


def _seeds(seeds) -> list[int]:
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        n = V.number("seeds", seeds, integer=True, positive=True)
        return list(range(n))
    out = [V.number("seeds[]", s, integer=True, nonneg=True) for s in seeds]
    if not out:
        raise V.fail("seeds", seeds, "needs at least one seed")
    return out


def _methods_for(methods, default) -> list[str]:
    ms = list(default if methods is None else methods)
    for m in ms:
        V.text("methods[]", m)
    return ms


def _exact_mode(exact: str) -> str:
    if exact not in EXACT_MODES:
        raise V.fail("exact", exact, f"must be one of {', '.join(EXACT_MODES)}")
    return exact


def _exact_plan(methods: Sequence[str], exact: str, exact_max_size: int | None, in_exact_panels: bool):
    """Methods of one point and the MILP size cap under the ``exact`` mode: ``(methods, max_size or None)``."""
    if exact == "none" or (exact == "small" and not in_exact_panels):
        return [m for m in methods if m not in EXACT_METHODS], exact_max_size
    return list(methods), (None if exact == "all" else exact_max_size)


def _milp_status(rows: list[dict]) -> list[dict]:
    """Add ``milp_status`` to every row of one point: the MILP row's status there, or ``"not run"``."""
    st = next((r["status"] for r in rows if r["method"] == "exact"), "not run")
    for r in rows:
        r["milp_status"] = st
    return rows
