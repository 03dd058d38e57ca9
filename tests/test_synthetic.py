"""Synthetic activation statistics (slimlib.synthetic): formula, sampling, per-user resampling, shipped files."""
from __future__ import annotations

import hashlib
import math
import shutil
from itertools import combinations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import slimlib
from slimlib import MoEModel
from slimlib.skew import routing_summary
from slimlib.synthetic import (DEFAULTS, LARGE_CARD_TOKENS, is_large_card, large_card_stats, synthetic_profile,
                               synthetic_scores, synthetic_stats, user_stats, write_synthetic)


def _card(L=3, E=4, K=2, name="toy"):
    return MoEModel(name, L, E, K, hidden_size=8, params_per_expert=10)


def test_profile_is_the_log_linear_formula():
    m = _card(L=2, E=4, K=2)
    sigma, a, b, _ = synthetic_scores(m, seed=3)
    prof = synthetic_profile(m, seed=3)
    for l in range(2):
        g = prof.groups(l)
        w = np.array([math.exp(a[l, i] + a[l, j] + b[l, i, j]) for i, j in g])
        np.testing.assert_allclose(prof.probs(l), w / w.sum(), rtol=1e-12)
        assert np.allclose(b[l], b[l].T) and np.all(np.diag(b[l]) == 0)
    assert np.all((sigma >= DEFAULTS["skew"][0]) & (sigma <= DEFAULTS["skew"][1]))


def test_no_skew_no_affinity_is_uniform():
    m = _card(L=2, E=5, K=2)
    prof = synthetic_profile(m, skew=(0, 0), affinity=0)
    for l in range(2):
        np.testing.assert_allclose(prof.probs(l), np.full(10, 0.1))


def test_samples_follow_profile_and_sum_to_tokens():
    m = _card(L=3, E=4, K=2)
    s = synthetic_stats(m, seed=1, tokens=40_000)
    prof = synthetic_profile(m, seed=1)
    for l in range(3):
        assert int(s.counts(l).sum()) == 40_000
        # total variation between sampled and exact distribution: O(sqrt(G / T))
        q = dict(zip(map(tuple, prof.groups(l).tolist()), prof.probs(l)))
        tv = 0.5 * sum(abs(p - q[tuple(g)]) for g, p in zip(s.groups(l).tolist(), s.probs(l)))
        tv += 0.5 * sum(v for k, v in q.items() if k not in set(map(tuple, s.groups(l).tolist())))
        assert tv < 0.02
    assert s.provenance["source"] == "synthetic" and s.provenance["tokens"] == 40_000


def test_seeded_and_model_dependent():
    m = _card()
    assert synthetic_stats(m, seed=0, tokens=1000) == synthetic_stats(m, seed=0, tokens=1000)
    assert synthetic_stats(m, seed=0, tokens=1000) != synthetic_stats(m, seed=1, tokens=1000)
    other = synthetic_stats(_card(name="toy2"), seed=0, tokens=1000)
    assert other.to_dict()["layers"] != synthetic_stats(m, seed=0, tokens=1000).to_dict()["layers"]


def test_sequential_sampling_path():
    m = _card(L=2, E=6, K=3)
    s = synthetic_stats(m, seed=0, tokens=3000, max_enumerate=0)
    assert s.provenance["sampling"] == "sequential"
    assert all(int(s.counts(l).sum()) == 3000 for l in range(2))
    np.testing.assert_allclose(s.marginals().sum(axis=1), 3.0)
    u = synthetic_stats(m, seed=0, tokens=6000, skew=(0, 0), affinity=0, max_enumerate=0)
    np.testing.assert_allclose(u.marginals(), 0.5, atol=0.04)    # uniform: every expert in half the groups


@settings(max_examples=25, deadline=None)
@given(L=st.integers(1, 4), E=st.integers(1, 9), K=st.integers(1, 3), seed=st.integers(0, 10_000))
def test_valid_for_any_shape(L, E, K, seed):
    K = min(K, E)
    s = synthetic_stats(_card(L, E, K), seed=seed, tokens=500)
    assert (s.num_layers, s.num_experts, s.top_k) == (L, E, K)
    np.testing.assert_allclose(s.marginals().sum(axis=1), K)
    assert slimlib.ActivationStats.from_json(s.to_json()) == s


def test_skewed_and_layer_dependent_for_every_card():
    for name in slimlib.model_card_names():
        card = slimlib.load_model_card(name)
        s = slimlib.load_stats(f"{name}-synthetic")
        assert (s.num_layers, s.num_experts, s.top_k, s.model) == (card.num_layers, card.num_experts, card.top_k,
                                                                     name)
        assert s.provenance["source"] == "synthetic"
        r = routing_summary(s)
        assert r["entropy"].min() < 0.95                              # skewed somewhere
        assert r["layer_tv"] > 0.1                                    # layers differ
        assert len(set(s.marginals().argmax(axis=1).tolist())) >= 2   # the top expert changes with the layer
        if card.top_k >= 2:
            assert np.nanmean(r["pair_lift"]) > 1.05                  # pairs have affinity


#: SHA-256 of the files the large cards' statistics were shipped as (seed 0, LARGE_CARD_TOKENS tokens),
#: before they were generated on demand: the generated statistics must stay exactly these.
LARGE_CARD_SHA256 = {
    "deepseek-v3-like-58x256": "33ccb5771653b17843792cb173ddfc2d6ff14dd4ecacb44e647a0de62e6ecb87",
    "qwen3-moe-like-48x128": "a5df3d257b281a7eec2d273f48e18136bde17176437f2effa8f4bbf5f42148a5",
}


def test_shipped_files_are_reproducible(tmp_path):
    shutil.copytree(slimlib.data_dir() / "models", tmp_path / "models")
    written = write_synthetic(tmp_path)
    cards = {n: slimlib.load_model_card(n) for n in slimlib.model_card_names()}
    large = sorted(n for n, c in cards.items() if is_large_card(c))
    assert large == sorted(LARGE_CARD_SHA256)
    assert sorted(p.name for p in written) == sorted(f"{n}-synthetic.json" for n in cards if n not in large)
    for p in written:
        assert p.read_bytes() == (slimlib.data_dir() / "stats" / p.name).read_bytes(), p.name
    for n in large:
        # not shipped, generated by load_stats: same bytes as the files once shipped, on any machine
        assert not (slimlib.data_dir() / "stats" / f"{n}-synthetic.json").exists()
        s = slimlib.load_stats(f"{n}-synthetic")
        assert s.provenance["tokens"] == LARGE_CARD_TOKENS and s.provenance["sampling"] == "sequential"
        text = slimlib.save(s, tmp_path / "large" / f"{n}.json").read_bytes()
        assert hashlib.sha256(text).hexdigest() == LARGE_CARD_SHA256[n], n
        again = slimlib.load_stats(f"{n}-synthetic")          # cached: equal, but not the same object
        assert again == s and again is not s
        s.provenance["tokens"] = -1
        assert slimlib.load_stats(f"{n}-synthetic").provenance["tokens"] == LARGE_CARD_TOKENS


def test_large_cards_written_only_on_request(tmp_path):
    (tmp_path / "models").mkdir()
    small, big = _card(L=2, E=6, K=2, name="small"), _card(L=2, E=40, K=5, name="big")   # C(40, 5) > 200 000
    assert not is_large_card(small) and is_large_card(big)
    for c in (small, big):
        slimlib.save(c, tmp_path / "models" / f"{c.name}.json")
    assert [p.name for p in write_synthetic(tmp_path)] == ["small-synthetic.json"]
    paths = write_synthetic(tmp_path, large=True)
    assert [p.name for p in paths] == ["big-synthetic.json", "small-synthetic.json"]
    written = slimlib.load(paths[0])
    assert written == large_card_stats(big) == synthetic_stats(big, seed=0, tokens=LARGE_CARD_TOKENS)
    assert written.provenance["sampling"] == "sequential"
    with pytest.raises(ValueError, match="card"):
        large_card_stats(small)


def test_user_stats():
    base = slimlib.load_stats("moe-llava-phi2-2.7b-4e-synthetic")
    users = user_stats(base, 5, seed=7, tokens_per_user=3000)
    assert len(users) == 5 and users == user_stats(base, 5, seed=7, tokens_per_user=3000)
    for u, s in enumerate(users):
        assert (s.num_layers, s.num_experts, s.top_k, s.model) == (16, 4, 2, base.model)
        assert all(int(s.counts(l).sum()) == 3000 for l in range(16))
        assert s.provenance["user"] == u and s.provenance["source"] == "synthetic"
        # close to the profile, not equal to it
        d = np.abs(s.marginals() - base.marginals()).max()
        assert 0 < d < 0.15
    assert users[0] != users[1]
    # larger concentration -> users closer to the profile
    def spread(c):
        us = user_stats(base, 8, seed=1, tokens_per_user=None, concentration=c)
        return np.mean([np.abs(s.marginals() - base.marginals()).mean() for s in us])
    assert spread(3000) < spread(30)
    exact = user_stats(base, 2, seed=0, tokens_per_user=None)
    assert exact[0].counts(0) is None and exact[0].provenance["resampled"]["tokens_per_user"] is None


def test_validation():
    m = _card()
    with pytest.raises(ValueError, match="skew"):
        synthetic_stats(m, skew=(2, 1))
    with pytest.raises(ValueError, match="tokens"):
        synthetic_stats(m, tokens=0)
    with pytest.raises(ValueError, match="layer_corr"):
        synthetic_stats(m, layer_corr=1.0)
    with pytest.raises(ValueError, match="model"):
        synthetic_stats("switch-base-8")
    with pytest.raises(ValueError, match="num_users"):
        user_stats(synthetic_stats(m, tokens=10), 0)
    with pytest.raises(ValueError, match="max_groups"):
        synthetic_profile(_card(E=64, K=4), max_groups=1000)


def test_sources_and_figures(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from slimlib.io import load_activation_stats
    from slimlib.plotting import moe as moe_plots
    s = load_activation_stats("moe-llava-phi2-2.7b-4e", "synthetic")
    assert s.provenance["source"] == "synthetic"
    assert load_activation_stats("tiny-moe", "measured-tiny").provenance["source"] == "measured-tiny"
    with pytest.raises(ValueError, match="unknown statistics file"):
        load_activation_stats("moe-llava-phi2-2.7b-4e", "measured-tiny")
    with pytest.raises(ValueError, match="source"):
        load_activation_stats("moe-llava-phi2-2.7b-4e", "no-such-source")
    path = slimlib.save(s, tmp_path / "mine.json")
    assert load_activation_stats("whatever", str(path)) == s
    # every statistics figure names its source
    fig = moe_plots.draw_expert_heatmap(s, 3)
    assert any("statistics: synthetic" in t.get_text() for t in fig.texts)
    plt.close(fig)
    fig = moe_plots.draw_activation_panel("switch-base-8", "synthetic", 1)   # K = 1: popularity bars
    assert any("statistics: synthetic" in t.get_text() for t in fig.texts)
    plt.close(fig)
    # not available: no frame (the widget offers only combinations that exist)
    assert moe_plots.draw_activation_panel("moe-llava-phi2-2.7b-4e", "measured-tiny", 0) is None
    with pytest.raises(ValueError, match="layer"):
        moe_plots.draw_expert_heatmap(s, 16)
    for E, K in [(4, 2), (8, 1), (64, 2)]:
        plt.close(moe_plots.draw_moe_layer(E, K))
    with pytest.raises(ValueError, match="top_k"):
        moe_plots.draw_moe_layer(4, 5)
