"""Speed of the live-network simulator (chapter *A placement in a live network*).

Prints, from one run on this machine:

* expert calls simulated per CPU second, on the chapter's Figure 7 problem
  under load (FIFO links, one compute slot) and without contention, and the
  ratio of the FIFO recursion to SimPy ``Resource`` objects (same results);
* the CPU and wall time of the chapter's simulations (its load sweeps on two
  processes, the trace comparison and the load-aware runs), against the book's
  budget of 90 s on two cores.

Usage: ``python benchmarks/bench_simulation.py [--quick]`` (``--quick`` skips the chapter's sweeps).
"""
from __future__ import annotations

import argparse
import time

import slimlib as sl
from slimlib.simulation import SimulationConfig
from slimlib.simulation import study as S
from slimlib.trace import load_trace

BUDGET_S = 90.0


def calls_per_second(problem, placement, cfg) -> tuple[float, float]:
    cpu = time.process_time()
    res = sl.simulate(problem, placement, cfg, progress=False)
    dt = time.process_time() - cpu
    return res.served / dt, dt


def chapter(problem7, x7, cfg) -> tuple[float, float]:
    """The simulation cells of the chapter, as the chapter runs them; returns (wall s, CPU s incl. workers)."""
    wall = time.perf_counter()
    cpu = time.process_time()
    sl.simulate(problem7, x7, cfg, token_rate=50.0)
    sl.simulate(problem7, x7, cfg.replace(server_slots=None, links="dedicated", backhaul="dedicated"))
    pb6 = S.live_problem("fig6")
    x6 = sl.solve(pb6)
    for name, pb, x in (("fig6", pb6, x6), ("fig7", problem7, x7)):
        sl.simulate(pb, x, SimulationConfig.no_contention())
    rows7 = S.load_sweep(problem7, (10, 25, 50, 75, 100), config=cfg, n_jobs=2)
    rows6 = S.load_sweep(pb6, (100, 300, 600, 1000, 1500), config=cfg, n_jobs=2)
    worker_cpu = sum(r["cpu_s"] for r in rows7 + rows6)
    tr = load_trace()
    pbt = S.trace_problem(tr)
    xt = sl.solve(pbt)
    base = SimulationConfig.no_contention(tokens=2000)
    S.sweep_row(pbt, xt, base)
    S.sweep_row(pbt, xt, base.replace(routing="trace", trace=tr))
    for r in (25, 50, 75, 100):
        S.sweep_row(problem7, sl.solve(problem7, method="load-aware", token_rate=r), cfg.replace(token_rate=r))
    return time.perf_counter() - wall, time.process_time() - cpu + worker_cpu


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="only the calls-per-second numbers")
    args = ap.parse_args(argv)
    pb = S.live_problem("fig7")
    x = sl.solve(pb)
    cfg = SimulationConfig(tokens=300, warmup_tokens=60, tokens_per_session=16)
    loaded = cfg.replace(token_rate=50.0)
    rec, t_rec = calls_per_second(pb, x, loaded)
    res, t_res = calls_per_second(pb, x, loaded.replace(queueing="resource"))
    free, _ = calls_per_second(pb, x, SimulationConfig.no_contention(tokens=2000))
    print(f"expert calls per CPU second, Figure 7 problem at 50 tokens/s per user: {rec:,.0f} "
          f"(FIFO recursion), {res:,.0f} (SimPy Resource): ratio {t_res / t_rec:.2f}")
    print(f"expert calls per CPU second without contention: {free:,.0f}")
    if not args.quick:
        wall, cpu = chapter(pb, x, cfg)
        print(f"chapter simulations: {wall:.1f} s wall, {cpu:.1f} s CPU over 2 processes "
              f"(budget {BUDGET_S:.0f} s on 2 cores: {'within' if cpu / 2 <= BUDGET_S else 'OVER'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
