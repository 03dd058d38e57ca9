"""Every malformed input raises one ValueError naming the field and the value."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

import slimlib as sl
from slimlib.instances import random_problem


def net_kwargs(M=2, N=2):
    return dict(server_capacity_bytes=[1e9] * N, server_flops=[1e12] * N, user_capacity_bytes=[1e8] * M,
                user_flops=[1e11] * M, rate_up=np.full((M, N), 1e7), rate_down=np.full((M, N), 1e7),
                backhaul_rate_bps=1e9, backhaul_delay_s=0.005, cloud_flops=1e14)


@pytest.mark.parametrize("field,value,match", [
    ("server_capacity_bytes", [-1.0, 1e9], r"server_capacity_bytes\[0\].*>= 0.*-1"),
    ("server_capacity_bytes", [math.nan, 1e9], r"server_capacity_bytes\[0\].*finite.*nan"),
    ("user_capacity_bytes", [1e8, -5.0], r"user_capacity_bytes\[1\].*>= 0.*-5"),
    ("server_flops", [1e12, 0.0], r"server_flops\[1\].*> 0.*0\.0"),
    ("user_flops", [math.nan, 1.0], r"user_flops\[0\].*finite"),
    ("cloud_flops", -1.0, r"cloud_flops.*> 0.*-1"),
    ("backhaul_rate_bps", math.nan, r"backhaul_rate_bps.*finite.*nan"),
    ("backhaul_delay_s", -0.1, r"backhaul_delay_s.*>= 0.*-0\.1"),
    ("rate_up", [[1e7, -1.0], [1e7, 1e7]], r"rate_up\[0, 1\].*> 0.*-1"),
    ("rate_down", [[1e7, math.inf], [1e7, 1e7]], r"rate_down\[0, 1\].*finite.*inf"),
])
def test_network_bad_numbers(field, value, match):
    kw = net_kwargs()
    kw[field] = value
    with pytest.raises(ValueError, match=match):
        sl.Network(**kw)


@pytest.mark.parametrize("field,value,match", [
    ("rate_up", np.full((3, 2), 1e7), r"rate_up.*shape \(2, 2\), has \(3, 2\)"),
    ("rate_down", np.full((2, 3), 1e7), r"rate_down.*shape \(2, 2\), has \(2, 3\)"),
    ("server_flops", [1e12], r"server_flops.*shape \(2,\), has \(1,\)"),
    ("user_flops", [1e12] * 3, r"user_flops.*shape \(2,\), has \(3,\)"),
    ("user_weight", [1.0], r"user_weight.*shape"),
])
def test_network_shape_mismatch(field, value, match):
    kw = net_kwargs()
    kw[field] = value
    with pytest.raises(ValueError, match=match):
        sl.Network(**kw)


@pytest.mark.parametrize("groups,probs,match", [
    ([[[0], [1]]], [[0.5, 0.6]], r"probs\[0\].*sum to 1.*1\.1"),
    ([[[0], [1]]], [[1.2, -0.2]], r"probs\[0\]\[1\].*>= 0.*-0\.2"),
    ([[[0, 1], [1]]], [[0.5, 0.5]], r"groups\[0\]"),
])
def test_stats_bad_probabilities_and_groups_k1(groups, probs, match):
    with pytest.raises(ValueError, match=match):
        sl.ActivationStats(3, 1, groups, probs=probs)


@pytest.mark.parametrize("groups,match", [
    ([[[0, 1, 2]]], r"groups\[0\].*K=2"),                 # size != K
    ([[[1, 1]]], r"groups\[0\]\[0\].*repeats.*\[1, 1\]"),  # repeated expert
    ([[[0, 3]]], r"groups\[0\]\[0\].*0\.\.2.*\[0, 3\]"),   # out of range
    ([[[0, -1]]], r"groups\[0\]\[0\].*0\.\.2"),
    ([[[0, 1], [1, 0]]], r"groups\[0\].*twice"),           # same group listed twice
])
def test_stats_bad_groups_k2(groups, match):
    probs = [[1.0 / len(groups[0])] * len(groups[0])]
    with pytest.raises(ValueError, match=match):
        sl.ActivationStats(3, 2, groups, probs=probs)


def test_stats_probs_tolerance_is_1e_6():
    sl.ActivationStats(2, 1, [[[0], [1]]], probs=[[0.5, 0.5 + 9e-7]])
    with pytest.raises(ValueError, match="sum to 1"):
        sl.ActivationStats(2, 1, [[[0], [1]]], probs=[[0.5, 0.5 + 2e-6]])


def test_model_card_bad_values():
    with pytest.raises(ValueError, match=r"MoEModel.top_k.*<= num_experts=4.*5"):
        sl.MoEModel("m", 2, 4, 5, 8, 100)
    with pytest.raises(ValueError, match=r"MoEModel.bytes_per_param.*> 0.*-2"):
        sl.MoEModel("m", 2, 4, 1, 8, 100, bytes_per_param=-2)
    with pytest.raises(ValueError, match=r"MoEModel.num_layers.*integer.*1\.5"):
        sl.MoEModel("m", 1.5, 4, 1, 8, 100)


def test_problem_stats_must_match_model():
    p = random_problem(0, num_experts=3)
    other = sl.ActivationStats(4, 1, [[[0], [1], [2], [3]]] * 2, probs=[[.25] * 4] * 2)
    with pytest.raises(ValueError, match=r"Problem.stats\[0\].num_experts.*model 'random'.*4"):
        p.replace(stats=[other] * p.num_users)
    with pytest.raises(ValueError, match=r"Problem.stats.*one ActivationStats per user"):
        p.replace(stats=p.stats[:1] * (p.num_users + 1))


def test_problem_user_model_out_of_range():
    p = random_problem(0)
    with pytest.raises(ValueError, match=r"user_model\[1\].*5"):
        p.replace(user_model=[0, 5])


def test_parameters_bad_and_unknown():
    with pytest.raises(ValueError, match=r"Parameters.bandwidth_hz.*> 0.*-1"):
        sl.Parameters(bandwidth_hz=-1)
    with pytest.raises(ValueError, match=r"Parameters.bandwith_hz.*unknown parameter"):
        sl.load_parameters().replace(bandwith_hz=5)
    with pytest.raises(ValueError, match=r"distance_min_m.*<= distance_max_m"):
        sl.Parameters(distance_min_m=400)


def write(tmp_path, data):
    path = tmp_path / "f.json"
    path.write_text(json.dumps(data))
    return path


def test_json_unknown_field(tmp_path):
    data = sl.load_model_card("switch-base-8").to_dict()
    data["num_expert"] = 8
    with pytest.raises(ValueError, match=r"model-card.num_expert.*unknown field"):
        sl.load(write(tmp_path, data))


def test_json_missing_field(tmp_path):
    data = sl.load_model_card("switch-base-8").to_dict()
    del data["top_k"]
    with pytest.raises(ValueError, match=r"model-card.top_k.*missing required field"):
        sl.load(write(tmp_path, data))


def test_json_unknown_kind_and_version(tmp_path):
    data = sl.load_model_card("switch-base-8").to_dict()
    with pytest.raises(ValueError, match=r"kind.*unknown kind.*'model_card'"):
        sl.load(write(tmp_path, {**data, "kind": "model_card"}))
    with pytest.raises(ValueError, match=r"model-card.version.*unsupported version.*7"):
        sl.load(write(tmp_path, {**data, "version": 7}))


def test_json_not_json_and_missing_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        sl.load(bad)
    with pytest.raises(ValueError, match="no such file"):
        sl.load(tmp_path / "absent.json")


def test_json_stats_layer_fields(tmp_path):
    data = random_problem(0).stats[0].to_dict()
    data["layers"][1]["prob"] = data["layers"][1].pop("probs")
    with pytest.raises(ValueError, match=r"layers\[1\].prob.*unknown field"):
        sl.load(write(tmp_path, data))


def test_json_network_shape_mismatch(tmp_path):
    data = random_problem(0, num_users=2, num_servers=2).network.to_dict()
    data["rate_up"] = data["rate_up"][:1]
    with pytest.raises(ValueError, match=r"rate_up.*shape \(2, 2\), has \(1, 2\)"):
        sl.load(write(tmp_path, data))


def test_json_placement_index_out_of_range(tmp_path):
    p = random_problem(0)
    data = sl.Placement.empty(p).to_dict()
    data["server"][0] = [[0, 0, 99]]
    with pytest.raises(ValueError, match=r"placement.server\[0\].*inside shape"):
        sl.load(write(tmp_path, data))


def test_cli_reports_bad_input_without_traceback(tmp_path, capsys):
    from slimlib.cli import main
    bad = write(tmp_path, {"kind": "problem", "version": 1})
    with pytest.raises(SystemExit) as exc:
        main(["solve", str(bad), "--method", "none"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "problem.models: missing required field" in err and "Traceback" not in err
    with pytest.raises(SystemExit):
        main(["solve", str(bad), "--method", "nope"])
