"""The tiny MoE trained on standard-library text (slimlib.tinymoe): determinism, training, shipped statistics."""
from __future__ import annotations

import hashlib
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import slimlib  # noqa: E402
from slimlib import tinymoe  # noqa: E402

PROMPTS = None


def _prompts():
    global PROMPTS
    if PROMPTS is None:
        PROMPTS = tinymoe.heldout_prompts()[:12]
    return PROMPTS


def test_model_card_matches_the_model():
    card = tinymoe.model_card()
    model = tinymoe.init_model(0)
    c = model.config
    assert (card.num_layers, card.num_experts, card.top_k, card.hidden_size) == (
        c.num_hidden_layers, c.num_local_experts, c.num_experts_per_tok, c.hidden_size)
    ex = model.model.layers[0].mlp.experts
    assert card.params_per_expert == ex.gate_up_proj[0].numel() + ex.down_proj[0].numel() == 3 * 64 * 128
    assert slimlib.load_model_card(tinymoe.NAME) == card        # the shipped card is this one


def test_corpus_and_prompts():
    assert not set(tinymoe.TRAIN_MODULES) & set(tinymoe.HELDOUT_MODULES)
    text = tinymoe.stdlib_text(("textwrap",))
    assert b"def wrap(" in text
    prompts = tinymoe.heldout_prompts(max_chars=120, limit=30)
    assert len(prompts) == 30 and all(0 < len(p) <= 120 for p in prompts)
    with pytest.raises(ValueError, match="modules"):
        tinymoe.stdlib_text(("no_such_module_xyz",))


def test_training_is_deterministic_and_learns():
    a = tinymoe.train(4, seed=3, batch_size=4, seq_len=32)
    b = tinymoe.train(4, seed=3, batch_size=4, seq_len=32)
    np.testing.assert_array_equal(a.losses, b.losses)
    for pa, pb in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(pa, pb)
    sa = tinymoe.measure(a.model, _prompts())
    assert sa == tinymoe.measure(b.model, _prompts())
    # next-byte loss starts near log(257) and drops within a few dozen steps; the balancing loss stays near 1
    c = tinymoe.train(40, seed=0, batch_size=8, seq_len=64)
    assert abs(c.losses[0] - np.log(257)) < 0.3
    assert c.losses[-5:].mean() < c.losses[0] - 1.0
    assert np.all((c.aux_losses > 0.9) & (c.aux_losses < 2.0))


def test_measure_and_confidence():
    model = tinymoe.init_model(0)
    s = tinymoe.measure(model, _prompts(), label="init")
    assert s.provenance["source"] == "measured-tiny" and s.model == tinymoe.NAME
    assert s.provenance["tokens"] == sum(len(p.encode()) for p in _prompts())
    assert (s.num_layers, s.num_experts, s.top_k) == (4, 8, 2) and "date" not in s.provenance
    conf = tinymoe.router_confidence(model, _prompts())
    # a freshly initialised router is close to uniform: mass on the top-2 of 8 is near 2/8
    assert conf.shape == (4,) and np.all(conf > 0.25) and np.all(conf < 0.4)


def test_shipped_measured_statistics():
    s = slimlib.load_stats(f"{tinymoe.NAME}-measured")
    card = slimlib.load_model_card(tinymoe.NAME)
    assert (s.num_layers, s.num_experts, s.top_k) == (card.num_layers, card.num_experts, card.top_k)
    prov = s.provenance
    assert prov["source"] == "measured-tiny"
    tr = prov["training"]
    assert tr["steps"] == tinymoe.DEFAULT_STEPS and tr["seed"] == 0
    assert tr["final_lm_loss"] < 2.5
    for l in range(s.num_layers):
        assert int(s.counts(l).sum()) == prov["tokens"]
    if tr["python"] == sys.version.split()[0]:
        # same Python: same corpus and the same held-out prompts as the file was made from
        data = tinymoe.stdlib_text()
        assert hashlib.sha256(data).hexdigest()[:16] == tr["corpus_sha256"]
        assert prov["tokens"] == sum(len(p.encode()) for p in tinymoe.heldout_prompts())
