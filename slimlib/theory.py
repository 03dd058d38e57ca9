"""The latency reduction as a set function, and numerical checks of its structure.

Chapter *Problem and structure* (``ch-structure``).  A placement of experts on edge
servers is a subset ``S`` of the ground set

    V = {(n, u, l, e)}:  server n caches expert e of MoE layer l of model u,

with the device caches held fixed (the problem's default device policy).  The
set function studied in the chapter is the latency reduction

    R(S) = sum_m w_m (T_m(empty) - T_m(S))                       ({eq}`eq-reduction`)

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
* :func:`separability_gap` — the separability lemma, checked numerically.
* :func:`survey` — the checks on many random problems (chapter's tables).
* :func:`counterexample_not_submodular`, :func:`counterexample_not_supermodular`
  — the explicit instances of {prf:ref}`prop-k2`.
* :func:`marginal_gain_path`, :func:`gain_path_example` — data of the widget.
* :func:`routing_cases` — the five Top-2 routing cases of {numref}`fig-routing-cases`, scored by
  the evaluator's own per-group function.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Iterable, Sequence

import numpy as np

from . import _validate as V
from .latency import call_latency, expert_latency, group_latency, latency_reduction, user_latency
from .model import MoEModel
from .network import Network
from .problem import Placement, Problem
from .stats import ActivationStats

__all__ = ["Element", "ground_set", "uncapacitated", "placement_from_set", "reduction", "marginal_gain",
           "SetFunction", "Violation", "check_monotone", "check_submodular", "check_supermodular",
           "separability_gap", "SurveyRecord", "Survey", "survey",
           "counterexample_not_submodular", "counterexample_not_supermodular",
           "marginal_gain_path", "gain_path_example", "RoutingCase", "routing_cases"]

#: One element of the ground set: ``(server n, model u, layer l, expert e)``.
Element = tuple

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

    Chapter *Problem and structure*, {eq}`eq-reduction`: exactly
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


def _check(problem: Problem, prop: str, ground=None, base=(), tol: float = 1e-12, exhaustive_max: int = 10,
           samples: int = 200, seed=0, limit: int | None = None, f: SetFunction | None = None) -> list[Violation]:
    if prop not in PROPERTIES:
        raise V.fail("property", prop, f"must be one of {PROPERTIES}")
    tol = V.number("tol", tol, nonneg=True)
    exhaustive_max = V.number("exhaustive_max", exhaustive_max, integer=True, nonneg=True)
    samples = V.number("samples", samples, integer=True, nonneg=True)
    if limit is not None:
        limit = V.number("limit", limit, integer=True, nonneg=True)
    if exhaustive_max > 16:
        raise V.fail("exhaustive_max", exhaustive_max, "must be <= 16 (2**16 evaluations, 16 * 3**15 pairs)")
    f = SetFunction(problem, base=base) if f is None else f
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
    return _check(problem, "monotone", ground, base, tol, exhaustive_max, samples, seed, limit)


def check_submodular(problem: Problem, ground=None, *, base=(), tol: float = 1e-12, exhaustive_max: int = 10,
                     samples: int = 200, seed=0, limit: int | None = None) -> list[Violation]:
    return _check(problem, "submodular", ground, base, tol, exhaustive_max, samples, seed, limit)


def check_supermodular(problem: Problem, ground=None, *, base=(), tol: float = 1e-12, exhaustive_max: int = 10,
                       samples: int = 200, seed=0, limit: int | None = None) -> list[Violation]:
    return _check(problem, "supermodular", ground, base, tol, exhaustive_max, samples, seed, limit)


check_monotone.__doc__ = ("Check ``R(S + e) >= R(S)`` (Definition *monotone*, chapter *Problem and structure*)."
                          + _CHECK_DOC)
check_submodular.__doc__ = ("Check ``R(A + e) - R(A) >= R(B + e) - R(B)`` for nested ``A ⊆ B``, ``e ∉ B`` "
                            "({prf:ref}`def-set-functions`; {prf:ref}`prop-k1` says it holds for K = 1)." + _CHECK_DOC)
check_supermodular.__doc__ = ("Check ``R(A + e) - R(A) <= R(B + e) - R(B)`` for nested ``A ⊆ B``, ``e ∉ B`` "
                              "({prf:ref}`def-set-functions`; {prf:ref}`prop-k2` says it fails with two servers)."
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
# Surveys over random problems
# -----------------------------------------------------------------------------
@dataclass
class SurveyRecord:
    """Result of the checks on one random problem (see :func:`survey`).

    Attributes
    ----------
    seed : int
        Seed of :func:`slimlib.instances.random_problem`.
    shape : dict
        ``num_users``, ``num_servers``, ``num_layers``, ``num_experts``, ``top_k``, ``weights``.
    size : int
        ``|V|``.
    exhaustive : bool
        Whether every nested pair was checked.
    violations : dict of str to list of Violation
        Per property, at most 3 violations (largest gap first).
    counts : dict of str to int
        Per property, the number of violations found.
    """

    seed: int
    shape: dict
    size: int
    exhaustive: bool
    violations: dict = field(default_factory=dict)
    counts: dict = field(default_factory=dict)


@dataclass
class Survey:
    """Checks of :func:`survey` on many random problems.

    Attributes
    ----------
    top_k : int
    records : list of SurveyRecord
    """

    top_k: int
    records: list

    def problems(self, servers: str = "all") -> list[SurveyRecord]:
        """Records of problems with one server (``"1"``), several (``"2+"``), or ``"all"``."""
        if servers == "all":
            return list(self.records)
        if servers == "1":
            return [r for r in self.records if r.shape["num_servers"] == 1]
        if servers == "2+":
            return [r for r in self.records if r.shape["num_servers"] >= 2]
        raise V.fail("servers", servers, "must be 'all', '1' or '2+'")

    def with_violation(self, prop: str, servers: str = "all") -> int:
        """Number of problems on which at least one ``prop`` violation was found."""
        return sum(1 for r in self.problems(servers) if r.counts.get(prop, 0) > 0)

    def total(self, prop: str, servers: str = "all") -> int:
        """Total number of ``prop`` violations found."""
        return sum(r.counts.get(prop, 0) for r in self.problems(servers))

    def example(self, prop: str, servers: str = "all", min_experts: int = 1):
        """``(record, violation)`` with the smallest ground set (then largest gap), or ``None``.

        Only problems with at least ``min_experts`` experts per layer are considered.
        """
        best = None
        for r in self.problems(servers):
            if r.shape["num_experts"] < min_experts:
                continue
            for v in r.violations.get(prop, []):
                key = (r.size, len(v.B), -v.gap)
                if best is None or key < best[0]:
                    best = (key, r, v)
        return None if best is None else (best[1], best[2])

    def table(self) -> list[dict]:
        """Rows ``{servers, problems, exhaustive, <prop>: "#problems with a violation / #violations"}``."""
        rows = []
        for servers in ("1", "2+", "all"):
            recs = self.problems(servers)
            row = {"servers": {"1": "N = 1", "2+": "N >= 2", "all": "all"}[servers], "problems": len(recs),
                   "exhaustive": sum(r.exhaustive for r in recs)}
            for prop in PROPERTIES:
                if recs and prop in recs[0].counts:
                    row[prop] = f"{self.with_violation(prop, servers)} / {self.total(prop, servers)}"
            rows.append(row)
        return rows

    def markdown(self) -> str:
        """:meth:`table` as a Markdown table: one column per server count, one row per property.

        Cells read "problems with a violation / violations found".
        """
        rows = self.table()
        props = [p for p in PROPERTIES if p in rows[0]]
        head = "| | " + " | ".join(r["servers"].replace(">=", "≥") for r in rows) + " |"
        sep = "|---|" + "--:|" * len(rows)
        body = ["| problems (checked exhaustively) | " + " | ".join(f"{r['problems']} ({r['exhaustive']})" for r in rows)
                + " |"]
        body += [f"| {p} | " + " | ".join(r[p] for r in rows) + " |" for p in props]
        return "\n".join([head, sep, *body])


def survey(top_k: int, num_problems: int = 300, *, seed: int = 0, properties: Sequence[str] = PROPERTIES,
           max_servers: int = 3, max_users: int = 2, max_layers: int = 2, extra_experts: int = 2,
           exhaustive_max: int = 8, samples: int = 100, tol: float = 1e-12, progress: bool = False) -> Survey:
    """Run the checks on ``num_problems`` random problems of Top-``top_k`` routing.

    Chapter *Problem and structure*, numerical checks of {prf:ref}`prop-k1` and {prf:ref}`prop-k2`.
    Problem ``i`` is ``slimlib.instances.random_problem(seed_i, ...)`` with a
    shape drawn from ``seed``: ``1..max_servers`` servers, ``1..max_users``
    users (random weights half of the time), ``1..max_layers`` layers and
    ``max(K, 2) .. max(K, 2) + extra_experts`` experts.  Ground sets of at most
    ``exhaustive_max`` elements are checked exhaustively, larger ones on
    ``samples`` random nested pairs per property.

    Returns
    -------
    Survey
    """
    top_k = V.number("top_k", top_k, integer=True, positive=True)
    num_problems = V.number("num_problems", num_problems, integer=True, nonneg=True)
    for p in properties:
        if p not in PROPERTIES:
            raise V.fail("properties", p, f"must be among {PROPERTIES}")
    rng = np.random.default_rng(seed)
    it = range(num_problems)
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(it, desc=f"K={top_k}")
    records = []
    emin = max(top_k, 2)
    for _ in it:
        shape = dict(num_users=int(rng.integers(1, max_users + 1)), num_servers=int(rng.integers(1, max_servers + 1)),
                     num_layers=int(rng.integers(1, max_layers + 1)),
                     num_experts=int(rng.integers(emin, emin + extra_experts + 1)), top_k=top_k,
                     weights=bool(rng.integers(2)))
        pseed = int(rng.integers(2 ** 31))
        prob = random_problem_for_survey(pseed, shape)
        f = SetFunction(prob)
        size = len(ground_set(prob))
        rec = SurveyRecord(seed=pseed, shape=shape, size=size, exhaustive=size <= exhaustive_max)
        for prop in properties:
            found = _check(prob, prop, tol=tol, exhaustive_max=exhaustive_max, samples=samples,
                           seed=pseed, f=f)
            rec.counts[prop] = len(found)
            rec.violations[prop] = found[:3]
        records.append(rec)
    return Survey(top_k=top_k, records=records)


def random_problem_for_survey(seed: int, shape: dict) -> Problem:
    """The random problem of one :class:`SurveyRecord` (to look at it again)."""
    from .instances import random_problem
    return random_problem(seed, num_users=shape["num_users"], num_servers=shape["num_servers"],
                          num_layers=shape["num_layers"], num_experts=shape["num_experts"], top_k=shape["top_k"],
                          weights=shape.get("weights", False))


# -----------------------------------------------------------------------------
# Counterexamples of prop-k2
# -----------------------------------------------------------------------------
def _toy_model(name: str) -> MoEModel:
    # theta = 8 * 1000 * 1 = 8000 bit per hop; phi = 2e6 FLOP per call; 1 MB per expert.
    return MoEModel(name, num_layers=1, num_experts=2, top_k=2, hidden_size=1000, params_per_expert=10 ** 6,
                    bytes_per_param=1, act_bytes=1,
                    description="Toy Top-2 layer of the counterexamples of prop-k2 (chapter Problem and structure).")


def _toy_network(rates_bps: Sequence[float]) -> Network:
    N = len(rates_bps)
    r = np.asarray(rates_bps, float)[None, :]
    return Network(server_capacity_bytes=np.full(N, 2e6), server_flops=np.full(N, 2e9),
                   user_capacity_bytes=[0.0], user_flops=[1e9], rate_up=r, rate_down=r,
                   backhaul_rate_bps=1e9, backhaul_delay_s=5e-3, cloud_flops=100e12)


def counterexample_not_submodular() -> Problem:
    """The smallest instance on which ``R`` is not submodular ({prf:ref}`prop-k2` (a)).

    One user (no device storage), one server, one MoE layer with ``E = K = 2``;
    every token activates the group ``{0, 1}`` (probability 1).  Numbers: the
    hidden state has ``theta = 8000`` bit, an expert costs ``phi = 2e6`` FLOP; the
    radio link runs at 8 Mbit/s both ways, the server at 2 GFLOP/s, so an edge
    call takes ``1 + 1 + 1 = 3`` ms; the cloud call adds the Table 1 backhaul
    (1 Gbit/s, 5 ms each way) and compute (100 TFLOP/s):
    ``2 + 0.016 + 10 + 0.00002 ≈ 12.016`` ms.

    The ground set is ``{(0,0,0,0), (0,0,0,1)}``.  With ``A = ∅``,
    ``B = {(0,0,0,1)}``, ``e = (0,0,0,0)``: ``R(A+e) - R(A) = 0`` (expert 1 still
    waits for the cloud) but ``R(B+e) - R(B) = t_cloud - t_edge > 0``.
    """
    model = _toy_model("toy-top2")
    stats = ActivationStats(2, 2, [[[0, 1]]], probs=[[1.0]], model=model.name,
                            provenance={"source": "synthetic", "generator": "counterexample_not_submodular"})
    return Problem(model, _toy_network([8e6]), stats, name="counterexample: not submodular")


def counterexample_not_supermodular() -> Problem:
    """An instance with two servers on which ``R`` is not supermodular ({prf:ref}`prop-k2` (b)).

    As :func:`counterexample_not_submodular`, with a second server whose radio
    link runs at 4 Mbit/s (edge call ``2 + 1 + 2 = 5`` ms against 3 ms on
    server 0).  With ``A = {(0,0,0,1)}``, ``B = {(0,0,0,0), (0,0,0,1)}`` and
    ``e = (1,0,0,0)`` (expert 0 on the slower server 1):
    ``R(A+e) - R(A) = t_cloud - 5 ms > 0`` but ``R(B+e) - R(B) = 0`` (server 0
    already serves expert 0 faster).
    """
    model = _toy_model("toy-top2")
    stats = ActivationStats(2, 2, [[[0, 1]]], probs=[[1.0]], model=model.name,
                            provenance={"source": "synthetic", "generator": "counterexample_not_supermodular"})
    return Problem(model, _toy_network([8e6, 4e6]), stats, name="counterexample: not supermodular")


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


def gain_path_example(top_k: int, num_experts: int, seed: int, *, num_servers: int = 2, num_users: int = 2):
    """The widget's instance: a random one-layer problem, its most useful element and a random order.

    The element is user 0's most activated expert (not on its device) on the
    server with user 0's fastest link; the other elements are added in a
    random (seeded) order.

    Returns
    -------
    problem : Problem
    element : (n, u, l, e)
    order : list of (n, u, l, e)
    gains : ndarray, shape (len(order) + 1,), seconds
    """
    from .instances import random_problem
    prob = random_problem(seed, num_users=num_users, num_servers=num_servers, num_layers=1,
                          num_experts=num_experts, top_k=top_k, device_slots=(0, 1))
    p = prob.stats[0].marginals()[0].copy()
    p[prob.device_cache[0][0]] = -1.0
    e = int(np.argmax(p))
    n = int(np.argmin(call_latency(prob).edge[0]))
    elem = (n, 0, 0, e)
    rest = [x for x in ground_set(prob) if x != elem]
    rng = np.random.default_rng(seed)
    order = [rest[i] for i in rng.permutation(len(rest))]
    return prob, elem, order, marginal_gain_path(prob, elem, order)


# -----------------------------------------------------------------------------
# fig-routing-cases: the routing cases of one Top-2 group
# -----------------------------------------------------------------------------
@dataclass
class RoutingCase:
    """One routing case of {numref}`fig-routing-cases`, scored by the evaluator.

    Attributes
    ----------
    key : str
        ``"both-local"``, ``"local-edge"``, ``"same-server"``, ``"two-servers"``, ``"cloud"``.
    title : str
    problem : Problem
        One user, two servers, one MoE layer; group ``{i, j} = {0, 1}`` with probability 1.
    placement : Placement
    where : tuple of str
        Where ``i`` and ``j`` are served: ``"device"``, ``"server 1"``, ``"server 2"`` or ``"cloud"``.
    tau : tuple of float
        ``tau(l, i)`` and ``tau(l, j)`` from :func:`slimlib.expert_latency`, seconds.
    latency : float
        ``tau(l, {i, j})`` from :func:`slimlib.group_latency`, seconds; equals
        ``average_latency(problem, placement)`` because the group has probability 1.
    """

    key: str
    title: str
    problem: Problem
    placement: Placement
    where: tuple
    tau: tuple
    latency: float


def routing_cases(model: MoEModel | str = "moe-llava-phi2-2.7b-4e", params=None,
                  distance_m: Sequence[float] = (100.0, 250.0)) -> list[RoutingCase]:
    """The five hidden-state routing cases of a Top-2 group ``{i, j}`` ({numref}`fig-routing-cases`).

    The example: one user running one MoE layer of ``model`` (default
    MoE-LLaVA-Phi2, fp16), two edge servers at ``distance_m`` metres, Table 1
    parameters; the token activates ``{i, j} = {0, 1}`` with probability 1.
    Each case is a placement; its latencies come from
    :func:`slimlib.expert_latency` and :func:`slimlib.group_latency` — the
    functions :func:`slimlib.average_latency` itself uses.

    Cases (server 1 is the nearer one):
    both local (device holds i, j); one local, one edge (device i, server 1 j);
    both on one server (server 1 holds i, j); two servers (server 1 i,
    server 2 j); one in the cloud (server 1 i, j nowhere).

    Returns
    -------
    list of RoutingCase
    """
    from .io import load_model_card, load_parameters
    mod = load_model_card(model) if isinstance(model, str) else model
    if mod.num_experts < 2:
        raise V.fail("model.num_experts", mod.num_experts, "needs at least 2 experts")
    mod = dataclasses.replace(mod, num_layers=1, top_k=2)
    params = load_parameters() if params is None else params
    d = V.array("distance_m", distance_m, shape=(2,), positive=True)
    net = Network.from_parameters(params, num_users=1, num_servers=2, distance_m=d[None, :],
                                  user_capacity_bytes=2 * mod.expert_bytes,
                                  server_capacity_bytes=2 * mod.expert_bytes)
    stats = ActivationStats(mod.num_experts, 2, [[[0, 1]]], probs=[[1.0]], model=mod.name,
                            provenance={"source": "synthetic", "generator": "routing_cases"})
    prob = Problem(mod, net, stats, device_cache=[np.zeros((1, mod.num_experts), bool)], name="routing-cases example")
    i, j = 0, 1
    specs = [("both-local", "both local", {i: "device", j: "device"}),
             ("local-edge", "one local, one edge", {i: "device", j: "server 1"}),
             ("same-server", "both on one server", {i: "server 1", j: "server 1"}),
             ("two-servers", "two servers", {i: "server 1", j: "server 2"}),
             ("cloud", "one in the cloud", {i: "server 1", j: "cloud"})]
    calls = call_latency(prob)
    out = []
    for key, title, loc in specs:
        P = Placement.empty(prob, method=f"figure5:{key}")
        for e, where in loc.items():
            if where == "device":
                P.device[0][0, e] = True
            elif where.startswith("server"):
                P.server[0][int(where[-1]) - 1, 0, e] = True
        P.check(prob)
        tau = expert_latency(prob, P, 0, calls=calls)
        lat = float(group_latency(tau, np.array([0]), np.array([[i, j]]))[0])
        # where each expert is actually served: the evaluator's choice (the fastest holder)
        options = {"device": calls.local[0], "server 1": calls.edge[0, 0], "server 2": calls.edge[0, 1],
                   "cloud": calls.cloud[0]}
        served = tuple(loc[e] if np.isclose(options[loc[e]], tau[0, e], rtol=0, atol=1e-15) else "cloud"
                       for e in (i, j))
        out.append(RoutingCase(key, title, prob, P, served, (float(tau[0, i]), float(tau[0, j])), lat))
    return out
