"""U-shaped split inference: layer split and its own latency function (Fig. 1 baseline)."""
from __future__ import annotations

import numpy as np
import pytest

import slimlib
from slimlib import ActivationStats, MoEModel, Network, Problem
from slimlib import split_inference as si
from slimlib.instances import random_problem

H = 8 * 1000 * 2        # hidden bits: d_model 1000, 2 bytes per activation
F = 2 * 10**6           # FLOP per expert


def _problem(device_bytes, server_bytes, L=4, E=2, K=1, rates=((10e6, 40e6),), weights=None):
    mod = MoEModel("toy", L, E, K, hidden_size=1000, params_per_expert=10**6, bytes_per_param=1, act_bytes=2)
    st = ActivationStats(E, K, [np.arange(E)[:, None] if K == 1 else [[0, 1]]] * L,
                         probs=[np.full(E, 1 / E)] * L if K == 1 else [[1.0]] * L)
    M = len(rates)
    net = Network([server_bytes], [20e12], [device_bytes] * M, [1e12] * M, [[r[0]] for r in rates],
                  [[r[1]] for r in rates], backhaul_rate_bps=1e9, backhaul_delay_s=5e-3, cloud_flops=100e12,
                  user_weight=weights)
    return Problem(mod, net, st)


def test_hand_computed_split():
    # layer = 2 experts x 1 MB = 2 MB; device 2.5 MB -> 1 layer; server 4 MB -> 2 layers; cloud 1 layer
    p = _problem(2.5e6, 4e6)
    plan = si.u_shaped_plan(p, 0)
    assert (plan.device_layers, plan.edge_layers, plan.cloud_layers, plan.server) == (1, 2, 1, 0)
    radio = H / 10e6 + H / 40e6
    bh = 2 * H / 1e9 + 2 * 5e-3
    comm = radio + bh
    total = comm + F / 1e12 + 2 * F / 20e12 + F / 100e12
    assert si.u_shaped_communication_latency(p) == pytest.approx(comm, rel=1e-12)
    assert si.u_shaped_latency(p) == pytest.approx(total, rel=1e-12)
    assert si.u_shaped_user_latency(p).shape == (1,)


def test_all_on_device_has_no_communication():
    p = _problem(8e6, 0.0)
    plan = si.u_shaped_plan(p, 0)
    assert (plan.device_layers, plan.edge_layers, plan.cloud_layers) == (4, 0, 0)
    assert si.u_shaped_communication_latency(p) == 0.0
    assert si.u_shaped_latency(p) == pytest.approx(4 * F / 1e12, rel=1e-12)


def test_edge_holds_the_rest_no_backhaul():
    p = _problem(0.0, 100e6)
    assert si.u_shaped_communication_latency(p) == pytest.approx(H / 10e6 + H / 40e6, rel=1e-12)


def test_cloud_only():
    p = _problem(1e6, 1e6)                 # not even one whole layer fits anywhere
    plan = si.u_shaped_plan(p, 0)
    assert (plan.device_layers, plan.edge_layers, plan.cloud_layers) == (0, 0, 4)
    # once per token, whatever the number of layers: same as ONE cloud call of the evaluator
    c = slimlib.call_latency(p)
    assert si.u_shaped_communication_latency(p) == pytest.approx(c.cloud_comm[0], rel=1e-12)


def test_top2_layer_costs_one_expert_compute():
    p = _problem(0.0, 100e6, K=2)
    assert si.u_shaped_latency(p) - si.u_shaped_communication_latency(p) == pytest.approx(4 * F / 20e12, rel=1e-9)


def test_weighted_average_and_best_server():
    p = _problem(0.0, 0.0, rates=((10e6, 40e6), (5e6, 5e6)), weights=[1.0, 3.0])
    per = si.u_shaped_user_latency(p, communication=True)
    assert si.u_shaped_communication_latency(p) == pytest.approx((per[0] + 3 * per[1]) / 4, rel=1e-12)
    q = random_problem(4, num_users=3, num_servers=3)
    assert [si.u_shaped_plan(q, m).server for m in range(3)] == slimlib.latency.best_server(q).tolist()


def test_cheaper_than_per_layer_cloud_calls():
    """With nothing cached, split inference pays one round trip, expert caching one per layer."""
    p = _problem(0.0, 0.0)
    none = slimlib.Placement.empty(p)
    assert slimlib.communication_latency(p, none) == pytest.approx(4 * si.u_shaped_communication_latency(p), rel=1e-12)


def test_placement_view():
    p = _problem(2.5e6, 4e6)
    pl = si.u_shaped_placement(p)
    assert pl.device[0][:1].all() and not pl.device[0][1:].any()
    assert pl.server[0][0, 1:3].all() and not pl.server[0][0, [0, 3]].any()
    assert pl.is_feasible(p)


def test_bad_user():
    with pytest.raises(ValueError, match="user"):
        si.u_shaped_plan(_problem(0.0, 0.0), 3)
