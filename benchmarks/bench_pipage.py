"""Pipage (LP + pipage rounding) against the greedy and the MILP on the Figure 6 problems.

    python benchmarks/bench_pipage.py [--quick] [--milp-time-limit S] [--out FILE.csv]

Chapter *Greedy for K = 1*, section "An algorithm that earns 1 − 1/e".  For
the Switch-base models of Figure 6 (K = 1, one expert size, Table 1 network,
synthetic statistics, seed 0) it solves each problem with ``greedy``,
``pipage`` and ``exact`` (the MILP, with a time limit) and reports, in one
run:

* run time of every method (s) and the ratios ``pipage / greedy`` time;
* ``R(method) / L*``: the reduction as a fraction of pipage's LP value, an
  upper bound on the optimum — a certificate that needs no MILP;
* the MILP's status.

Targets: pipage's certificate ``R / L* >= 1 - 1/e`` on every problem (the
theorem) and ``>= 0.99`` (practice); pipage within 10x of the MILP's time.
``--quick`` runs Switch-base-16 only.  The CSV is written atomically.
"""
from __future__ import annotations

import argparse
import csv
import math
import os
import sys
import tempfile
import time

import slimlib as sl
from slimlib.experiments import experiment_problem

MODELS = ("switch-base-16", "switch-base-64", "switch-base-128")


def run(models, milp_time_limit: float) -> list[dict]:
    rows = []
    for name in models:
        prob, src = experiment_problem(name, seed=0)
        lp = None
        for method, kw in (("greedy", {}), ("pipage", {}), ("exact", {"time_limit": milp_time_limit})):
            t0 = time.perf_counter()
            pl = sl.solve(prob, method, **kw)
            t = time.perf_counter() - t0
            if method == "pipage":
                lp = pl.info["lp_value_s"]
            rows.append(dict(model=name, method=method, time_s=t, reduction_s=sl.latency_reduction(prob, pl),
                             latency_ms=sl.average_latency(prob, pl) * 1e3,
                             status=pl.info.get("status", ""), statistics=src))
        for r in rows[-3:]:
            r["fraction_of_lp"] = r["reduction_s"] / lp
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="Switch-base-16 only")
    ap.add_argument("--milp-time-limit", type=float, default=20.0, help="MILP time limit, s (> 0)")
    ap.add_argument("--out", default=None, help="CSV file to write")
    a = ap.parse_args(argv)
    if not a.milp_time_limit > 0:
        print(f"--milp-time-limit: {a.milp_time_limit} must be > 0", file=sys.stderr)
        return 2
    if a.out is not None and not os.path.isdir(os.path.dirname(os.path.abspath(a.out))):
        print(f"--out: folder of {a.out!r} does not exist", file=sys.stderr)
        return 2
    rows = run(MODELS[:1] if a.quick else MODELS, a.milp_time_limit)
    print(f"{'model':18s} {'method':8s} {'time (s)':>9s} {'latency (ms)':>13s} {'R / L*':>9s}  status")
    for r in rows:
        print(f"{r['model']:18s} {r['method']:8s} {r['time_s']:9.3f} {r['latency_ms']:13.4f} "
              f"{r['fraction_of_lp']:9.5f}  {r['status']}")
    ok = True
    for name in dict.fromkeys(r["model"] for r in rows):
        by = {r["method"]: r for r in rows if r["model"] == name}
        cert = by["pipage"]["fraction_of_lp"]
        speed = by["pipage"]["time_s"] / max(by["exact"]["time_s"], 1e-9)
        t_ratio = by["pipage"]["time_s"] / max(by["greedy"]["time_s"], 1e-9)
        checks = [("R/L* >= 1-1/e", cert >= 1 - 1 / math.e), ("R/L* >= 0.99", cert >= 0.99),
                  ("time <= 10x MILP", speed <= 10)]
        ok &= all(c for _, c in checks)
        print(f"{name}: pipage/greedy time {t_ratio:.1f}x, pipage/MILP time {speed:.2f}x; "
              + ", ".join(f"{k}: {'ok' if c else 'MISSED'}" for k, c in checks))
    if a.out:
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(a.out)), suffix=".csv")
        with os.fdopen(fd, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        os.replace(tmp, a.out)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
