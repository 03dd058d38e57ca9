"""Builders with size checks before allocation (issue 13, items 3 and 6)."""
from __future__ import annotations

import numpy as np
import pytest

import slimlib
from slimlib import MoEModel
from slimlib.instances import MAX_GROUPS, random_stats
from slimlib.synthetic import synthetic_scores, synthetic_stats


def test_random_stats_samples_without_listing_all_groups():
    s = random_stats(0, 2, 256, 4, max_groups=200)                 # C(256, 4) = 1.75e8: never listed
    for l in range(2):
        g = s.groups(l)
        assert g.shape == (200, 4) and np.all(np.diff(g, axis=1) > 0)
        assert len(np.unique(g, axis=0)) == 200
    with pytest.raises(ValueError, match="max_groups"):
        random_stats(0, 2, 256, 4)                                  # refused before allocating
    with pytest.raises(ValueError, match="max_groups"):
        random_stats(0, 1, 40, 20, max_groups=MAX_GROUPS + 1)


def test_random_stats_small_case_unchanged():
    a = random_stats(3, 2, 5, 2, max_groups=4)
    b = random_stats(3, 2, 5, 2, max_groups=4)
    assert a == b and a.groups(0).shape == (4, 2)


def test_k1_scores_keep_no_pair_tensor():
    m = MoEModel("wide", 2, 512, 1, hidden_size=8, params_per_expert=10)
    _, a, b, _ = synthetic_scores(m, seed=0)
    assert b is None and a.shape == (2, 512)


def test_modern_moe_sampling_is_fast_and_valid():
    m = slimlib.load_model_card("qwen3-moe-like-48x128")
    s = synthetic_stats(m, seed=0, tokens=200)
    assert s.provenance["sampling"] == "sequential"
    assert all(int(s.counts(l).sum()) == 200 for l in range(m.num_layers))
    np.testing.assert_allclose(s.marginals().sum(axis=1), 8.0)
    with pytest.raises(ValueError, match="tokens"):
        synthetic_stats(m, seed=0, tokens=10 ** 9)
