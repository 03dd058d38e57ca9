"""MoE model cards (chapter *The system model*, section "Models").

A :class:`MoEModel` holds what caching needs to know about a Mixture-of-Experts
model: how many MoE layers and experts it has, its Top-``K``, and how large and
how expensive one expert is.
"""
from __future__ import annotations

from dataclasses import dataclass, asdict

from . import _validate as V
from ._serial import Serial

__all__ = ["MoEModel"]

KIND = "model-card"
VERSION = 1


@dataclass(frozen=True)
class MoEModel(Serial):
    """Model card of one MoE model ``u`` (chapter *The system model*, section "Models").

    Parameters
    ----------
    name : str
        Identifier, e.g. ``"switch-base-8"``.
    num_layers : int
        ``L``, the number of MoE layers.
    num_experts : int
        ``E``, experts per MoE layer.
    top_k : int
        ``K``, experts activated per token and layer (``1 <= K <= E``).
    hidden_size : int
        ``d_model``: width of the hidden state exchanged with an expert.
    params_per_expert : int
        Parameters of one expert network.
    bytes_per_param : float
        Storage precision of the weights in bytes (4 = fp32, 2 = fp16/bf16).
    act_bytes : float
        Bytes per element of the hidden state sent over the air (default 2).
    description : str
        Free text (source of the card, caveats).

    Notes
    -----
    Derived quantities: ``expert_bytes = params_per_expert * bytes_per_param``
    (bytes), ``flops_per_expert = 2 * params_per_expert`` (FLOP per token) and
    ``hidden_bits = 8 * hidden_size * act_bytes`` (bits per hop). Chapter *The
    system model* writes them s_u = pi_u b_u, phi_u = 2 pi_u and
    theta_u = 8 d_u a_u (pi_u = ``params_per_expert``, b_u = ``bytes_per_param``,
    d_u = ``hidden_size``, a_u = ``act_bytes``).
    """

    name: str
    num_layers: int
    num_experts: int
    top_k: int
    hidden_size: int
    params_per_expert: int
    bytes_per_param: float = 2.0
    act_bytes: float = 2.0
    description: str = ""

    def __post_init__(self):
        V.text("MoEModel.name", self.name)
        limits = {"num_layers": V.MAX_LAYERS, "num_experts": V.MAX_EXPERTS, "top_k": V.MAX_TOP_K}
        for f in ("num_layers", "num_experts", "top_k", "hidden_size", "params_per_expert"):
            v = getattr(self, f)
            v = V.size(f"MoEModel.{f}", v, limits[f]) if f in limits else \
                V.number(f"MoEModel.{f}", v, integer=True, positive=True)
            object.__setattr__(self, f, v)
        for f in ("bytes_per_param", "act_bytes"):
            object.__setattr__(self, f, V.number(f"MoEModel.{f}", getattr(self, f), positive=True))
        if self.top_k > self.num_experts:
            raise V.fail("MoEModel.top_k", self.top_k, f"must be <= num_experts={self.num_experts}")
        V.cells("MoEModel (num_layers, num_experts)", (self.num_layers, self.num_experts))
        if not isinstance(self.description, str):
            raise V.fail("MoEModel.description", self.description, "must be a string")

    # -- derived quantities ------------------------------------------------
    @property
    def expert_bytes(self) -> float:
        """Storage of one expert in bytes, ``params_per_expert * bytes_per_param``."""
        return self.params_per_expert * self.bytes_per_param

    @property
    def flops_per_expert(self) -> float:
        """Compute of one expert for one token in FLOP, ``2 * params_per_expert``."""
        return 2.0 * self.params_per_expert

    @property
    def hidden_bits(self) -> float:
        """Bits of the hidden state sent per hop, ``8 * hidden_size * act_bytes`` (theta_u in chapter *The system model*)."""
        return 8.0 * self.hidden_size * self.act_bytes

    @property
    def total_expert_bytes(self) -> float:
        """Bytes of all ``L * E`` experts."""
        return self.expert_bytes * self.num_layers * self.num_experts

    def with_precision(self, bytes_per_param: float) -> "MoEModel":
        """Return a copy stored at another precision (bytes per parameter)."""
        d = asdict(self)
        d["bytes_per_param"] = bytes_per_param
        return MoEModel(**d)

    # -- JSON (to_json/from_json for text: slimlib._serial) --------------------
    def to_dict(self) -> dict:
        """JSON-ready dict with ``kind`` and ``version``."""
        return {"kind": KIND, "version": VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, data) -> "MoEModel":
        """Build from :meth:`to_dict` output; unknown or missing fields raise ValueError."""
        V.check_header(data, KIND, VERSION)
        V.fields("model-card", data,
                 ["kind", "version", "name", "num_layers", "num_experts", "top_k",
                  "hidden_size", "params_per_expert"],
                 ["bytes_per_param", "act_bytes", "description"])
        body = {k: v for k, v in data.items() if k not in ("kind", "version")}
        return cls(**body)
