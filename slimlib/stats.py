"""Expert activation statistics (chapter *The system model*; where they come from: chapter *Mixture of experts and where the experts go*).

:class:`ActivationStats` stores, for every MoE layer ``l``, the probability
``P_l(G)`` that a token activates the expert group ``G`` (a ``K``-subset of
``{0..E-1}``).  It is the one input of the latency model that comes from
running a model; see chapter *Mixture of experts and where the experts go* for
where the book's statistics come from.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from . import _validate as V
from ._serial import Serial

__all__ = ["ActivationStats"]

KIND = "activation-stats"
VERSION = 1
PROB_TOL = 1e-6


class ActivationStats(Serial):
    """Per-layer distribution over activated Top-K expert groups.

    Parameters
    ----------
    num_experts : int
        ``E``.
    top_k : int
        ``K``; every group has exactly ``K`` distinct experts.
    groups : sequence of array_like, one per layer
        ``groups[l]`` has shape ``(G_l, K)``: the expert groups seen at layer
        ``l`` (any order inside a group; stored sorted).
    probs : sequence of array_like, optional
        ``probs[l]`` has shape ``(G_l,)``, non-negative, summing to 1 within
        ``1e-6``.  Give either ``probs`` or ``counts``.
    counts : sequence of array_like, optional
        Token counts per group (non-negative, not all zero in a layer); the
        probabilities are the normalised counts.
    model : str
        Name of the model card these statistics belong to.
    provenance : dict
        Where the numbers come from: ``source`` (``"measured"``,
        ``"measured-tiny"`` or ``"synthetic"``) and whatever else is known
        (prompts, token count, seed, library versions, date).

    Attributes
    ----------
    num_layers : int
        ``L``.
    group_layer : ndarray of int, shape (G,)
        Layer of every group, all layers concatenated.
    group_experts : ndarray of int, shape (G, K)
        Experts of every group.
    group_prob : ndarray of float, shape (G,)
        ``P_l(G)`` of every group.
    """

    def __init__(self, num_experts: int, top_k: int, groups: Sequence[Any],
                 probs: Sequence[Any] | None = None, counts: Sequence[Any] | None = None,
                 model: str = "", provenance: dict | None = None):
        self.num_experts = V.size("ActivationStats.num_experts", num_experts, V.MAX_EXPERTS)
        self.top_k = V.size("ActivationStats.top_k", top_k, V.MAX_TOP_K)
        if self.top_k > self.num_experts:
            raise V.fail("ActivationStats.top_k", top_k, f"must be <= num_experts={num_experts}")
        if (probs is None) == (counts is None):
            raise V.fail("ActivationStats.probs", None, "give exactly one of probs or counts")
        weights = probs if probs is not None else counts
        wname = "probs" if probs is not None else "counts"
        if not isinstance(groups, (list, tuple)) or len(groups) == 0:
            raise V.fail("ActivationStats.groups", groups, "must be a non-empty list with one entry per layer")
        if len(groups) > V.MAX_LAYERS:
            raise V.fail("ActivationStats.groups", f"{len(groups)} layers",
                         f"more than the size limit {V.MAX_LAYERS} (slimlib._validate.MAX_LAYERS)")
        V.cells("ActivationStats (num_layers, num_experts)", (len(groups), self.num_experts))
        if not isinstance(weights, (list, tuple)) or len(weights) != len(groups):
            raise V.fail(f"ActivationStats.{wname}", weights,
                         f"must be a list with one entry per layer ({len(groups)} layers)")
        if not isinstance(model, str):
            raise V.fail("ActivationStats.model", model, "must be a string")
        self.model = model
        if provenance is not None and not isinstance(provenance, dict):
            raise V.fail("ActivationStats.provenance", provenance, "must be a dict")
        self.provenance = dict(provenance or {})
        K, E = self.top_k, self.num_experts
        layers_g, layers_p, layers_c = [], [], []
        for l, (g, w) in enumerate(zip(groups, weights)):
            if isinstance(g, (str, bytes, dict)):
                raise V.fail(f"ActivationStats.groups[{l}]", g, f"must be a list of groups of K={K} experts")
            if isinstance(g, (list, tuple)) and V._has_bool(g):
                raise V.fail(f"ActivationStats.groups[{l}]", g, "experts must be integers, not booleans")
            try:
                g = np.asarray(g)
            except (ValueError, TypeError, OverflowError, RecursionError):
                raise V.fail(f"ActivationStats.groups[{l}]", g, f"every group must have K={K} experts") from None
            if g.dtype.kind not in "iuf":
                raise V.fail(f"ActivationStats.groups[{l}]", g.tolist(), f"every group must have K={K} integer experts")
            if g.size == 0:
                raise V.fail(f"ActivationStats.groups[{l}]", g.tolist(), "layer has no groups")
            if g.ndim == 1 and K == 1:
                g = g[:, None]
            if g.ndim != 2 or g.shape[1] != K:
                raise V.fail(f"ActivationStats.groups[{l}]", g.tolist(), f"every group must have K={K} experts")
            if g.dtype.kind not in "iu":
                if not (np.isfinite(g).all() and np.all(g == np.round(g))):
                    raise V.fail(f"ActivationStats.groups[{l}]", g.tolist(), "experts must be integers")
                if (np.abs(g) > V.MAX_EXPERTS).any():
                    raise V.fail(f"ActivationStats.groups[{l}]", g.tolist(), f"experts must lie in 0..{E - 1}")
                g = g.astype(np.int64)
            g = np.sort(g.astype(np.int64), axis=1)
            bad = np.flatnonzero(((g < 0) | (g >= E)).any(axis=1))
            if bad.size:
                raise V.fail(f"ActivationStats.groups[{l}][{bad[0]}]", g[bad[0]].tolist(),
                             f"experts must lie in 0..{E - 1}")
            if K > 1:
                rep = np.flatnonzero((np.diff(g, axis=1) == 0).any(axis=1))
                if rep.size:
                    raise V.fail(f"ActivationStats.groups[{l}][{rep[0]}]", g[rep[0]].tolist(),
                                 "a group repeats an expert")
            uniq, inv = np.unique(g, axis=0, return_inverse=True)
            if len(uniq) != len(g):
                first = np.flatnonzero(np.bincount(inv.ravel()) > 1)[0]
                raise V.fail(f"ActivationStats.groups[{l}]", uniq[first].tolist(), "group listed twice")
            w = V.array(f"ActivationStats.{wname}[{l}]", w, shape=(len(g),), nonneg=True)
            if wname == "probs":
                s = float(w.sum())
                if abs(s - 1.0) > PROB_TOL:
                    raise V.fail(f"ActivationStats.probs[{l}]", s, "probabilities must sum to 1 (tolerance 1e-6)")
                p = w  # kept as given, so JSON round trips are exact
                layers_c.append(None)
            else:
                s = float(w.sum())
                if s <= 0:
                    raise V.fail(f"ActivationStats.counts[{l}]", s, "counts of a layer must not all be zero")
                p = w / s
                layers_c.append(w)
            keep = p > 0
            layers_g.append(g[keep])
            layers_p.append(p[keep])
            if layers_c[-1] is not None:
                layers_c[-1] = layers_c[-1][keep]
        self.num_layers = len(layers_g)
        self._groups = layers_g
        self._probs = layers_p
        self._counts = layers_c if wname == "counts" else None
        self.group_layer = np.concatenate([np.full(len(g), l) for l, g in enumerate(layers_g)])
        self.group_experts = np.concatenate(layers_g)
        self.group_prob = np.concatenate(layers_p)

    # -- constructors --------------------------------------------------------
    @classmethod
    def from_routes(cls, routes, num_experts: int, *, model: str = "", provenance: dict | None = None):
        """Count the groups in a routing record.

        Parameters
        ----------
        routes : array_like of int, shape (T, L, K)
            For every token ``t`` and layer ``l`` the ``K`` experts it used.
        num_experts : int
            ``E``.
        """
        r = V.array("routes", routes, ndim=3, dtype=np.int64)
        T, L, K = r.shape
        if T == 0:
            raise V.fail("routes", r.shape, "no tokens")
        groups, counts = [], []
        for l in range(L):
            g, c = np.unique(np.sort(r[:, l, :], axis=1), axis=0, return_counts=True)
            groups.append(g)
            counts.append(c)
        prov = {"tokens": int(T), **(provenance or {})}
        return cls(num_experts, K, groups, counts=counts, model=model, provenance=prov)

    # -- views -------------------------------------------------------------
    def groups(self, layer: int) -> np.ndarray:
        """Groups of one layer, shape ``(G_l, K)``."""
        return self._groups[layer]

    def probs(self, layer: int) -> np.ndarray:
        """Probabilities of the groups of one layer, shape ``(G_l,)``."""
        return self._probs[layer]

    def counts(self, layer: int) -> np.ndarray | None:
        """Token counts of the groups of one layer, or ``None`` if built from probabilities."""
        return None if self._counts is None else self._counts[layer]

    def marginals(self) -> np.ndarray:
        """Marginal activation probabilities ``p_{l,e} = sum_{G ∋ e} P_l(G)``, shape ``(L, E)``.

        Each row sums to ``K``.
        """
        out = np.zeros((self.num_layers, self.num_experts))
        for k in range(self.top_k):
            np.add.at(out, (self.group_layer, self.group_experts[:, k]), self.group_prob)
        return out

    def coactivation(self, layer: int) -> np.ndarray:
        """Pair co-activation probabilities of one layer, shape ``(E, E)``.

        Entry ``(i, j)``, ``i != j``, is the probability that a token activates
        both ``i`` and ``j``; the diagonal holds the marginals.
        """
        E = self.num_experts
        out = np.zeros((E, E))
        g, p = self._groups[layer], self._probs[layer]
        for a in range(self.top_k):
            for b in range(self.top_k):
                np.add.at(out, (g[:, a], g[:, b]), p)
        return out

    def __repr__(self) -> str:
        src = self.provenance.get("source", "?")
        return (f"ActivationStats(model={self.model!r}, L={self.num_layers}, E={self.num_experts}, "
                f"K={self.top_k}, groups={len(self.group_prob)}, source={src!r})")

    def __eq__(self, other) -> bool:
        if not isinstance(other, ActivationStats):
            return NotImplemented
        return (self.to_dict() == other.to_dict())

    # -- JSON (to_json/from_json for text: slimlib._serial) --------------------
    def to_dict(self) -> dict:
        """JSON-ready dict (counts kept when known, else probabilities)."""
        layers = []
        for l in range(self.num_layers):
            entry = {"groups": self._groups[l].tolist()}
            if self._counts is not None:
                c = self._counts[l]
                entry["counts"] = [int(x) if float(x).is_integer() else float(x) for x in c]
            else:
                entry["probs"] = [float(x) for x in self._probs[l]]
            layers.append(entry)
        return {"kind": KIND, "version": VERSION, "model": self.model,
                "num_layers": self.num_layers, "num_experts": self.num_experts,
                "top_k": self.top_k, "provenance": self.provenance, "layers": layers}

    @classmethod
    def from_dict(cls, data) -> "ActivationStats":
        """Build from :meth:`to_dict` output, validating every field."""
        V.check_header(data, KIND, VERSION)
        V.fields("activation-stats", data,
                 ["kind", "version", "num_experts", "top_k", "layers"],
                 ["model", "num_layers", "provenance"])
        layers = data["layers"]
        if not isinstance(layers, list) or not layers:
            raise V.fail("activation-stats.layers", layers, "must be a non-empty list")
        if len(layers) > V.MAX_LAYERS:
            raise V.fail("activation-stats.layers", f"{len(layers)} layers",
                         f"more than the size limit {V.MAX_LAYERS} (slimlib._validate.MAX_LAYERS)")
        if "num_layers" in data and (isinstance(data["num_layers"], bool) or data["num_layers"] != len(layers)):
            raise V.fail("activation-stats.num_layers", data["num_layers"],
                         f"does not match the {len(layers)} entries of layers")
        groups, weights, kinds = [], [], set()
        for l, entry in enumerate(layers):
            if not isinstance(entry, dict):
                raise V.fail(f"activation-stats.layers[{l}]", entry, "must be a JSON object")
            for key in entry:
                if key not in ("groups", "probs", "counts"):
                    raise V.fail(f"activation-stats.layers[{l}].{key}", entry[key], "unknown field")
            if "groups" not in entry:
                raise V.fail(f"activation-stats.layers[{l}].groups", None, "missing required field")
            has = [k for k in ("probs", "counts") if k in entry]
            if len(has) != 1:
                raise V.fail(f"activation-stats.layers[{l}]", sorted(entry),
                             "needs exactly one of 'probs' or 'counts'")
            kinds.add(has[0])
            groups.append(entry["groups"])
            weights.append(entry[has[0]])
        if len(kinds) != 1:
            raise V.fail("activation-stats.layers", sorted(kinds), "mixes probs and counts across layers")
        kw = {kinds.pop(): weights}
        return cls(data["num_experts"], data["top_k"], groups, model=data.get("model", ""),
                   provenance=data.get("provenance"), **kw)
