"""Parallel, resumable sweeps (slimlib.sweep) and ``python -m slimlib figures --jobs/--scheduler/--fresh``.

One reduced grid of the paper scale (Figure 6 on Switch-base-8, three storage
sizes, three seeds, 3 users and 2 servers, the MILP at every point: 9 points of
about 0.5 s) is run four ways — serially, on two worker processes, on a Dask
``LocalCluster`` bound to 127.0.0.1, and killed mid-sweep then resumed — and
every run must write the same CSV bytes apart from the run-time columns (and
the same PNG, which does not plot run time).  Each CLI run also draws the
figure, and two of them start worker processes; the work itself is about 20 s
of CPU (on 2 cores shared with other jobs the wall time grows with the load).
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from slimlib import experiments as E
from slimlib.cli import main
from slimlib.sweep import Runner, SweepStats, Task, code_version

REDUCED = ["--scale", "paper", "--only", "fig6", "--seeds", "3", "--exact", "all",
           "--set", 'fig6.models=["switch-base-8"]', "--set", "fig6.storage_gb=[0.1,0.3,0.5]",
           "--set", "fig6.num_users=3", "--set", "fig6.num_servers=2"]
NPOINTS = 9
ROOT = Path(__file__).resolve().parents[1]


def _strip_runtime(path) -> str:
    """CSV text without the run-time columns (the only ones allowed to differ between runs)."""
    rows = list(csv.reader(io.StringIO(Path(path).read_text(encoding="utf-8"))))
    keep = [i for i, c in enumerate(rows[0]) if c not in E.RUNTIME_COLUMNS]
    return "\n".join(",".join(r[i] for i in keep) for r in rows)


def _cache_files(out):
    return sorted((Path(out) / "cache" / "fig6").glob("*.json"))


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    out = tmp_path_factory.mktemp("serial")
    assert main(["figures", "--out", str(out), "--jobs", "1", *REDUCED]) == 0
    return out


# -- the runner on its own ---------------------------------------------------------
CALLS: list = []


def _point(p):
    CALLS.append(p["x"])
    return {"x": p["x"], "sq": np.float64(p["x"]) ** 2, "pair": (p["x"], "a"), "nan": float("nan")}


def test_runner_order_normalisation_and_cache(tmp_path):
    tasks = [Task(_point, {"x": x}) for x in (3, 1, 2)]
    CALLS.clear()
    r = Runner(jobs=1, cache_dir=tmp_path, progress=False)
    res = r.run(tasks)
    assert [q["x"] for q in res] == [3, 1, 2] and CALLS == [3, 1, 2]
    assert res[0]["pair"] == [3, "a"] and type(res[0]["sq"]) is float and res[0]["sq"] == 9.0   # JSON round trip
    assert math.isnan(res[0]["nan"])
    files = sorted(tmp_path.iterdir())
    assert len(files) == 3 and all(f.suffix == ".json" for f in files)          # no temporary file left
    body = json.loads((tmp_path / f"{tasks[0].key()}.json").read_text())
    assert body["params"] == {"x": 3} and body["version"] == code_version() and body["result"]["sq"] == 9.0
    # a re-run reads every point back; fresh=True recomputes them; another parameter is another point
    CALLS.clear()
    again = Runner(jobs=1, cache_dir=tmp_path, progress=False)
    assert json.dumps(again.run(tasks)) == json.dumps(res) and CALLS == []
    assert (again.stats.points, again.stats.cached, again.stats.computed) == (3, 3, 0)
    assert Runner(jobs=1, cache_dir=tmp_path, fresh=True, progress=False).run(tasks[:1]) and CALLS == [3]
    assert Task(_point, {"x": 4}).key() != tasks[0].key() != tasks[0].key(version="other code")
    # a foreign or truncated file under a point's name is recomputed, never trusted
    (tmp_path / f"{tasks[1].key()}.json").write_text('{"key": "x", "res')
    CALLS.clear()
    Runner(jobs=1, cache_dir=tmp_path, progress=False).run(tasks)
    assert CALLS == [1]


def test_sweep_stats_and_arguments():
    s = SweepStats(points=10, cached=4, busy_s=12.0, wall_s=6.0)
    assert s.computed == 6 and s.speedup == 2.0
    assert "10 points (6 computed, 4 from the cache)" in s.summary() and "speed-up 2.00x" in s.summary()
    assert math.isnan(SweepStats(points=2, cached=2, wall_s=1.0).speedup)
    with pytest.raises(ValueError, match="jobs"):
        Runner(jobs=0)
    with pytest.raises(ValueError, match="scheduler"):
        Runner(scheduler="tcp://127.0.0.1:9", connect_timeout_s=0.5).connect()


def test_data_side_does_not_import_plotting():
    code = ("import sys, slimlib.experiments as E; E.fig6_data; "
            "bad = [m for m in sys.modules if m.startswith(('slimlib.plotting', 'matplotlib'))]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


# -- the command line ----------------------------------------------------------------
def test_serial_run(serial, capsys):
    t = E.ResultTable.from_csv(serial / "fig6.csv")
    assert len({(r["value"], r["seed"]) for r in t}) == NPOINTS and t.unique("seed") == [0, 1, 2]
    assert len(_cache_files(serial)) == NPOINTS
    # every row says whether the MILP proved optimality at its point
    for r in t:
        ex = t.where(value=r["value"], seed=r["seed"], method="exact")
        assert len(ex) == 1 and r["milp_status"] == ex[0]["status"] == "optimal"


def test_jobs_2_writes_the_same_csv(serial, tmp_path, capsys):
    assert main(["figures", "--out", str(tmp_path), "--jobs", "2", *REDUCED]) == 0
    err = capsys.readouterr().err
    assert f"{NPOINTS} points ({NPOINTS} computed, 0 from the cache)" in err and "2 worker processes" in err
    assert "speed-up" in err and "wall time" in err
    assert _strip_runtime(tmp_path / "fig6.csv") == _strip_runtime(serial / "fig6.csv")
    assert (tmp_path / "fig6.png").read_bytes() == (serial / "fig6.png").read_bytes()


def test_dask_local_cluster_gives_the_serial_results(serial, tmp_path, capsys):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, host="127.0.0.1",
                                  protocol="tcp", dashboard_address=None) as cluster:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        assert main(["figures", "--out", str(tmp_path), "--scheduler", cluster.scheduler_address, *REDUCED]) == 0
    err = capsys.readouterr().err
    assert f"{NPOINTS} points ({NPOINTS} computed" in err and "Dask cluster" in err
    assert _strip_runtime(tmp_path / "fig6.csv") == _strip_runtime(serial / "fig6.csv")


def test_kill_and_resume(serial, tmp_path, capsys):
    env = dict(os.environ, SLIMLIB_PROGRESS="0", MPLBACKEND="Agg")
    cmd = [sys.executable, "-m", "slimlib", "figures", "--out", str(tmp_path), "--jobs", "1", *REDUCED]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while len(_cache_files(tmp_path)) < 3 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)                  # mid-sweep: some points cached, not all
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done = len(_cache_files(tmp_path))
    assert 3 <= done < NPOINTS and not (tmp_path / "fig6.csv").exists()
    assert main(["figures", "--out", str(tmp_path), "--jobs", "1", *REDUCED]) == 0
    err = capsys.readouterr().err
    assert f"{NPOINTS} points ({NPOINTS - done} computed, {done} from the cache)" in err
    assert _strip_runtime(tmp_path / "fig6.csv") == _strip_runtime(serial / "fig6.csv")
    assert (tmp_path / "fig6.png").read_bytes() == (serial / "fig6.png").read_bytes()


@pytest.mark.parametrize("argv, msg", [
    (["--jobs", "0"], "--jobs"),
    (["--set", "fig6.nonsense=1"], "nonsense"),
    (["--set", "fig12.seeds=1"], "fig12"),
    (["--set", "seeds"], "FIG.KEY=VALUE"),
])
def test_bad_arguments_fail_before_any_work(tmp_path, capsys, argv, msg):
    with pytest.raises(SystemExit) as exc:
        main(["figures", "--out", str(tmp_path), "--only", "fig6", *argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert msg in err and len(err.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())


def test_fresh_recomputes_cached_points(tmp_path, capsys):
    one = ["--only", "fig8", "--jobs", "1", "--seeds", "1", "--set", 'fig8.models=["switch-base-8"]',
           "--set", "fig8.num_servers=[1]", "--set", "fig8.num_users=2", "--set", 'fig8.methods=["greedy","none"]']
    for extra, expect in (([], "1 computed, 0 from"), ([], "0 computed, 1 from"), (["--fresh"], "1 computed, 0 from")):
        assert main(["figures", "--out", str(tmp_path), *one, *extra]) == 0
        assert f"1 point ({expect} the cache)" in capsys.readouterr().err


def test_cpu_time_counts_children_that_ended():
    """The MILP's HiGHS runs in a forked child: a point's CPU time must include it."""
    import subprocess
    import sys
    import time

    from slimlib.sweep import cpu_time
    c0, p0 = cpu_time(), time.process_time()
    subprocess.run([sys.executable, "-c", "s = 0\nfor i in range(4_000_000): s += i"], check=True)
    own = time.process_time() - p0
    assert cpu_time() - c0 >= own + 0.05          # the child's loop: ~0.2 s of CPU, not in process_time
