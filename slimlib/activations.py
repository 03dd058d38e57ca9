"""Expert activation statistics measured from Hugging Face ``transformers`` MoE models.

Chapter *Mixture of experts and where the experts go* (source 1
"measured").  :func:`collect` runs a model over prompts and records, at every
MoE layer, the Top-``K`` experts each (non-pad) token actually used; the result
is an :class:`~slimlib.ActivationStats` with integer counts per expert group and
a provenance record.  ``python -m slimlib collect`` is the command-line face
(:func:`main_collect`).

How routing is recorded
-----------------------
A forward hook sits on every *router* module (the module that chooses the
experts).  Which modules are routers, and how their output is read, is decided
by a list of :class:`RouterAdapter` objects (:data:`ADAPTERS`), tried in order:

``"switch-top1"``
    ``*Top1Router`` (Switch Transformers).  The router returns
    ``(dispatch one-hot (B, S, E), max prob (B, S, 1), logits (B, S, E))`` and
    *drops* tokens beyond ``expert_capacity`` (their dispatch row is all
    zero).  The recorded expert is the one the token was routed to
    (``argmax`` of the router probabilities, exactly as the router computes
    it), and drops are counted separately (``provenance["dropped_tokens"]``).
``"topk-router"``
    ``*TopKRouter`` / ``*TopkRouter`` (transformers 5.x: Mixtral, Qwen2-MoE,
    Qwen3-MoE, OLMoE, DeepSeek-V3 and most newer MoE models).  They return
    ``(logits, weights, indices)``; the hook reads ``indices`` of shape
    ``(tokens, K)``, which is exact even where routing is not the top-``K`` of
    the logits (DeepSeek-V3's bias-corrected, group-limited routing).
``"linear-gate"`` (fallback, only when no other router is found)
    transformers 4.x style gates: an ``nn.Linear`` named ``...gate`` with one
    output per expert, returning logits; the experts are the top-``K`` of the
    softmax (``K`` from the config's ``num_experts_per_tok``/``top_k``).  This
    is exact only for plain softmax-top-``K`` routers.

Adding an architecture
----------------------
Other routers return other tuples: Llama 4's ``Llama4Router`` returns
``(scores (T, E) with zeros outside the top-K, logits)``, DBRX and JetMoE have
their own gating modules, NLLB-MoE's ``NllbMoeTop2Router`` returns
``(top-1 probs, top-2 probs)`` from a method rather than ``forward``.  Write a
function ``extract(module, output) -> (indices, dropped)`` that turns the
module's output into an integer tensor ``(tokens, K)`` of chosen experts (in
the flattened ``batch * sequence`` order of the input) and an optional bool
tensor ``(tokens,)`` of dropped tokens, and register it::

    from slimlib.activations import RouterAdapter, register_adapter
    register_adapter(RouterAdapter(
        "llama4", match=lambda name, mod: type(mod).__name__ == "Llama4Router",
        extract=lambda mod, out: (out[0].topk(mod.top_k, dim=-1).indices, None)))

Pad tokens are excluded through the attention mask.  Encoder-decoder models
(Switch) are run with the prompt, shifted right, as decoder input (teacher
forcing), so both stacks see every prompt token once.

Related modules: :mod:`slimlib.gating` computes Top-``K`` gating from scratch
(what the routers recorded here compute), :mod:`slimlib.skew` summarises how
skewed the recorded routing is, and :func:`slimlib.io.load_activation_stats`
loads the statistics of a model card from one of the book's sources.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from . import _validate as V
from .stats import ActivationStats

__all__ = ["collect", "main_collect", "read_prompts", "byte_tokenizer", "find_routers", "RouterAdapter",
           "ADAPTERS", "register_adapter"]


def _show_progress(progress) -> bool:
    """``progress`` if given, else only when stderr is a terminal (not in notebooks or logs)."""
    if progress is not None:
        return bool(progress)
    import sys
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


# -- router adapters ------------------------------------------------------------------------------
@dataclass(frozen=True)
class RouterAdapter:
    """How to recognise a router module and read the experts it chose.

    Attributes
    ----------
    name : str
    match : callable
        ``match(module_name, module) -> bool``.
    extract : callable
        ``extract(module, output) -> (indices, dropped)``: ``indices`` an
        integer tensor ``(tokens, K)`` in flattened ``batch * sequence`` order,
        ``dropped`` a bool tensor ``(tokens,)`` or ``None``.
    fallback : bool
        Only used when no non-fallback adapter matches any module.
    """

    name: str
    match: Callable
    extract: Callable
    fallback: bool = False


def _switch_extract(module, output):
    import torch
    dispatch, _, logits = output
    E = dispatch.shape[-1]
    dtype = getattr(module, "dtype", torch.float32)
    # as SwitchTransformersTop1Router computes it (softmax in router dtype, cast back, argmax)
    probs = torch.softmax(logits, dim=-1, dtype=dtype).to(getattr(module, "input_dtype", logits.dtype))
    routed = probs.argmax(dim=-1).reshape(-1, 1)
    dropped = dispatch.reshape(-1, E).sum(dim=-1) == 0
    return routed, dropped


def _topk_extract(module, output):
    if not isinstance(output, (tuple, list)) or len(output) < 3:
        raise ValueError(f"router {type(module).__name__}: expected a (logits, weights, indices) tuple "
                         "(transformers 5.x convention); write a RouterAdapter for it")
    idx = output[2]
    if idx.is_floating_point() or idx.ndim != 2:
        raise ValueError(f"router {type(module).__name__}: third output is not an integer (tokens, K) tensor "
                         f"(got dtype {idx.dtype}, shape {tuple(idx.shape)}); write a RouterAdapter for it")
    return idx, None


def _linear_gate_extract(module, output):
    import torch
    k = getattr(module, "_slimlib_top_k", None)
    if k is None:
        raise ValueError("linear-gate router: top_k unknown (set num_experts_per_tok or top_k in the config)")
    logits = output.reshape(-1, output.shape[-1])
    return torch.topk(torch.softmax(logits.float(), dim=-1), k, dim=-1).indices, None


def _is_linear_gate(name, module):
    import torch.nn as nn
    return (isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] in ("gate", "router", "w_gate")
            and module.out_features > 1)


#: Adapters tried in order (see the module docstring); extend with :func:`register_adapter`.
ADAPTERS: list[RouterAdapter] = [
    RouterAdapter("switch-top1", lambda n, m: type(m).__name__.endswith("Top1Router"), _switch_extract),
    RouterAdapter("topk-router", lambda n, m: re.search(r"Top[kK]Router$", type(m).__name__) is not None,
                  _topk_extract),
    RouterAdapter("linear-gate", _is_linear_gate, _linear_gate_extract, fallback=True),
]


def register_adapter(adapter: RouterAdapter, first: bool = True) -> None:
    """Add a :class:`RouterAdapter` (tried before the built-in ones unless ``first=False``)."""
    if not isinstance(adapter, RouterAdapter):
        raise V.fail("adapter", adapter, "must be a RouterAdapter")
    ADAPTERS.insert(0, adapter) if first else ADAPTERS.append(adapter)


def _num_experts(module, adapter: RouterAdapter) -> int:
    for attr in ("num_experts", "num_local_experts", "n_routed_experts"):
        v = getattr(module, attr, None)
        if isinstance(v, int):
            return v
    for attr in ("weight",):
        w = getattr(module, attr, None)
        if w is not None and getattr(w, "ndim", 0) == 2:
            return int(w.shape[0])
    cls = getattr(module, "classifier", None)
    if cls is not None:
        return int(cls.out_features)
    raise ValueError(f"router {type(module).__name__}: cannot tell the number of experts")


def find_routers(model) -> list[tuple[str, object, RouterAdapter]]:
    """The router modules of ``model``, in module order, with the adapter that reads each.

    Returns
    -------
    list of (module name, module, RouterAdapter)

    Raises
    ------
    ValueError
        If the model has no MoE router (e.g. a dense model).
    """
    found = []
    for fallback in (False, True):
        for name, mod in model.named_modules():
            for ad in ADAPTERS:
                if ad.fallback == fallback and ad.match(name, mod):
                    found.append((name, mod, ad))
                    break
        if found:
            break
    if found and found[0][2].fallback:
        # 4.x gates: keep only linear layers with one output per expert of the config, and tell them K
        cfg = getattr(model, "config", None)
        n_exp = next((getattr(cfg, a) for a in ("num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts")
                      if isinstance(getattr(cfg, a, None), int)), None)
        k = next((getattr(cfg, a) for a in ("num_experts_per_tok", "top_k", "moe_topk")
                  if isinstance(getattr(cfg, a, None), int)), None)
        found = [f for f in found if n_exp is not None and f[1].out_features == n_exp]
        for _, mod, _ in found:
            mod._slimlib_top_k = k
    if not found:
        raise V.fail("model", type(model).__name__,
                     "has no MoE layer (no router module found; supported: "
                     + ", ".join(a.name for a in ADAPTERS) + ")")
    return found


# -- prompts and tokenizer -----------------------------------------------------------------------
def read_prompts(path, field: str = "text") -> list[str]:
    """Read prompts from a ``.txt`` file (one per non-blank line) or a ``.jsonl`` file.

    Parameters
    ----------
    path : str or Path
        ``.jsonl`` / ``.json`` files are read as JSON Lines (one object per
        line); anything else as plain text.
    field : str
        Key of each JSONL record that holds the prompt.

    Raises
    ------
    ValueError
        Missing file, empty file, a JSONL line that is not an object or lacks
        ``field``.
    """
    path = Path(path)
    if not path.is_file():
        raise V.fail("prompts", str(path), "no such file")
    text = path.read_text(encoding="utf-8")
    prompts: list[str] = []
    if path.suffix.lower() in (".jsonl", ".json"):
        for i, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise V.fail(f"prompts {path.name} line {i}", line, f"not valid JSON ({exc.msg})") from None
            if not isinstance(rec, dict):
                raise V.fail(f"prompts {path.name} line {i}", rec, "must be a JSON object")
            if field not in rec:
                raise V.fail("field", field, f"missing in {path.name} line {i} (keys: {sorted(rec)})")
            if not isinstance(rec[field], str):
                raise V.fail(f"prompts {path.name} line {i}.{field}", rec[field], "must be a string")
            if rec[field].strip():
                prompts.append(rec[field])
    else:
        prompts = [ln for ln in text.splitlines() if ln.strip()]
    if not prompts:
        raise V.fail("prompts", str(path), "file holds no prompts")
    return prompts


def _bytes_to_unicode() -> dict[int, str]:
    # GPT-2's reversible byte -> printable character map (used by the ByteLevel pre-tokenizer).
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def byte_tokenizer():
    """A byte-level tokenizer built offline: token id = UTF-8 byte value, ``<pad>`` = 256.

    A 256-entry vocabulary in byte order with no merges (``tokenizers`` BPE),
    wrapped as a ``transformers`` fast tokenizer (``save_pretrained`` works, and
    ``AutoTokenizer.from_pretrained`` loads it back).  The tiny MoE of the
    chapter and the tests use it.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    vocab = {ch: b for b, ch in _bytes_to_unicode().items()}
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tk.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>")
    tok.padding_side = "right"
    return tok


# -- the collector -------------------------------------------------------------------------------
def _load(model, tokenizer, dtype, trust_remote_code):
    import transformers as T
    name = os.fspath(model)
    cfg = T.AutoConfig.from_pretrained(name, trust_remote_code=trust_remote_code)
    kw = {"trust_remote_code": trust_remote_code}
    if dtype is not None:
        kw["dtype"] = dtype
    # Load the class the checkpoint was saved from (no "unexpected/missing head" noise); else the bare model.
    arch = (getattr(cfg, "architectures", None) or [""])[0]
    auto = T.AutoModel
    if getattr(cfg, "is_encoder_decoder", False) and arch.endswith(("ForConditionalGeneration", "Seq2SeqLM")):
        auto = T.AutoModelForSeq2SeqLM
    elif arch.endswith("ForCausalLM"):
        auto = T.AutoModelForCausalLM
    try:
        mdl = auto.from_pretrained(name, config=cfg, **kw)
    except ValueError:
        if auto is T.AutoModel:
            raise
        mdl = T.AutoModel.from_pretrained(name, config=cfg, **kw)
    AutoTokenizer = T.AutoTokenizer
    if tokenizer is None:
        tokenizer = AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code)
    return mdl, tokenizer


class _Recorder:
    """Forward hooks on the routers; keeps the last forward's routing per router."""

    def __init__(self, routers):
        self.routers = routers
        self.calls: list[list] = [[] for _ in routers]
        self.handles = [mod.register_forward_hook(self._hook(i)) for i, (_, mod, _) in enumerate(routers)]

    def _hook(self, i):
        def hook(module, args, output):
            idx, dropped = self.routers[i][2].extract(module, output)
            self.calls[i].append((idx.detach().cpu().numpy().astype(np.int64),
                                  None if dropped is None else dropped.detach().cpu().numpy().astype(bool)))
        return hook

    def pop(self):
        out, self.calls = self.calls, [[] for _ in self.routers]
        return out

    def remove(self):
        for h in self.handles:
            h.remove()


def _trim(ids, mask, budget):
    """Right-padded batch cut to at most ``budget`` non-pad tokens (earlier prompts kept whole, then a tail cut)."""
    lengths = mask.sum(axis=1)
    keep = np.minimum(lengths, np.maximum(0, budget - np.concatenate([[0], np.cumsum(lengths)[:-1]])))
    rows = keep > 0
    ids, mask, keep = ids[rows], mask[rows], keep[rows]
    width = int(keep.max())
    new_mask = (np.arange(width)[None, :] < keep[:, None]).astype(mask.dtype)
    return ids[:, :width], new_mask


def collect(model, prompts, *, tokenizer=None, field: str = "text", batch_size: int = 8,
            max_length: int = 512, max_tokens: int | None = None, name: str | None = None,
            dtype=None, trust_remote_code: bool = False, progress: bool | None = None,
            provenance: dict | None = None, date: str | None = "today", trace: bool = False):
    """Measure Top-``K`` routing statistics of a ``transformers`` MoE model over prompts.

    Chapter *Mixture of experts and where the experts go*, section "Measuring
    routing"; source "measured".

    Parameters
    ----------
    model : str, os.PathLike or torch.nn.Module
        A local folder or a hub name (both go through ``AutoModel.from_pretrained``;
        nothing is downloaded unless a hub name is given), or a model object
        already in memory (then ``tokenizer`` is required).
    prompts : str, os.PathLike or sequence of str
        A prompts file (see :func:`read_prompts`) or the prompts themselves.
    tokenizer : tokenizer, str or None
        ``None``: ``AutoTokenizer.from_pretrained(model)``; ``"bytes"``:
        :func:`byte_tokenizer`; another string: a tokenizer folder or hub name.  A tokenizer without pad token gets its EOS
        token as pad (pad positions are masked out anyway).
    field : str
        JSONL field of the prompt.
    batch_size : int
        Prompts per forward pass.
    max_length : int
        Prompts are truncated to this many tokens.
    max_tokens : int, optional
        Stop after exactly this many non-pad tokens (the last batch is cut).
    name : str, optional
        Model name stored in the statistics (default: the folder's or hub
        name's last component, or the model class).
    dtype : torch dtype or str, optional
        Passed to ``from_pretrained``.
    progress : bool, optional
        tqdm bar over batches (``None``: only on a terminal).
    provenance : dict, optional
        Extra provenance entries (override the defaults).
    date : str or None
        Date written into the provenance; ``"today"`` (UTC, ISO), a fixed
        string, or ``None`` to omit it (byte-reproducible files).
    trace : bool
        Also record the per-token routing trace (which experts every token
        used at every layer, in token order; chapter *A placement in a live
        network*, section "Trace replay") and return it.

    Returns
    -------
    ActivationStats
        Counts per expert group and layer (layers in module order: for
        encoder-decoder models, encoder layers first), ``source="measured"``.
        Every layer's counts sum to the number of non-pad tokens.
    RoutingTrace
        Only with ``trace=True`` (then a pair ``(stats, trace)`` is returned):
        :class:`slimlib.trace.RoutingTrace` of shape ``(T, L, K)`` over the
        same tokens, one sequence per prompt; ``trace.to_stats()`` has the
        same counts as ``stats``.

    Raises
    ------
    ValueError
        No MoE layer, empty prompts, missing JSONL field, bad sizes.
    """
    import torch
    import transformers
    from tqdm.auto import tqdm

    batch_size = V.number("batch_size", batch_size, integer=True, positive=True)
    max_length = V.number("max_length", max_length, integer=True, positive=True)
    if max_tokens is not None:
        max_tokens = V.number("max_tokens", max_tokens, integer=True, positive=True)
    if isinstance(prompts, (str, os.PathLike)):
        prompts_label = os.fspath(prompts)
        prompt_list = read_prompts(prompts, field)
    else:
        prompt_list = [p for p in prompts]
        if not all(isinstance(p, str) for p in prompt_list):
            raise V.fail("prompts", prompt_list[:3], "must be a file or a list of strings")
        prompt_list = [p for p in prompt_list if p.strip()]
        if not prompt_list:
            raise V.fail("prompts", prompts, "no prompts given")
        prompts_label = f"<{len(prompt_list)} prompts given in memory>"

    if isinstance(tokenizer, str) and tokenizer == "bytes":
        tokenizer = byte_tokenizer()
    elif isinstance(tokenizer, (str, os.PathLike)):
        from transformers import AutoTokenizer
        tokenizer = AutoTokenizer.from_pretrained(os.fspath(tokenizer), trust_remote_code=trust_remote_code)
    if isinstance(model, (str, os.PathLike)):
        model_label = os.fspath(model)
        default_name = Path(model_label.rstrip("/")).name or model_label
        model, tokenizer = _load(model, tokenizer, dtype, trust_remote_code)
    else:
        if tokenizer is None:
            raise V.fail("tokenizer", None, "needed when the model is given as an object")
        model_label = getattr(getattr(model, "config", None), "_name_or_path", "") or type(model).__name__
        default_name = type(model).__name__
    name = default_name if name is None else V.text("name", name)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    routers = find_routers(model)
    E = [_num_experts(m, a) for _, m, a in routers]
    cfg = getattr(model, "config", None)
    enc_dec = bool(getattr(cfg, "is_encoder_decoder", False))

    was_training = model.training
    model.eval()
    side = getattr(tokenizer, "padding_side", "right")
    tokenizer.padding_side = "right"
    rec = _Recorder(routers)
    L = len(routers)
    counts: list[dict] = [dict() for _ in range(L)]
    dropped = np.zeros(L, dtype=np.int64)
    has_drops = [a.name == "switch-top1" for _, _, a in routers]
    K = None
    total = 0
    trace_rows: list[np.ndarray] = []       # (n_tok, L, K) per batch, with trace=True
    trace_lengths: list[np.ndarray] = []    # tokens of each prompt of the batch
    nb = math.ceil(len(prompt_list) / batch_size)
    try:
        with torch.no_grad():
            for b in tqdm(range(nb), desc="collect", unit="batch", disable=not _show_progress(progress)):
                if max_tokens is not None and total >= max_tokens:
                    break
                batch = prompt_list[b * batch_size:(b + 1) * batch_size]
                enc = tokenizer(batch, padding=True, truncation=True, max_length=max_length,
                                return_tensors="np", add_special_tokens=True)
                ids, mask = np.asarray(enc["input_ids"]), np.asarray(enc["attention_mask"])
                if max_tokens is not None:
                    ids, mask = _trim(ids, mask, max_tokens - total)
                n_tok = int(mask.sum())
                if n_tok == 0:
                    continue
                ids_t = torch.as_tensor(ids, dtype=torch.long)
                mask_t = torch.as_tensor(mask, dtype=torch.long)
                kw = {"input_ids": ids_t, "attention_mask": mask_t}
                if enc_dec:
                    start = getattr(cfg, "decoder_start_token_id", None)
                    start = cfg.pad_token_id if start is None else start
                    dec = torch.full_like(ids_t, start)
                    dec[:, 1:] = ids_t[:, :-1]
                    kw.update(decoder_input_ids=dec, decoder_attention_mask=mask_t)
                model(**kw, use_cache=False)
                flat = mask.reshape(-1).astype(bool)
                per_layer = []
                for l, calls in enumerate(rec.pop()):
                    if len(calls) != 1:
                        raise ValueError(f"router {routers[l][0]}: called {len(calls)} times in one forward pass; "
                                         "write a RouterAdapter for this architecture")
                    idx, drop = calls[0]
                    if idx.shape[0] != flat.size:
                        raise ValueError(f"router {routers[l][0]}: routed {idx.shape[0]} tokens, the batch has "
                                         f"{flat.size} positions; write a RouterAdapter for this architecture")
                    K = idx.shape[1] if K is None else K
                    if idx.shape[1] != K:
                        raise ValueError(f"router {routers[l][0]}: Top-{idx.shape[1]} differs from Top-{K} "
                                         "of the other layers")
                    per_layer.append(idx[flat])
                    g, c = np.unique(np.sort(idx[flat], axis=1), axis=0, return_counts=True)
                    d = counts[l]
                    for row, cnt in zip(map(tuple, g.tolist()), c.tolist()):
                        d[row] = d.get(row, 0) + cnt
                    if drop is not None:
                        dropped[l] += int(drop[flat].sum())
                if trace:
                    trace_rows.append(np.stack(per_layer, axis=1))
                    lengths = mask.sum(axis=1)
                    trace_lengths.append(lengths[lengths > 0])
                total += n_tok
    finally:
        rec.remove()
        tokenizer.padding_side = side
        model.train(was_training)
    if total == 0:
        raise V.fail("prompts", prompts_label, "produced no tokens")
    if len(set(E)) != 1:
        raise ValueError(f"model: MoE layers have different numbers of experts {sorted(set(E))}; "
                         "ActivationStats needs one E")
    groups, cnts = [], []
    for d in counts:
        keys = sorted(d)
        groups.append(np.array(keys, dtype=np.int64).reshape(len(keys), K))
        cnts.append(np.array([d[k] for k in keys], dtype=np.int64))
    prov = {"source": "measured", "model": model_label, "architecture": type(model).__name__,
            "prompts": prompts_label, "num_prompts": len(prompt_list), "tokens": int(total),
            "max_length": max_length, "batch_size": batch_size, "max_tokens": max_tokens,
            "routers": [n for n, _, _ in routers], "adapters": sorted({a.name for _, _, a in routers}),
            "transformers": transformers.__version__, "torch": torch.__version__.split("+")[0]}
    if enc_dec:
        prov["decoder_input"] = "prompt shifted right (teacher forcing); layers: encoder first, then decoder"
    if any(has_drops):
        prov["dropped_tokens"] = [int(x) for x in dropped]
        prov["dropped_note"] = ("tokens over expert_capacity; counted under the expert they were routed to, "
                                "the layer's FFN skipped them")
    if date == "today":
        date = _dt.datetime.now(_dt.timezone.utc).date().isoformat()
    if date is not None:
        prov["date"] = date
    prov.update(provenance or {})
    stats = ActivationStats(E[0], K, groups, counts=cnts, model=name, provenance=prov)
    if not trace:
        return stats
    from .trace import RoutingTrace
    tr = RoutingTrace(np.concatenate(trace_rows), E[0], np.concatenate(trace_lengths), model=name,
                      provenance={k: v for k, v in prov.items() if k not in ("dropped_tokens", "dropped_note")})
    return stats, tr


def main_collect(args) -> int:
    """``python -m slimlib collect``: see :func:`collect` (arguments of :mod:`slimlib.cli`)."""
    from .io import save
    tok = getattr(args, "tokenizer", None)
    stats = collect(args.model, args.prompts, field=args.field, batch_size=args.batch_size,
                    max_length=args.max_length, max_tokens=args.max_tokens,
                    name=getattr(args, "name", None), tokenizer=tok)
    save(stats, args.out, overwrite=bool(getattr(args, "force", False)))
    p = stats.provenance
    print(f"model     {p['model']} ({p['architecture']})")
    print(f"prompts   {p['prompts']}: {p['num_prompts']} prompts, {p['tokens']} tokens")
    print(f"routing   {stats.num_layers} MoE layers, E={stats.num_experts}, Top-{stats.top_k}")
    if "dropped_tokens" in p:
        print(f"dropped   {sum(p['dropped_tokens'])} token-layer pairs over expert capacity (per layer "
              f"{p['dropped_tokens']})")
    print(f"written   {args.out}")
    return 0
