"""Re-caching while the statistics drift: policies, migration cost, the ``online`` command.

Chapter *When the statistics drift*.  A period ``t`` of a
:class:`~slimlib.drift.DriftingWorkload` is served by a placement ``x_t``
chosen at its start from the online estimate of the statistics
(:func:`slimlib.drift.estimate`).  Three policies:

``"static"``
    Keep the placement solved on the offline statistics, ``x_t = x_0``.
``"periodic"``
    Every ``every`` periods, re-solve (P1) on the estimated statistics with
    :func:`slimlib.solve` (any method) and adopt the result, the *target*
    ``T_t``; copies of ``x_{t-1}`` that still fit beside it stay (keeping a
    copy moves no byte and never raises a latency).  This is :func:`adopt`.
``"budgeted"``
    Every period, move at most ``B`` bytes towards the target
    (:func:`budgeted_step`): if every copy the target needs fits in ``B``,
    adopt it as above; otherwise fetch the target's missing copies move by
    move — one copy, or the missing copies of one activated group together
    (a Top-2 pair gains nothing until both experts are near) — each time the
    move with the largest latency gain per byte on the estimated statistics
    (evicting, on its server, the copies the target drops whose removal costs
    least), while the gain is positive and the budget lasts.

What is guaranteed (:func:`budgeted_step`; tests in ``tests/test_online.py``):
each period moves at most ``B`` bytes and every placement fits every
capacity; ``B = 0`` keeps the static placement and a budget that covers the
target gives exactly the periodic re-solve; in the greedy branch every fetch
lowers the latency *on the estimated statistics*.  No approximation factor
against the best placement reachable with ``B`` bytes is proven, and none
above 1/2 holds: :func:`budget_counterexample` is a Top-2 instance where the
greedy gets a fraction ``p / (1 - p)`` of the best gain within budget, for
any ``p`` in ``(1/3, 1/2)``.

Migration cost.  A move fetches its new copies from the cloud over the one
backhaul of the network: ``bytes * 8 / r_bh`` seconds at the start of the
period.  During the move the *old* placement serves (a copy is evicted only
when its replacement has arrived) and the move occupies the backhaul: a
cloud call shares it with the transfer (fair share, rate ``r_bh / 2``).  The
latency of the period is the time-weighted mix of the two phases, both scored
by :func:`slimlib.average_latency` on the period's true statistics.  A move
never spans two periods: the period must be at least as long as refilling
every server (checked).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import _validate as V
from .drift import DriftingWorkload, Estimates
from .latency import BatchEvaluator, average_latency
from .problem import Placement, Problem

__all__ = ["POLICIES", "OnlineContext", "OnlineRun", "prepare", "run_policy", "adopt", "budgeted_step",
           "moved_bytes", "budget_counterexample",
           "min_period_s"]

#: The re-caching policies of :func:`run_policy`.
POLICIES = ("static", "periodic", "budgeted")


# ---------------------------------------------------------------------------
# Placements and moves
# ---------------------------------------------------------------------------
def moved_bytes(problem: Problem, old: Placement, new: Placement) -> float:
    """Bytes fetched over the backhaul to go from ``old`` to ``new``: new copies only (evictions are free)."""
    return float(sum(((n & ~o).sum() * m.expert_bytes) for m, o, n in zip(problem.models, old.server, new.server)))


def _popularity(problem: Problem) -> list[np.ndarray]:
    """Weighted marginal activation ``sum_m w_m p_{m,l,e}`` per model, shape ``(L_u, E_u)`` each."""
    w = problem.network.user_weight
    out = [np.zeros((m.num_layers, m.num_experts)) for m in problem.models]
    for m, s in enumerate(problem.stats):
        out[problem.user_model[m]] += w[m] * s.marginals()
    return out


def _budget(value) -> float:
    """``B`` as a float: a number >= 0, or ``math.inf``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value == math.inf:
        return math.inf
    return V.number("budget_bytes", value, nonneg=True)


def _set(x, n, copies, value) -> None:
    for u, l, e in copies:
        x[u][n, l, e] = value


def _variants(x, n, changes) -> list[np.ndarray]:
    """Server caches ``x`` changed on server ``n``, once per ``(evict, fetch)`` in ``changes``: shape ``(B, N, L, E)`` per model."""
    out = [np.repeat(xs[None], len(changes), axis=0) for xs in x]
    for b, (evict, fetch) in enumerate(changes):
        for u, l, e in evict:
            out[u][b, n, l, e] = False
        for u, l, e in fetch:
            out[u][b, n, l, e] = True
    return out


#: Most candidate cache entries (bools) :func:`_score_variants` builds at once; more candidates are scored in chunks.
VARIANT_BLOCK = 2 ** 25


def _score_variants(score: BatchEvaluator, x, n, changes) -> np.ndarray:
    """``score`` of every :func:`_variants` candidate, ``(len(changes),)`` s, never more than ``VARIANT_BLOCK`` entries at once."""
    per = max(1, sum(xs.size for xs in x))
    step = max(1, VARIANT_BLOCK // per)
    if len(changes) <= step:
        return np.asarray(score(_variants(x, n, changes)), dtype=float).reshape(-1)
    return np.concatenate([np.asarray(score(_variants(x, n, changes[i:i + step])), dtype=float).reshape(-1)
                           for i in range(0, len(changes), step)])


def _group_sets(problem: Problem) -> list[set]:
    """Per model, the distinct ``(layer, experts)`` of every activated group of its users."""
    out = []
    for u in range(len(problem.models)):
        stats = [problem.stats[m] for m in problem.users_of(u)]
        if not stats:
            out.append(set())
            continue
        rows = np.unique(np.concatenate([np.column_stack([s.group_layer, s.group_experts]) for s in stats]), axis=0)
        out.append({(int(r[0]), tuple(int(e) for e in r[1:])) for r in rows})
    return out


def _moves(x, target, groups, n) -> list[tuple]:
    """Candidate fetches on server ``n``: one missing target copy, or the missing copies of one group.

    A group's move exists when every expert of the group is in the target on
    ``n`` and at least two are missing (a Top-K group gains only when all its
    experts are close).
    """
    single = [((u, int(l), int(e)),) for u, (xs, ts) in enumerate(zip(x, target))
              for l, e in np.argwhere(ts[n] & ~xs[n])]
    multi = set()
    for u, (xs, ts) in enumerate(zip(x, target)):
        for l, g in groups[u]:
            if len(g) > 1 and all(ts[n, l, e] for e in g):
                miss = tuple((u, l, e) for e in g if not xs[n, l, e])
                if len(miss) > 1:
                    multi.add(miss)
    return single + sorted(multi)


def adopt(problem: Problem, current: Placement, target: Placement) -> Placement:
    """The target, plus every copy of ``current`` that still fits beside it.

    Kept copies are taken in order of their weighted activation probability on
    ``problem``'s statistics (most popular first), server by server.  Keeping
    a copy moves no byte and cannot raise any latency (an expert is served
    from the fastest location holding it).
    """
    new = target.copy()
    pop = _popularity(problem)
    cap = problem.network.server_capacity_bytes
    used = new.used_bytes(problem)
    for n in range(problem.num_servers):
        cand = [(-pop[u][l, e], u, l, e) for u, x in enumerate(current.server)
                for l, e in np.argwhere(x[n] & ~new.server[u][n])]
        for _, u, l, e in sorted(cand):
            size = problem.models[u].expert_bytes
            if used[n] + size <= cap[n] * (1 + 1e-9):
                new.server[u][n, l, e] = True
                used[n] += size
    new.method = target.method
    return new


def budgeted_step(problem: Problem, current: Placement, target: Placement, budget_bytes: float) -> Placement:
    """Move at most ``budget_bytes`` towards ``target``, best latency gain per byte first.

    Chapter *When the statistics drift*, section "Re-caching with a budget".

    Parameters
    ----------
    problem : Problem
        The *estimated* statistics: gains are measured on them.
    current, target : Placement
        Feasible placements of ``problem`` (same device caches).
    budget_bytes : float
        ``B >= 0``, bytes that may be fetched over the backhaul (``math.inf``: no limit).

    Returns
    -------
    Placement
        ``adopt(problem, current, target)`` when the target's missing copies
        fit in ``B``; otherwise ``current`` after greedy moves.  A move on
        server ``n`` fetches one missing target copy, or the missing copies of
        one activated group whose experts are all in the target on ``n``; the
        move of largest ``(L(x) - L(x')) / bytes`` that fits in what is left
        of ``B`` is made, where ``x'`` evicts, on server ``n``, the dropped
        copies (in ``current`` but not in ``target``) of smallest
        single-removal loss until the move fits; moves stop when no gain is
        positive.  ``info["moved_bytes"]`` holds
        the bytes fetched.

    Notes
    -----
    Proven here: at most ``B`` bytes move; the result fits every capacity
    (evicting every dropped copy of a server always makes room, because the
    target fits); ``B = 0`` returns ``current``; every greedy fetch strictly
    move strictly lowers the latency on ``problem``.  Not proven: any fraction
    of the best gain reachable with ``B`` bytes; :func:`budget_counterexample`
    shows that no fraction above 1/2 holds.

    The candidates of a server are scored together by
    :class:`slimlib.latency.BatchEvaluator`, the batched form of
    :func:`slimlib.average_latency`.
    """
    budget = _budget(budget_bytes)
    need = moved_bytes(problem, current, target)
    if need <= budget:
        out = adopt(problem, current, target)
        out.info["moved_bytes"] = need
        return out
    score = BatchEvaluator(problem)          # slimlib.average_latency of many candidates at once
    x = [s.copy() for s in current.server]
    cap = problem.network.server_capacity_bytes * (1 + 1e-9)
    sizes = [m.expert_bytes for m in problem.models]
    groups = _group_sets(problem)
    left, moved = budget, 0.0
    lat = score(x)
    while True:
        used = sum(xs.reshape(xs.shape[0], -1).sum(axis=1) * s for xs, s in zip(x, sizes))
        best = None
        for n in range(problem.num_servers):
            moves = [m for m in _moves(x, target.server, groups, n) if sum(sizes[c[0]] for c in m) <= left]
            if not moves:
                continue
            drop = [(u, l, e) for u, (xs, ts) in enumerate(zip(x, target.server))
                    for l, e in np.argwhere(xs[n] & ~ts[n])]
            loss = _score_variants(score, x, n, [([d], []) for d in drop]) - lat   # single-removal loss of each
            order = [drop[i] for i in np.argsort(loss, kind="stable")]
            cand = []
            for move in moves:
                size = sum(sizes[c[0]] for c in move)
                free, evict = cap[n] - used[n], []
                for d in order:
                    if free >= size:
                        break
                    evict.append(d)
                    free += sizes[d[0]]
                cand.append((move, evict, size))
            after = _score_variants(score, x, n, [(evict, move) for move, evict, _ in cand])
            for (move, evict, size), lat_after in zip(cand, after):
                gain = (lat - lat_after) / size
                if gain * size > 1e-12 * lat and (best is None or gain > best[0]):
                    best = (gain, n, move, evict, size)
        if best is None:
            break
        _, n, move, evict, size = best
        _set(x, n, evict, False)
        _set(x, n, move, True)
        left -= size
        moved += size
        lat = score(x)
    out = Placement(x, [y.copy() for y in current.device], method=target.method, info={"moved_bytes": moved})
    return out


# ---------------------------------------------------------------------------
# Running a policy over a workload
# ---------------------------------------------------------------------------
@dataclass
class OnlineContext:
    """What every policy of one workload shares: problems per period, the initial placement, the targets.

    Build with :func:`prepare`.

    Attributes
    ----------
    problem : Problem
        Offline problem (its statistics are profile 0 of the workload).
    workload : DriftingWorkload
    estimates : Estimates
    method : str
        Solver of the initial placement and of every target.
    initial : Placement
        ``x_0 = solve(problem, method)``.
    targets : list of Placement, length T
        ``T_t = solve(estimated problem of period t, method)`` (``T_0 = x_0``).
    truth : list of Problem, length T
        The problem with the true statistics of each period (device caches fixed).
    estimated : list of Problem, length T
        The problem with the estimated statistics of each period.
    """

    problem: Problem
    workload: DriftingWorkload
    estimates: Estimates
    method: str
    initial: Placement
    targets: list
    truth: list
    estimated: list
    options: dict = field(default_factory=dict)


def _progress(total, desc, progress):
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, disable=not progress, leave=False)


def prepare(problem: Problem, workload: DriftingWorkload, estimates: Estimates, *, method: str = "decomposition",
            progress: bool = False, **options) -> OnlineContext:
    """Solve the initial placement and one target per period (shared by every policy).

    Parameters
    ----------
    problem : Problem
        The problem the workload was drawn from.
    workload : DriftingWorkload
    estimates : Estimates
        From :func:`slimlib.drift.estimate` on ``workload``.
    method : str
        Any name of :func:`slimlib.methods`; ``**options`` go to :func:`slimlib.solve`.
    progress : bool
        Show a tqdm bar over periods.
    """
    from .solvers import solve
    if not isinstance(problem, Problem):
        raise V.fail("problem", problem, "must be a slimlib.Problem")
    if not isinstance(workload, DriftingWorkload) or workload.num_users != problem.num_users:
        raise V.fail("workload", workload, f"must be a DriftingWorkload of this problem (M={problem.num_users})")
    if not isinstance(estimates, Estimates) or estimates.probs.shape != workload.truth.shape:
        raise V.fail("estimates", estimates, "must be the Estimates of this workload")
    dc = problem.device_cache
    initial = solve(problem, method, **options)
    truth, est, targets = [], [], []
    with _progress(workload.num_periods, "targets", progress) as bar:
        for t in range(workload.num_periods):
            truth.append(problem.replace(stats=workload.stats(t), device_cache=dc))
            if t == 0:
                est.append(problem)
                targets.append(initial)
            else:
                stats = [workload.to_stats(estimates.probs[t, m], {"source": "estimate", "period": t, "user": m})
                         for m in range(problem.num_users)]
                est.append(problem.replace(stats=stats, device_cache=dc))
                targets.append(solve(est[-1], method, **options))
            bar.update()
    return OnlineContext(problem, workload, estimates, method, initial, targets, truth, est, dict(options))


@dataclass
class OnlineRun:
    """One policy over one workload: latency, bytes moved and placements per period.

    Attributes
    ----------
    policy : str
    budget_bytes : float
        ``B`` (``inf`` for the periodic re-solve, 0 for static).
    latency_s : ndarray, shape (T,)
        Average per-token latency of each period on its true statistics,
        migration phase included (seconds).
    settled_s : ndarray, shape (T,)
        Latency of ``x_t`` alone on the period's true statistics (seconds).
    moved_bytes : ndarray, shape (T,)
        Bytes fetched over the backhaul at the start of each period.
    migration_s : ndarray, shape (T,)
        Backhaul time of each move, ``8 * bytes / r_bh`` (seconds).
    placements : list of Placement, length T
    period_s : float
        Length of a period (seconds).
    """

    policy: str
    budget_bytes: float
    latency_s: np.ndarray
    settled_s: np.ndarray
    moved_bytes: np.ndarray
    migration_s: np.ndarray
    placements: list
    period_s: float
    every: int = 1

    @property
    def mean_latency_s(self) -> float:
        """Mean over periods of :attr:`latency_s` (every period has the same length and token count)."""
        return float(self.latency_s.mean())

    @property
    def total_bytes(self) -> float:
        return float(self.moved_bytes.sum())

    def rows(self, workload: DriftingWorkload | None = None, estimates: Estimates | None = None) -> list[dict]:
        """One dict per period (ms, MB, s): for CSV files and tables."""
        out = []
        for t in range(len(self.latency_s)):
            r = {"period": t, "policy": self.policy,
                 "budget_mb": "inf" if math.isinf(self.budget_bytes) else f"{self.budget_bytes / 1e6:g}",
                 "latency_ms": f"{self.latency_s[t] * 1e3:.6f}", "settled_ms": f"{self.settled_s[t] * 1e3:.6f}",
                 "moved_mb": f"{self.moved_bytes[t] / 1e6:.3f}", "migration_s": f"{self.migration_s[t]:.4f}"}
            if workload is not None:
                r["drifted_share"] = f"{workload.mix()[t]:.4f}"
            if estimates is not None:
                r["estimate_tv"] = f"{estimates.error[t]:.6f}"
            out.append(r)
        return out


def min_period_s(problem: Problem) -> float:
    """Shortest period in which a move always completes: refilling every server, ``8 sum_n Q_n / r_bh`` (s)."""
    net = problem.network
    return float(8 * net.server_capacity_bytes.sum() / net.backhaul_rate_bps)


def run_policy(ctx: OnlineContext, policy: str, *, budget_bytes: float = math.inf, every: int = 1,
               period_s: float = 60.0) -> OnlineRun:
    """Serve every period of ``ctx.workload`` with one re-caching policy.

    Chapter *When the statistics drift*, section "Three policies".

    Parameters
    ----------
    ctx : OnlineContext
        From :func:`prepare`.
    policy : {"static", "periodic", "budgeted"}
    budget_bytes : float
        ``B`` of the budgeted policy, bytes per period (``math.inf``: no limit).
    every : int
        The periodic policy re-solves in periods ``t`` with ``t % every == 0``.
    period_s : float
        Length of a period, seconds; at least :func:`min_period_s`.

    Returns
    -------
    OnlineRun
        Every placement was checked against every capacity.
    """
    if not isinstance(ctx, OnlineContext):
        raise V.fail("ctx", ctx, "must be an OnlineContext (slimlib.online.prepare)")
    if policy not in POLICIES:
        raise V.fail("policy", policy, f"must be one of {list(POLICIES)}")
    budget_bytes = _budget(budget_bytes)
    every = V.number("every", every, integer=True, positive=True)
    period_s = V.number("period_s", period_s, positive=True)
    need = min_period_s(ctx.problem)
    if period_s < need:
        raise V.fail("period_s", period_s, f"must be >= {need:.4g} s, the time to refill every server "
                                           "over the backhaul (a move must end within its period)")
    net = ctx.problem.network
    T = ctx.workload.num_periods
    x = ctx.initial
    placements, lat, settled, moved = [x], np.zeros(T), np.zeros(T), np.zeros(T)
    settled[0] = lat[0] = average_latency(ctx.truth[0], x)
    for t in range(1, T):
        if policy == "static":
            new = x
        elif policy == "periodic":
            new = adopt(ctx.estimated[t], x, ctx.targets[t]) if t % every == 0 else x
        else:
            new = budgeted_step(ctx.estimated[t], x, ctx.targets[t], budget_bytes)
        new.check(ctx.truth[t])
        moved[t] = moved_bytes(ctx.problem, x, new)
        settled[t] = average_latency(ctx.truth[t], new)
        f = 8 * moved[t] / net.backhaul_rate_bps / period_s
        if f > 0:
            busy = ctx.truth[t].replace(network=net.replace(backhaul_rate_bps=net.backhaul_rate_bps / 2),
                                        device_cache=ctx.problem.device_cache)
            lat[t] = f * average_latency(busy, x) + (1 - f) * settled[t]
        else:
            lat[t] = settled[t]
        placements.append(new)
        x = new
    budget = 0.0 if policy == "static" else (math.inf if policy == "periodic" else budget_bytes)
    return OnlineRun(policy, budget, lat, settled, moved, 8 * moved / net.backhaul_rate_bps, placements,
                     period_s, every)


# ---------------------------------------------------------------------------
# The counterexample to an approximation factor
# ---------------------------------------------------------------------------
def budget_counterexample(p: float = 0.35):
    """A Top-2 instance where :func:`budgeted_step` gets ``p / (1 - p)`` of the best gain within budget.

    One user, one server with room for 3 experts, one layer of ``E = 7``
    experts; the device holds expert 3.  Tokens activate ``{0, 1}`` with
    probability ``1 - p`` and ``{2, 3}`` with probability ``p``,
    ``1/3 < p < 1/2``.  The server holds ``{4, 5, 6}`` (never used); the
    target is ``{0, 1, 2}`` and the budget two experts.  Fetching 2 gains
    ``p D`` for one expert (``D = t_cloud - t_edge``); fetching the pair
    ``{0, 1}`` gains ``(1 - p) D`` for two, less per byte since ``p > (1 - p)/2``;
    fetching 0 or 1 alone gains nothing.  The greedy takes 2, the pair no
    longer fits, and it stops with ``p D``; the best move within budget is the
    pair, ``(1 - p) D``.  The ratio ``p / (1 - p)`` tends to 1/2 as ``p -> 1/3``.

    Returns
    -------
    (Problem, Placement, Placement, float)
        Problem, current placement, target placement, budget in bytes.
    """
    from .io import load_parameters
    from .model import MoEModel
    from .network import Network
    from .stats import ActivationStats
    p = V.number("p", p, minimum=1 / 3 + 1e-9, maximum=0.5 - 1e-9)
    mod = MoEModel(name="counterexample", num_layers=1, num_experts=7, top_k=2, hidden_size=2560,
                   params_per_expert=52_428_800, bytes_per_param=2.0)
    net = Network.from_parameters(load_parameters(), num_users=1, num_servers=1, distance_m=[[100.0]],
                                  user_capacity_bytes=[mod.expert_bytes],
                                  server_capacity_bytes=[3 * mod.expert_bytes])
    stats = ActivationStats(7, 2, [[[0, 1], [2, 3]]], probs=[[1 - p, p]], model=mod.name)
    y = np.zeros((1, 7), bool)
    y[0, 3] = True
    prob = Problem(mod, net, stats, device_cache=[y])

    def place(experts):
        x = np.zeros((1, 1, 7), bool)
        x[0, 0, list(experts)] = True
        return Placement([x], [y.copy()])

    return prob, place([4, 5, 6]), place([0, 1, 2]), 2 * mod.expert_bytes
