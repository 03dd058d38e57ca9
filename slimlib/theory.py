"""The latency reduction as a set function, and numerical checks of its structure.

Chapter *Problem and structure* (``ch-structure``).  A placement of experts on edge
servers is a subset ``S`` of the ground set

    V = {(n, u, l, e)}:  server n caches expert e of MoE layer l of model u,

with the device caches held fixed (the problem's default device policy).  The
set function studied in the chapter is the latency reduction

    R(S) = sum_m w_m (T_m(empty) - T_m(S))                       (:eq:`eq-reduction`)

computed by the book's one evaluator, :func:`slimlib.latency_reduction`.  Note
that ``R`` is a *weighted sum* over users, not an average: the objective of
(P1) is ``average_latency(S) = average_latency(empty) - R(S) / sum_m w_m``.
Both are in seconds.

Capacities play no role in the structural properties (monotone, submodular,
supermodular are properties of ``R`` on all subsets of ``V``), so every
function here evaluates ``R`` on a copy of the problem whose servers can hold
every expert (:func:`uncapacitated`).

Public functions
----------------
* :func:`ground_set`, :func:`placement_from_set`, :func:`reduction`,
  :func:`marginal_gain` — the set function itself.
* :func:`check_monotone`, :func:`check_submodular`, :func:`check_supermodular`
  — the defining inequalities, exhaustively over all nested pairs on small
  ground sets and on random nested pairs on larger ones; they return the
  violations found (:class:`Violation`).
  (:func:`check_property` takes the property by name and can share one
  memoised :class:`SetFunction` between checks).
* :func:`separability_gap` — the separability lemma, checked numerically.
* :func:`marginal_gain_path` — the gains of one element along a growing cache.

The chapter's studies of this function — surveys over random problems, the
counterexamples of :prf:ref:`prop-k2`, the widget's instance and the routing
cases of :numref:`fig-routing-cases` — are in :mod:`slimlib.theory_study`.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np

from . import _validate as V
from .latency import call_latency, expert_latency, group_latency, latency_reduction, user_latency
from .problem import Placement, Problem

__all__ = ["Element", "PROPERTIES", "ground_set", "uncapacitated", "placement_from_set", "reduction",
           "marginal_gain", "SetFunction", "Violation", "check_property", "check_monotone", "check_submodular",
           "check_supermodular", "separability_gap", "marginal_gain_path"]

#: One element of the ground set: ``(server n, model u, layer l, expert e)``.
Element = tuple

#: The structural properties the checks test (:func:`check_property`).
PROPERTIES = ("monotone", "submodular", "supermodular")


# -----------------------------------------------------------------------------
# The set function
# -----------------------------------------------------------------------------
def ground_set(problem: Problem) -> list[tuple[int, int, int, int]]:
    """All (server, model, layer, expert) pairs ``(n, u, l, e)``, in lexicographic order.

    Chapter *Problem and structure*, the ground set ``V`` (size ``N * sum_u L_u E_u``).
    """
    out = []
    for n in range(problem.num_servers):
        for u, mod in enumerate(problem.models):
            for l in range(mod.num_layers):
                for e in range(mod.num_experts):
                    out.append((n, u, l, e))
    return out


def _element(problem: Problem, elem) -> tuple[int, int, int, int]:
    """Validate one ground-set element and return it as a tuple of ints."""
    try:
        t = tuple(int(v) for v in elem)
    except (TypeError, ValueError):
        raise V.fail("element", elem, "must be a tuple (server, model, layer, expert) of ints") from None
    if len(t) != 4 or any(a != b for a, b in zip(t, elem)):
        raise V.fail("element", elem, "must be a tuple (server, model, layer, expert) of ints")
    n, u, l, e = t
    if not 0 <= n < problem.num_servers:
        raise V.fail("element.server", n, f"must lie in 0..{problem.num_servers - 1}")
    if not 0 <= u < len(problem.models):
        raise V.fail("element.model", u, f"must lie in 0..{len(problem.models) - 1}")
    mod = problem.models[u]
    if not 0 <= l < mod.num_layers:
        raise V.fail("element.layer", l, f"must lie in 0..{mod.num_layers - 1}")
    if not 0 <= e < mod.num_experts:
        raise V.fail("element.expert", e, f"must lie in 0..{mod.num_experts - 1}")
    return t


def _elements(problem: Problem, S) -> frozenset:
    if isinstance(S, Placement):
        raise V.fail("S", S, "must be a collection of (server, model, layer, expert) tuples, not a Placement")
    try:
        items = list(S)
    except TypeError:
        raise V.fail("S", S, "must be a collection of (server, model, layer, expert) tuples") from None
    return frozenset(_element(problem, x) for x in items)


def uncapacitated(problem: Problem) -> Problem:
    """Copy of ``problem`` whose every server can hold every expert (device caches kept).

    The structural results of chapter *Problem and structure* concern ``R``
    on *all* subsets of the ground set; the knapsack constraints of (P1) only
    restrict which subsets are feasible, so they are lifted here.
    """
    total = sum(m.expert_bytes * m.num_layers * m.num_experts for m in problem.models)
    net = problem.network.replace(server_capacity_bytes=np.full(problem.num_servers, float(total)))
    return problem.replace(network=net, device_cache=[y.copy() for y in problem.device_cache])


def placement_from_set(problem: Problem, S) -> Placement:
    """The placement ``x`` with ``x[n, u, l, e] = 1`` exactly for ``(n, u, l, e)`` in ``S``.

    Device caches are the problem's own (``problem.device_cache``).  The
    placement is not checked against the server capacities.
    """
    elems = _elements(problem, S)
    P = Placement.empty(problem, method="set")
    for n, u, l, e in elems:
        P.server[u][n, l, e] = True
    return P


def reduction(problem: Problem, S) -> float:
    """``R(S)``: latency reduction of caching the pairs ``S``, seconds (weighted sum over users).

    Chapter *Problem and structure*, :eq:`eq-reduction`: exactly
    ``slimlib.latency_reduction(problem, placement_from_set(problem, S))`` with
    the server capacities lifted (see :func:`uncapacitated`).  A weighted *sum*,
    not an average: ``R(S) = (sum_m w_m) * (average_latency(empty) - average_latency(S))``.

    Parameters
    ----------
    problem : Problem
    S : iterable of (n, u, l, e)
        Cached (server, model, layer, expert) pairs.
    """
    p = uncapacitated(problem)
    return latency_reduction(p, placement_from_set(p, S))


def marginal_gain(problem: Problem, S, elem) -> float:
    """``R(S + e) - R(S)``, seconds (0 when ``e`` is already in ``S``).

    Chapter *Problem and structure*, definition of the marginal gain ``Delta_e R(S)``.
    """
    elems = _elements(problem, S)
    e = _element(problem, elem)
    if e in elems:
        return 0.0
    f = SetFunction(problem)
    return f.gain(elems, e)


class SetFunction:
    """``R`` as a memoised set function on (a subset of) the ground set.

    Evaluates exactly what :func:`slimlib.latency_reduction` evaluates —
    ``w @ (user_latency(empty) - user_latency(S))``, through the evaluator's
    own :func:`slimlib.expert_latency` and :func:`slimlib.group_latency` —
    with the no-edge-cache latencies and the call latencies computed once
    (the tests check equality with :func:`slimlib.latency_reduction`).  Optionally conditioned on a fixed set ``base``:
    ``f(S) = R(base ∪ S) - R(base)`` (used for a server's stage gain).

    Parameters
    ----------
    problem : Problem
        Server capacities are lifted (:func:`uncapacitated`).
    base : iterable of (n, u, l, e), optional
        Elements always cached.

    Attributes
    ----------
    evaluations : int
        Number of calls of the evaluator so far.
    """

    def __init__(self, problem: Problem, base=()):
        self.problem = uncapacitated(problem)
        self.base = _elements(self.problem, base)
        self._w = self.problem.network.user_weight
        self._empty = user_latency(self.problem, Placement.empty(self.problem))
        # what user_latency does, with the call latencies computed once and one reusable placement
        self._calls = call_latency(self.problem)
        self._work = Placement.empty(self.problem, method="set")
        self._memo: dict[frozenset, float] = {}
        self.evaluations = 0
        self._base_value = self._raw(self.base)

    def _user_latency(self, elems: frozenset) -> np.ndarray:
        """``user_latency(problem, placement_from_set(problem, elems))`` without re-validating."""
        P = self._work
        for x in P.server:
            x[...] = False
        for n, u, l, e in elems:
            P.server[u][n, l, e] = True
        out = np.empty(self.problem.num_users)
        for m, s in enumerate(self.problem.stats):
            tau = expert_latency(self.problem, P, m, calls=self._calls)
            out[m] = float(group_latency(tau, s.group_layer, s.group_experts) @ s.group_prob)
        return out

    def _raw(self, elems: frozenset) -> float:
        v = self._memo.get(elems)
        if v is None:
            v = float(self._w @ (self._empty - self._user_latency(elems)))
            self._memo[elems] = v
            self.evaluations += 1
        return v

    def __call__(self, S) -> float:
        """``R(base ∪ S) - R(base)``, seconds."""
        return self._raw(self.base | frozenset(S)) - self._base_value

    def gain(self, S, elem) -> float:
        """``f(S + elem) - f(S)``, seconds."""
        S = frozenset(S)
        return self(S | {elem}) - self(S)


# -----------------------------------------------------------------------------
# Checks of the defining inequalities
# -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Violation:
    """One violated inequality found by a check.

    Attributes
    ----------
    property : str
        ``"monotone"``, ``"submodular"`` or ``"supermodular"``.
    A, B : tuple of (n, u, l, e)
        The nested pair ``A ⊆ B`` (sorted).  For ``"monotone"``, ``A = B = S``.
    element : (n, u, l, e)
        The added element ``e ∉ B``.
    gain_A, gain_B : float
        ``R(A + e) - R(A)`` and ``R(B + e) - R(B)``, seconds.  Submodularity
        asks ``gain_A >= gain_B``, supermodularity ``gain_A <= gain_B``,
        monotonicity ``gain_A >= 0``.
    """

    property: str
    A: tuple
    B: tuple
    element: tuple
    gain_A: float
    gain_B: float

    @property
    def gap(self) -> float:
        """By how much the inequality fails, seconds (positive)."""
        if self.property == "monotone":
            return -self.gain_A
        if self.property == "submodular":
            return self.gain_B - self.gain_A
        return self.gain_A - self.gain_B

    def describe(self, unit: str = "ms") -> str:
        """One readable paragraph: the sets, the element and both gains (in ``unit``: s, ms or us)."""
        scale = {"s": 1.0, "ms": 1e3, "us": 1e6}[unit]

        def fmt(S):
            return "{" + ", ".join(f"({n},{u},{l},{e})" for n, u, l, e in S) + "}" if S else "∅"
        g = lambda x: f"{x * scale:.6g} {unit}"  # noqa: E731
        if self.property == "monotone":
            return (f"monotone violated: S = {fmt(self.A)}, e = {self.element}: "
                    f"R(S+e) - R(S) = {g(self.gain_A)} < 0")
        rel = "<" if self.property == "submodular" else ">"
        want = ">=" if self.property == "submodular" else "<="
        return (f"{self.property} violated (needs gain at A {want} gain at B):\n"
                f"  A = {fmt(self.A)}\n  B = {fmt(self.B)}\n  e = {self.element}\n"
                f"  R(A+e) - R(A) = {g(self.gain_A)}  {rel}  R(B+e) - R(B) = {g(self.gain_B)}")


@lru_cache(maxsize=16)
def _nested_pairs(k: int) -> tuple[np.ndarray, np.ndarray]:
    """All pairs of bit masks ``A ⊆ B`` over ``k`` bits (``3**k`` pairs)."""
    idx = np.arange(3 ** k, dtype=np.int64)
    A = np.zeros_like(idx)
    B = np.zeros_like(idx)
    for i in range(k):
        d = (idx // 3 ** i) % 3          # 0: in neither, 1: in B only, 2: in both
        B |= (d >= 1).astype(np.int64) << i
        A |= (d == 2).astype(np.int64) << i
    return A, B


def _insert_zero_bit(mask: np.ndarray, i: int) -> np.ndarray:
    """Spread ``k``-bit masks to ``k+1`` bits with a 0 at position ``i``."""
    low = mask & ((1 << i) - 1)
    return low | ((mask >> i) << (i + 1))


def _mask_set(ground: Sequence, mask: int) -> tuple:
    return tuple(sorted(ground[i] for i in range(len(ground)) if mask >> i & 1))


def check_property(problem: Problem, prop: str, ground=None, *, base=(), tol: float = 1e-12, exhaustive_max: int = 10,
                   samples: int = 200, seed=0, limit: int | None = None,
                   function: SetFunction | None = None) -> list[Violation]:
    if prop not in PROPERTIES:
        raise V.fail("property", prop, f"must be one of {PROPERTIES}")
    tol = V.number("tol", tol, nonneg=True)
    exhaustive_max = V.number("exhaustive_max", exhaustive_max, integer=True, nonneg=True)
    samples = V.number("samples", samples, integer=True, nonneg=True)
    if limit is not None:
        limit = V.number("limit", limit, integer=True, nonneg=True)
    if exhaustive_max > 16:
        raise V.fail("exhaustive_max", exhaustive_max, "must be <= 16 (2**16 evaluations, 16 * 3**15 pairs)")
    f = SetFunction(problem, base=base) if function is None else function
    if ground is None:
        ground = [x for x in ground_set(problem) if x not in f.base]
    else:
        ground = sorted({_element(problem, x) for x in ground})
        clash = [x for x in ground if x in f.base]
        if clash:
            raise V.fail("ground", clash[0], "must not contain an element of base")
    n = len(ground)
    out: list[Violation] = []
    if n <= exhaustive_max:
        vals = np.array([f(_mask_set(ground, m)) for m in range(1 << n)]) if n else np.zeros(1)
        for i in range(n):
            bit = 1 << i
            if prop == "monotone":
                S = _insert_zero_bit(np.arange(1 << (n - 1), dtype=np.int64), i)
                g = vals[S | bit] - vals[S]
                for k in np.flatnonzero(g < -tol):
                    s = _mask_set(ground, int(S[k]))
                    out.append(Violation(prop, s, s, ground[i], float(g[k]), float(g[k])))
                continue
            a, b = _nested_pairs(n - 1)
            a, b = _insert_zero_bit(a, i), _insert_zero_bit(b, i)
            ga = vals[a | bit] - vals[a]
            gb = vals[b | bit] - vals[b]
            bad = ga < gb - tol if prop == "submodular" else ga > gb + tol
            for k in np.flatnonzero(bad):
                out.append(Violation(prop, _mask_set(ground, int(a[k])), _mask_set(ground, int(b[k])), ground[i],
                                     float(ga[k]), float(gb[k])))
    else:
        rng = np.random.default_rng(seed)
        seen = set()
        for _ in range(samples):
            i = int(rng.integers(n))
            e = ground[i]
            others = [x for j, x in enumerate(ground) if j != i]
            pB, pA = rng.uniform(), rng.uniform()
            B = [x for x in others if rng.random() < pB]
            A = [x for x in B if rng.random() < pA]
            A, B = tuple(sorted(A)), tuple(sorted(B))
            if prop == "monotone":
                B = A
            key = (A, B, e)
            if key in seen:
                continue
            seen.add(key)
            ga = f.gain(A, e)
            gb = ga if prop == "monotone" else f.gain(B, e)
            if (prop == "monotone" and ga < -tol) or (prop == "submodular" and ga < gb - tol) or \
                    (prop == "supermodular" and ga > gb + tol):
                out.append(Violation(prop, A, B, e, ga, gb))
    out.sort(key=lambda v: -v.gap)
    return out if limit is None else out[:limit]


_CHECK_DOC = """

    Parameters
    ----------
    problem : Problem
        Server capacities are ignored (see :func:`uncapacitated`).
    ground : iterable of (n, u, l, e), optional
        The ground set to test on (default: every element of :func:`ground_set`
        not in ``base``).
    base : iterable of (n, u, l, e), optional
        Elements held cached: the tested function is ``S -> R(base ∪ S) - R(base)``.
    tol : float
        Absolute tolerance in seconds (default ``1e-12``); an inequality counts as
        violated only when it fails by more than ``tol``.
    exhaustive_max : int
        Ground sets with at most this many elements (default 10, at most 16) are
        checked exhaustively: ``R`` on all ``2**|V|`` subsets, then every nested
        pair ``A ⊆ B``, ``e ∉ B`` (``|V| * 3**(|V|-1)`` pairs).  Larger ones are
        checked on ``samples`` random nested pairs (random density for ``B``,
        random sub-density for ``A``; duplicates skipped).
    samples : int
        Number of random pairs for large ground sets.
    seed : int or numpy.random.Generator
    limit : int, optional
        Return at most this many violations (the largest ``gap`` first).

    Returns
    -------
    list of Violation
        Sorted by decreasing ``gap``; empty when none was found.
    """


def check_monotone(problem: Problem, ground=None, *, base=(), tol: float = 1e-12, exhaustive_max: int = 10,
                   samples: int = 200, seed=0, limit: int | None = None) -> list[Violation]:
    return check_property(problem, "monotone", ground, base=base, tol=tol, exhaustive_max=exhaustive_max,
                          samples=samples, seed=seed, limit=limit)


def check_submodular(problem: Problem, ground=None, *, base=(), tol: float = 1e-12, exhaustive_max: int = 10,
                     samples: int = 200, seed=0, limit: int | None = None) -> list[Violation]:
    return check_property(problem, "submodular", ground, base=base, tol=tol, exhaustive_max=exhaustive_max,
                          samples=samples, seed=seed, limit=limit)


def check_supermodular(problem: Problem, ground=None, *, base=(), tol: float = 1e-12, exhaustive_max: int = 10,
                       samples: int = 200, seed=0, limit: int | None = None) -> list[Violation]:
    return check_property(problem, "supermodular", ground, base=base, tol=tol, exhaustive_max=exhaustive_max,
                          samples=samples, seed=seed, limit=limit)


check_property.__doc__ = ("Check one of ``PROPERTIES`` (``prop``: ``\"monotone\"``, ``\"submodular\"`` or "
                          "``\"supermodular\"``); :func:`check_monotone` and its siblings call this."
                          + _CHECK_DOC.replace("    Returns\n", "    function : SetFunction, optional\n"
                                               "        ``R`` (with its memo) to evaluate instead of a new "
                                               "``SetFunction(problem, base=base)``;\n"
                                               "        ``base`` is then that function's own.\n\n    Returns\n"))
check_monotone.__doc__ = ("Check ``R(S + e) >= R(S)`` (Definition *monotone*, chapter *Problem and structure*)."
                          + _CHECK_DOC)
check_submodular.__doc__ = ("Check ``R(A + e) - R(A) >= R(B + e) - R(B)`` for nested ``A ⊆ B``, ``e ∉ B`` "
                            "(:prf:ref:`def-set-functions`; :prf:ref:`prop-k1` says it holds for K = 1)." + _CHECK_DOC)
check_supermodular.__doc__ = ("Check ``R(A + e) - R(A) <= R(B + e) - R(B)`` for nested ``A ⊆ B``, ``e ∉ B`` "
                              "(:prf:ref:`def-set-functions`; :prf:ref:`prop-k2` says it fails with two servers)."
                              + _CHECK_DOC)


# -----------------------------------------------------------------------------
# Separability lemma
# -----------------------------------------------------------------------------
def separability_gap(problem: Problem, server: int, others=(), *, samples: int = 50, seed=0) -> float:
    """Largest deviation from the separability lemma on random caches of one server, seconds.

    Chapter *Problem and structure*, Lemma (separability): with the caches
    ``others`` of the other servers fixed, the gain of server ``n`` caching
    ``X`` is ``sum_{u,l} g_{u,l}(X ∩ V_{n,u,l})``.  For ``samples`` random
    ``X`` this returns ``max |Delta(X) - sum_{u,l} Delta(X ∩ V_{n,u,l})|``
    (0 up to rounding when the lemma holds).

    Parameters
    ----------
    problem : Problem
    server : int
        ``n``.
    others : iterable of (n', u, l, e)
        Caches of the other servers (elements of ``server`` are not allowed).
    samples : int
    seed : int or numpy.random.Generator
    """
    server = V.number("server", server, integer=True, nonneg=True)
    if server >= problem.num_servers:
        raise V.fail("server", server, f"must lie in 0..{problem.num_servers - 1}")
    f = SetFunction(problem, base=others)
    if any(x[0] == server for x in f.base):
        raise V.fail("others", sorted(f.base), f"must not contain elements of server {server}")
    mine = [x for x in ground_set(problem) if x[0] == server]
    rng = np.random.default_rng(seed)
    worst = 0.0
    for _ in range(V.number("samples", samples, integer=True, nonneg=True)):
        p = rng.uniform()
        X = [x for x in mine if rng.random() < p]
        parts: dict = {}
        for x in X:
            parts.setdefault(x[1:3], []).append(x)
        total = f(X)
        split = sum(f(part) for part in parts.values())
        worst = max(worst, abs(total - split))
    return worst


# -----------------------------------------------------------------------------
# Widget data: marginal gains along a growing cache
# -----------------------------------------------------------------------------
def marginal_gain_path(problem: Problem, elem, order) -> np.ndarray:
    """Gains of ``elem`` along the chain ``S_0 = ∅ ⊂ S_1 ⊂ ... ⊂ S_k``, ``S_i`` = first ``i`` of ``order``.

    Chapter *Problem and structure*, widget.  A submodular ``R`` gives a
    non-increasing sequence (each ``S_i ⊆ S_{i+1}``); a supermodular one a
    non-decreasing sequence.

    Returns
    -------
    ndarray, shape (len(order) + 1,)
        ``R(S_i + elem) - R(S_i)``, seconds.
    """
    e = _element(problem, elem)
    order = [_element(problem, x) for x in order]
    if e in order:
        raise V.fail("order", order, f"must not contain the element {e}")
    f = SetFunction(problem)
    return np.array([f.gain(order[:i], e) for i in range(len(order) + 1)])
