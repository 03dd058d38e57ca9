"""``python -m slimlib figures`` on Figures 2–5 (the non-sweep figures) and the figure registry.

The CLI is run twice on ``fig2,fig3,fig4,fig5`` (about 5 s each): the files
exist, the CSVs hold the numbers of the figures (frequencies and
co-activations of the statistics; routing-case latencies of the evaluator),
and the second run writes byte-identical files.
"""
from __future__ import annotations

import csv
import math

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import slimlib  # noqa: E402
from slimlib.experiments import cli as E  # noqa: E402
from slimlib import theory as T  # noqa: E402
from slimlib import theory_study as TS  # noqa: E402
from slimlib.cli import main  # noqa: E402
from slimlib.plotting import moe, schematics  # noqa: E402

NAMES = ["fig2", "fig3", "fig4", "fig5"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = []
    for k in range(2):
        d = tmp_path_factory.mktemp(f"figs{k}")
        assert main(["figures", "--out", str(d), "--only", ",".join(NAMES)]) == 0
        out.append(d)
    return out


def _rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        r = csv.DictReader(f)
        return r.fieldnames, list(r)


def test_registry_names():
    assert E.figure_names() == [f"fig{i}" for i in range(1, 12)] + ["table1"]
    assert set(E.FIXED_FIGURES) == set(NAMES)
    assert not set(E.FIXED_FIGURES) & set(E.FIGURES)


def test_files_exist(runs):
    d = runs[0]
    for name in NAMES:
        png = (d / f"{name}.png").read_bytes()
        assert png.startswith(PNG_MAGIC) and len(png) > 10_000
        assert (d / f"{name}.svg").read_text(encoding="utf-8").lstrip().startswith("<?xml")
    # the schematics have no data, hence no CSV
    assert not (d / "fig3.csv").exists() and not (d / "fig4.csv").exists()
    assert sorted(p.name for p in d.iterdir()) == sorted(
        [f"{n}.{e}" for n in NAMES for e in ("png", "svg")] + ["fig2.csv", "fig5.csv"])


def test_deterministic(runs):
    a, b = runs
    for p in sorted(a.iterdir()):
        assert p.read_bytes() == (b / p.name).read_bytes(), p.name


def test_fig2_csv(runs):
    cols, rows = _rows(runs[0] / "fig2.csv")
    assert cols == ["quantity", "layer", "expert", "partner", "probability", "drawn", "model", "stats_source"]
    stats = slimlib.load_stats(E.FIG2_STATS)
    L, Ex, K = stats.num_layers, stats.num_experts, stats.top_k
    assert (L, Ex, K) == (16, 4, 2) and stats.model == "moe-llava-phi2-2.7b-4e"
    freq = [r for r in rows if r["quantity"] == "frequency"]
    co = [r for r in rows if r["quantity"] == "coactivation"]
    assert len(freq) == L * Ex and len(co) == L * Ex * (Ex - 1) // 2 and len(rows) == len(freq) + len(co)
    P = np.zeros((L, Ex))
    for r in freq:
        assert r["partner"] == "" and r["drawn"] == "1" and r["stats_source"] == "synthetic"
        P[int(r["layer"]), int(r["expert"])] = float(r["probability"])
    assert np.array_equal(P, stats.marginals())          # repr floats: exact round trip
    assert np.allclose(P.sum(axis=1), K)                 # each layer's frequencies sum to K
    for r in co:
        l, i, j = int(r["layer"]), int(r["expert"]), int(r["partner"])
        assert i < j and float(r["probability"]) == stats.coactivation(l)[i, j]
        assert r["drawn"] == str(int(l == E.FIG2_LAYER))
    # with K = 2 the pairs of one layer are its groups: they sum to 1
    lay = [float(r["probability"]) for r in co if int(r["layer"]) == E.FIG2_LAYER]
    assert math.isclose(sum(lay), 1.0, rel_tol=1e-9)


def test_fig5_csv(runs):
    cols, rows = _rows(runs[0] / "fig5.csv")
    assert cols[:8] == ["panel", "case", "title", "expert_i_at", "expert_j_at", "tau_i_s", "tau_j_s",
                        "group_latency_s"]
    for c in ("call_local_s", "call_edge_1_s", "call_edge_2_s", "call_cloud_s", "cloud_via_server",
              "distance_server_1_m", "distance_server_2_m", "model"):
        assert c in cols
    cases = TS.routing_cases()
    assert [r["case"] for r in rows] == [c.key for c in cases]
    assert [r["panel"] for r in rows] == list("abcde")
    for r, c in zip(rows, cases):
        ti, tj, g = float(r["tau_i_s"]), float(r["tau_j_s"]), float(r["group_latency_s"])
        assert g == max(ti, tj) == slimlib.average_latency(c.problem, c.placement)
        assert (r["expert_i_at"], r["expert_j_at"]) == c.where
        calls = {"device": float(r["call_local_s"]), "server 1": float(r["call_edge_1_s"]),
                 "server 2": float(r["call_edge_2_s"]), "cloud": float(r["call_cloud_s"])}
        assert (ti, tj) == (calls[c.where[0]], calls[c.where[1]])
    # the figure's ordering: device < nearer server < farther server < cloud
    t = rows[0]
    assert float(t["call_local_s"]) < float(t["call_edge_1_s"]) < float(t["call_edge_2_s"]) < float(t["call_cloud_s"])
    assert (float(t["distance_server_1_m"]), float(t["distance_server_2_m"])) == (100.0, 250.0)


def test_only_error_lists_every_name(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["figures", "--out", str(tmp_path), "--only", "fig2,figX"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--only" in err and "figX" in err
    assert "known: " + ",".join(E.figure_names()) in err
    assert not any(tmp_path.iterdir())                  # names are checked before anything is written


def test_data_functions_small():
    # K = 1: frequencies only; bad layer -> one ValueError naming it
    routes = np.array([[[0], [1]], [[0], [2]], [[1], [2]]])          # (T=3, L=2, K=1)
    s = slimlib.ActivationStats.from_routes(routes, 3, model="toy", provenance={"source": "synthetic"})
    rows = moe.expert_heatmap_data(s, layer=1)
    assert [r["quantity"] for r in rows] == ["frequency"] * 6
    assert [r["probability"] for r in rows if r["layer"] == 0] == pytest.approx([2 / 3, 1 / 3, 0.0])
    with pytest.raises(ValueError, match="layer"):
        moe.expert_heatmap_data(s, layer=2)
    assert len(schematics.routing_cases_data(TS.routing_cases()[:2])) == 2
