"""Per-token routing traces: which experts every token used at every MoE layer, in order.

Chapter *A placement in a live network*, section "Trace replay".  Activation
statistics (:class:`~slimlib.ActivationStats`) keep, per layer, how often each
expert group is used; they forget *which token* used it.  A
:class:`~slimlib.trace.RoutingTrace` keeps the sequence: token ``t`` of prompt ``s`` used the
experts ``experts[t, l]`` at layer ``l``.  It carries what statistics cannot:
the correlation of a token's groups across layers, and of consecutive tokens.
The collector records one with ``collect(..., trace=True)``
(:func:`slimlib.activations.collect`); the simulator replays it
(:func:`~slimlib.simulate` with ``routing="trace"``).

The shipped trace ``data/traces/tiny-moe-trace.json`` was recorded from the
book's tiny MoE (chapter *Mixture of experts and where the experts go*);
:func:`slimlib.tinymoe.write_trace` regenerates it from the shipped weights
(a float64 forward pass, the same on every machine).
"""
from __future__ import annotations

import os
import string
from pathlib import Path

import numpy as np

from . import _validate as V
from ._serial import Serial
from .stats import ActivationStats

__all__ = ["RoutingTrace", "load_trace", "TINY_TRACE", "MAX_TRACE_ENTRIES"]

KIND = "routing-trace"
VERSION = 1
#: Name of the shipped trace of the tiny MoE (``data/traces/<name>.json``).
TINY_TRACE = "tiny-moe-trace"
#: Largest trace accepted (tokens x layers x K), a size check before any allocation.
MAX_TRACE_ENTRIES = 50_000_000
_ALPHABET = string.digits + string.ascii_lowercase + string.ascii_uppercase   # 62 one-character experts


class RoutingTrace(Serial):
    """The experts each token used at each MoE layer, in token order.

    Parameters
    ----------
    experts : array_like of int, shape (T, L, K)
        ``experts[t, l]``: the ``K`` distinct experts token ``t`` used at layer
        ``l`` (in the router's order, most probable first).
    num_experts : int
        ``E``.
    sequence_lengths : sequence of int, optional
        Tokens of each prompt (sequence), in order; they sum to ``T``.
        Default: one sequence of ``T`` tokens.
    model : str
        Model card name the trace belongs to.
    provenance : dict, optional
        Where it comes from (as for :class:`~slimlib.ActivationStats`).

    Attributes
    ----------
    experts : ndarray of int, shape (T, L, K)
    sequence_lengths : ndarray of int, shape (S,)
    num_tokens, num_layers, top_k, num_experts : int
    """

    def __init__(self, experts, num_experts: int, sequence_lengths=None, model: str = "",
                 provenance: dict | None = None):
        self.num_experts = V.number("RoutingTrace.num_experts", num_experts, integer=True, positive=True)
        shape = np.shape(experts)
        if len(shape) == 3 and int(np.prod(shape)) > MAX_TRACE_ENTRIES:
            raise V.fail("RoutingTrace.experts", shape, f"more than {MAX_TRACE_ENTRIES} entries")
        e = V.array("RoutingTrace.experts", experts, ndim=3, dtype=np.int64)
        T, L, K = e.shape
        if T == 0 or L == 0 or K == 0:
            raise V.fail("RoutingTrace.experts", e.shape, "needs at least one token, layer and expert per group")
        bad = np.argwhere((e < 0) | (e >= self.num_experts))
        if bad.size:
            t, l, k = (int(i) for i in bad[0])
            raise V.fail(f"RoutingTrace.experts[{t}, {l}]", e[t, l].tolist(),
                         f"experts must lie in 0..{self.num_experts - 1}")
        if K > 1:
            s = np.sort(e, axis=2)
            rep = np.argwhere((np.diff(s, axis=2) == 0).any(axis=2))
            if rep.size:
                t, l = (int(i) for i in rep[0])
                raise V.fail(f"RoutingTrace.experts[{t}, {l}]", e[t, l].tolist(), "a group repeats an expert")
        if sequence_lengths is None:
            sequence_lengths = [T]
        sl = V.array("RoutingTrace.sequence_lengths", sequence_lengths, ndim=1, dtype=np.int64)
        if sl.size == 0 or (sl <= 0).any() or int(sl.sum()) != T:
            raise V.fail("RoutingTrace.sequence_lengths", sl.tolist()[:10],
                         f"must be positive and sum to the {T} tokens")
        self.experts = e
        self.sequence_lengths = sl
        self.model = model if isinstance(model, str) else V.text("RoutingTrace.model", model)
        if provenance is not None and not isinstance(provenance, dict):
            raise V.fail("RoutingTrace.provenance", provenance, "must be a dict")
        self.provenance = dict(provenance or {})

    @property
    def num_tokens(self) -> int:
        return int(self.experts.shape[0])

    @property
    def num_layers(self) -> int:
        return int(self.experts.shape[1])

    @property
    def top_k(self) -> int:
        return int(self.experts.shape[2])

    def to_stats(self) -> ActivationStats:
        """The activation statistics of the trace (group counts per layer, same provenance)."""
        return ActivationStats.from_routes(self.experts, self.num_experts, model=self.model,
                                           provenance={**self.provenance, "tokens": self.num_tokens})

    def window(self, start: int, length: int) -> np.ndarray:
        """``length`` consecutive tokens from ``start``, wrapping around the end, shape ``(length, L, K)``."""
        start = V.number("start", start, integer=True, nonneg=True)
        length = V.number("length", length, integer=True, nonneg=True)
        idx = (start + np.arange(length)) % self.num_tokens
        return self.experts[idx]

    def __repr__(self):
        return (f"RoutingTrace(model={self.model!r}, tokens={self.num_tokens}, L={self.num_layers}, "
                f"E={self.num_experts}, K={self.top_k}, sequences={len(self.sequence_lengths)})")

    def __eq__(self, other):
        if not isinstance(other, RoutingTrace):
            return NotImplemented
        return (self.num_experts == other.num_experts and np.array_equal(self.experts, other.experts)
                and np.array_equal(self.sequence_lengths, other.sequence_lengths) and self.model == other.model)

    # -- JSON ----------------------------------------------------------------
    def to_dict(self) -> dict:
        """Compact JSON: per layer one string with one character per expert call (``E <= 62``).

        Layer ``l`` holds ``T * K`` characters, token after token, each the
        expert index in base 62 (``0-9a-zA-Z``); larger ``E`` falls back to
        nested lists.
        """
        out = {"kind": KIND, "version": VERSION, "model": self.model, "num_experts": self.num_experts,
               "num_layers": self.num_layers, "top_k": self.top_k, "num_tokens": self.num_tokens,
               "sequence_lengths": self.sequence_lengths.tolist(), "provenance": self.provenance}
        if self.num_experts <= len(_ALPHABET):
            table = np.array(list(_ALPHABET))
            out["encoding"] = "base62-chars"
            out["layers"] = ["".join(table[self.experts[:, l, :].ravel()]) for l in range(self.num_layers)]
        else:
            out["encoding"] = "lists"
            out["layers"] = [self.experts[:, l, :].tolist() for l in range(self.num_layers)]
        return out

    @classmethod
    def from_dict(cls, data) -> "RoutingTrace":
        """Build from :meth:`to_dict` output, validating every field."""
        V.check_header(data, KIND, VERSION)
        V.fields("routing-trace", data, ["kind", "version", "num_experts", "num_layers", "top_k", "num_tokens",
                                         "encoding", "layers"], ["model", "sequence_lengths", "provenance"])
        T = V.number("routing-trace.num_tokens", data["num_tokens"], integer=True, positive=True)
        L = V.number("routing-trace.num_layers", data["num_layers"], integer=True, positive=True)
        K = V.number("routing-trace.top_k", data["top_k"], integer=True, positive=True)
        if T * L * K > MAX_TRACE_ENTRIES:
            raise V.fail("routing-trace.num_tokens", T, f"trace larger than {MAX_TRACE_ENTRIES} entries")
        layers = data["layers"]
        if not isinstance(layers, list) or len(layers) != L:
            raise V.fail("routing-trace.layers", type(layers).__name__, f"must be a list of {L} layers")
        out = np.empty((T, L, K), dtype=np.int64)
        if data["encoding"] == "base62-chars":
            lookup = {c: i for i, c in enumerate(_ALPHABET)}
            for l, s in enumerate(layers):
                if not isinstance(s, str) or len(s) != T * K:
                    raise V.fail(f"routing-trace.layers[{l}]", (s[:20] if isinstance(s, str) else s),
                                 f"must be a string of T*K = {T * K} characters")
                try:
                    out[:, l, :] = np.fromiter((lookup[c] for c in s), np.int64, T * K).reshape(T, K)
                except KeyError as exc:
                    raise V.fail(f"routing-trace.layers[{l}]", exc.args[0], "not a base-62 digit") from None
        elif data["encoding"] == "lists":
            for l, rows in enumerate(layers):
                out[:, l, :] = V.array(f"routing-trace.layers[{l}]", rows, shape=(T, K), dtype=np.int64)
        else:
            raise V.fail("routing-trace.encoding", data["encoding"], "must be 'base62-chars' or 'lists'")
        return cls(out, data["num_experts"], data.get("sequence_lengths"), model=data.get("model", ""),
                   provenance=data.get("provenance"))


def load_trace(name_or_path: str | os.PathLike = TINY_TRACE) -> RoutingTrace:
    """Read a trace: a name in ``data/traces`` (default the tiny MoE's) or a file path.

    Raises
    ------
    ValueError
        Unknown name, missing file, malformed JSON (the message names the field).
    """
    from ._datafiles import find, names
    from ._serial import read_json
    path = Path(name_or_path)
    if not path.suffix:
        try:
            path = find("traces", os.fspath(name_or_path), "trace")
        except ValueError:
            raise V.fail("trace", os.fspath(name_or_path),
                         f"no such trace file; shipped: {names('traces')}") from None
    if not path.is_file():
        raise V.fail("trace", os.fspath(name_or_path), f"no such trace file; shipped: {names('traces')}")
        raise V.fail("trace", os.fspath(name_or_path), f"no such trace file; shipped: {known}")
    data = read_json(path)
    try:
        return RoutingTrace.from_dict(data)
    except ValueError as exc:
        raise ValueError(f"{path.name}: {exc}") from None
