"""Statistics that drift over time, and what a server can learn of them.

Chapter *When the statistics drift*, sections "Drifting
workloads" and "Estimating the statistics online".  The placement of the other
chapters is computed once from offline activation statistics ``P_{m,l}(G)``.
Here every user's statistics move, period after period, from the offline
profile to one or more new profiles (a new topic, a new dataset), and the
edge servers only see the routing of the tokens served so far.

Drifting workload
    :func:`drifting_workload` gives, for periods ``t = 0..T-1`` and users
    ``m``, the true group distribution
    ``P_{t,m,l} = sum_k w_{t,m,k} P^{(k)}_{m,l}`` — a mix of profiles
    ``k = 0..J`` (``k = 0``: the user's offline statistics in the problem;
    ``k >= 1``: per-user variants of the given target profiles) with weights
    from a schedule: ``"none"`` (no drift), ``"switch"`` (a sudden switch at
    the transition period) or ``"gradual"`` (a linear mix over ``duration``
    periods).  Each period every user sends ``tokens`` tokens, whose group
    counts are drawn from ``P_{t,m,l}`` (multinomial; or their expected values
    with ``sampling=False``).

Online estimation
    :func:`estimate` turns the observed counts into an estimate per user and
    layer, known at the *start* of each period (from the periods before it):
    a sliding window of the last ``W`` periods, or exponential forgetting with
    factor ``gamma``, both with a prior of ``prior_tokens`` pseudo-tokens drawn
    from the offline statistics.  Its error per period is the mean total
    variation distance to the truth.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import _validate as V
from .problem import Problem
from .stats import ActivationStats

__all__ = ["DRIFT_KINDS", "DriftingWorkload", "Estimates", "drifting_workload", "estimate",
           "drift_profile", "write_drift_profile"]

#: The drift schedules of :func:`drifting_workload`.
DRIFT_KINDS = ("none", "switch", "gradual")

#: Largest periods x users x groups array a workload may allocate (float64: 400 MB).
MAX_CELLS = 50_000_000

#: The second profile of the chapter: model card and seed of the shipped synthetic file.
PROFILE_MODEL = "moe-llava-phi2-2.7b-4e"
PROFILE_SEED = 1


def drift_profile(model: str = PROFILE_MODEL) -> ActivationStats:
    """The shipped drift target ``data/stats/<model>-synthetic-seed1.json``.

    A synthetic profile of the same model card as the offline statistics
    (``<model>-synthetic.json``, seed 0) drawn with seed 1: other experts are
    popular in every layer, as when the users turn to another topic.
    """
    from .io import load_stats
    return load_stats(f"{model}-synthetic-seed{PROFILE_SEED}")


def write_drift_profile(folder=None) -> Path:
    """Regenerate ``stats/moe-llava-phi2-2.7b-4e-synthetic-seed1.json`` (byte-identical)."""
    from .io import data_dir, load_model_card, save
    from .synthetic import synthetic_stats
    folder = data_dir() if folder is None else Path(folder)
    card = load_model_card(PROFILE_MODEL)
    stats = synthetic_stats(card, seed=PROFILE_SEED)
    stats.provenance["note"] = ("second synthetic profile of the card (seed 1): the drift target of "
                                "the book chapter ch-drift (slimlib.drift.write_drift_profile)")
    return save(stats, folder / "stats" / f"{PROFILE_MODEL}-synthetic-seed{PROFILE_SEED}.json",
                overwrite=True)


@dataclass
class DriftingWorkload:
    """True and observed statistics of every user, period by period.

    Groups of all layers are concatenated (as in :class:`~slimlib.ActivationStats`):
    ``group_layer[g]`` is the layer of group ``g`` and ``group_experts[g]`` its
    experts; within a layer the probabilities of one user sum to 1.

    Attributes
    ----------
    kind : str
        ``"none"``, ``"switch"`` or ``"gradual"``.
    group_layer : ndarray of int, shape (G,)
    group_experts : ndarray of int, shape (G, K)
    truth : ndarray, shape (T, M, G)
        ``P_{t,m,l}(G)``.
    counts : ndarray, shape (T, M, G)
        Tokens of user ``m`` that activated group ``g`` in period ``t``.
    weights : ndarray, shape (T, M, J+1)
        Weight of each profile (0 = offline) in the mix of each user and period.
    offline : ndarray, shape (M, G)
        The offline statistics of the problem (profile 0), the estimator's prior.
    tokens : int
        Tokens per user and period.
    num_experts, top_k, num_layers : int
    model : str
    """

    kind: str
    group_layer: np.ndarray
    group_experts: np.ndarray
    truth: np.ndarray
    counts: np.ndarray
    weights: np.ndarray
    offline: np.ndarray
    tokens: int
    num_experts: int
    top_k: int
    num_layers: int
    model: str = ""
    info: dict = field(default_factory=dict)

    @property
    def num_periods(self) -> int:
        return self.truth.shape[0]

    @property
    def num_users(self) -> int:
        return self.truth.shape[1]

    def to_stats(self, probs: np.ndarray, provenance: dict | None = None) -> ActivationStats:
        """One user's ``(G,)`` probability vector as :class:`~slimlib.ActivationStats`."""
        groups, ps = [], []
        for l in range(self.num_layers):
            sel = self.group_layer == l
            groups.append(self.group_experts[sel])
            ps.append(probs[sel])
        return ActivationStats(self.num_experts, self.top_k, groups, probs=ps, model=self.model,
                               provenance=dict(provenance or {"source": "drift"}))

    def stats(self, period: int) -> list[ActivationStats]:
        """True statistics of every user in ``period`` (length ``M``).

        A user whose statistics did not change since an earlier period gets the
        same object again (building one validates every group).
        """
        cache = self.__dict__.setdefault("_stats_cache", {})
        out = []
        for m in range(self.num_users):
            key = (m, self.truth[period, m].tobytes())
            if key not in cache:
                cache[key] = self.to_stats(self.truth[period, m], {"source": "drift", "kind": self.kind,
                                                                   "user": m})
            out.append(cache[key])
        return out

    def mix(self) -> np.ndarray:
        """Mean weight of the new profiles over users, shape ``(T,)`` (0 = offline, 1 = drifted)."""
        return 1.0 - self.weights[:, :, 0].mean(axis=1)


def _universe(profiles):
    """Union of the groups of every (user, profile), per layer, in sorted order."""
    L = profiles[0][0].num_layers
    layer, experts = [], []
    for l in range(L):
        g = np.unique(np.concatenate([s.groups(l) for per_user in profiles for s in per_user]), axis=0)
        layer.append(np.full(len(g), l))
        experts.append(g)
    return np.concatenate(layer), np.concatenate(experts)


def _dense(stats: ActivationStats, group_layer, group_experts) -> np.ndarray:
    """``stats`` as a probability vector over the universe, shape ``(G,)``."""
    key = {(int(l), tuple(int(e) for e in g)): i for i, (l, g) in enumerate(zip(group_layer, group_experts))}
    out = np.zeros(len(group_layer))
    for l in range(stats.num_layers):
        for g, p in zip(stats.groups(l), stats.probs(l)):
            out[key[(l, tuple(int(e) for e in g))]] = p
    return out


def _schedule(kind, T, M, J, start, gap, duration, stagger, rng) -> np.ndarray:
    """Weights ``(T, M, J+1)``: transition ``j`` of user ``m`` begins at ``start + j*gap + offset_m``."""
    w = np.zeros((T, M, J + 1))
    if kind == "none" or J == 0:
        w[:, :, 0] = 1.0
        return w
    offset = rng.integers(0, stagger + 1, size=M) if stagger > 0 else np.zeros(M, dtype=int)
    t = np.arange(T)[:, None]                                   # (T, 1)
    # progress[t, m] in [0, J]: how far along the chain of profiles user m is
    progress = np.zeros((T, M))
    for j in range(J):
        begin = start + j * gap + offset[None, :]               # (1, M)
        if kind == "switch":
            step = (t >= begin).astype(float)
        else:
            step = np.clip((t - begin + 1) / duration, 0.0, 1.0)
        progress += step
    lo = np.minimum(np.floor(progress).astype(int), J)
    frac = progress - lo
    tt, mm = np.meshgrid(np.arange(T), np.arange(M), indexing="ij")
    w[tt, mm, lo] += 1.0 - frac
    hi = np.minimum(lo + 1, J)
    w[tt, mm, hi] += frac
    return w


def drifting_workload(problem: Problem, to, *, kind: str = "switch", periods: int = 24, start: int = 8,
                      gap: int = 8, duration: int = 6, stagger: int = 0, tokens: int = 500,
                      sampling: bool = True, concentration: float = 300.0, seed: int = 0) -> DriftingWorkload:
    """A seeded drifting workload: every user's statistics move from the problem's to new profiles.

    Chapter *When the statistics drift*, section "Drifting workloads".

    Parameters
    ----------
    problem : Problem
        One model; ``problem.stats[m]`` is user ``m``'s offline profile (profile 0).
    to : ActivationStats or sequence of ActivationStats
        The profiles visited after the offline one, in order (same ``L``, ``E``,
        ``K`` as the model).  Every user gets its own variant of each,
        :func:`slimlib.synthetic.user_stats` with ``concentration`` (no sampling).
    kind : {"none", "switch", "gradual"}
        No drift; a sudden switch at the transition period; a linear mix over
        ``duration`` periods starting there.
    periods : int
        ``T``.
    start, gap : int
        Transition ``j`` (0-based) begins at period ``start + j * gap``.
    duration : int
        Length of a gradual transition, periods (``1 <= duration``).
    stagger : int
        Each user's transitions are delayed by a seeded whole number of periods
        in ``0..stagger`` (0: all users drift together).
    tokens : int
        Tokens per user and period.
    sampling : bool
        Draw the counts (multinomial) or use their expected values (``False``,
        as if infinitely many tokens had been seen).
    concentration : float
        How close each user's variant stays to a target profile.
    seed : int

    Returns
    -------
    DriftingWorkload
        ``truth`` and ``counts`` of shape ``(T, M, G)`` (``G`` groups of the union
        of every profile's support, all layers).
    """
    if not isinstance(problem, Problem):
        raise V.fail("problem", problem, "must be a slimlib.Problem")
    if len(problem.models) != 1:
        raise V.fail("problem.models", len(problem.models), "drifting workloads support one model")
    if kind not in DRIFT_KINDS:
        raise V.fail("kind", kind, f"must be one of {list(DRIFT_KINDS)}")
    targets = [to] if isinstance(to, ActivationStats) else list(to) if isinstance(to, (list, tuple)) else None
    if targets is None or not all(isinstance(s, ActivationStats) for s in targets):
        raise V.fail("to", to, "must be an ActivationStats or a list of them")
    mod = problem.models[0]
    for j, s in enumerate(targets):
        for attr in ("num_layers", "num_experts", "top_k"):
            if getattr(s, attr) != getattr(mod, attr):
                raise V.fail(f"to[{j}].{attr}", getattr(s, attr), f"does not match model {mod.name!r}")
    T = V.number("periods", periods, integer=True, positive=True)
    start = V.number("start", start, integer=True, nonneg=True)
    gap = V.number("gap", gap, integer=True, positive=True)
    duration = V.number("duration", duration, integer=True, positive=True)
    stagger = V.number("stagger", stagger, integer=True, nonneg=True)
    tokens = V.number("tokens", tokens, integer=True, positive=True)
    concentration = V.number("concentration", concentration, positive=True)
    seed = V.number("seed", seed, integer=True, nonneg=True)
    if not isinstance(sampling, bool):
        raise V.fail("sampling", sampling, "must be True or False")
    M, J = problem.num_users, len(targets)
    # the union of supports is at most every group, and at most all listed groups together
    bound = min(mod.num_layers * math.comb(mod.num_experts, mod.top_k),
                sum(len(s.group_prob) for s in list(problem.stats) + targets))
    if T * M * bound > MAX_CELLS:
        raise V.fail("periods", T, f"periods x users x groups could reach {T * M * bound:,} cells "
                                   f"(limit {MAX_CELLS:,})")
    from .synthetic import user_stats
    per_user = [list(problem.stats)] + [user_stats(s, M, seed=seed + 1 + j, tokens_per_user=None,
                                                   concentration=concentration)
                                        for j, s in enumerate(targets)]
    glayer, gexp = _universe(per_user)
    G = len(glayer)
    if T * M * G > MAX_CELLS:
        raise V.fail("periods", T, f"periods x users x groups = {T * M * G:,} exceeds {MAX_CELLS:,}")
    prof = np.stack([np.stack([_dense(s, glayer, gexp) for s in prof_k]) for prof_k in per_user])  # (J+1, M, G)
    rng = np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(kind.encode()), M, T]))
    w = _schedule(kind, T, M, J, start, gap, duration, stagger, rng)
    truth = np.einsum("tmk,kmg->tmg", w, prof)
    counts = np.empty_like(truth)
    for l in range(mod.num_layers):
        sel = glayer == l
        p = truth[:, :, sel]
        p = p / p.sum(axis=2, keepdims=True)
        truth[:, :, sel] = p
        counts[:, :, sel] = rng.multinomial(tokens, p) if sampling else tokens * p
    if J == 0 or kind == "none":
        truth[:] = prof[0][None]                     # exactly the offline statistics
        if not sampling:
            counts[:] = tokens * truth
    return DriftingWorkload(kind=kind, group_layer=glayer, group_experts=gexp, truth=truth, counts=counts,
                            weights=w, offline=prof[0].copy(), tokens=tokens, num_experts=mod.num_experts,
                            top_k=mod.top_k, num_layers=mod.num_layers, model=mod.name,
                            info=dict(start=start, gap=gap, duration=duration, stagger=stagger, seed=seed,
                                      sampling=sampling, concentration=concentration,
                                      profiles=[problem.stats[0].provenance.get("source", "?")]
                                      + [s.provenance.get("source", "?") for s in targets]))


@dataclass
class Estimates:
    """Online estimates of every user's statistics, known at the start of each period.

    Attributes
    ----------
    probs : ndarray, shape (T, M, G)
        Estimate used in period ``t`` (from the counts of periods ``< t`` and the prior).
    error : ndarray, shape (T,)
        Mean over users and layers of the total variation distance
        ``1/2 sum_G |P_hat - P|`` to the true statistics of the period.
    method : str
        ``"window"`` or ``"forgetting"``.
    param : float
        ``W`` (periods) or ``gamma``.
    prior_tokens : float
    """

    probs: np.ndarray
    error: np.ndarray
    method: str
    param: float
    prior_tokens: float

    @property
    def label(self) -> str:
        return f"window W = {self.param:g}" if self.method == "window" else f"forgetting γ = {self.param:g}"


def total_variation(p: np.ndarray, q: np.ndarray, group_layer: np.ndarray, num_layers: int) -> np.ndarray:
    """Mean over layers of ``1/2 sum_{G in layer} |p - q|``; ``p, q`` of shape ``(..., G)`` -> ``(...)``."""
    d = np.abs(p - q)
    per_layer = np.stack([d[..., group_layer == l].sum(axis=-1) for l in range(num_layers)], axis=-1)
    return 0.5 * per_layer.mean(axis=-1)


def estimate(workload: DriftingWorkload, *, window: int | None = None, forgetting: float | None = None,
             prior_tokens: float = 50.0, prior: np.ndarray | None = None) -> Estimates:
    """Estimate each user's group probabilities online from the observed routing.

    Chapter *When the statistics drift*, section "Estimating the statistics
    online".  With counts ``c_s`` of period ``s`` (per user and group) and a
    prior ``P_0`` (the offline statistics) worth ``a = prior_tokens`` tokens:

    * sliding window ``W``: ``P_hat_t = (a P_0 + sum_{s=t-W}^{t-1} c_s) / (a + tokens in those periods)``;
    * forgetting ``gamma``: ``n_t = gamma n_{t-1} + c_{t-1}``, ``P_hat_t = (a P_0 + n_t) / (a + |n_t|)``
      (memory ``1 / (1 - gamma)`` periods).

    ``P_hat_0 = P_0``.  Each layer is normalised separately.

    Parameters
    ----------
    workload : DriftingWorkload
    window : int, optional
        ``W >= 1`` periods.  Give exactly one of ``window`` and ``forgetting``.
    forgetting : float, optional
        ``gamma`` in ``(0, 1]``.
    prior_tokens : float
        ``a >= 0``; with ``a = 0`` the prior only fills the first period.
    prior : ndarray, shape (M, G), optional
        Default: ``workload.offline``.

    Returns
    -------
    Estimates
    """
    if not isinstance(workload, DriftingWorkload):
        raise V.fail("workload", workload, "must be a DriftingWorkload")
    if (window is None) == (forgetting is None):
        raise V.fail("window", window, "give exactly one of window or forgetting")
    prior_tokens = V.number("prior_tokens", prior_tokens, nonneg=True)
    T, M, G = workload.truth.shape
    P0 = workload.offline if prior is None else V.array("prior", prior, shape=(M, G), nonneg=True)
    c = workload.counts
    seen = np.zeros_like(c)                                    # evidence available at the start of t
    if window is not None:
        W = V.number("window", window, integer=True, positive=True)
        cs = np.concatenate([np.zeros((1, M, G)), np.cumsum(c, axis=0)])   # cs[t] = sum of c[:t]
        lo = np.maximum(np.arange(T) - W, 0)
        seen = cs[np.arange(T)] - cs[lo]
        method, param = "window", float(W)
    else:
        gamma = V.number("forgetting", forgetting, positive=True, maximum=1.0)
        n = np.zeros((M, G))
        for t in range(1, T):
            n = gamma * n + c[t - 1]
            seen[t] = n
        method, param = "forgetting", float(gamma)
    num = prior_tokens * P0[None] + seen
    probs = np.empty_like(num)
    for l in range(workload.num_layers):
        sel = workload.group_layer == l
        s = num[:, :, sel].sum(axis=2, keepdims=True)
        fallback = P0[None, :, sel]                             # no evidence and no prior weight
        probs[:, :, sel] = np.where(s > 0, num[:, :, sel] / np.where(s > 0, s, 1.0), fallback)
    probs[0] = P0
    err = total_variation(probs, workload.truth, workload.group_layer, workload.num_layers).mean(axis=1)
    return Estimates(probs=probs, error=err, method=method, param=param, prior_tokens=prior_tokens)


if __name__ == "__main__":  # pragma: no cover
    print("written", write_drift_profile())
