"""A tiny MoE language model trained on the Python standard library ("measured-tiny").

Chapter *Mixture of experts and where the experts go*, section "A tiny MoE
you can retrain".  The paper measured routing on real checkpoints that cannot
be downloaded here; this module trains a small ``transformers`` Mixtral model
on CPU, on text that ships with every Python installation (the source files,
docstrings included, of a fixed list of standard-library modules), with
byte-level token ids and the Switch/Mixtral load-balancing loss, and measures
its routing with the same collector (:func:`slimlib.activations.collect`) one
would use on a real model.

Reproducibility comes in two strengths.

* **The shipped weights** (``data/weights/tiny-moe.safetensors``, written by
  ``python -m slimlib.tinymoe`` with the training record in its metadata) and
  the statistics measured from them (``data/stats/tiny-moe-measured.json``):
  :func:`load_trained` + :func:`measure` is a forward pass in float64, so
  every machine gets the same routing decisions.  The smallest gap between
  the ``K``-th and the ``(K+1)``-th router score over all measured tokens
  (:func:`router_margin`, recorded in the statistics' provenance) is many
  orders of magnitude above float64 rounding, so no decision can flip.
* **Training** is seeded (initial weights and every batch), has a fixed step
  count and one torch thread, so it is bit-for-bit repeatable on one machine
  and library build; on another CPU, float rounding in the backward pass can
  grow over hundreds of steps into different routing, expert by expert.  The
  chapter therefore retrains as a demonstration and compares the result with
  the shipped weights, wording its verdict with :func:`training_verdict`.
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import importlib.util
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import _validate as V
from .model import MoEModel
from .stats import ActivationStats

__all__ = ["TINY_CONFIG", "TRAIN_MODULES", "HELDOUT_MODULES", "DEFAULT_STEPS", "NAME", "SUMMARY_TOLERANCE",
           "stdlib_text", "tiny_config", "init_model", "TrainResult", "train", "heldout_prompts",
           "measure", "router_confidence", "router_margin", "model_card", "write_data", "write_stats", "write_trace",
           "weights_path", "save_weights", "load_trained", "weights_info", "max_difference",
           "weight_difference", "skew_summary", "summary_difference", "training_verdict", "measurement_verdict"]

#: Name of the tiny model's card and statistics files.
NAME = "tiny-moe"

#: Mixtral config of the tiny model: 4 MoE layers of 8 experts, Top-2 (like MoE-LLaVA's K = 2),
#: byte vocabulary (256 bytes + pad), load-balancing coefficient 0.01 as in Switch Transformers.
TINY_CONFIG = dict(vocab_size=257, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                   num_attention_heads=4, num_key_value_heads=2, num_local_experts=8, num_experts_per_tok=2,
                   max_position_embeddings=256, router_aux_loss_coef=0.01, router_jitter_noise=0.0,
                   pad_token_id=256, bos_token_id=None, eos_token_id=None, tie_word_embeddings=False,
                   initializer_range=0.02, output_router_logits=True)

#: Standard-library modules whose source is the training text.
TRAIN_MODULES = ("argparse", "dataclasses", "functools", "collections", "textwrap", "statistics", "random",
                 "shutil", "pathlib", "typing", "enum", "inspect", "ast", "difflib", "logging", "configparser",
                 "tarfile", "zipfile", "subprocess", "threading", "datetime", "pickle", "smtplib",
                 "http.client", "urllib.parse", "email.message", "calendar", "fractions", "heapq", "contextlib")

#: Held-out modules: the prompts routing is measured on.
HELDOUT_MODULES = ("pydoc", "tokenize", "pprint", "csv", "json.decoder", "json.encoder", "string",
                   "traceback", "locale", "gettext")

#: Training steps (batch 16 x 128 bytes); about a minute on two idle cores.
DEFAULT_STEPS = 600

#: Tolerance of the training demonstration: largest allowed difference, per layer, of the
#: permutation-free skew numbers of :func:`skew_summary` between a fresh run and the shipped
#: weights (which expert ends up popular is arbitrary; how skewed the routing is is not).
#: Calibrated with a run of the same seed and steps under different float rounding (two torch
#: threads instead of one, on the machine that made the shipped weights): its weights differed
#: by up to 0.28, its group probabilities by up to 0.15, its skew numbers by up to 0.17
#: (sorted loads; entropy 0.07, top expert 0.09, top group 0.09), its final loss by 0.003 nats.
SUMMARY_TOLERANCE = 0.25

#: dtype of every measurement: float64 makes routing decisions identical on every machine.
MEASURE_DTYPE = "float64"


def stdlib_text(modules=TRAIN_MODULES) -> bytes:
    """Source bytes of standard-library modules, concatenated in the given order.

    Modules missing from this Python are skipped (the provenance records the
    Python version and a hash of the text).
    """
    parts = []
    for name in modules:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            continue
        parts.append(Path(spec.origin).read_bytes())
    if not parts:
        raise V.fail("modules", modules, "none of these standard-library modules has a .py source")
    return b"\n".join(parts)


def tiny_config(**overrides):
    """``transformers.MixtralConfig`` of the tiny model (:data:`TINY_CONFIG` plus overrides)."""
    from transformers import MixtralConfig
    cfg = MixtralConfig(**{**TINY_CONFIG, **overrides})
    return cfg


def init_model(seed: int = 0, **overrides):
    """The tiny ``MixtralForCausalLM`` at its seeded random initialisation."""
    import torch
    from transformers import MixtralForCausalLM
    torch.manual_seed(seed)
    return MixtralForCausalLM(tiny_config(**overrides))


@contextlib.contextmanager
def _threads(n):
    import torch
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@dataclass
class TrainResult:
    """Outcome of :func:`train`.

    Attributes
    ----------
    model : transformers.MixtralForCausalLM
        The trained model (eval mode).
    losses : ndarray, shape (steps,)
        Language-model loss (cross-entropy, nats per byte) at every step.
    aux_losses : ndarray, shape (steps,)
        Load-balancing loss at every step (1 = perfectly balanced at ``K/E`` load).
    seconds : float
        Wall time of the training loop.
    info : dict
        Seed, steps, batch, learning rate, corpus size and hash.
    """

    model: object
    losses: np.ndarray
    aux_losses: np.ndarray
    seconds: float
    info: dict = field(default_factory=dict)


def train(steps: int = DEFAULT_STEPS, *, seed: int = 0, batch_size: int = 16, seq_len: int = 128,
          lr: float = 3e-3, threads: int = 1, model=None, progress: bool | None = False) -> TrainResult:
    """Train the tiny MoE on standard-library source for a fixed number of steps.

    Next-byte prediction with AdamW (linear warm-up over 5 % of the steps, then
    cosine decay) on random windows of :data:`TRAIN_MODULES`; the loss is the
    language-model cross-entropy plus ``router_aux_loss_coef`` times the
    load-balancing loss of Switch Transformers / Mixtral (computed by
    ``MixtralForCausalLM`` itself).

    Parameters
    ----------
    steps : int
        Optimiser steps (the time budget; :data:`DEFAULT_STEPS` ~ one minute on 2 cores).
    seed : int
        Seeds the initial weights and the sequence of training windows.
    batch_size, seq_len : int
        Windows per step and bytes per window.
    lr : float
        Peak learning rate.
    threads : int
        torch threads during training (fixed for reproducibility).
    model : MixtralForCausalLM, optional
        Start from this model instead of ``init_model(seed)`` (see :func:`init_model`).
    progress : bool, optional
        tqdm bar over steps.

    Returns
    -------
    TrainResult
    """
    import math

    import torch
    from tqdm.auto import tqdm

    from .activations import _show_progress
    steps = V.number("steps", steps, integer=True, nonneg=True)
    data = np.frombuffer(stdlib_text(TRAIN_MODULES), dtype=np.uint8)
    model = init_model(seed) if model is None else model
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, len(data) - seq_len - 1, size=(steps, batch_size))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.01)
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / max(1, steps)))))
    losses, aux = np.zeros(steps), np.zeros(steps)
    model.train()
    t0 = time.perf_counter()
    with _threads(threads):
        for s in tqdm(range(steps), desc="train tiny MoE", disable=not _show_progress(progress)):
            x = torch.from_numpy(np.stack([data[a:a + seq_len] for a in starts[s]]).astype(np.int64))
            out = model(input_ids=x, labels=x, output_router_logits=True)
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            aux[s] = float(out.aux_loss.detach()) / model.config.num_experts_per_tok
            losses[s] = float(out.loss.detach()) - model.config.router_aux_loss_coef * float(out.aux_loss.detach())
    seconds = time.perf_counter() - t0
    model.eval()
    info = {"seed": seed, "steps": steps, "batch_size": batch_size, "seq_len": seq_len, "lr": lr,
            "threads": threads, "corpus_modules": list(TRAIN_MODULES), "corpus_bytes": int(len(data)),
            "corpus_sha256": hashlib.sha256(data.tobytes()).hexdigest()[:16],
            "python": sys.version.split()[0]}
    return TrainResult(model, losses, aux, seconds, info)


def heldout_prompts(max_chars: int = 200, limit: int = 250) -> list[str]:
    """Prompts for measuring routing: held-out standard-library source cut into pieces.

    Lines of :data:`HELDOUT_MODULES` are packed, in order, into prompts of at
    most ``max_chars`` characters; the first ``limit`` prompts are returned.
    """
    text = stdlib_text(HELDOUT_MODULES).decode("utf-8", errors="replace")
    prompts, cur = [], ""
    for line in text.splitlines():
        if not line.strip():
            continue
        line = line[:max_chars]
        if cur and len(cur) + 1 + len(line) > max_chars:
            prompts.append(cur)
            cur = ""
            if len(prompts) >= limit:
                break
        cur = f"{cur}\n{line}" if cur else line
    if cur and len(prompts) < limit:
        prompts.append(cur)
    return prompts


def _for_measuring(model):
    """A float64 copy of ``model`` in eval mode that computes in float64 throughout.

    ``transformers`` casts to float32 in three places whatever the model's
    dtype: the RMS norms, the rotary position table and the router softmax.
    Those are replaced, on the copy only, by the same formulas in float64, and
    the experts and attention use the kernels that accept float64 (eager
    experts, SDPA).  The caller's model is left as it is.
    """
    import types

    import torch
    m = copy.deepcopy(model).to(torch.float64)
    m.set_experts_implementation("eager")      # the grouped-matmul kernel has no float64
    m.set_attn_implementation("sdpa")          # eager attention takes its softmax in float32
    cfg = m.config
    dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    theta = cfg.rope_parameters["rope_theta"]
    inv_freq = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))

    def rms_norm(self, h):
        return self.weight * (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.variance_epsilon))

    def rotary(self, x, position_ids):
        freqs = position_ids[..., None].to(torch.float64) * inv_freq
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(x.dtype), emb.sin().to(x.dtype)

    def router(self, h):
        logits = torch.nn.functional.linear(h.reshape(-1, self.hidden_dim), self.weight)
        top, idx = torch.topk(torch.softmax(logits, dim=-1), self.top_k, dim=-1)
        return logits, top / top.sum(dim=-1, keepdim=True), idx

    for mod in m.modules():
        kind = type(mod).__name__
        if kind == "MixtralRMSNorm":
            mod.forward = types.MethodType(rms_norm, mod)
        elif kind == "MixtralRotaryEmbedding":
            mod.forward = types.MethodType(rotary, mod)
        elif kind == "MixtralTopKRouter":
            mod.forward = types.MethodType(router, mod)
    return m.eval()


def measure(model, prompts=None, *, label: str = "trained", provenance: dict | None = None,
            batch_size: int = 32, threads: int = 1) -> ActivationStats:
    """Routing statistics of the tiny model on held-out text, via :func:`slimlib.activations.collect`.

    The forward pass runs on a copy of ``model`` that computes in float64
    throughout (norms, rotary table and router softmax included, which
    ``transformers`` would otherwise take in float32), so the routing
    decisions, and with them the statistics, are the same on every machine
    (see :func:`router_margin`).

    Parameters
    ----------
    model : MixtralForCausalLM
    prompts : list of str, optional
        Default :func:`heldout_prompts`.
    label : str
        ``"trained"`` or ``"init"``, written into the provenance.
    provenance : dict, optional
        Extra provenance entries.
    batch_size : int
        Prompts per forward pass.
    threads : int
        torch threads while measuring.

    Returns
    -------
    ActivationStats
        ``source="measured-tiny"``, model name :data:`NAME`, no date (so the
        shipped file is byte-reproducible).
    """
    from .activations import byte_tokenizer, collect
    prompts = heldout_prompts() if prompts is None else prompts
    prov = {"source": "measured-tiny", "model": f"{NAME} ({label}; slimlib.tinymoe)",
            "prompts": "held-out standard-library source: " + ", ".join(HELDOUT_MODULES),
            "measured_in": MEASURE_DTYPE, **(provenance or {})}
    with _threads(threads):
        return collect(_for_measuring(model), prompts, tokenizer=byte_tokenizer(), name=NAME,
                       batch_size=batch_size, max_length=256, progress=False, provenance=prov, date=None)


def _router_logits(model, prompts, batch_size, threads):
    """Per batch: the router logits of every layer at the non-pad tokens, shape (L, T, E), float64."""
    import torch
    from .activations import byte_tokenizer
    tok = byte_tokenizer()
    m64 = _for_measuring(model)
    with _threads(threads), torch.no_grad():
        for i in range(0, len(prompts), batch_size):
            enc = tok(prompts[i:i + batch_size], padding=True, truncation=True, max_length=256,
                      return_tensors="pt")
            out = m64(**enc, output_router_logits=True, use_cache=False)
            keep = enc["attention_mask"].reshape(-1).bool()
            yield torch.stack([r[keep] for r in out.router_logits])


def router_confidence(model, prompts=None, *, batch_size: int = 32, threads: int = 1) -> np.ndarray:
    """Mean probability mass the router puts on the experts it picks, per layer.

    For every non-pad token, the sum of the ``K`` largest softmax router
    probabilities, averaged over tokens: ``K/E`` when the router cannot tell
    the experts apart (as at initialisation, where it is near-uniform), 1 when
    it is certain.  Activation counts alone do not show this.

    Returns
    -------
    ndarray, shape (L,)
    """
    import torch
    prompts = heldout_prompts() if prompts is None else prompts
    K = model.config.num_experts_per_tok
    tot, n = 0.0, 0
    for logits in _router_logits(model, prompts, batch_size, threads):
        tot = tot + torch.softmax(logits, -1).topk(K, -1).values.sum(-1).sum(1)
        n += logits.shape[1]
    return (tot / n).numpy()


def router_margin(model, prompts=None, *, batch_size: int = 32, threads: int = 1) -> np.ndarray:
    """Smallest gap between the ``K``-th and ``(K+1)``-th router logit, per layer.

    A routing decision can only change under a perturbation of the logits of
    at least half this gap.  Computed in float64 throughout (see
    :func:`measure`), the logits of two machines differ by rounding of order
    ``1e-15`` times their size; a margin many orders of magnitude larger means
    the statistics of :func:`measure` are the same on any machine.

    Returns
    -------
    ndarray, shape (L,)
        Minimum over all non-pad tokens of the held-out prompts (logit units).
    """
    prompts = heldout_prompts() if prompts is None else prompts
    K = model.config.num_experts_per_tok
    best = None
    for logits in _router_logits(model, prompts, batch_size, threads):
        top = logits.topk(K + 1, -1).values
        gap = (top[..., K - 1] - top[..., K]).min(1).values.numpy()
        best = gap if best is None else np.minimum(best, gap)
    return best


def model_card() -> MoEModel:
    """Model card of the tiny MoE (fp32; an expert is Mixtral's gate/up/down MLP, ``3 * d * d_ff`` parameters)."""
    c = TINY_CONFIG
    return MoEModel(NAME, c["num_hidden_layers"], c["num_local_experts"], c["num_experts_per_tok"],
                    c["hidden_size"], 3 * c["hidden_size"] * c["intermediate_size"], bytes_per_param=4,
                    act_bytes=2, description=("Tiny Mixtral trained in the book on standard-library source "
                                              "(slimlib.tinymoe): 4 MoE layers x 8 experts, Top-2, d_model 64, "
                                              "d_ff 128, byte vocabulary, fp32."))


# ----------------------------------------------------------------------------- shipped weights

def weights_path(folder=None) -> Path:
    """Path of the shipped weights, ``<data>/weights/tiny-moe.safetensors``.

    ``folder`` is a data folder (default: :func:`slimlib.data_dir`).
    """
    from .io import data_dir
    return (data_dir() if folder is None else Path(folder)) / "weights" / f"{NAME}.safetensors"


def save_weights(model, path, info: dict) -> Path:
    """Write ``model``'s float32 state dict as safetensors, ``info`` (JSON) in its metadata.

    Written to a temporary file in the same folder and moved into place, so a
    failed write leaves no partial file.
    """
    from safetensors.torch import save_file
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()}
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        save_file(state, tmp, metadata={"slimlib": json.dumps(info, sort_keys=True)})
        os.chmod(tmp, 0o644)                    # mkstemp makes it private; a data file is not
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def weights_info(path=None) -> dict:
    """The training record stored in the weights file (seed, steps, versions, loss)."""
    from safetensors import safe_open
    path = weights_path() if path is None else Path(path)
    with safe_open(str(path), framework="pt") as f:
        return json.loads((f.metadata() or {}).get("slimlib", "{}"))


def load_trained(path=None):
    """The trained tiny MoE from the shipped weights (float32, eval mode).

    Parameters
    ----------
    path : path-like, optional
        A safetensors file written by :func:`save_weights`; default
        :func:`weights_path` (the file shipped with slimlib).

    Returns
    -------
    transformers.MixtralForCausalLM
    """
    from safetensors.torch import load_file
    path = weights_path() if path is None else Path(path)
    if not path.is_file():
        raise OSError(f"weights: no file {str(path)!r} (regenerate with `python -m slimlib.tinymoe`)")
    model = init_model(0)
    model.load_state_dict(load_file(str(path)), strict=True)
    return model.eval()


# ----------------------------------------------------------------------------- comparisons and verdicts

def max_difference(a: ActivationStats, b: ActivationStats) -> float:
    """Largest difference of a group probability ``P_l(G)`` between two statistics (0 = identical).

    Groups missing from one side count with probability 0.
    """
    if (a.num_layers, a.num_experts, a.top_k) != (b.num_layers, b.num_experts, b.top_k):
        raise V.fail("stats", (b.num_layers, b.num_experts, b.top_k),
                     f"shape (L, E, K) differs from {(a.num_layers, a.num_experts, a.top_k)}")
    worst = 0.0
    for l in range(a.num_layers):
        pa = dict(zip(map(tuple, a.groups(l).tolist()), a.probs(l).tolist()))
        pb = dict(zip(map(tuple, b.groups(l).tolist()), b.probs(l).tolist()))
        for g in pa.keys() | pb.keys():
            worst = max(worst, abs(pa.get(g, 0.0) - pb.get(g, 0.0)))
    return worst


def weight_difference(a, b) -> float:
    """Largest absolute difference of any parameter between two tiny models (0 = identical)."""
    sa, sb = a.state_dict(), b.state_dict()
    if sa.keys() != sb.keys():
        raise V.fail("model", sorted(sb.keys() ^ sa.keys())[:3], "parameter names differ")
    return max(float((sa[k].double() - sb[k].double()).abs().max()) for k in sa)


def skew_summary(stats: ActivationStats) -> dict:
    """Per-layer skew numbers that do not depend on which expert is which, shape (L,) each.

    ``entropy`` (normalised entropy of the expert load), ``top_expert``
    (probability of the most used expert) and ``top_group`` (probability of
    the most used group) from :func:`slimlib.skew.routing_summary`, plus
    ``sorted_load``, shape (L, E): the marginals sorted in decreasing order.
    """
    from .skew import routing_summary
    r = routing_summary(stats)
    return {"entropy": np.asarray(r["entropy"]), "top_expert": np.asarray(r["top_expert"]),
            "top_group": np.asarray(r["top_group"]),
            "sorted_load": -np.sort(-stats.marginals(), axis=1)}


def summary_difference(a: ActivationStats, b: ActivationStats) -> float:
    """Largest difference between the :func:`skew_summary` numbers of two statistics."""
    sa, sb = skew_summary(a), skew_summary(b)
    return max(float(np.abs(sa[k] - sb[k]).max()) for k in sa)


def _check_difference(name, value):
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise V.fail(name, value, "must be a finite number >= 0")
    return value


def measurement_verdict(difference: float, tolerance: float = 1e-12) -> str:
    """Words for "statistics measured from the shipped weights vs the shipped file".

    ``"are identical to"`` when ``difference == 0``; ``"agree to within
    <difference> with"`` when ``0 < difference <= tolerance``; otherwise
    ``"differ by up to <difference> from"`` (the shipped file is then stale).
    """
    d, tol = _check_difference("difference", difference), _check_difference("tolerance", tolerance)
    if d == 0:
        return "are identical to"
    if d <= tol:
        return f"agree to within {d:.1e} with"
    return f"differ by up to {d:.3g} from"


def training_verdict(weight_diff: float, summary_diff: float, tolerance: float = SUMMARY_TOLERANCE) -> str:
    """One sentence comparing a fresh training run with the shipped weights.

    Parameters
    ----------
    weight_diff : float
        :func:`weight_difference` of the fresh and the shipped model.
    summary_diff : float
        :func:`summary_difference` of their statistics.
    tolerance : float
        Stated tolerance for ``summary_diff`` (:data:`SUMMARY_TOLERANCE`).

    Returns
    -------
    str
        "reproduces ... exactly" only when ``weight_diff == 0``; otherwise the
        sentence gives both differences and says whether the skew is within
        the tolerance.
    """
    w = _check_difference("weight_diff", weight_diff)
    s = _check_difference("summary_diff", summary_diff)
    tol = _check_difference("tolerance", tolerance)
    if w == 0:
        return ("The fresh run reproduces the shipped weights exactly (largest difference 0), "
                "and with them the shipped statistics.")
    head = (f"The fresh run differs from the shipped weights (largest difference {w:.3g}), as float "
            f"rounding on this machine differs from the one that trained them; ")
    if s <= tol:
        return head + (f"the skew of its routing agrees with theirs within the tolerance of {tol:g} "
                       f"(largest difference {s:.3f}).")
    return head + (f"the skew of its routing differs by up to {s:.3f}, more than the tolerance of "
                   f"{tol:g}.")


# ----------------------------------------------------------------------------- the whole pipeline

def _training_record(result: TrainResult) -> dict:
    import torch
    import transformers
    info = dict(result.info)
    info["final_lm_loss"] = round(float(result.losses[-50:].mean()), 4) if len(result.losses) else None
    info["torch"] = torch.__version__
    info["transformers"] = transformers.__version__
    return info


def write_data(steps: int = DEFAULT_STEPS, seed: int = 0, folder=None, progress: bool | None = True) -> list[Path]:
    """Train, write the weights, then the model card and the statistics measured from them.

    Writes ``<data>/weights/tiny-moe.safetensors`` (float32 state dict, the
    training record in its metadata) and then calls :func:`write_stats`.
    ``python -m slimlib.tinymoe`` calls this.
    """
    from .io import data_dir
    folder = data_dir() if folder is None else Path(folder)
    result = train(steps, seed=seed, progress=progress)
    wpath = save_weights(result.model, weights_path(folder), _training_record(result))
    return [wpath, *write_stats(folder)]


def write_stats(folder=None) -> list[Path]:
    """Measure the shipped weights and write ``models/tiny-moe.json`` and ``stats/tiny-moe-measured.json``.

    The statistics are measured from the weights file (:func:`load_trained`,
    :func:`measure`), with the training record, the file's SHA-256 and the
    smallest router margin (:func:`router_margin`) in their provenance, and no
    date, so the same weights give the same bytes on any machine.
    ``python -m slimlib.tinymoe --measure-only`` calls this.
    """
    from .io import data_dir, save
    folder = data_dir() if folder is None else Path(folder)
    wpath = weights_path(folder)
    model = load_trained(wpath)
    prompts = heldout_prompts()
    prov = {"training": weights_info(wpath),
            "weights": {"file": f"weights/{wpath.name}",
                        "sha256": hashlib.sha256(wpath.read_bytes()).hexdigest()},
            "router_margin_min": float(router_margin(model, prompts).min())}
    stats = measure(model, prompts, label="trained", provenance=prov)
    return [save(model_card(), folder / "models" / f"{NAME}.json", overwrite=True),
            save(stats, folder / "stats" / f"{NAME}-measured.json", overwrite=True)]


def write_trace(folder=None, max_tokens: int = 12_000) -> Path:
    """Record the routing trace of the shipped tiny MoE on held-out text.

    The per-token Top-K choices of every layer (:class:`slimlib.trace.RoutingTrace`)
    that the chapter *A placement in a live network* replays. Measured like
    :func:`write_stats` — the shipped weights, a float64 forward pass — so the
    file is the same on every machine. Writes ``traces/tiny-moe-trace.json``
    in ``folder`` (default: the shipped data folder).
    """
    from .activations import byte_tokenizer, collect
    from .io import data_dir, save
    from .trace import TINY_TRACE
    folder = data_dir() if folder is None else Path(folder)
    wpath = weights_path(folder)
    model = load_trained(wpath)
    prov = {"source": "measured-tiny", "model": f"{NAME} (trained; slimlib.tinymoe)",
            "prompts": "held-out standard-library source: " + ", ".join(HELDOUT_MODULES),
            "measured_in": MEASURE_DTYPE,
            "weights": {"file": f"weights/{wpath.name}",
                        "sha256": hashlib.sha256(wpath.read_bytes()).hexdigest()}}
    with _threads(1):
        _, trace = collect(_for_measuring(model), heldout_prompts(), tokenizer=byte_tokenizer(), name=NAME,
                           batch_size=32, max_length=256, max_tokens=max_tokens, progress=False,
                           provenance=prov, date=None, trace=True)
    return save(trace, folder / "traces" / f"{TINY_TRACE}.json", overwrite=True)


if __name__ == "__main__":  # pragma: no cover
    for p in (write_stats() if "--measure-only" in sys.argv[1:] else write_data()):
        print("written", p)
    print("written", write_trace())
