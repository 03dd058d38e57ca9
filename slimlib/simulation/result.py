"""What a simulation run returns: latencies per token and user, utilisation, queueing.

Chapter *A placement in a live network*.  :class:`~slimlib.simulation.result.SimulationResult` keeps every
token's latency (seconds) with its user, and the service every shared stage
gave; its statistics weight users by ``w_m`` exactly as the objective of (P1)
does, so that :attr:`~slimlib.simulation.result.SimulationResult.mean_s` and
:func:`slimlib.average_latency` measure the same quantity.
"""
from __future__ import annotations

import csv
import math
import os
import tempfile
from pathlib import Path

import numpy as np

from .. import _validate as V

__all__ = ["SimulationResult", "weighted_quantile", "QUANTILES"]

#: Quantiles reported for every latency distribution.
QUANTILES = {"p50": 0.50, "p95": 0.95, "p99": 0.99}


def weighted_quantile(values, weights, q):
    """Inverse of the weighted empirical CDF: the smallest value whose CDF reaches ``q``.

    With equal weights this is ``numpy.quantile(values, q, method="inverted_cdf")``.

    Parameters
    ----------
    values, weights : array_like, shape (n,)
    q : float or array_like
        In ``[0, 1]``.
    """
    v = np.asarray(values, float)
    w = np.asarray(weights, float)
    order = np.argsort(v, kind="stable")
    cw = np.cumsum(w[order])
    cw /= cw[-1]
    idx = np.searchsorted(cw, np.asarray(q, float) - 1e-12, side="left")
    return v[order][np.minimum(idx, len(v) - 1)]


def _batch_var(x: np.ndarray, batches: int) -> float:
    """Variance of the mean of ``x`` by batch means (contiguous batches; robust to autocorrelation)."""
    bm = np.array([b.mean() for b in np.array_split(x, batches)])
    return float(bm.var(ddof=1) / batches)


class SimulationResult:
    """Outcome of :func:`~slimlib.simulate` (chapter *A placement in a live network*).

    Attributes
    ----------
    latency_s : list of ndarray
        Per user ``m``: latency of each of its ``tokens`` tokens, in decoding
        order, seconds (warm-up tokens removed).
    nominal_s : list of ndarray
        The same tokens' latency without any waiting (sum over layers of the
        slowest call's evaluator latency), seconds.
    start_s : list of ndarray
        Simulated time each token started, seconds.
    session_wait_s : list of ndarray
        Per user, how long each session waited for the previous one, seconds.
    resources : list of dict
        One row per shared stage: ``stage``, ``kind``, ``server``,
        ``capacity`` (``None`` = unlimited or dedicated), ``jobs``, ``busy_s``
        (service owed by the routing), ``served_jobs`` and ``served_busy_s``
        (counted by the engine; ``None`` for stages that never wait),
        ``wait_s`` (total waiting), ``utilisation`` (``busy_s / (capacity *
        duration_s)``, NaN without a capacity) and ``load`` (``busy_s /
        duration_s``, mean number of jobs in service).
    calls : dict
        Expert calls served on devices, edge servers and the cloud.
    served : int
        Expert calls the engine completed (every call exactly once).
    duration_s : float
        Simulated time of the run, seconds.
    wall_s : float
        Wall-clock time of the run, seconds.
    expected_s : float
        :func:`slimlib.average_latency` of the placement (no contention).
    weights : ndarray, shape (M,)
        ``w_m``.
    config : slimlib.simulation.config.SimulationConfig
    """

    def __init__(self, *, latency_s, nominal_s, start_s, session_wait_s, resources, calls, served, duration_s,
                 wall_s, expected_s, weights, config, problem_name="", method=""):
        self.latency_s = [np.asarray(x, float) for x in latency_s]
        self.nominal_s = [np.asarray(x, float) for x in nominal_s]
        self.start_s = [np.asarray(x, float) for x in start_s]
        self.session_wait_s = [np.asarray(x, float) for x in session_wait_s]
        self.resources = list(resources)
        self.calls = dict(calls)
        self.served = int(served)
        self.duration_s = float(duration_s)
        self.wall_s = float(wall_s)
        self.expected_s = float(expected_s)
        self.weights = np.asarray(weights, float)
        self.config = config
        self.problem_name = problem_name
        self.method = method

    @classmethod
    def from_run(cls, problem, placement, cfg, outs, rows, *, duration_s, served, calls, wall_s):
        """Assemble a result from the engine's raw arrays (internal)."""
        from ..latency import average_latency
        w0 = cfg.warmup_tokens
        for r in rows:
            cap = r["capacity"]
            r["utilisation"] = r["busy_s"] / (cap * duration_s) if cap and duration_s > 0 else math.nan
            r["load"] = r["busy_s"] / duration_s if duration_s > 0 else math.nan
        return cls(latency_s=[(o["end"] - o["start"])[w0:] for o in outs],
                   nominal_s=[o["nominal"][w0:] for o in outs], start_s=[o["start"][w0:] for o in outs],
                   session_wait_s=[o["session_wait"] for o in outs], resources=rows, calls=calls, served=served,
                   duration_s=duration_s, wall_s=wall_s, expected_s=average_latency(problem, placement),
                   weights=problem.network.user_weight, config=cfg, problem_name=problem.name,
                   method=placement.method)

    # -- statistics ----------------------------------------------------------------------------
    @property
    def num_users(self) -> int:
        return len(self.latency_s)

    def _token_weights(self) -> tuple[np.ndarray, np.ndarray]:
        lat = np.concatenate(self.latency_s)
        w = np.concatenate([np.full(len(x), wm / len(x)) for x, wm in zip(self.latency_s, self.weights)])
        return lat, w

    @property
    def user_mean_s(self) -> np.ndarray:
        """Mean token latency of every user, shape ``(M,)``, seconds."""
        return np.array([x.mean() for x in self.latency_s])

    @property
    def mean_s(self) -> float:
        """Weighted mean token latency ``sum_m w_m mean_m / sum_m w_m``, seconds (the objective of (P1))."""
        return float(self.weights @ self.user_mean_s / self.weights.sum())

    @property
    def nominal_mean_s(self) -> float:
        """The same weighted mean of the tokens' latency without waiting, seconds."""
        return float(self.weights @ np.array([x.mean() for x in self.nominal_s]) / self.weights.sum())

    def ci_s(self, level: float = 0.99) -> float:
        """Half-width of the confidence interval of :attr:`mean_s`, seconds.

        Batch means (``config.batches`` contiguous batches per user) give each
        user's variance of the mean; users are independent streams, combined
        with their weights; Student's t with Welch–Satterthwaite degrees of
        freedom.  Zero when every token has the same latency.
        """
        from scipy.stats import t as student
        level = V.number("level", level, minimum=0.5, maximum=0.999999)
        B = self.config.batches
        a = (self.weights / self.weights.sum()) ** 2 * np.array([_batch_var(x, B) for x in self.latency_s])
        var = float(a.sum())
        if var <= 0:
            return 0.0
        dof = var ** 2 / float((a ** 2).sum() / (B - 1))
        return float(student.ppf(0.5 + level / 2, dof) * math.sqrt(var))

    def quantile_s(self, q) -> float:
        """Quantile of the token latency over all users (tokens weighted ``w_m / tokens``), seconds."""
        lat, w = self._token_weights()
        return float(weighted_quantile(lat, w, q))

    @property
    def queueing_share(self) -> float:
        """Share of the mean latency spent waiting: ``1 - nominal_mean_s / mean_s``."""
        return 1.0 - self.nominal_mean_s / self.mean_s if self.mean_s > 0 else 0.0

    def cdf(self):
        """Weighted empirical CDF of the token latency: ``(x_s, F)``, both shape ``(n,)``."""
        lat, w = self._token_weights()
        order = np.argsort(lat, kind="stable")
        F = np.cumsum(w[order])
        return lat[order], F / F[-1]

    @property
    def throughput(self) -> float:
        """Tokens decoded per second per user over the run (warm-up included in the time)."""
        n = sum(len(x) for x in self.latency_s) / self.num_users
        return n / self.duration_s if self.duration_s > 0 else math.nan

    def busiest(self) -> dict:
        """The resource row with the largest utilisation (or load when none has a capacity)."""
        rows = [r for r in self.resources if r["jobs"] > 0]
        if not rows:
            return {}
        capped = [r for r in rows if r["capacity"]]
        key = (lambda r: r["utilisation"]) if capped else (lambda r: r["load"])
        return max(capped or rows, key=key)

    # -- tables --------------------------------------------------------------------------------
    def latency_rows(self) -> list[dict]:
        """One row for all tokens and one per user: tokens, mean, 99 % CI, quantiles, queueing share (seconds)."""
        rows = [dict(scope="all", user=None, tokens=int(sum(len(x) for x in self.latency_s)),
                     mean_s=self.mean_s, ci99_s=self.ci_s(0.99),
                     **{k: self.quantile_s(q) for k, q in QUANTILES.items()},
                     nominal_s=self.nominal_mean_s, queueing_share=self.queueing_share,
                     session_wait_s=float(np.mean(np.concatenate(self.session_wait_s))))]
        B = self.config.batches
        from scipy.stats import t as student
        for m, (x, nom, sw) in enumerate(zip(self.latency_s, self.nominal_s, self.session_wait_s)):
            mean = float(x.mean())
            rows.append(dict(scope="user", user=m, tokens=len(x), mean_s=mean,
                             ci99_s=float(student.ppf(0.995, B - 1) * math.sqrt(_batch_var(x, B))),
                             **{k: float(np.quantile(x, q, method="inverted_cdf")) for k, q in QUANTILES.items()},
                             nominal_s=float(nom.mean()), queueing_share=1.0 - float(nom.mean()) / mean if mean else 0.0,
                             session_wait_s=float(sw.mean())))
        return rows

    def table(self) -> list[dict]:
        """The tidy (long) table: one row per ``section, name, metric`` with its ``value`` and ``unit``.

        Sections: ``latency`` (``all`` and ``user m``: mean, ci99, p50, p95,
        p99, nominal, session_wait in s; tokens; queueing_share), ``resource``
        (every stage that served a job: utilisation, load, busy, wait, jobs),
        ``run`` (expected latency, calls by place, duration, throughput).
        """
        out = []
        for r in self.latency_rows():
            name = "all" if r["scope"] == "all" else f"user {r['user']}"
            for k in ("mean_s", "ci99_s", "p50", "p95", "p99", "nominal_s", "session_wait_s"):
                out.append(dict(section="latency", name=name, metric=k.removesuffix("_s"), value=r[k], unit="s"))
            out.append(dict(section="latency", name=name, metric="tokens", value=r["tokens"], unit="tokens"))
            out.append(dict(section="latency", name=name, metric="queueing_share", value=r["queueing_share"],
                            unit="1"))
        for r in self.resources:
            if r["jobs"] == 0:
                continue
            for k, unit in (("utilisation", "1"), ("load", "jobs"), ("busy_s", "s"), ("wait_s", "s"),
                            ("jobs", "jobs")):
                out.append(dict(section="resource", name=r["stage"], metric=k.removesuffix("_s"), value=r[k],
                                unit=unit))
        run = [("expected_latency", self.expected_s, "s"), ("calls_device", self.calls["device"], "calls"),
               ("calls_edge", self.calls["edge"], "calls"), ("calls_cloud", self.calls["cloud"], "calls"),
               ("calls_served", self.served, "calls"), ("duration", self.duration_s, "s"),
               ("throughput", self.throughput, "tokens/s per user"), ("wall_time", self.wall_s, "s")]
        out += [dict(section="run", name="run", metric=k, value=v, unit=u) for k, v, u in run]
        return out

    def to_csv(self, path) -> Path:
        """Write :meth:`table` as CSV, atomically (a temporary file, then ``os.replace``)."""
        path = Path(path)
        rows = self.table()
        folder = path.parent if str(path.parent) else Path(".")
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
                w = csv.DictWriter(fh, fieldnames=["section", "name", "metric", "value", "unit"])
                w.writeheader()
                w.writerows(rows)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    def summary(self) -> str:
        """A few lines for a terminal or a notebook: latency, expected latency, queueing, busiest stage."""
        ms = 1e3
        cfg = self.config
        L = "saturated (no pause)" if cfg.token_rate == math.inf else f"{cfg.token_rate:g} tokens/s per user"
        b = self.busiest()
        tot = max(1, sum(self.calls.values()))
        lines = [
            f"placement   {self.method or '?'} on {self.problem_name or 'problem'}: {self.num_users} users x "
            f"{len(self.latency_s[0])} tokens, routing {cfg.routing}",
            f"load        {L} offered (sessions of {cfg.tokens_per_session} tokens); "
            f"{self.throughput:.3g} tokens/s per user decoded",
            f"latency     mean {self.mean_s * ms:.4g} ms ± {self.ci_s() * ms:.2g} ms (99 % CI), "
            f"p50 {self.quantile_s(0.5) * ms:.4g}, p95 {self.quantile_s(0.95) * ms:.4g}, "
            f"p99 {self.quantile_s(0.99) * ms:.4g} ms per token",
            f"expected    {self.expected_s * ms:.4g} ms per token (average_latency, no contention)",
            f"queueing    {100 * self.queueing_share:.3g} % of the mean latency is waiting",
        ]
        if b:
            u = b["utilisation"] if b["capacity"] else b["load"]
            what = "utilisation" if b["capacity"] else "load"
            lines.append(f"busiest     {b['stage']}: {what} {u:.3g}")
        lines.append(f"calls       {self.served} served: {100 * self.calls['device'] / tot:.3g} % device, "
                     f"{100 * self.calls['edge'] / tot:.3g} % edge, {100 * self.calls['cloud'] / tot:.3g} % cloud")
        lines.append(f"time        {self.duration_s:.4g} s simulated in {self.wall_s:.3g} s")
        return "\n".join(lines)

    def __repr__(self):
        return (f"SimulationResult(method={self.method!r}, mean={self.mean_s * 1e3:.4g} ms, "
                f"p99={self.quantile_s(0.99) * 1e3:.4g} ms, expected={self.expected_s * 1e3:.4g} ms)")
