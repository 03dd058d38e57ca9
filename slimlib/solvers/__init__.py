"""Optimisers of (P1), chosen by name through :func:`slimlib.solve`.

Objectives live in :mod:`slimlib.latency`; this package only searches.  Each
method is a function ``f(problem, **options) -> Placement`` registered with
:func:`register`; :func:`solve` looks it up, times it, checks feasibility and
records the method name.  Chapters: *Greedy for K=1* (``greedy``),
*Successive decomposition* (``decomposition``), *Max-plus convolution*
(``accelerated``), and the baselines in *Experiments*.

Modules, one concept each: :mod:`~slimlib.solvers.gains` (per-layer stage
gains), :mod:`~slimlib.solvers.group_search` (their ``K >= 2`` subset search),
:mod:`~slimlib.solvers.knapsack` (combining them under a server's
storage: DP and value grid), :mod:`~slimlib.solvers.decomposition` (the
successive stages), :mod:`~slimlib.solvers.pairs` (the (server, expert) pair
model), :mod:`~slimlib.solvers.greedy`,
:mod:`~slimlib.solvers.exact` and :mod:`~slimlib.solvers.baselines`.
Measurements used only by the chapters live in :mod:`slimlib.studies`;
certified upper bounds in :mod:`slimlib.bounds`.
"""
from __future__ import annotations

import time
from typing import Callable

from .. import _validate as V
from ..problem import Placement, Problem

__all__ = ["solve", "register", "methods"]

_METHODS: dict[str, Callable] = {}


def register(name: str):
    """Decorator: make ``f(problem, **options) -> Placement`` available as ``solve(problem, method=name)``."""
    def deco(f):
        _METHODS[name] = f
        return f
    return deco


def methods() -> list[str]:
    """Names accepted by :func:`solve`."""
    _load_all()
    return sorted(_METHODS)


def solve(problem: Problem, method: str = "decomposition", **options) -> Placement:
    """Solve (P1) with the named method.

    Parameters
    ----------
    problem : Problem
    method : str
        One of :func:`methods`: ``"greedy"``, ``"decomposition"``,
        ``"accelerated"`` (option ``eps``), ``"exact"``, ``"brute-force"``, and
        the baselines ``"none"``, ``"random"``, ``"popularity"``,
        ``"coordinated-popularity"``, ``"blind-greedy"``.
    **options
        Passed to the method (unknown options raise ValueError).

    Returns
    -------
    Placement
        Within every capacity; ``info["runtime_s"]`` holds the wall-clock time.
    """
    if not isinstance(problem, Problem):
        raise V.fail("problem", problem, "must be a slimlib.Problem")
    _load_all()
    if method not in _METHODS:
        raise V.fail("method", method, f"unknown method; known: {sorted(_METHODS)}")
    options = V.options(method, _METHODS[method], options)   # strict types: no "maybe" for a bool
    t0 = time.perf_counter()
    try:
        placement = _METHODS[method](problem, **options)
    except TypeError as exc:
        if "unexpected keyword" in str(exc):
            raise V.fail("options", sorted(options), f"not accepted by method {method!r}: {exc}") from None
        raise
    placement.info.setdefault("runtime_s", time.perf_counter() - t0)
    placement.method = method
    placement.check(problem)
    return placement


_LOADED = False


def _load_all():
    # Import every solver module once so that their @register calls run.
    global _LOADED
    if _LOADED:
        return
    import importlib
    import pkgutil
    for mod in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{mod.name}")
    _LOADED = True
