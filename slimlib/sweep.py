"""Parallel, resumable sweeps of independent points (chapter *Using slimlib*, "Sweeps at the paper's scale").

A figure of the evaluation (chapter *Experiments*) is a *sweep*: one problem per
(model, swept value, seed) *point*, every method run on it.  Points share
nothing, so they run in any order on any number of workers.  This module runs a
list of :class:`Task` objects (a module-level function and a JSON dict of its
parameters, the seed among them) and returns their results **in task order**,
whatever the backend:

* serially in this process (``jobs=1``, the default; what the book builds);
* on ``jobs`` worker processes of this machine (joblib's ``loky`` backend);
* on an existing Dask cluster (``scheduler="tcp://host:8786"``; needs the
  optional extra ``slimlib[cluster]``, i.e. ``dask`` and ``distributed``).

Every result goes through a JSON round trip (floats are written with ``repr``,
so exactly), hence a point's rows are the same bytes whether computed here, in a
worker or read back from the cache.  With a ``cache_dir``, each finished point is
written atomically (temporary file, then ``os.replace``) to
``cache_dir/<key>.json``, where ``key`` hashes the function's name, the point's
parameters and :func:`code_version` (slimlib's sources and data files); a
re-run reads finished points back instead of recomputing them (``fresh=True``
recomputes them all).  An interrupted sweep therefore resumes where it stopped
and ends with the same results as an uninterrupted one.

:class:`Runner` keeps the totals of the points it ran (:class:`SweepStats`): the
number of points, how many came from the cache, the sum of the per-point run
times and the wall time, whose ratio is the speed-up over a serial run.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Sequence

from . import _validate as V

__all__ = ["Task", "Runner", "SweepStats", "code_version", "cpu_time", "default_jobs", "write_atomic"]


@dataclass(frozen=True)
class Task:
    """One point of a sweep: ``fn(params)`` returns a JSON-serialisable result (e.g. a list of row dicts).

    Parameters
    ----------
    fn : callable
        A module-level function (worker processes import it by name), deterministic in ``params``.
    params : dict
        JSON-serialisable parameters of the point, its seed included; they key the cache.
    """

    fn: Callable[[dict], Any]
    params: dict = field(default_factory=dict)

    def key(self, version: str | None = None) -> str:
        """Cache key: SHA-256 of the function's name, the parameters and the code version (hex, 64 characters)."""
        text = json.dumps({"fn": f"{self.fn.__module__}.{self.fn.__qualname__}", "params": self.params,
                           "version": code_version() if version is None else version},
                          sort_keys=True, default=_json_default)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class SweepStats:
    """Totals over the sweeps a :class:`Runner` ran (times in seconds)."""

    points: int = 0          #: points of all sweeps
    cached: int = 0          #: points read back from the cache
    busy_s: float = 0.0      #: sum of the run times of the points computed (each measured where it ran)
    cpu_s: float = 0.0       #: sum of the CPU times of the points computed (process time where each ran)
    wall_s: float = 0.0      #: wall-clock time of the sweeps

    @property
    def computed(self) -> int:
        """Points computed in this run (``points - cached``)."""
        return self.points - self.cached

    @property
    def speedup(self) -> float:
        """Speed-up over a serial run of the computed points: ``busy_s / wall_s`` (NaN if nothing ran).

        Each point's run time is measured where it ran, so on a machine whose
        cores are busy with other work the points run slower in parallel than
        alone and this ratio overstates the gain (compare with a serial run,
        as ``benchmarks/bench_sweep.py`` does).
        """
        return self.busy_s / self.wall_s if self.wall_s > 0 and self.computed else float("nan")

    def summary(self, workers: str = "") -> str:
        """One line: points, cache hits, wall time and speed-up."""
        head = (f"{self.points} point{'s' if self.points != 1 else ''} ({self.computed} computed, "
                f"{self.cached} from the cache)")
        if not self.computed:
            return f"{head}, {self.wall_s:.1f} s wall time"
        w = f" with {workers}" if workers else ""
        return (f"{head}, {self.wall_s:.1f} s wall time{w}; {self.busy_s:.1f} s of point run time, "
                f"speed-up {self.speedup:.2f}x over serial (point run times / wall time)")


def default_jobs() -> int:
    """Number of worker processes when ``--jobs`` is not given: every core of this machine."""
    return max(1, os.cpu_count() or 1)


@lru_cache(maxsize=1)
def code_version() -> str:
    """Hash (hex, 16 characters) of slimlib's version, its ``.py`` sources and its data files.

    Part of every cache key, so a cached point is reused only by the code and
    data that computed it.
    """
    from . import __version__
    from .io import data_dir
    h = hashlib.sha256(str(__version__).encode())
    roots = [(Path(__file__).resolve().parent, ("*.py",)), (Path(data_dir()).resolve(), ("*.json", "*.jsonl"))]
    for root, patterns in roots:
        files = sorted({p for pat in patterns for p in root.rglob(pat) if "__pycache__" not in p.parts})
        for p in files:
            h.update(p.relative_to(root).as_posix().encode())
            h.update(b"\0")
            h.update(p.read_bytes())
    return h.hexdigest()[:16]


def _json_default(x):
    import numpy as np
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.floating):
        return float(x)
    if isinstance(x, np.bool_):
        return bool(x)
    if isinstance(x, (tuple, set, frozenset)):
        return list(x)
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"not JSON-serialisable: {type(x).__name__}")


def _normalise(result):
    """JSON round trip: the same value whether computed here, in a worker or read from the cache."""
    return json.loads(json.dumps(result, default=_json_default))


def cpu_time() -> float:
    """CPU seconds used so far by this process and by its children that have ended, user + system.

    The children count: the MILP runs HiGHS in a forked child process (so that
    its time limit holds; :mod:`slimlib.solvers.exact`), whose CPU time
    ``time.process_time()`` leaves out.  (Windows reports no children's
    times: there the MILP's CPU is missing.)
    """
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _execute(index: int, task: Task):
    """Run one task where it is scheduled: ``(index, result, wall seconds, CPU seconds)``."""
    t0, c0 = time.perf_counter(), cpu_time()
    out = task.fn(task.params)
    return index, _normalise(out), time.perf_counter() - t0, cpu_time() - c0


def write_atomic(path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file and ``os.replace``: never a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem[:16]}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class Runner:
    """Runs the points of sweeps serially, on local worker processes, or on a Dask cluster, with a cache.

    Parameters
    ----------
    jobs : int, optional
        Worker processes on this machine (joblib, ``loky`` backend); ``1``
        (default) runs in this process; ``None`` means :func:`default_jobs`.
        Ignored when ``scheduler`` is given.
    scheduler : str, optional
        Address of a running Dask scheduler (``"tcp://10.0.0.5:8786"``); the
        points run on its workers, which need slimlib installed.
    cache_dir : path, optional
        Folder of the per-point cache (one small JSON file per point).  ``None``
        disables the cache.
    fresh : bool
        Recompute every point even when the cache holds it (the cache is still written).
    progress : bool, optional
        Progress bar over the points (tqdm); ``None`` = on unless
        ``SLIMLIB_STATIC=1`` or ``SLIMLIB_PROGRESS=0``.
    connect_timeout_s : float
        How long :meth:`connect` waits for the Dask scheduler (seconds).

    Examples
    --------
    >>> r = Runner(jobs=2, cache_dir="out/cache/fig6")          # doctest: +SKIP
    >>> results = r.run([Task(point_fn, {"seed": s}) for s in range(10)], desc="fig6")  # doctest: +SKIP
    """

    def __init__(self, jobs: int | None = 1, *, scheduler: str | None = None, cache_dir=None, fresh: bool = False,
                 progress: bool | None = None, connect_timeout_s: float = 10.0):
        self.connect_timeout_s = V.number("connect_timeout_s", connect_timeout_s, positive=True)
        self.jobs = default_jobs() if jobs is None else V.number("jobs", jobs, integer=True, positive=True)
        self.scheduler = None if scheduler is None else V.text("scheduler", scheduler)
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.fresh = bool(fresh)
        self.progress = progress
        self.stats = SweepStats()
        self._client = None

    # -- backends ---------------------------------------------------------------
    @property
    def workers(self) -> str:
        """Description of where points run (for messages)."""
        if self.scheduler:
            return f"the Dask cluster at {self.scheduler}"
        return "1 process" if self.jobs == 1 else f"{self.jobs} worker processes"

    def connect(self):
        """Connect to the Dask scheduler now (no-op without one), so a bad address fails before any work.

        Raises
        ------
        ImportError
            ``dask.distributed`` is not installed (``pip install "slimlib[cluster]"``).
        ValueError
            The scheduler cannot be reached (message names ``scheduler`` and the address).
        """
        if self.scheduler is None or self._client is not None:
            return self._client
        try:
            from distributed import Client
        except ImportError as exc:
            raise ImportError("a Dask scheduler needs dask.distributed: pip install \"slimlib[cluster]\" "
                              f"({exc})") from None
        try:
            self._client = Client(self.scheduler, timeout=f"{self.connect_timeout_s}s", set_as_default=False)
        except (OSError, ValueError, TypeError) as exc:
            raise V.fail("scheduler", self.scheduler, f"cannot connect to a Dask scheduler there ({exc})") from None
        return self._client

    def close(self) -> None:
        """Disconnect from the Dask scheduler (the cluster itself keeps running)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _compute(self, todo: list[tuple[int, Task]]):
        """Yield ``(index, result, wall seconds, CPU seconds)`` for every pending task, in completion order."""
        if not todo:
            return
        if self.scheduler is not None:
            from distributed import as_completed
            client = self.connect()
            futures = [client.submit(_execute, i, t, pure=False) for i, t in todo]
            try:
                with client.as_current():
                    for fut in as_completed(futures):
                        yield fut.result()
            finally:
                client.cancel(futures)
            return
        if self.jobs == 1 or len(todo) == 1:
            for i, t in todo:
                yield _execute(i, t)
            return
        from joblib import Parallel, delayed
        par = Parallel(n_jobs=min(self.jobs, len(todo)), backend="loky", return_as="generator_unordered")
        yield from par(delayed(_execute)(i, t) for i, t in todo)

    # -- the sweep ---------------------------------------------------------------
    def run(self, tasks: Sequence[Task], desc: str = "sweep") -> list:
        """Results of ``tasks``, in task order (from the cache where possible).

        Each finished point is cached (atomically) as soon as it arrives, so a
        run stopped at any moment loses at most the points in flight.
        """
        from tqdm.auto import tqdm
        tasks = list(tasks)
        t0 = time.perf_counter()
        version = code_version()
        keys = [t.key(version) for t in tasks] if self.cache_dir is not None else [None] * len(tasks)
        results: list = [None] * len(tasks)
        done = [False] * len(tasks)
        if self.cache_dir is not None and not self.fresh:
            for i, k in enumerate(keys):
                hit = self._read(k)
                if hit is not None:
                    results[i], done[i] = hit, True
        ncached = sum(done)
        todo = [(i, t) for i, t in enumerate(tasks) if not done[i]]
        progress = self.progress
        if progress is None:
            progress = (os.environ.get("SLIMLIB_STATIC", "") != "1"
                        and os.environ.get("SLIMLIB_PROGRESS", "1") != "0")
        busy = cpu = 0.0
        with tqdm(total=len(tasks), initial=ncached, desc=desc, disable=not progress, leave=False) as bar:
            for i, out, dt, dc in self._compute(todo):
                results[i] = out
                busy += dt
                cpu += dc
                if keys[i] is not None:
                    self._write(keys[i], tasks[i], out, dt)
                bar.update(1)
        s = self.stats
        s.points += len(tasks)
        s.cached += ncached
        s.busy_s += busy
        s.cpu_s += cpu
        s.wall_s += time.perf_counter() - t0
        return results

    # -- the cache -----------------------------------------------------------------
    def _path(self, key: str) -> Path:
        return self.cache_dir / f"{key}.json"

    def _read(self, key: str):
        try:
            data = json.loads(self._path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None                               # missing (or foreign) file: recompute the point
        if not isinstance(data, dict) or data.get("key") != key or "result" not in data:
            return None
        return data["result"]

    def _write(self, key: str, task: Task, result, seconds: float) -> None:
        text = json.dumps({"key": key, "fn": f"{task.fn.__module__}.{task.fn.__qualname__}",
                           "params": task.params, "version": code_version(), "runtime_s": seconds,
                           "result": result}, default=_json_default)
        write_atomic(self._path(key), text)

