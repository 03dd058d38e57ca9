"""House style of the book's figures: drawn at the column width, text ≥ 9 px as shown, legends off the data.

A figure wider than the text column (``COLUMN_WIDTH_IN``) would be shrunk by
the browser and its text with it; every font of these figures is at least
``MIN_FONT_PT`` (9.3 px at 96 px per inch).
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

import slimlib as sl  # noqa: E402
from slimlib.plotting import COLUMN_WIDTH_IN, MIN_FONT_PT, new_figure, schematics, system  # noqa: E402


def _texts(fig):
    return [t for t in fig.findobj(matplotlib.text.Text) if t.get_text().strip() and t.get_visible()]


def _figures():
    params = sl.load_parameters()
    models = [sl.load_model_card("switch-base-8"), sl.load_model_card("moe-llava-phi2-2.7b-4e")]
    yield "network", schematics.draw_network_figure()
    yield "system", schematics.draw_system()
    yield "call latencies", system.draw_call_latencies(models[0], params, 100.0, 10.0)
    yield "latency vs distance", system.draw_latency_vs_distance(models, params)


@pytest.mark.parametrize("name, fig", list(_figures()), ids=lambda x: x if isinstance(x, str) else "")
def test_drawn_at_the_column_width_with_legible_text(name, fig):
    try:
        assert fig.get_figwidth() <= COLUMN_WIDTH_IN + 1e-9, name
        small = [(t.get_text()[:30], t.get_fontsize()) for t in _texts(fig) if t.get_fontsize() < MIN_FONT_PT - 1e-9]
        assert not small, f"{name}: text below {MIN_FONT_PT} pt: {small[:5]}"
    finally:
        plt.close(fig)


def test_new_figure_scales_a_wide_figure_down_to_the_column():
    fig, _ = new_figure(1, 3, figsize=(10.5, 3.0))
    assert fig.get_figwidth() == pytest.approx(COLUMN_WIDTH_IN)
    assert fig.get_figheight() == pytest.approx(3.0 * COLUMN_WIDTH_IN / 10.5)
    plt.close(fig)
    fig, _ = new_figure(figsize=(5.0, 3.0))
    assert (fig.get_figwidth(), fig.get_figheight()) == (5.0, 3.0)
    plt.close(fig)


def test_latency_vs_distance_keeps_its_legend_off_the_axes_and_marks_each_series():
    params = sl.load_parameters()
    fig = system.draw_latency_vs_distance([sl.load_model_card("switch-base-8")], params)
    try:
        ax = fig.axes[0]
        assert ax.get_legend() is None and fig.legends, "legend must be the figure's, outside the axes"
        fig.canvas.draw()
        leg = fig.legends[0].get_window_extent()
        assert not leg.overlaps(ax.get_window_extent()), "legend overlaps the data area"
        styles = {(l.get_color(), l.get_marker()) for l in ax.get_lines()}
        assert len(styles) == 3 and len({m for _, m in styles}) == 3 and len({c for c, _ in styles}) == 3
    finally:
        plt.close(fig)


def _tight_width_in(fig) -> float:
    """Width of the PNG the notebook shows (``bbox_inches="tight"`` grows with artists outside the figure)."""
    import io
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=50, bbox_inches="tight")
    from PIL import Image
    return Image.open(io.BytesIO(buf.getvalue())).size[0] / 50


def test_experiment_figures_stay_within_the_column_legend_included():
    from slimlib.experiments import ResultTable
    from slimlib.plotting import experiments as P
    methods = ["greedy", "decomposition", "accelerated", "blind-greedy", "popularity",
               "coordinated-popularity", "random", "none", "exact"]
    rows = [dict(panel=p, value=v, method=m, seed=s, latency_s=0.01 * (1 + i) / v, comm_latency_s=0.005,
                 runtime_s=0.1, status="optimal", bytes_per_param=4.0, stats_source="synthetic", top_k=1,
                 model=p, bound_s=0.009 / v)
            for p in ["switch-base-16", "switch-base-64", "switch-base-128"] for v in (0.5, 1.5)
            for i, m in enumerate(methods) for s in (0, 1)]
    t = ResultTable(rows, dict(xlabel="edge storage per server (GB)", y="latency_s", seeds=[0, 1],
                               stats_source=["synthetic"]))
    for fig in [P.draw_fig6(t), P.draw_fig8(t), P.draw_sweep(t)]:
        try:
            assert _tight_width_in(fig) <= COLUMN_WIDTH_IN + 0.2     # + the 0.1 in padding each side
            small = [t.get_text()[:30] for t in _texts(fig) if t.get_fontsize() < MIN_FONT_PT - 1e-9]
            assert not small
        finally:
            plt.close(fig)


def test_one_style_table_for_methods_policies_and_series():
    """Methods, re-placement policies and the live network's series all read ``SERIES_STYLE``."""
    from slimlib.online import POLICIES
    from slimlib.plotting import SERIES_STYLE, online, series_style, simulation
    assert set(sl.methods()) | set(POLICIES) <= set(SERIES_STYLE)       # every name has its look
    for name, st in SERIES_STYLE.items():
        assert set(st) == {"color", "marker", "linestyle", "label"}, name
    for p in POLICIES:
        assert online.policy_style(p) == series_style(p) == SERIES_STYLE[p]
    assert online.policy_style("budgeted", 5.0)["label"] == "budgeted, B = 5 MB"
    for name in ("load-aware", "decomposition", "plain", "greedy"):
        assert simulation._style(name) == SERIES_STYLE[name]
    assert simulation._style("expected")["marker"] == "p"             # live-network series always have a marker
    assert series_style("no-such") == {"label": "no-such"}
    st = series_style("greedy")
    st["color"] = "red"
    assert SERIES_STYLE["greedy"]["color"] != "red"                    # a copy, not the table
    for mod in (online, simulation):
        assert not [k for k in vars(mod) if k.endswith("_STYLE")], mod.__name__
