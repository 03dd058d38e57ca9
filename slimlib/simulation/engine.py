"""The discrete-event model of a placement in a live network, on SimPy.

Chapter *A placement in a live network*, section "The model".  Every user is a
SimPy process that decodes sessions token by token; every token walks the MoE
layers in order; at each layer the ``K`` expert calls of its group leave at
once and the layer ends when the slowest returns (eq. (1.6)'s max).  Calls of
one group bound for the same place travel as one message (one uplink and one
downlink transfer of the hidden state, ``k`` expert computations).  Shared
stages are SimPy ``Resource`` objects served first come, first served:

* per edge server: the radio uplink and downlink (``links="fifo"``: one
  transfer at a time at the sender's full rate), the compute
  (``server_slots`` calls at once, ``phi / f_n`` each), and the backhaul up and
  down (``backhaul="fifo"``);
* the cloud compute (``cloud_slots``) and every device (``device_slots``).

A stage with unlimited capacity or a dedicated link never waits; runs of such
stages are one timeout, and a layer whose calls can never wait is one timeout
of its nominal latency (the evaluator's number).  With every stage
unlimited (:meth:`~slimlib.simulation.config.SimulationConfig.no_contention`) the simulated mean is the
expected latency of :func:`slimlib.average_latency` up to sampling noise.
"""
from __future__ import annotations

import heapq
import math
import time

import numpy as np
import simpy

from .. import _validate as V
from ..problem import Placement, Problem
from .config import MAX_CALLS, SimulationConfig
from .result import SimulationResult
from .routes import CLOUD, DEVICE, call_routes, call_stages

__all__ = ["simulate"]


class _Stage:
    """One shared stage, served first come, first served, and what it served.

    ``queueing="resource"``: a SimPy ``Resource`` of ``capacity`` slots
    (request, hold, release).  ``queueing="recursion"``: the same FIFO
    multi-slot queue computed when a job arrives (Kiefer–Wolfowitz: the job
    starts at ``max(arrival, earliest free slot)``), one event per job instead
    of three; both give the same start times (tested).  ``capacity=None``:
    never waits.
    """

    __slots__ = ("res", "free", "name", "kind", "server", "capacity", "busy", "calls", "wait")

    def __init__(self, env, capacity, name, kind, server, queueing):
        self.res = simpy.Resource(env, capacity=capacity) if capacity is not None and queueing == "resource" else None
        self.free = None if capacity is None or queueing == "resource" else [0.0] * capacity   # slot-free times
        self.name, self.kind, self.server, self.capacity = name, kind, server, capacity
        self.busy = 0.0          # seconds of service given (summed over slots)
        self.calls = 0           # jobs served
        self.wait = 0.0          # seconds jobs spent waiting for a slot


class _Model:
    def __init__(self, problem: Problem, placement: Placement, cfg: SimulationConfig, progress):
        self.problem, self.cfg = problem, cfg
        self.env = env = simpy.Environment()
        st = self.stages = call_stages(problem)
        self.loc, self.nominal = call_routes(problem, placement, st)
        M, N = problem.num_users, problem.num_servers
        link = 1 if cfg.links == "fifo" else None
        bh = 1 if cfg.backhaul == "fifo" else None
        q = cfg.queueing
        self.up = [_Stage(env, link, f"server {n} uplink", "uplink", n, q) for n in range(N)]
        self.down = [_Stage(env, link, f"server {n} downlink", "downlink", n, q) for n in range(N)]
        self.comp = [_Stage(env, cfg.server_slots, f"server {n} compute", "compute", n, q) for n in range(N)]
        self.bh_up = [_Stage(env, bh, f"server {n} backhaul up", "backhaul up", n, q) for n in range(N)]
        self.bh_down = [_Stage(env, bh, f"server {n} backhaul down", "backhaul down", n, q) for n in range(N)]
        self.cloud = _Stage(env, cfg.cloud_slots, "cloud compute", "cloud compute", -1, q)
        self.device = [_Stage(env, cfg.device_slots, f"device {m}", "device", -1, q) for m in range(M)]
        self.served = 0
        self.plan_counts = []      # per user: (plan table, (codes, counts)) for the service accounting
        self._progress = progress
        self._tick = 0

    # -- routing --------------------------------------------------------------------------------
    def draw_routing(self):
        """Experts of every token and layer, per user: ``(T, L, K)`` (sampled or replayed)."""
        cfg, pb = self.cfg, self.problem
        T = cfg.tokens + cfg.warmup_tokens
        out = []
        for m, s in enumerate(pb.stats):
            rng = np.random.default_rng([cfg.seed, 2, m])
            if cfg.routing == "trace":
                start = int(rng.integers(cfg.trace.num_tokens))
                out.append(cfg.trace.window(start, T))
                continue
            ex = np.empty((T, s.num_layers, s.top_k), dtype=np.int64)
            for l in range(s.num_layers):
                cum = np.cumsum(s.probs(l))
                g = np.searchsorted(cum, rng.random(T) * cum[-1], side="right")
                ex[:, l, :] = s.groups(l)[np.minimum(g, len(cum) - 1)]
            out.append(ex)
        return out

    def _path(self, m, dest, k):
        """Stages of a message of ``k`` calls from user ``m`` to ``dest``: list of (stage, seconds, k)."""
        st = self.stages
        if dest == DEVICE:
            return [(self.device[m], float(st.device[m]), k)]
        if dest == CLOUD:
            n = int(st.best_server[m])
            d = st.backhaul_delay
            return [(self.up[n], float(st.up[m, n]), 1), (self.bh_up[n], float(st.backhaul[m]), 1),
                    (None, d, 1), (self.cloud, float(st.cloud_compute[m]), k), (None, d, 1),
                    (self.bh_down[n], float(st.backhaul[m]), 1), (self.down[n], float(st.down[m, n]), 1)]
        n = int(dest)
        return [(self.up[n], float(st.up[m, n]), 1), (self.comp[n], float(st.compute[m, n]), k),
                (self.down[n], float(st.down[m, n]), 1)]

    def _plans(self, m, loc_tlk):
        """Integer plan code of every (token, layer), and the plan of each code.

        A plan lists the layer's messages (one per destination, ``k`` calls
        each).  Messages that can wait are kept as ``(steps, tail, k)``:
        ``steps`` the shared stages as ``(delay before, stage, seconds, jobs)``,
        runs of stages that never wait folded into those delays, ``tail`` the
        delay after the last.  The others only contribute their nominal time.
        Returns ``codes`` (T, L), ``table`` {code: (waiting messages, nominal of
        the others, calls of the others)} and the raw ``messages`` per code.
        """
        N = self.problem.num_servers
        base = N + 2
        srt = np.sort(loc_tlk, axis=2)
        codes = np.zeros(loc_tlk.shape[:2], dtype=np.int64)
        for k in range(loc_tlk.shape[2]):
            codes = codes * base + (srt[:, :, k] + 2)
        table, messages = {}, {}
        for code in np.unique(codes).tolist():
            dests, c = [], code
            for _ in range(loc_tlk.shape[2]):
                dests.append(c % base - 2)
                c //= base
            waiting, free_time, free_calls, msgs = [], 0.0, 0, []
            for d in sorted(set(dests)):
                k = dests.count(d)
                path = self._path(m, d, k)
                msgs.append((d, k, path))
                steps, pre = [], 0.0
                for stage, sec, jobs in path:
                    if stage is None or stage.capacity is None:
                        pre += sec
                    else:
                        steps.append((pre, stage, sec, jobs))
                        pre = 0.0
                if steps:
                    waiting.append((tuple(steps), pre, k))
                else:
                    free_time = max(free_time, pre)
                    free_calls += k
            table[code] = (tuple(waiting), free_time, free_calls)
            messages[code] = msgs
        return codes, table, messages

    # -- processes ------------------------------------------------------------------------------
    def _message(self, steps, tail, k):
        """Walk one message through its shared stages (FIFO at each), then its last delay."""
        env = self.env
        t = env.now                      # when the message reaches the next shared stage
        for pre, stage, s, jobs in steps:
            t += pre
            arrive = env.now
            if t > arrive:
                yield env.timeout(t - arrive)
                arrive = env.now
            stage.calls += jobs
            stage.busy += s * jobs
            free = stage.free
            if free is not None:         # FIFO recursion: start at the earliest free slot
                if len(free) == 1:
                    start = free[0] if free[0] > arrive else arrive
                    stage.wait += (start - arrive) * jobs + s * jobs * (jobs - 1) / 2
                    t = free[0] = start + s * jobs
                    continue
                for _ in range(jobs):
                    f0 = heapq.heappop(free)
                    start = f0 if f0 > arrive else arrive
                    stage.wait += start - arrive
                    t = start + s
                    heapq.heappush(free, t)
                continue
            res = stage.res              # SimPy Resource: request, hold, release
            if jobs == 1:
                req = res.request()
                if not req.triggered:
                    yield req
                stage.wait += env.now - arrive
                yield env.timeout(s)
                res.release(req)
            else:
                # k computations of one message: k FIFO requests; each holds its slot for s from its grant
                last = None
                for req in [res.request() for _ in range(jobs)]:
                    if not req.triggered:
                        yield req
                    stage.wait += env.now - arrive
                    last = env.timeout(s)
                    last.callbacks.append(lambda _ev, r=req, rs=res: rs.release(r))
                yield last               # same service time, granted in order: the last one ends last
            t = env.now
        t += tail
        now = env.now
        if t > now:
            yield env.timeout(t - now)
        self.served += k

    def user(self, m, experts, out):
        env, cfg = self.env, self.cfg
        T = experts.shape[0]
        L = experts.shape[1]
        loc = self.loc[m][np.arange(L)[None, :, None], experts]          # (T, L, K)
        nom = self.nominal[m][np.arange(L)[None, :, None], experts]
        gnom = nom.max(axis=2)                                           # (T, L) nominal layer latency
        codes, table, messages = self._plans(m, loc)
        self.plan_counts.append((messages, np.unique(codes, return_counts=True)))
        plan = [[table[c] for c in row] for row in codes.tolist()]       # (T, L) plans
        free = np.array([[not p[0] for p in row] for row in plan], bool).reshape(codes.shape)
        token_free = free.all(axis=1)
        token_nom = gnom.sum(axis=1)
        out["nominal"][:] = token_nom
        K = experts.shape[2]
        # sessions: Poisson arrivals (common random numbers across loads), fixed length
        S = math.ceil(T / cfg.tokens_per_session)
        if cfg.token_rate == math.inf:
            arrivals = np.zeros(S)
        else:
            rng = np.random.default_rng([cfg.seed, 1, m])
            arrivals = np.cumsum(rng.exponential(1.0, S)) / cfg.session_rate
        tokens = dict(free=free, plan=plan, gnom=gnom, token_free=token_free, token_nom=token_nom, L=L, K=K)
        slots = None if cfg.max_sessions is None else simpy.Resource(env, capacity=cfg.max_sessions)
        tps = cfg.tokens_per_session
        for s in range(S):
            if env.now < arrivals[s]:
                yield env.timeout(arrivals[s] - env.now)
            env.process(self._session(s, arrivals[s], range(s * tps, min(T, (s + 1) * tps)), slots, tokens, out))

    def _session(self, s, arrival, token_ids, slots, tk, out):
        """One session of a user: wait for a session slot of the device, then decode token after token."""
        env = self.env
        req = None
        if slots is not None:
            req = slots.request()
            if not req.triggered:
                yield req
        out["session_wait"][s] = env.now - arrival
        start, end = out["start"], out["end"]
        free, plan, gnom, token_free, token_nom = tk["free"], tk["plan"], tk["gnom"], tk["token_free"], tk["token_nom"]
        LK, K = tk["L"] * tk["K"], tk["K"]
        for t in token_ids:
            start[t] = env.now
            if token_free[t]:
                yield env.timeout(token_nom[t])
                self.served += LK
            else:
                g, fr = gnom[t], free[t]
                for l, p in enumerate(plan[t]):
                    if fr[l]:
                        yield env.timeout(g[l])
                        self.served += K
                    else:
                        yield from self._layer(*p)
            end[t] = env.now
            self._tick += 1
            if self._progress is not None and self._tick >= 64:
                self._progress.update(self._tick)
                self._tick = 0
        if req is not None:
            slots.release(req)

    def _layer(self, waiting, free_time, free_calls):
        """One layer of one token: its messages leave together; the layer ends with the slowest."""
        env = self.env
        t0 = env.now
        self.served += free_calls
        if len(waiting) == 1:
            yield from self._message(*waiting[0])
        else:
            procs = [env.process(self._message(*w)) for w in waiting[1:]]
            yield from self._message(*waiting[0])
            left = [p for p in procs if not p.triggered]
            if left:
                yield env.all_of(left)
        rest = t0 + free_time - env.now
        if rest > 0.0:
            yield env.timeout(rest)


def simulate(problem: Problem, placement: Placement, config: SimulationConfig | None = None, *,
             progress: bool | None = None, **options) -> SimulationResult:
    """Simulate a placement in a live network, token by token (chapter *A placement in a live network*).

    Parameters
    ----------
    problem : Problem
    placement : Placement
        Checked against ``problem`` (every capacity).
    config : slimlib.simulation.config.SimulationConfig, optional
        Default :class:`~slimlib.simulation.config.SimulationConfig` ().
    progress : bool, optional
        tqdm bar over tokens (``None``: only on a terminal).
    **options
        Fields of :class:`~slimlib.simulation.config.SimulationConfig` overriding ``config``, e.g.
        ``tokens=500, token_rate=40.0``.

    Returns
    -------
    slimlib.simulation.result.SimulationResult
        Per-token latencies (seconds) of every user, the stages' utilisation
        and waiting, and the evaluator's expected latency for comparison.

    Raises
    ------
    ValueError
        Bad option, infeasible placement, a trace that does not fit the model,
        or a run larger than :data:`slimlib.simulation.config.MAX_CALLS` calls.

    Examples
    --------
    >>> import slimlib
    >>> from slimlib.instances import random_problem
    >>> pb = random_problem(0)
    >>> res = slimlib.simulate(pb, slimlib.solve(pb), tokens=200, progress=False)
    >>> round(res.mean_s / slimlib.average_latency(pb, slimlib.solve(pb)), 1)
    1.0
    """
    if not isinstance(problem, Problem):
        raise V.fail("problem", problem, "must be a slimlib.Problem")
    if not isinstance(placement, Placement):
        raise V.fail("placement", placement, "must be a slimlib.Placement")
    cfg = SimulationConfig() if config is None else config
    if not isinstance(cfg, SimulationConfig):
        raise V.fail("config", cfg, "must be a SimulationConfig")
    if options:
        cfg = cfg.replace(**options)
    placement.check(problem)
    T = cfg.tokens + cfg.warmup_tokens
    calls = sum(T * problem.models[u].num_layers * problem.models[u].top_k for u in problem.user_model)
    if calls > MAX_CALLS:
        raise V.fail("SimulationConfig.tokens", cfg.tokens, f"the run would make {calls} expert calls "
                     f"(limit {MAX_CALLS}); use fewer tokens")
    if cfg.routing == "trace":
        tr = cfg.trace
        for m in range(problem.num_users):
            mod = problem.models[problem.user_model[m]]
            if (tr.num_layers, tr.num_experts, tr.top_k) != (mod.num_layers, mod.num_experts, mod.top_k):
                raise V.fail("SimulationConfig.trace", tr, f"does not fit model {mod.name!r} of user {m} "
                             f"(L={mod.num_layers}, E={mod.num_experts}, K={mod.top_k})")
    from tqdm.auto import tqdm

    from ..activations import _show_progress
    wall = time.perf_counter()
    bar = tqdm(total=T * problem.num_users, desc="simulate", unit="token",
               disable=not _show_progress(progress)) if _show_progress(progress) else None
    model = _Model(problem, placement, cfg, bar)
    routing = model.draw_routing()
    S = math.ceil(T / cfg.tokens_per_session)
    outs = []
    for m, ex in enumerate(routing):
        out = {"start": np.zeros(T), "end": np.zeros(T), "nominal": np.zeros(T), "session_wait": np.zeros(S)}
        outs.append(out)
        model.env.process(model.user(m, ex, out))
    try:
        model.env.run()
    finally:
        if bar is not None:
            bar.update(model._tick)
            bar.close()
    stages = [*model.up, *model.down, *model.comp, *model.bh_up, *model.bh_down, model.cloud, *model.device]
    work = {id(s): [0.0, 0] for s in stages}      # service every stage owes by the routing: seconds, jobs
    by_place = {"device": 0, "edge": 0, "cloud": 0}
    for messages, (codes, counts) in model.plan_counts:
        for code, cnt in zip(codes.tolist(), counts.tolist()):
            for d, k, path in messages[code]:
                by_place["device" if d == DEVICE else "cloud" if d == CLOUD else "edge"] += k * cnt
                for stage, s, jobs in path:
                    if stage is not None:
                        work[id(stage)][0] += s * jobs * cnt
                        work[id(stage)][1] += jobs * cnt
    rows = [dict(stage=s.name, kind=s.kind, server=s.server, capacity=s.capacity, jobs=work[id(s)][1],
                 busy_s=work[id(s)][0], served_jobs=s.calls if s.capacity is not None else None,
                 served_busy_s=s.busy if s.capacity is not None else None,
                 wait_s=s.wait) for s in stages]
    return SimulationResult.from_run(problem, placement, cfg, outs, rows, duration_s=float(model.env.now),
                                     served=model.served, calls=by_place, wall_s=time.perf_counter() - wall)
