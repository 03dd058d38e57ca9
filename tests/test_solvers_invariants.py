"""Invariants every solver must satisfy, whatever it is (the library contract: a Placement that respects every capacity).

Loops over :func:`slimlib.methods`, so methods registered later are covered
automatically.  1,000 random problems (one model with equal expert sizes, or
three models with experts of 1, 2 and 3 units; K = 1, 2, 3; 1–3 servers, some
with no storage); the exact references run on a subset where they are fast.
"""
from __future__ import annotations

import functools

import numpy as np
import pytest

import slimlib
from slimlib.instances import random_mixed_problem, random_problem
from slimlib.solvers.pipage import applicable as pipage_applicable

NUM_PROBLEMS = 1000
SLOW = {"exact", "brute-force"}
FAST_METHODS = [m for m in slimlib.methods() if m not in SLOW]


@functools.lru_cache(maxsize=None)
def problems():
    out = []
    for s in range(NUM_PROBLEMS):
        rng = np.random.default_rng([s, 77])
        k = int(rng.integers(1, 4))
        kw = dict(num_users=int(rng.integers(1, 4)), num_servers=int(rng.integers(1, 4)),
                  num_layers=int(rng.integers(1, 4)), num_experts=int(rng.integers(max(k, 2), 6)), top_k=k,
                  weights=bool(rng.integers(0, 2)))
        if s % 2:
            out.append(random_mixed_problem(rng, sizes=(1, 2, 3), server_units=(0, 7), **kw))
        else:
            out.append(random_problem(rng, server_slots=(0, 4), device_slots=(0, 2), **kw))
    return tuple(out)


@functools.lru_cache(maxsize=None)
def baseline_latency():
    return tuple(slimlib.average_latency(p, slimlib.Placement.empty(p)) for p in problems())


def _refuses(p, method) -> bool:
    """A method outside its proven domain (pipage: K >= 2 or several sizes) must refuse with ValueError."""
    if method == "pipage" and pipage_applicable(p) is not None:
        with pytest.raises(ValueError, match="use method="):
            slimlib.solve(p, method)
        return True
    return False


def _check(p, pl, method):
    assert pl.method == method
    assert "runtime_s" in pl.info
    assert len(pl.server) == len(p.models)
    for u, (mod, x) in enumerate(zip(p.models, pl.server)):
        assert x.shape == (p.num_servers, mod.num_layers, mod.num_experts) and x.dtype == bool
    for m in range(p.num_users):                          # device caches are fixed by the problem
        assert np.array_equal(pl.device[m], p.device_cache[m])
    assert (pl.used_bytes(p) <= p.network.server_capacity_bytes * (1 + 1e-9) + 1e-6).all()
    assert pl.is_feasible(p)


@pytest.mark.parametrize("method", FAST_METHODS)
def test_every_method_feasible_on_1000_problems(method):
    base = baseline_latency()
    for i, p in enumerate(problems()):
        if _refuses(p, method):
            continue
        pl = slimlib.solve(p, method)
        try:
            _check(p, pl, method)
            # caching never hurts: the latency is at most the no-edge-caching latency
            assert slimlib.average_latency(p, pl) <= base[i] * (1 + 1e-12)
        except AssertionError as exc:
            raise AssertionError(f"{method} on problem {i} ({p!r}): {exc}") from exc


@pytest.mark.parametrize("method", FAST_METHODS)
def test_deterministic(method):
    for p in problems()[::50]:
        if _refuses(p, method):
            continue
        a, b = slimlib.solve(p, method), slimlib.solve(p, method)
        assert a == b


def test_exact_is_a_lower_bound_for_every_method():
    """On 100 of the problems: no method beats the MILP optimum; brute force agrees where it runs."""
    for i, p in enumerate(problems()[::10]):
        ex = slimlib.solve(p, "exact")
        _check(p, ex, "exact")
        assert ex.info["optimal"], i
        opt = slimlib.average_latency(p, ex)
        for method in FAST_METHODS:
            if _refuses(p, method):
                continue
            lat = slimlib.average_latency(p, slimlib.solve(p, method))
            assert lat >= opt * (1 - 1e-9), (i, method, lat, opt)
        if i % 4 == 0:
            try:
                bf = slimlib.solve(p, "brute-force", limit=20_000)
            except ValueError as exc:
                assert "limit" in str(exc)
                continue
            _check(p, bf, "brute-force")
            assert slimlib.average_latency(p, bf) == pytest.approx(opt, rel=1e-9)


@pytest.mark.parametrize("method", slimlib.methods())
def test_zero_capacity_gives_no_edge_cache(method):
    p = random_problem(9, num_users=2, num_servers=2, num_layers=2, num_experts=3,
                       top_k=1 if method == "pipage" else 2, server_slots=(0, 0))
    pl = slimlib.solve(p, method)
    assert not any(x.any() for x in pl.server)


@pytest.mark.parametrize("method", slimlib.methods())
def test_unknown_option_is_a_value_error(method):
    with pytest.raises(ValueError, match="options"):
        slimlib.solve(random_problem(0), method, no_such_option=1)
