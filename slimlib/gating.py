"""Top-``K`` gating of an MoE layer, from scratch (chapter *Mixture of experts and where the experts go*).

Chapter *Mixture of experts and where the experts go*, section "Top-K gating
from scratch".  :func:`topk_gating` is the router of an MoE layer
(``g(x) = softmax(W x)``, keep the ``K`` largest, renormalise) and
:func:`sparse_moe_forward` the layer's output computed with only the chosen
experts; the chapter checks both against a ``transformers`` Mixtral block.
The routing that real models record is read by :mod:`slimlib.activations`.
Both functions take and return ``torch`` tensors (torch is imported when they
run, not with slimlib).
"""
from __future__ import annotations

from typing import Callable, Sequence

__all__ = ["topk_gating", "sparse_moe_forward"]


def topk_gating(x, weight, k: int, normalize: bool = True):
    """Top-``K`` softmax gating of a token batch — the router of an MoE layer, from scratch.

    Chapter *Mixture of experts and where the experts go*, eq. (gate):
    ``g(x) = softmax(W x)``, keep the ``K`` largest entries, renormalise them.

    Parameters
    ----------
    x : torch.Tensor, shape (T, d)
        Hidden states of ``T`` tokens.
    weight : torch.Tensor, shape (E, d)
        Gate (router) weight ``W``.
    k : int
        ``K``, experts per token.
    normalize : bool
        Renormalise the ``K`` kept probabilities to sum to 1 (Mixtral; Qwen and
        OLMoE make this a config option, ``norm_topk_prob``).

    Returns
    -------
    logits : torch.Tensor, shape (T, E)
    weights : torch.Tensor, shape (T, K)
        Mixing weights of the chosen experts.
    indices : torch.Tensor of int64, shape (T, K)
        The chosen experts, most probable first.
    """
    import torch
    logits = x @ weight.T
    probs = torch.softmax(logits.float(), dim=-1)
    weights, indices = torch.topk(probs, k, dim=-1)
    if normalize:
        weights = weights / weights.sum(dim=-1, keepdim=True)
    return logits, weights, indices


def sparse_moe_forward(x, weight, experts: Sequence[Callable], k: int, normalize: bool = True):
    """Output of one MoE layer: ``y = sum_{e in TopK(x)} g_e(x) * expert_e(x)``.

    Only the ``K`` chosen experts run for a token; each expert sees only the
    tokens routed to it (chapter *Mixture of experts and where the experts go*,
    Fig. 3).

    Parameters
    ----------
    x : torch.Tensor, shape (T, d)
    weight : torch.Tensor, shape (E, d)
        Gate weight.
    experts : sequence of callables
        ``experts[e](h)`` maps ``(n, d) -> (n, d)``.
    k : int
    normalize : bool
        See :func:`topk_gating`.

    Returns
    -------
    y : torch.Tensor, shape (T, d)
    indices : torch.Tensor, shape (T, K)
    """
    import torch
    _, w, idx = topk_gating(x, weight, k, normalize)
    y = torch.zeros_like(x)
    for e, expert in enumerate(experts):
        tok, slot = torch.where(idx == e)          # tokens that chose expert e, and in which slot
        if len(tok):
            y.index_add_(0, tok, (w[tok, slot, None] * expert(x[tok])).to(y.dtype))
    return y, idx
