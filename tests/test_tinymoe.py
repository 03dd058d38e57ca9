"""The tiny MoE trained on standard-library text (slimlib.tinymoe).

Determinism of training, the shipped weights and the statistics measured from
them (equal to the shipped file to 1e-12 on any machine), and the verdict
sentences the chapter prints (each fed numbers on both sides of its condition).
"""
from __future__ import annotations

import hashlib
import math
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
    assert prov["source"] == "measured-tiny" and prov["measured_in"] == "float64"
    tr = prov["training"]
    assert tr["steps"] == tinymoe.DEFAULT_STEPS and tr["seed"] == 0
    assert tr["final_lm_loss"] < 2.5
    assert tr == tinymoe.weights_info()                   # the record stored in the weights file
    for l in range(s.num_layers):
        assert int(s.counts(l).sum()) == prov["tokens"]
    # the statistics name the weights they come from, byte for byte
    assert prov["weights"]["sha256"] == hashlib.sha256(tinymoe.weights_path().read_bytes()).hexdigest()
    if tr["python"] == sys.version.split()[0]:
        # same Python: same corpus and the same held-out prompts as the file was made from
        data = tinymoe.stdlib_text()
        assert hashlib.sha256(data).hexdigest()[:16] == tr["corpus_sha256"]
        assert prov["tokens"] == sum(len(p.encode()) for p in tinymoe.heldout_prompts())


def test_shipped_weights_reproduce_the_shipped_statistics():
    """What the book prints: a float64 forward pass of the shipped weights gives the shipped file."""
    shipped = slimlib.load_stats(f"{tinymoe.NAME}-measured")
    model = tinymoe.load_trained()
    if shipped.provenance["training"]["python"] != sys.version.split()[0]:
        pytest.skip("another Python: the held-out standard-library text differs")
    measured = tinymoe.measure(model)
    assert tinymoe.max_difference(measured, shipped) <= 1e-12
    # no routing decision is near a tie: float64 rounding differences between machines (~1e-15 of a
    # logit of size ~10) are far below the smallest gap, so none can flip
    assert shipped.provenance["router_margin_min"] > 1e-9
    margin = tinymoe.router_margin(model, tinymoe.heldout_prompts()[:20])
    assert margin.shape == (4,) and margin.min() >= shipped.provenance["router_margin_min"]


def test_weights_round_trip_and_errors(tmp_path):
    model = tinymoe.init_model(1)
    path = tinymoe.save_weights(model, tmp_path / "w" / "tiny.safetensors", {"seed": 1, "steps": 0})
    assert [p.name for p in path.parent.iterdir()] == ["tiny.safetensors"]     # no temp file left
    again = tinymoe.load_trained(path)
    assert tinymoe.weight_difference(model, again) == 0.0
    assert tinymoe.weights_info(path) == {"seed": 1, "steps": 0}
    assert tinymoe.weight_difference(model, tinymoe.init_model(2)) > 0.0
    with pytest.raises(OSError, match="nowhere.safetensors"):
        tinymoe.load_trained(tmp_path / "nowhere.safetensors")


def _stats(probs_per_layer, groups):
    return slimlib.ActivationStats(4, 2, [groups] * len(probs_per_layer), probs=probs_per_layer)


def test_max_difference_and_skew_summary_by_hand():
    g = [[0, 1], [2, 3], [0, 2]]
    a = _stats([[0.5, 0.3, 0.2]], g)
    b = slimlib.ActivationStats(4, 2, [[[0, 1], [2, 3], [1, 3]]], probs=[[0.5, 0.3, 0.2]])
    # group (0, 2) has 0.2 in a and 0 in b, group (1, 3) the other way round
    assert tinymoe.max_difference(a, b) == pytest.approx(0.2, abs=1e-15)
    assert tinymoe.max_difference(a, a) == 0.0
    # relabelling the experts (0<->3, 1<->2) changes every group but none of the skew numbers
    perm = {0: 3, 1: 2, 2: 1, 3: 0}
    c = slimlib.ActivationStats(4, 2, [[sorted((perm[i], perm[j])) for i, j in g]], probs=[[0.5, 0.3, 0.2]])
    assert tinymoe.max_difference(a, c) == pytest.approx(0.2)
    assert tinymoe.summary_difference(a, c) < 1e-15          # summation order only
    # loads p = (0.7, 0.5, 0.5, 0.3) sorted; top expert 0.7, top group 0.5
    sa = tinymoe.skew_summary(a)
    np.testing.assert_allclose(sa["sorted_load"][0], [0.7, 0.5, 0.5, 0.3])
    assert sa["top_expert"][0] == pytest.approx(0.7) and sa["top_group"][0] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="stats"):
        tinymoe.max_difference(a, slimlib.ActivationStats(4, 1, [[[0]]], probs=[[1.0]]))


def test_measurement_verdict_follows_the_numbers():
    assert tinymoe.measurement_verdict(0.0) == "are identical to"
    assert tinymoe.measurement_verdict(1e-13).startswith("agree to within 1.0e-13")
    assert tinymoe.measurement_verdict(1e-12).startswith("agree to within")        # at the tolerance
    assert tinymoe.measurement_verdict(2e-12).startswith("differ by up to")
    assert tinymoe.measurement_verdict(0.67) == "differ by up to 0.67 from"
    for bad in (-1e-3, math.nan, math.inf):
        with pytest.raises(ValueError, match="difference"):
            tinymoe.measurement_verdict(bad)


def test_training_verdict_says_exactly_only_for_identical_weights():
    tol = tinymoe.SUMMARY_TOLERANCE
    same = tinymoe.training_verdict(0.0, 0.0)
    assert "exactly" in same and "differs" not in same
    near = tinymoe.training_verdict(3e-4, tol / 2)
    assert "exactly" not in near and "within the tolerance" in near and "0.0003" in near
    edge = tinymoe.training_verdict(3e-4, tol)
    assert "within the tolerance" in edge
    far = tinymoe.training_verdict(0.2, 0.67)
    assert "exactly" not in far and "more than the tolerance" in far and "0.670" in far
    with pytest.raises(ValueError, match="summary_diff"):
        tinymoe.training_verdict(0.0, -1.0)
