"""slimlib.widgets.explore: the static face (precomputed frames) and the live ipywidgets panel."""
from __future__ import annotations

import html
import json
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from slimlib.widgets import explore, static_mode  # noqa: E402


def _draw_counter():
    calls = []

    def draw(a, b=0, *, colour="k"):
        calls.append((a, b, colour))
        fig, ax = plt.subplots(figsize=(2, 1.5))
        ax.plot([0, 1], [0, a], color=colour)       # the picture depends on a only
        ax.set_title(f"a={a}")
        return fig
    return draw, calls


def _data(doc: str) -> dict:
    m = re.search(r'<script type="application/json" class="slimlib-frames">(.*?)</script>', doc, re.S)
    return json.loads(m.group(1))


def test_static_face_has_one_frame_per_combination_and_one_slider_per_varying_parameter():
    draw, calls = _draw_counter()
    grid = {"a": [1, 2, 3], "b": [0.5, 1.5]}
    doc = explore(draw, grid, mode="static", title="T & <b>", colour="r").data
    assert len(calls) == 6 and all(c[2] == "r" for c in calls)          # fixed kwargs passed through
    assert 'data-slimlib-explorer="6"' in doc
    sliders = re.findall(r'<input type="range" data-slimlib-control min="0" max="(\d+)"', doc)
    assert sliders == ["2", "1"]
    data = _data(doc)
    assert sorted(data["frames"]) == sorted(f"{i}-{j}" for i in range(3) for j in range(2))
    # the picture depends on ``a`` only: frames that differ only in ``b`` share one image
    assert len(data["images"]) == 3
    assert data["frames"]["1-0"] == data["frames"]["1-1"] != data["frames"]["0-0"]
    assert all(uri.startswith("data:image/png;base64,") for uri in data["images"])
    first = re.search(r'<img class="slimlib-frame"[^>]* data-key="0-0" src="([^"]+)"', doc)
    assert first and first.group(1) == data["images"][data["frames"]["0-0"]]
    assert "T &amp; &lt;b&gt;" in doc and "T & <b>" not in doc        # the title is escaped
    labels = re.findall(r'data-labels="([^"]+)"', doc)
    assert [json.loads(html.unescape(x)) for x in labels] == [["1", "2", "3"], ["0.5", "1.5"]]
    assert "run the notebook for the full widget panel" in doc


def test_single_valued_parameters_are_shown_but_get_no_slider():
    draw, calls = _draw_counter()
    doc = explore(draw, {"a": [1, 2], "b": [7]}, mode="static").data
    assert re.findall(r'<input type="range"', doc) == ['<input type="range"']
    assert "b = 7" in doc
    assert sorted(_data(doc)["frames"]) == ["0", "1"]
    assert {c[1] for c in calls} == {7}


def test_two_identical_explorers_on_one_page_do_not_share_an_id():
    draw, _ = _draw_counter()
    ids = [re.search(r'id="([^"]+)"', explore(draw, {"a": [1, 2]}, mode="static").data).group(1) for _ in range(2)]
    assert ids[0] != ids[1]


def test_the_inline_script_finds_its_own_explorer_and_needs_no_library():
    draw, _ = _draw_counter()
    doc = explore(draw, {"a": [1, 2]}, mode="static").data
    script = doc.rsplit("<script>", 1)[1]
    assert "document.currentScript.parentNode" in script
    assert "require(" not in script and "http" not in script


@pytest.mark.parametrize("grid, field", [({}, "grid"), ([1, 2], "grid"), ({"a": []}, "grid['a']")])
def test_bad_grid_raises_one_value_error_naming_the_field(grid, field):
    draw, _ = _draw_counter()
    with pytest.raises(ValueError, match=re.escape(field)):
        explore(draw, grid, mode="static")


def test_bad_mode_is_refused():
    draw, _ = _draw_counter()
    with pytest.raises(ValueError, match="mode"):
        explore(draw, {"a": [1]}, mode="frozen")


def test_auto_mode_is_static_while_the_book_builds(monkeypatch):
    monkeypatch.setenv("SLIMLIB_STATIC", "1")
    assert static_mode()
    draw, _ = _draw_counter()
    assert "data-slimlib-explorer" in explore(draw, {"a": [1, 2]}).data


def test_live_face_is_an_ipywidgets_panel_that_redraws_on_change(monkeypatch):
    W = pytest.importorskip("ipywidgets")
    monkeypatch.delenv("SLIMLIB_STATIC", raising=False)
    draw, calls = _draw_counter()
    panel = explore(draw, {"a": [1, 2, 3], "colour": ["k", "b"]}, title="live")
    assert isinstance(panel, W.VBox)
    slider = next(c for c in panel.children if isinstance(c, W.SelectionSlider))
    dropdown = next(c for c in panel.children if isinstance(c, W.Dropdown))
    assert slider.continuous_update is False and slider.description == "a"
    assert dropdown.description == "colour"
    n = len(calls)
    slider.value = 3
    assert calls[-1] == (3, 0, "k") and len(calls) == n + 1
    dropdown.value = "b"
    assert calls[-1] == (3, 0, "b")


def test_categories_get_a_dropdown_and_numbers_a_slider():
    draw, _ = _draw_counter()
    doc = explore(draw, {"a": [1, 2], "colour": ["k", "b", "r"]}, mode="static").data
    assert len(re.findall(r'<input type="range"', doc)) == 1
    select = re.search(r'<select data-slimlib-control data-index="1" aria-label="colour">(.*?)</select>', doc)
    assert select and re.findall(r'<option value="(\d)"[^>]*>(\w)</option>', select.group(1)) == [
        ("0", "k"), ("1", "b"), ("2", "r")]


def test_only_valid_combinations_get_frames_and_dead_values_are_not_offered():
    draw, calls = _draw_counter()

    def draw_or_none(a, b=0, colour="k"):
        return None if (a, colour) == (2, "b") else draw(a, b, colour=colour)

    doc = explore(draw_or_none, {"a": [1, 2, 3], "colour": ["k", "b"], "b": [0, 9]},
                  valid=lambda a, colour, b: b == 0, mode="static").data
    data = _data(doc)
    # (2, "b") has no frame; b = 9 is refused everywhere, so b is printed, not offered
    assert sorted(data["frames"]) == ["0-0", "0-1", "1-0", "2-0", "2-1"]
    assert "b = 0" in doc and 'aria-label="b"' not in doc
    assert all(c[1] == 0 for c in calls)
    # the script moves the other controls to the nearest valid frame
    assert "nearest(" in doc


def test_start_opens_on_the_given_frame_and_a_bad_start_names_the_field():
    draw, _ = _draw_counter()
    doc = explore(draw, {"a": [1, 2, 3], "b": [0.5, 1.5]}, start={"a": 3, "b": 1.5}, mode="static").data
    first = re.search(r'<img class="slimlib-frame"[^>]* data-key="([^"]+)"', doc).group(1)
    assert first == "2-1"
    assert re.search(r'max="2" step="1" value="2"', doc)
    with pytest.raises(ValueError, match=re.escape("start['a']")):
        explore(draw, {"a": [1, 2]}, start={"a": 5}, mode="static")
    with pytest.raises(ValueError, match="start"):
        explore(draw, {"a": [1, 2]}, start={"z": 1}, mode="static")


def test_a_grid_with_no_valid_combination_is_refused():
    draw, _ = _draw_counter()
    with pytest.raises(ValueError, match="no valid combination"):
        explore(draw, {"a": [1, 2]}, valid=lambda a: False, mode="static")


def test_activation_panel_grid_offers_every_layer_and_only_existing_statistics():
    from slimlib.plotting import moe as moe_plots
    spec = moe_plots.activation_panel_grid(["moe-llava-phi2-2.7b-4e", "switch-base-8"],
                                           ["synthetic", "measured-tiny"])
    grid, valid = spec["grid"], spec["valid"]
    assert grid["layer"] == list(range(16))                    # Phi2 has 16 MoE layers
    assert valid("moe-llava-phi2-2.7b-4e", "synthetic", 15)
    assert not valid("switch-base-8", "synthetic", 12)         # 12 layers: 0..11
    assert valid("switch-base-8", "synthetic", 11)
    assert not valid("moe-llava-phi2-2.7b-4e", "measured-tiny", 0)   # no such statistics
    with pytest.raises(ValueError, match="models"):
        moe_plots.activation_panel_grid(["moe-llava-phi2-2.7b-4e"], ["measured-tiny"])
