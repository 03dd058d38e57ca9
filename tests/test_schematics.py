"""Figures 4–5 and the structure widget (slimlib.plotting.schematics, chapter *Problem and structure*)."""
from __future__ import annotations

import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import slimlib as sl  # noqa: E402
from slimlib import theory as T  # noqa: E402
from slimlib import theory_study as TS  # noqa: E402
from slimlib.plotting import schematics as S  # noqa: E402


@pytest.fixture(scope="module")
def cases():
    return TS.routing_cases()


def test_routing_cases_equal_the_evaluator(cases):
    assert [c.key for c in cases] == ["both-local", "local-edge", "same-server", "two-servers", "cloud"]
    for c in cases:
        avg = sl.average_latency(c.problem, c.placement)
        assert c.latency == pytest.approx(avg, rel=1e-14)          # group has probability 1, one user
        assert c.latency == max(c.tau)
        tau = sl.expert_latency(c.problem, c.placement, 0)
        assert c.tau == (tau[0, 0], tau[0, 1])


def test_routing_cases_by_hand(cases):
    p = cases[0].problem
    mod = p.models[0]
    calls = sl.call_latency(p)
    local = 2 * mod.params_per_expert / 1e12                       # F / f_m, Table 1 device 1 TFLOP/s
    assert calls.local[0] == pytest.approx(local, rel=1e-12)
    h = 8 * mod.hidden_size * mod.act_bytes
    net = p.network
    edge = h / net.rate_up[0] + 2 * mod.params_per_expert / 20e12 + h / net.rate_down[0]
    assert calls.edge[0] == pytest.approx(edge, rel=1e-12)
    by = {c.key: c for c in cases}
    assert by["both-local"].latency == pytest.approx(local)
    assert by["local-edge"].latency == pytest.approx(max(local, edge[0]))
    assert by["same-server"].latency == pytest.approx(edge[0])
    assert by["two-servers"].latency == pytest.approx(max(edge))
    assert by["cloud"].latency == pytest.approx(calls.cloud[0])
    assert by["cloud"].where == ("server 1", "cloud")
    assert by["two-servers"].where == ("server 1", "server 2")
    lat = [c.latency for c in cases]
    assert lat[0] < lat[1] == lat[2] < lat[3] < lat[4]


def test_figure5_annotations_are_the_evaluator(cases):
    fig = S.draw_routing_cases(cases)
    shown = {}
    for ax in fig.axes:
        for t in ax.texts:
            gid = t.get_gid()
            if gid and gid.startswith("group-latency:"):
                shown[gid.split(":", 1)[1]] = float(re.search(r"= ([0-9.]+) ms", t.get_text()).group(1))
    plt.close(fig)
    assert set(shown) == {c.key for c in cases}
    for c in cases:
        assert shown[c.key] == round(sl.average_latency(c.problem, c.placement) * 1e3, 3)


def test_figure4_and_widget_draw():
    fig = S.draw_system()
    assert len(fig.axes) == 2
    assert any("local hit" in t.get_text() for t in fig.axes[0].texts)
    plt.close(fig)
    fig = S.draw_gain_path(1, 4, 0)
    assert "never rises" in fig.axes[0].get_title()
    plt.close(fig)
    titles = []
    for seed in range(4):
        fig = S.draw_gain_path(2, 4, seed)
        titles.append(fig.axes[0].get_title())
        plt.close(fig)
    assert any("not submodular" in t for t in titles)


def test_routing_cases_bad_input():
    with pytest.raises(ValueError, match="distance_m"):
        TS.routing_cases(distance_m=(100.0,))
    one = sl.MoEModel("one", 1, 1, 1, 8, 10)
    with pytest.raises(ValueError, match="num_experts"):
        TS.routing_cases(model=one)
