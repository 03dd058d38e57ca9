"""Seeded synthetic expert activation statistics (chapter *Mixture of experts and where the experts go*, source "synthetic").

Chapter *Mixture of experts and where the experts go*, section "Synthetic
statistics".  The paper measured routing of the real checkpoints on VQA v2 and
ScienceQA prompts; neither is available here, so the experiments use a seeded
stand-in that has what caching feeds on: a few popular experts per layer, a
popularity pattern that changes from layer to layer, and (for ``K >= 2``)
pairs of experts that like to be activated together.

The generative model
--------------------
For every MoE layer ``l`` (``z``, ``eps``, ``s`` standard normal, ``u`` uniform):

* **skew**: ``sigma_l = skew[0] + (skew[1] - skew[0]) * u_l`` — each layer gets
  its own popularity spread;
* **popularity**: ``z_l = rho * z_{l-1} + sqrt(1 - rho^2) * eps_l`` (shape ``E``,
  ``rho = layer_corr``: neighbouring layers resemble each other a little) and
  the expert score is ``alpha_{l,e} = sigma_l * z_{l,e}``;
* **affinity** (``K >= 2``): a symmetric pair score ``beta_{l,ij} = affinity * s_{l,ij}``;
* **groups**: ``P_l(G) ∝ exp( sum_{e in G} alpha_{l,e} + sum_{i<j in G} beta_{l,ij} )``
  over all ``C(E, K)`` groups (a log-linear, i.e. Ising-like, model);
* **tokens**: ``tokens`` groups are drawn from ``P_l`` (multinomial) and the
  statistics keep the counts, as if measured on that many tokens.

When ``C(E, K)`` exceeds ``max_enumerate`` the groups are sampled instead, one
expert after the other, each with probability ``∝ exp(alpha_e + sum of beta with the
experts already chosen)`` — the same scores, sequential rather than joint
(vectorised over the tokens with the Gumbel-max trick).  ``K = 1`` keeps no
pair scores, so its memory is ``O(L E)``.

The defaults (``skew=(0.5, 1.5)``, ``layer_corr=0.3``, ``affinity=1.0``)
were chosen so that the heatmaps look like a trained router's: in the MoE-LLaVA
cards (``E = 4``, Top-2) the most popular expert of a layer is activated by
roughly 60-90 % of the tokens, the least popular by a few to 30 %, with a
different expert on top in different layers; for Switch-base (Top-1) the top
expert carries several times the balanced load ``1/E`` (in an occasional layer
most of it).  The chapter prints the
resulting skew numbers next to the ones of the tiny model trained in the book.

Shipped files and generated statistics
--------------------------------------
``data/stats/<card>-synthetic.json`` is shipped for every card whose groups
are enumerated (``C(E, K) <= MAX_ENUMERATE``).  The large cards
(:func:`is_large_card`: ``deepseek-v3-like-58x256``, ``qwen3-moe-like-48x128``)
would need files of 4-6 MB each, so :func:`slimlib.load_stats` generates their
``<card>-synthetic`` statistics on demand (:func:`large_card_stats`: seed 0,
``LARGE_CARD_TOKENS`` tokens per layer, a few seconds, then cached).
``python -m slimlib.synthetic`` rewrites the shipped files byte for byte
(``--large`` also writes the large cards' files).
"""
from __future__ import annotations

import copy
import functools
import math
import zlib
from itertools import combinations
from pathlib import Path

import numpy as np

from . import _validate as V
from ._datafiles import data_dir
from ._serial import read_json, write_json
from .model import MoEModel
from .stats import ActivationStats

__all__ = ["synthetic_stats", "synthetic_profile", "synthetic_scores", "user_stats", "write_synthetic",
           "is_large_card", "large_card_stats", "DEFAULTS"]

#: Largest number of pair scores ``L * E * E`` kept (``K >= 2``; 8 bytes each).
MAX_PAIR_SCORES = 2 ** 27
#: Tokens per layer of the statistics of cards sampled sequentially (see :func:`large_card_stats`).
LARGE_CARD_TOKENS = 1000
#: Default ``max_enumerate``: cards with more ``C(E, K)`` groups are sampled sequentially (:func:`is_large_card`).
MAX_ENUMERATE = 200_000
#: Largest ``tokens * K`` sampled per layer.
MAX_TOKENS = 2 ** 26

#: Default generator parameters (documented in the module docstring).
DEFAULTS = dict(tokens=50_000, skew=(0.5, 1.5), layer_corr=0.3, affinity=1.0)


def _rng(seed, name: str) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), zlib.crc32(name.encode("utf-8"))]))


def _check(model, seed, skew, layer_corr, affinity):
    if not isinstance(model, MoEModel):
        raise V.fail("model", model, "must be a MoEModel")
    seed = V.number("seed", seed, integer=True, nonneg=True)
    try:
        lo, hi = (float(x) for x in skew)
    except (TypeError, ValueError):
        raise V.fail("skew", skew, "must be a pair (low, high)") from None
    if not (0 <= lo <= hi) or not math.isfinite(hi):
        raise V.fail("skew", skew, "must satisfy 0 <= low <= high")
    layer_corr = V.number("layer_corr", layer_corr, minimum=0.0, maximum=0.999)
    affinity = V.number("affinity", affinity, nonneg=True)
    return seed, (lo, hi), layer_corr, affinity


def synthetic_scores(model: MoEModel, *, seed: int = 0, skew=DEFAULTS["skew"],
                     layer_corr: float = DEFAULTS["layer_corr"], affinity: float = DEFAULTS["affinity"],
                     _keep_pairs: bool = False):
    """The scores of the generative model (module docstring), before any group is formed.

    Returns
    -------
    sigma : ndarray, shape (L,)
        Per-layer popularity spread.
    a : ndarray, shape (L, E)
        Expert scores ``alpha_{l,e} = sigma_l z_{l,e}``.
    b : ndarray, shape (L, E, E), or None
        Symmetric pair scores ``beta_{l,ij}`` (zero diagonal); ``None`` for
        ``K = 1``, where they play no role (they are still drawn, so the
        random stream is the same, but not kept: no ``(L, E, E)`` tensor).
    rng : numpy.random.Generator
        The generator, positioned after these draws (token sampling continues from it).
    """
    seed, (lo, hi), layer_corr, affinity = _check(model, seed, skew, layer_corr, affinity)
    L, E = model.num_layers, model.num_experts
    pairs = model.top_k >= 2 or _keep_pairs
    if pairs and L * E * E > MAX_PAIR_SCORES:
        raise V.fail("model", model.name, f"pair scores need L*E*E = {L * E * E} floats, more than "
                                          f"{MAX_PAIR_SCORES}")
    rng = _rng(seed, model.name)
    sigma = lo + (hi - lo) * rng.random(L)
    a = np.zeros((L, E))
    b = np.zeros((L, E, E)) if pairs else None
    z = rng.standard_normal(E)
    rows = max(1, (1 << 20) // max(E, 1))
    for l in range(L):
        if l > 0:
            z = layer_corr * z + math.sqrt(1 - layer_corr ** 2) * rng.standard_normal(E)
        a[l] = sigma[l] * z
        if pairs:
            t = affinity * np.triu(rng.standard_normal((E, E)), 1)
            b[l] = t + t.T
        else:
            # K = 1 never uses pair scores: draw them (the stream stays that of every shipped file) in
            # chunks of rows, without keeping them
            for r0 in range(0, E, rows):
                rng.standard_normal((min(rows, E - r0), E))
    return sigma, a, b, rng


def _group_probs(a_l, b_l, groups):
    score = a_l[groups].sum(axis=1)
    K = groups.shape[1]
    for i in range(K if b_l is not None else 0):
        for j in range(i + 1, K):
            score = score + b_l[groups[:, i], groups[:, j]]
    p = np.exp(score - score.max())
    return p / p.sum()


def _sample_sequential(rng, a_l, b_l, tokens: int, K: int) -> np.ndarray:
    """``tokens`` groups, one expert after the other with probability ``∝ exp(alpha_e + sum beta)`` (Gumbel-max).

    Vectorised over the tokens (in chunks of bounded memory): at step ``k`` every
    token adds ``argmax_e (score_e + Gumbel noise)`` over the experts it has not
    chosen yet, which is a draw from the normalised ``exp(score)``.
    """
    E = len(a_l)
    routes = np.empty((tokens, K), dtype=np.int64)
    chunk = max(1, (1 << 21) // max(E, 1))
    for t0 in range(0, tokens, chunk):
        n = min(chunk, tokens - t0)
        sc = np.broadcast_to(a_l, (n, E)).copy()
        rows = np.arange(n)
        for k in range(K):
            e = np.argmax(sc + rng.gumbel(size=(n, E)), axis=1)
            routes[t0:t0 + n, k] = e
            if b_l is not None:
                sc += b_l[e]
            sc[rows, e] = -np.inf
    return routes


def synthetic_profile(model: MoEModel, *, seed: int = 0, skew=DEFAULTS["skew"],
                      layer_corr: float = DEFAULTS["layer_corr"], affinity: float = DEFAULTS["affinity"],
                      max_groups: int = 200_000) -> ActivationStats:
    """The exact group distribution ``P_l(G) ∝ exp(sum a + sum b)`` (no token sampling).

    Same parameters as :func:`synthetic_stats`; needs ``C(E, K) <= max_groups``.

    Returns
    -------
    ActivationStats
        Probabilities over all ``C(E, K)`` groups of every layer.
    """
    L, E, K = model.num_layers, model.num_experts, model.top_k
    if math.comb(E, K) > max_groups:
        raise V.fail("model", model.name, f"C({E}, {K}) groups exceed max_groups={max_groups}; "
                                          "use synthetic_stats, which samples")
    sigma, a, b, _ = synthetic_scores(model, seed=seed, skew=skew, layer_corr=layer_corr, affinity=affinity)
    groups = np.array(list(combinations(range(E), K)), dtype=np.int64).reshape(-1, K)
    probs = [_group_probs(a[l], b[l], groups) for l in range(L)]
    probs = [p / p.sum() for p in probs]
    prov = {"source": "synthetic", "generator": "slimlib.synthetic.synthetic_profile", "seed": seed,
            "skew": [float(x) for x in skew], "layer_corr": layer_corr, "affinity": affinity}
    return ActivationStats(E, K, [groups] * L, probs=probs, model=model.name, provenance=prov)


def synthetic_stats(model: MoEModel, *, seed: int = 0, tokens: int = DEFAULTS["tokens"],
                    skew=DEFAULTS["skew"], layer_corr: float = DEFAULTS["layer_corr"],
                    affinity: float = DEFAULTS["affinity"], max_enumerate: int = MAX_ENUMERATE) -> ActivationStats:
    """Seeded synthetic routing statistics for a model card (chapter *Mixture of experts and where the experts go*, source "synthetic").

    Parameters
    ----------
    model : MoEModel
        Gives ``L``, ``E``, ``K`` and the name.
    seed : int
        Together with ``model.name`` seeds every draw (different cards get
        different patterns for the same seed).
    tokens : int
        Tokens sampled per layer; the statistics hold their counts.
    skew : (float, float)
        Range of the per-layer popularity spread ``sigma_l`` (0 = every
        expert equally popular).
    layer_corr : float
        ``rho`` in ``[0, 1)``: correlation of expert popularity between
        consecutive layers.
    affinity : float
        Scale of the pair co-activation scores (``K >= 2``; 0 = no affinity).
    max_enumerate : int
        Enumerate all ``C(E, K)`` groups up to this many, else sample
        sequentially (see the module docstring).

    Returns
    -------
    ActivationStats
        Counts per group (every layer sums to ``tokens``),
        ``provenance["source"] == "synthetic"`` with the generator parameters
        and the drawn ``sigma_l``.
    """
    seed, (lo, hi), layer_corr, affinity = _check(model, seed, skew, layer_corr, affinity)
    tokens = V.number("tokens", tokens, integer=True, positive=True)
    L, E, K = model.num_layers, model.num_experts, model.top_k
    if tokens * K > MAX_TOKENS:
        raise V.fail("tokens", tokens, f"tokens * K = {tokens * K} exceeds {MAX_TOKENS}")
    max_enumerate = V.number("max_enumerate", max_enumerate, integer=True, nonneg=True)
    sigma, a, b, rng = synthetic_scores(model, seed=seed, skew=(lo, hi), layer_corr=layer_corr, affinity=affinity)
    enumerate_ = math.comb(E, K) <= max_enumerate
    all_groups = np.array(list(combinations(range(E), K)), dtype=np.int64).reshape(-1, K) if enumerate_ else None
    groups, counts = [], []
    for l in range(L):
        if enumerate_:
            c = rng.multinomial(tokens, _group_probs(a[l], b[l] if b is not None else None, all_groups))
            keep = c > 0
            groups.append(all_groups[keep])
            counts.append(c[keep])
        else:
            routes = _sample_sequential(rng, a[l], None if b is None else b[l], tokens, K)
            g, c = np.unique(np.sort(routes, axis=1), axis=0, return_counts=True)
            groups.append(g)
            counts.append(c)
    prov = {"source": "synthetic", "generator": "slimlib.synthetic.synthetic_stats", "seed": seed,
            "tokens": tokens, "skew": [lo, hi], "layer_corr": layer_corr, "affinity": affinity,
            "sigma": [round(float(x), 4) for x in sigma],
            "sampling": "enumerated groups" if enumerate_ else "sequential",
            "note": "seeded stand-in for the paper's VQA v2 / ScienceQA statistics (book chapter ch-moe-primer)"}
    return ActivationStats(E, K, groups, counts=counts, model=model.name, provenance=prov)


def user_stats(stats: ActivationStats, num_users: int, *, seed: int = 0, tokens_per_user: int | None = 2000,
               concentration: float = 300.0) -> list[ActivationStats]:
    """Per-user statistics that differ a little from a shared profile.

    Every user ``m`` gets, for each layer, a profile drawn around the shared
    one, ``Q_{m,l} ~ Dirichlet(concentration * P_l)`` (mean ``P_l``, variance
    ``P_l (1 - P_l) / (concentration + 1)``), and then ``tokens_per_user``
    tokens sampled from it (multinomial), as if the user's own prompts had been
    measured.

    Parameters
    ----------
    stats : ActivationStats
        The shared profile (synthetic or measured).
    num_users : int
    seed : int
    tokens_per_user : int or None
        Tokens per user and layer; ``None`` keeps the Dirichlet profile itself
        (probabilities, no sampling noise).
    concentration : float
        How close users stay to the profile (larger = more alike).

    Returns
    -------
    list of ActivationStats, length ``num_users``
        Same ``E``, ``K``, ``L`` and model as ``stats``; provenance is that of
        ``stats`` plus ``user``, and ``resampled`` with these parameters.
    """
    if not isinstance(stats, ActivationStats):
        raise V.fail("stats", stats, "must be an ActivationStats")
    num_users = V.number("num_users", num_users, integer=True, positive=True)
    seed = V.number("seed", seed, integer=True, nonneg=True)
    if tokens_per_user is not None:
        tokens_per_user = V.number("tokens_per_user", tokens_per_user, integer=True, positive=True)
    concentration = V.number("concentration", concentration, positive=True)
    rng = np.random.default_rng(np.random.SeedSequence([seed, num_users, zlib.crc32(stats.model.encode())]))
    out = []
    for u in range(num_users):
        groups, weights = [], []
        for l in range(stats.num_layers):
            P = stats.probs(l)
            g = stats.groups(l)
            if len(P) == 1:
                q = np.ones(1)
            else:
                q = rng.dirichlet(np.maximum(concentration * P, 1e-3))
            if tokens_per_user is None:
                keep = q > 0
                groups.append(g[keep])
                weights.append(q[keep] / q[keep].sum())
            else:
                c = rng.multinomial(tokens_per_user, q / q.sum())
                keep = c > 0
                groups.append(g[keep])
                weights.append(c[keep])
        prov = {**stats.provenance, "user": u,
                "resampled": {"generator": "slimlib.synthetic.user_stats", "seed": seed,
                              "tokens_per_user": tokens_per_user, "concentration": concentration}}
        if tokens_per_user is not None:
            prov["tokens"] = tokens_per_user
        kw = {"probs": weights} if tokens_per_user is None else {"counts": weights}
        out.append(ActivationStats(stats.num_experts, stats.top_k, groups, model=stats.model, provenance=prov, **kw))
    return out


def is_large_card(card: MoEModel) -> bool:
    """Whether ``card`` has more ``C(E, K)`` groups than :func:`synthetic_stats` enumerates by default.

    Such cards (modern MoEs: 128 experts with Top-8, 256 with Top-8) are sampled
    sequentially with ``LARGE_CARD_TOKENS`` tokens per layer, and their
    statistics ``<card>-synthetic`` are not shipped as files: the files
    would be several MB each, while generating them takes a few seconds
    (:func:`large_card_stats`).
    """
    return math.comb(card.num_experts, card.top_k) > MAX_ENUMERATE


def large_card_stats(card: MoEModel) -> ActivationStats:
    """The statistics ``<card>-synthetic`` of a large card (:func:`is_large_card`), generated on demand.

    :func:`slimlib.load_stats` calls this when ``stats/<card>-synthetic.json``
    does not exist and ``card`` is large: seed 0, the default parameters and
    ``LARGE_CARD_TOKENS`` tokens per layer, exactly what
    ``write_synthetic(large=True)`` writes (the same object as the file held
    when these files were shipped).  Generating takes a few seconds
    (``deepseek-v3-like-58x256``: about 4 s, ``qwen3-moe-like-48x128``: about
    2 s on one core); the result is kept in memory (keyed by the card's JSON
    text), so later calls only copy it.

    Returns
    -------
    ActivationStats
        A fresh copy: changing it does not change what later calls return.

    Raises
    ------
    ValueError
        If ``card`` is not a large card.
    """
    if not isinstance(card, MoEModel):
        raise V.fail("card", card, "must be a MoEModel")
    if not is_large_card(card):
        raise V.fail("card", card.name, f"C({card.num_experts}, {card.top_k}) groups are at most "
                                        f"{MAX_ENUMERATE}: its statistics are a shipped file, not generated")
    return copy.deepcopy(_large_card_stats(card.to_json()))


@functools.lru_cache(maxsize=4)
def _large_card_stats(card_json: str) -> ActivationStats:
    return synthetic_stats(MoEModel.from_json(card_json), seed=0, tokens=LARGE_CARD_TOKENS)


def write_synthetic(folder=None, *, seed: int = 0, large: bool = False, **params) -> list[Path]:
    """Write ``stats/<card>-synthetic.json`` for the model cards in ``models/``.

    ``python -m slimlib.synthetic`` calls this; the same seed and parameters
    give byte-identical files.  Cards whose ``C(E, K)`` groups are sampled
    sequentially (:func:`is_large_card`: modern MoEs such as 128 experts with
    Top-8) get ``LARGE_CARD_TOKENS`` tokens per layer unless ``tokens`` is
    given, and are written only with ``large=True``
    (``python -m slimlib.synthetic --large``): the book does not ship their
    files, :func:`slimlib.load_stats` generates them (:func:`large_card_stats`).

    Parameters
    ----------
    folder : path-like, optional
        Data folder with ``models/``; default :func:`slimlib.data_dir`.
    seed : int
    large : bool
        Also write the large cards' files (several MB each).
    **params
        Passed to :func:`synthetic_stats`.

    Returns
    -------
    list of pathlib.Path
        The files written, in the cards' order.
    """
    folder = data_dir() if folder is None else Path(folder)
    out = []
    for path in sorted((folder / "models").glob("*.json")):
        try:
            card = MoEModel.from_dict(read_json(path))
        except ValueError as exc:
            raise ValueError(f"{path.name}: {exc}") from None
        kw = dict(params)
        if math.comb(card.num_experts, card.top_k) > kw.get("max_enumerate", MAX_ENUMERATE):
            if not large:
                continue
            kw.setdefault("tokens", LARGE_CARD_TOKENS)   # modern MoEs (e.g. 128 experts, Top-8): smaller file
        out.append(write_json(synthetic_stats(card, seed=seed, **kw).to_dict(),
                              folder / "stats" / f"{card.name}-synthetic.json", overwrite=True))
    return out


def main(argv=None) -> int:  # pragma: no cover - a thin wrapper of write_synthetic
    import argparse
    ap = argparse.ArgumentParser(prog="python -m slimlib.synthetic",
                                 description="Regenerate data/stats/<card>-synthetic.json (seed 0).")
    ap.add_argument("--large", action="store_true",
                    help="also write the large cards' files (generated on demand otherwise)")
    args = ap.parse_args(argv)
    for p in write_synthetic(large=args.large):
        print("written", p)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
