"""A tiny MoE language model trained on the Python standard library ("measured-tiny").

Chapter *Mixture of experts and where the experts go*, section "A tiny MoE,
trained in the book" (SPEC §6, source 2).  The paper measured routing on
real checkpoints that cannot be downloaded here; this module trains a small
``transformers`` Mixtral model on CPU, on text that ships with every Python
installation (the source files, docstrings included, of a fixed list of
standard-library modules), with byte-level token ids and the Switch/Mixtral
load-balancing loss, and then measures its routing with the same collector
(:func:`slimlib.activations.collect`) one would use on a real model.

Determinism: the seed fixes the initial weights and every training batch, the
training length is a **step count** (not wall time), and the number of torch
threads is fixed during training.  The result is reproducible on one machine
and Python version; across CPUs float rounding may differ slightly, which is why
the chapter compares its freshly trained statistics with the shipped file
approximately.  :data:`DEFAULT_STEPS` was calibrated to take about a minute
on two idle CPU cores.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import _validate as V
from .model import MoEModel
from .stats import ActivationStats

__all__ = ["TINY_CONFIG", "TRAIN_MODULES", "HELDOUT_MODULES", "DEFAULT_STEPS", "NAME", "stdlib_text",
           "tiny_config", "init_model", "TrainResult", "TinyRun", "train", "heldout_prompts", "measure", "router_confidence",
           "model_card",
           "build", "write_data"]

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


def heldout_prompts(max_chars: int = 200, limit: int = 400) -> list[str]:
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


def measure(model, prompts=None, *, label: str = "trained", provenance: dict | None = None,
            batch_size: int = 32, threads: int = 1) -> ActivationStats:
    """Routing statistics of the tiny model on held-out text, via :func:`slimlib.activations.collect`.

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
            "prompts": "held-out standard-library source: " + ", ".join(HELDOUT_MODULES), **(provenance or {})}
    with _threads(threads):
        return collect(model, prompts, tokenizer=byte_tokenizer(), name=NAME, batch_size=batch_size,
                       max_length=256, progress=False, provenance=prov, date=None)


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
    from .activations import byte_tokenizer
    prompts = heldout_prompts() if prompts is None else prompts
    tok = byte_tokenizer()
    K = model.config.num_experts_per_tok
    tot, n = None, 0
    was = model.training
    model.eval()
    with _threads(threads), torch.no_grad():
        for i in range(0, len(prompts), batch_size):
            enc = tok(prompts[i:i + batch_size], padding=True, truncation=True, max_length=256, return_tensors="pt")
            out = model(**enc, output_router_logits=True, use_cache=False)
            m = enc["attention_mask"].reshape(-1).bool()
            mass = torch.stack([torch.softmax(r.float(), -1).topk(K, -1).values.sum(-1)[m] for r in out.router_logits])
            tot = mass.sum(1) if tot is None else tot + mass.sum(1)
            n += int(m.sum())
    model.train(was)
    return (tot / n).numpy()


def model_card() -> MoEModel:
    """Model card of the tiny MoE (fp32; an expert is Mixtral's gate/up/down MLP, ``3 * d * d_ff`` parameters)."""
    c = TINY_CONFIG
    return MoEModel(NAME, c["num_hidden_layers"], c["num_local_experts"], c["num_experts_per_tok"],
                    c["hidden_size"], 3 * c["hidden_size"] * c["intermediate_size"], bytes_per_param=4,
                    act_bytes=2, description=("Tiny Mixtral trained in the book on standard-library source "
                                              "(slimlib.tinymoe): 4 MoE layers x 8 experts, Top-2, d_model 64, "
                                              "d_ff 128, byte vocabulary, fp32."))


@dataclass
class TinyRun:
    """Outcome of :func:`build`: routing of the tiny MoE at initialisation and after training.

    Attributes
    ----------
    init_stats, trained_stats : ActivationStats
        ``measured-tiny`` statistics on the held-out prompts.
    init_confidence, trained_confidence : ndarray, shape (L,)
        :func:`router_confidence` on the first 100 held-out prompts.
    result : TrainResult
    """

    init_stats: ActivationStats
    trained_stats: ActivationStats
    init_confidence: np.ndarray
    trained_confidence: np.ndarray
    result: TrainResult


def build(steps: int = DEFAULT_STEPS, seed: int = 0, progress: bool | None = False) -> TinyRun:
    """Train the tiny MoE and measure its routing before and after training.

    Parameters
    ----------
    steps : int
        Training steps (:data:`DEFAULT_STEPS`: the chapter's time budget).
    seed : int
    progress : bool, optional
        tqdm bar over training steps.

    Returns
    -------
    TinyRun
    """
    prompts = heldout_prompts()
    model = init_model(seed)
    init_stats = measure(model, prompts, label="init", provenance={"training": {"seed": seed, "steps": 0}})
    init_conf = router_confidence(model, prompts[:100])
    result = train(steps, seed=seed, model=model, progress=progress)   # trains `model` in place
    info = dict(result.info)
    info["final_lm_loss"] = round(float(result.losses[-50:].mean()), 4) if steps else None
    trained_stats = measure(result.model, prompts, label="trained", provenance={"training": info})
    return TinyRun(init_stats, trained_stats, init_conf, router_confidence(result.model, prompts[:100]), result)


def write_data(steps: int = DEFAULT_STEPS, seed: int = 0, folder=None) -> list[Path]:
    """Regenerate ``data/models/tiny-moe.json`` and ``data/stats/tiny-moe-measured.json``.

    ``python -m slimlib.tinymoe`` calls this.  The statistics omit the date, so
    the same seed, steps, Python and machine give the same bytes.
    """
    from .io import data_dir, save
    folder = data_dir() if folder is None else Path(folder)
    run = build(steps, seed)
    return [save(model_card(), folder / "models" / f"{NAME}.json", overwrite=True),
            save(run.trained_stats, folder / "stats" / f"{NAME}-measured.json", overwrite=True)]


if __name__ == "__main__":  # pragma: no cover
    for p in write_data():
        print("written", p)
