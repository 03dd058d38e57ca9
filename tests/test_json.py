"""JSON round trips are exact for every kind of file."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import slimlib as sl
from slimlib.instances import random_problem
from conftest import tiny_problems


@pytest.mark.parametrize("name", sl.model_card_names())
def test_model_cards_round_trip(tmp_path, name):
    m = sl.load_model_card(name)
    assert sl.load(sl.save(m, tmp_path / "m.json")) == m


def test_shipped_cards_match_spec_table():
    sw = sl.load_model_card("switch-base-8")
    assert (sw.num_layers, sw.num_experts, sw.top_k, sw.hidden_size) == (12, 8, 1, 768)
    assert sw.expert_bytes == 2 * 768 * 3072 * 4              # 18.9 MB in fp32
    assert sw.total_expert_bytes == pytest.approx(1.812e9, rel=1e-3)  # more than one 1.5 GB server
    phi = sl.load_model_card("moe-llava-phi2-2.7b-4e")
    assert (phi.num_layers, phi.num_experts, phi.top_k, phi.params_per_expert) == (16, 4, 2, 2 * 2560 * 10240)


def test_parameters_round_trip(tmp_path):
    p = sl.load_parameters()
    q = sl.load(sl.save(p, tmp_path / "p.json"))
    assert q == p and q.table() == p.table()
    assert p.table()[0]["display"] == "10 MHz"


@settings(max_examples=60)
@given(tiny_problems(), st.integers(0, 10**6))
def test_problem_and_placement_round_trip(tmp_path_factory, problem, seed):
    d = tmp_path_factory.mktemp("rt")
    q = sl.load(sl.save(problem, d / "p.json"))
    assert q.to_dict() == problem.to_dict()
    pl = sl.Placement.empty(problem)
    rng = np.random.default_rng(seed)
    pl.server[0] = rng.random(pl.server[0].shape) < 0.3
    back = sl.load(sl.save(pl, d / "x.json"))
    assert back == pl
    if pl.is_feasible(problem):
        assert sl.average_latency(q, back) == sl.average_latency(problem, pl)


def test_stats_counts_round_trip_and_marginals(tmp_path):
    routes = np.array([[[0, 1]], [[1, 0]], [[2, 1]], [[0, 1]]])     # 4 tokens, 1 layer, K=2
    s = sl.ActivationStats.from_routes(routes, 3, model="toy", provenance={"source": "measured"})
    assert s.counts(0).tolist() == [3, 1] and s.groups(0).tolist() == [[0, 1], [1, 2]]
    assert s.marginals().tolist() == [[0.75, 1.0, 0.25]]
    assert s.coactivation(0)[0, 1] == 0.75 and s.coactivation(0)[1, 2] == 0.25
    back = sl.load(sl.save(s, tmp_path / "s.json"))
    assert back == s and back.provenance == {"tokens": 4, "source": "measured"}
