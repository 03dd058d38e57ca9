"""Regression tests for the bad inputs of issue 13 ("What was seen", items 5-7) and issue 12 (items 8, 10).

Every case ends in one ValueError naming the field and the value, before any
large allocation; nothing is coerced silently; ``save`` never leaves a
partial file and never overwrites unless asked.
"""
from __future__ import annotations

import copy
import json
import os
import time
import tracemalloc
import warnings

import numpy as np
import pytest

import slimlib as sl
from slimlib import _validate as V
from slimlib.instances import random_problem


@pytest.fixture(scope="module")
def problem():
    return random_problem(0, num_users=2, num_servers=2, num_experts=3)


def changed(data: dict, path: tuple, value) -> dict:
    out = copy.deepcopy(data)
    node = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return out


@pytest.mark.parametrize("path,value,match", [
    (("network", "rate_up"), True, r"Network.rate_up: must be an array of numbers, not booleans \(got True\)"),
    (("network", "rate_up"), [[True, True], [True, True]], r"Network.rate_up.*not booleans"),
    (("network", "rate_down"), [["1e7", "1e7"], ["1e7", "1e7"]], r"Network.rate_down: must be an array of numbers"),
    (("network", "backhaul_rate_bps"), "1e9", r"Network.backhaul_rate_bps: must be a number \(got '1e9'\)"),
    (("network", "cloud_flops"), True, r"Network.cloud_flops: must be a number \(got True\)"),
    (("network", "user_weight"), [1e308, 1e308], r"Network.user_weight\[0\]: must be at most 1e\+100"),
    (("user_model",), [0, 0.5], r"problem.user_model: must be an array of integers \(got \[0, 0.5\]\)"),
    (("user_model",), [0], r"problem.user_model: must have shape \(2,\), has \(1,\)"),
    (("user_model",), [True, False], r"problem.user_model.*not booleans"),
    (("models",), [], r"problem.models: must not be empty"),
    (("device_cache",), 5, r"problem.device_cache: must be a list \(got 5\)"),
    (("device_cache",), [[]], r"problem.device_cache: .*needs exactly 2"),
    (("device_cache",), [[[0, 9]], []], r"problem.device_cache\[0\]: indices must lie inside shape \(2, 3\)"),
    (("models", 0, "num_layers"), 10 ** 400, r"MoEModel.num_layers: must be at most 1e\+100"),
    (("models", 0, "num_layers"), True, r"MoEModel.num_layers: must be an integer \(got True\)"),
    (("models", 0, "num_layers"), 1.5, r"MoEModel.num_layers: must be an integer \(got 1.5\)"),
    (("models", 0, "top_k"), "1", r"MoEModel.top_k: must be an integer \(got '1'\)"),
    (("stats", 0, "layers", 0, "groups"), [[0.5]], r"groups\[0\].*experts must be integers"),
    (("stats", 0, "layers", 0, "groups"), [[True]], r"groups\[0\].*not booleans"),
    (("stats", 0, "layers", 0, "groups"), [["0"]], r"groups\[0\].*integer experts"),
    (("stats", 0, "layers", 0, "groups"), [[False], [1], [2]], r"groups\[0\].*not booleans"),
    (("stats", 0, "num_experts"), "3", r"ActivationStats.num_experts: must be an integer"),
])
def test_problem_file_cases(tmp_path, problem, path, value, match):
    data = changed(problem.to_dict(), path, value)
    with pytest.raises(ValueError, match=match):
        sl.Problem.from_dict(data)
    f = tmp_path / "p.json"
    f.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"p.json: .*" + match):
        sl.load(f)


def test_every_valid_problem_still_loads_exactly(tmp_path, problem):
    back = sl.load(sl.save(problem, tmp_path / "p.json"))
    assert back.to_dict() == problem.to_dict()
    assert sl.average_latency(back, sl.Placement.empty(back)) == sl.average_latency(problem, sl.Placement.empty(problem))


def test_a_739_byte_file_asking_for_a_billion_experts_allocates_nothing(tmp_path):
    card = sl.load_model_card("switch-base-8").to_dict()
    card["num_experts"] = 10 ** 9
    stats = {"kind": "activation-stats", "version": 1, "num_experts": 10 ** 9, "top_k": 1,
             "layers": [{"groups": [[0]], "probs": [1.0]}] * 12}
    for data, match in ((card, r"MoEModel.num_experts: exceeds the size limit 65536 \(slimlib._validate\) "
                               r"\(got 1000000000\)"),
                        (stats, r"ActivationStats.num_experts: exceeds the size limit 65536")):
        f = tmp_path / "bomb.json"
        f.write_text(json.dumps(data))
        assert f.stat().st_size < 1000
        tracemalloc.start()
        with pytest.raises(ValueError, match=match):
            sl.load(f)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < 10 * 2 ** 20, f"peak {peak} bytes"


def test_limits_on_cells_users_and_placement_shapes(problem):
    with pytest.raises(ValueError, match=r"MoEModel \(num_layers, num_experts\).*size limit 16777216"):
        sl.MoEModel("m", 4096, 65536, 1, 8, 100)
    data = sl.Placement.empty(problem).to_dict()
    data["server_shapes"][0] = [10 ** 4, 4096, 65536]
    with pytest.raises(ValueError, match=r"placement.server_shapes\[0\].*size limit"):
        sl.Placement.from_dict(data)
    with pytest.raises(ValueError, match=r"num_users: exceeds the size limit 1000000"):
        sl.Network.from_parameters(num_users=10 ** 7)


def test_a_file_of_a_million_layers_is_refused_in_well_under_a_second(tmp_path):
    layers = ", ".join(['{"groups": [[0]], "probs": [1.0]}'] * 10 ** 6)
    f = tmp_path / "huge.json"
    f.write_text('{"kind": "activation-stats", "version": 1, "num_experts": 2, "top_k": 1, "layers": ['
                 + layers + "]}")
    assert f.stat().st_size > 30e6
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=r"more than the limit 524288 \(slimlib._validate.MAX_JSON_OBJECTS\)"):
        sl.load(f)
    assert time.perf_counter() - t0 < 2.0
    # a smaller one passes the object count and is refused by the layer limit, before any layer is read
    few = {"kind": "activation-stats", "version": 1, "num_experts": 2, "top_k": 1,
           "layers": [{"groups": [[0]], "probs": [1.0]}] * (V.MAX_LAYERS + 1)}
    with pytest.raises(ValueError, match=r"activation-stats.layers.*size limit 4096"):
        sl.ActivationStats.from_dict(few)


def test_deep_nesting_is_one_message(tmp_path):
    f = tmp_path / "deep.json"
    f.write_text("[" * 200000 + "]" * 200000)
    with pytest.raises(ValueError, match="JSON nested too deeply"):
        sl.load(f)
    stats = ('{"kind":"activation-stats","version":1,"num_experts":2,"top_k":1,"layers":[{"groups":'
             + "[" * 500 + "]" * 500 + ',"probs":[1]}]}')
    with pytest.raises(ValueError, match=r"ActivationStats.groups\[0\]"):
        sl.ActivationStats.from_json(stats)


def test_not_a_file_and_not_json(tmp_path):
    with pytest.raises(ValueError, match="is a folder, not a file"):
        sl.load(tmp_path)
    with pytest.raises(ValueError, match="is not a regular file"):
        sl.load("/dev/zero")
    bad = tmp_path / "bin.json"
    bad.write_bytes(b"\xff\xfe{")
    with pytest.raises(ValueError, match="not UTF-8"):
        sl.load(bad)
    big = tmp_path / "n.json"
    big.write_text('{"kind": "model-card", "version": ' + "9" * 5000 + "}")
    with pytest.raises(ValueError, match="not valid JSON"):
        sl.load(big)


@pytest.mark.parametrize("loader", [sl.load_model_card, sl.load_stats, sl.load_parameters])
@pytest.mark.parametrize("name", ["../parameters/table1", "/etc/passwd", "..", ".hidden", "a/b", "", 5])
def test_data_names_must_be_plain(loader, name):
    with pytest.raises(ValueError, match="must be a plain name"):
        loader(name)


def test_unknown_plain_name_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"model: unknown model card; known: \[.*'switch-base-8'"):
        sl.load_model_card("switch-base-9")


@pytest.mark.parametrize("method,options,match", [
    ("decomposition", {"fill": "maybe"}, r"option fill: must be true or false \(got 'maybe'\)"),
    ("decomposition", {"fill": 1}, r"option fill: must be true or false"),
    ("decomposition", {"max_units": 1.5}, r"option max_units: must be an integer \(got 1.5\)"),
    ("decomposition", {"passes": True}, r"option passes: must be an integer"),
    ("accelerated", {"eps": "0.1"}, r"option eps: must be a number \(got '0.1'\)"),
    ("exact", {"time_limit": "60"}, r"option time_limit: must be a number"),
    ("none", {"eps": 0.1}, r"options.*'eps' is not accepted by method 'none'"),
])
def test_solver_options_are_typed(problem, method, options, match):
    with pytest.raises(ValueError, match=match):
        sl.solve(problem, method, **options)


def test_integral_options_keep_their_result(problem):
    a = sl.solve(problem, "decomposition", passes=1)
    b = sl.solve(problem, "decomposition", passes=1.0)
    assert a == b


def test_max_units_zero_is_a_value_error(problem):
    with pytest.raises(ValueError, match="max_units"):
        sl.solve(problem, "decomposition", max_units=0)


# -- save ------------------------------------------------------------------------------------------
def test_save_refuses_to_overwrite_unless_asked(tmp_path, problem):
    path = sl.save(problem, tmp_path / "p.json")
    before = path.read_bytes()
    with pytest.raises(ValueError, match=r"file exists; pass overwrite=True"):
        sl.save(sl.Placement.empty(problem), path)
    assert path.read_bytes() == before
    sl.save(sl.Placement.empty(problem), path, overwrite=True)
    assert isinstance(sl.load(path), sl.Placement)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.json"]
    assert (path.stat().st_mode & 0o777) == 0o666 & ~_umask()


def _umask():
    m = os.umask(0o022)
    os.umask(m)
    return m


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, problem, monkeypatch):
    good = sl.Placement.empty(problem)
    good.server[0][0, 0, 0] = True
    path = sl.save(good, tmp_path / "x.json")
    before = path.read_bytes()

    def broken(fd):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(ValueError, match=r"path: cannot write: No space left on device"):
        sl.save(sl.Placement.empty(problem), path, overwrite=True)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]


def test_save_checks_its_target(tmp_path, problem):
    with pytest.raises(ValueError, match="is a folder; give a file name"):
        sl.save(problem, tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is not a folder"):
        sl.save(problem, tmp_path / "file" / "p.json")
    with pytest.raises(ValueError, match="overwrite: must be true or false"):
        sl.save(problem, tmp_path / "q.json", overwrite="yes")
    with pytest.raises(ValueError, match="obj: must be one of"):
        sl.save({"kind": "problem"}, tmp_path / "q.json")
    assert sl.load(sl.save(problem, tmp_path / "new" / "deeper" / "p.json")).to_dict() == problem.to_dict()


# -- to_dict / to_json ----------------------------------------------------------------------------
def test_to_json_is_text_and_from_json_reads_it(problem):
    objs = [problem.models[0], problem.stats[0], sl.load_parameters(), problem.network, problem,
            sl.Placement.empty(problem)]
    for obj in objs:
        text = obj.to_json()
        assert isinstance(text, str) and json.loads(text) == obj.to_dict()
        back = type(obj).from_json(text)
        assert back.to_dict() == obj.to_dict()
        assert type(obj).from_json(text.encode()).to_dict() == obj.to_dict()
        assert type(obj).from_dict(obj.to_dict()).to_dict() == obj.to_dict()


def test_the_old_dict_form_warns_and_points_to_the_new_names(problem):
    card = problem.models[0]
    with pytest.warns(DeprecationWarning, match=r"MoEModel.from_json\(dict\) is deprecated.*from_dict"):
        assert sl.MoEModel.from_json(card.to_dict()) == card
    with pytest.raises(TypeError, match=r"use to_dict\(\)\['layers'\]"):
        problem.stats[0].to_json()["layers"]
    assert card.to_json()[0] == "{"                   # plain string indexing still works
    with pytest.raises(ValueError, match="MoEModel.from_json: not valid JSON"):
        sl.MoEModel.from_json("{nope")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sl.MoEModel.from_json(card.to_json())


def test_placement_info_with_an_infinite_gap_is_strict_json(problem, tmp_path):
    pl = sl.Placement.empty(problem)
    pl.info.update(gap=float("inf"), optimal=np.bool_(False), num=np.int64(3), obj=[1, 2])
    text = pl.to_json()
    assert "Infinity" not in text
    assert json.loads(text)["info"] == {"gap": "inf", "optimal": False, "num": 3}


# -- $SLIMLIB_DATA ------------------------------------------------------------------------------
def test_slimlib_data_adds_folders_in_front(tmp_path, monkeypatch):
    shipped = sl.model_card_names()
    mine = tmp_path / "mine"
    (mine / "models").mkdir(parents=True)
    card = sl.MoEModel("my-moe", 2, 4, 1, 8, 100)
    sl.save(card, mine / "models" / "my-moe.json")
    override = sl.load_model_card("switch-base-8").to_dict()
    override["description"] = "mine"
    (mine / "models" / "switch-base-8.json").write_text(json.dumps(override))
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.setenv("SLIMLIB_DATA", os.pathsep.join([str(mine), str(other)]))
    assert sl.data_dirs()[:2] == [mine, other] and len(sl.data_dirs()) == 3
    assert set(sl.model_card_names()) == set(shipped) | {"my-moe"}
    assert sl.load_model_card("my-moe") == card
    assert sl.load_model_card("switch-base-8").description == "mine"     # the front folder wins
    assert sl.load_parameters().bandwidth_hz == 10e6                       # shipped data still there
    assert sl.Network.from_parameters(num_users=2, num_servers=1).num_users == 2
    monkeypatch.setenv("SLIMLIB_DATA", str(tmp_path / "absent"))
    with pytest.raises(ValueError, match="SLIMLIB_DATA: is not a folder"):
        sl.load_parameters()
