"""Studies of the latency reduction's structure: surveys, counterexamples, the chapter's examples.

Chapter *Problem and structure* (``ch-structure``).  :mod:`slimlib.theory`
defines the set function ``R`` (:eq:`eq-reduction`) and the checks of its
defining inequalities; this module runs them on the chapter's instances:

* :func:`survey` — the checks on many random problems (the chapter's tables:
  :prf:ref:`prop-k1` and :prf:ref:`prop-k2` measured), with
  :func:`random_problem_for_survey` to look at one of them again;
* :func:`counterexample_not_submodular`, :func:`counterexample_not_supermodular`
  — the explicit instances of :prf:ref:`prop-k2`;
* :func:`gain_path_example` — the widget's instance (gains of one element
  along a growing cache, :func:`slimlib.theory.marginal_gain_path`);
* :func:`routing_cases` — the five Top-2 routing cases of
  :numref:`fig-routing-cases`, scored by the evaluator's own per-group function.

Every latency is the book's one evaluator's (:func:`slimlib.average_latency`
and the functions it uses), in seconds.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from . import _validate as V
from .latency import call_latency, expert_latency, group_latency
from .model import MoEModel
from .network import Network
from .problem import Placement, Problem
from .stats import ActivationStats
from .theory import PROPERTIES, SetFunction, check_property, ground_set, marginal_gain_path

__all__ = ["SurveyRecord", "Survey", "survey", "random_problem_for_survey",
           "counterexample_not_submodular", "counterexample_not_supermodular",
           "gain_path_example", "RoutingCase", "routing_cases"]


# -----------------------------------------------------------------------------
# Surveys over random problems
# -----------------------------------------------------------------------------
@dataclass
class SurveyRecord:
    """Result of the checks on one random problem (see :func:`survey`).

    Attributes
    ----------
    seed : int
        Seed of :func:`slimlib.instances.random_problem`.
    shape : dict
        ``num_users``, ``num_servers``, ``num_layers``, ``num_experts``, ``top_k``, ``weights``.
    size : int
        ``|V|``.
    exhaustive : bool
        Whether every nested pair was checked.
    violations : dict of str to list of Violation
        Per property, at most 3 violations (largest gap first).
    counts : dict of str to int
        Per property, the number of violations found.
    """

    seed: int
    shape: dict
    size: int
    exhaustive: bool
    violations: dict = field(default_factory=dict)
    counts: dict = field(default_factory=dict)


@dataclass
class Survey:
    """Checks of :func:`survey` on many random problems.

    Attributes
    ----------
    top_k : int
    records : list of SurveyRecord
    """

    top_k: int
    records: list

    def problems(self, servers: str = "all") -> list[SurveyRecord]:
        """Records of problems with one server (``"1"``), several (``"2+"``), or ``"all"``."""
        if servers == "all":
            return list(self.records)
        if servers == "1":
            return [r for r in self.records if r.shape["num_servers"] == 1]
        if servers == "2+":
            return [r for r in self.records if r.shape["num_servers"] >= 2]
        raise V.fail("servers", servers, "must be 'all', '1' or '2+'")

    def with_violation(self, prop: str, servers: str = "all") -> int:
        """Number of problems on which at least one ``prop`` violation was found."""
        return sum(1 for r in self.problems(servers) if r.counts.get(prop, 0) > 0)

    def total(self, prop: str, servers: str = "all") -> int:
        """Total number of ``prop`` violations found."""
        return sum(r.counts.get(prop, 0) for r in self.problems(servers))

    def example(self, prop: str, servers: str = "all", min_experts: int = 1):
        """``(record, violation)`` with the smallest ground set (then largest gap), or ``None``.

        Only problems with at least ``min_experts`` experts per layer are considered.
        """
        best = None
        for r in self.problems(servers):
            if r.shape["num_experts"] < min_experts:
                continue
            for v in r.violations.get(prop, []):
                key = (r.size, len(v.B), -v.gap)
                if best is None or key < best[0]:
                    best = (key, r, v)
        return None if best is None else (best[1], best[2])

    def table(self) -> list[dict]:
        """Rows ``{servers, problems, exhaustive, <prop>: "#problems with a violation / #violations"}``."""
        rows = []
        for servers in ("1", "2+", "all"):
            recs = self.problems(servers)
            row = {"servers": {"1": "N = 1", "2+": "N >= 2", "all": "all"}[servers], "problems": len(recs),
                   "exhaustive": sum(r.exhaustive for r in recs)}
            for prop in PROPERTIES:
                if recs and prop in recs[0].counts:
                    row[prop] = f"{self.with_violation(prop, servers)} / {self.total(prop, servers)}"
            rows.append(row)
        return rows

    def markdown(self) -> str:
        """:meth:`table` as a Markdown table: one column per server count, one row per property.

        Cells read "problems with a violation / violations found".
        """
        rows = self.table()
        props = [p for p in PROPERTIES if p in rows[0]]
        head = "| | " + " | ".join(r["servers"].replace(">=", "≥") for r in rows) + " |"
        sep = "|---|" + "--:|" * len(rows)
        body = ["| problems (checked exhaustively) | " + " | ".join(f"{r['problems']} ({r['exhaustive']})" for r in rows)
                + " |"]
        body += [f"| {p} | " + " | ".join(r[p] for r in rows) + " |" for p in props]
        return "\n".join([head, sep, *body])


def survey(top_k: int, num_problems: int = 300, *, seed: int = 0, properties: Sequence[str] = PROPERTIES,
           max_servers: int = 3, max_users: int = 2, max_layers: int = 2, extra_experts: int = 2,
           exhaustive_max: int = 8, samples: int = 100, tol: float = 1e-12, progress: bool = False) -> Survey:
    """Run the checks on ``num_problems`` random problems of Top-``top_k`` routing.

    Chapter *Problem and structure*, numerical checks of :prf:ref:`prop-k1` and :prf:ref:`prop-k2`.
    Problem ``i`` is ``slimlib.instances.random_problem(seed_i, ...)`` with a
    shape drawn from ``seed``: ``1..max_servers`` servers, ``1..max_users``
    users (random weights half of the time), ``1..max_layers`` layers and
    ``max(K, 2) .. max(K, 2) + extra_experts`` experts.  Ground sets of at most
    ``exhaustive_max`` elements are checked exhaustively, larger ones on
    ``samples`` random nested pairs per property.

    Returns
    -------
    Survey
    """
    top_k = V.number("top_k", top_k, integer=True, positive=True)
    num_problems = V.number("num_problems", num_problems, integer=True, nonneg=True)
    for p in properties:
        if p not in PROPERTIES:
            raise V.fail("properties", p, f"must be among {PROPERTIES}")
    rng = np.random.default_rng(seed)
    it = range(num_problems)
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(it, desc=f"K={top_k}")
    records = []
    emin = max(top_k, 2)
    for _ in it:
        shape = dict(num_users=int(rng.integers(1, max_users + 1)), num_servers=int(rng.integers(1, max_servers + 1)),
                     num_layers=int(rng.integers(1, max_layers + 1)),
                     num_experts=int(rng.integers(emin, emin + extra_experts + 1)), top_k=top_k,
                     weights=bool(rng.integers(2)))
        pseed = int(rng.integers(2 ** 31))
        prob = random_problem_for_survey(pseed, shape)
        f = SetFunction(prob)
        size = len(ground_set(prob))
        rec = SurveyRecord(seed=pseed, shape=shape, size=size, exhaustive=size <= exhaustive_max)
        for prop in properties:
            found = check_property(prob, prop, tol=tol, exhaustive_max=exhaustive_max, samples=samples,
                                   seed=pseed, function=f)
            rec.counts[prop] = len(found)
            rec.violations[prop] = found[:3]
        records.append(rec)
    return Survey(top_k=top_k, records=records)


def random_problem_for_survey(seed: int, shape: dict) -> Problem:
    """The random problem of one :class:`SurveyRecord` (to look at it again)."""
    from .instances import random_problem
    return random_problem(seed, num_users=shape["num_users"], num_servers=shape["num_servers"],
                          num_layers=shape["num_layers"], num_experts=shape["num_experts"], top_k=shape["top_k"],
                          weights=shape.get("weights", False))


# -----------------------------------------------------------------------------
# Counterexamples of prop-k2
# -----------------------------------------------------------------------------
def _toy_model(name: str) -> MoEModel:
    # theta = 8 * 1000 * 1 = 8000 bit per hop; phi = 2e6 FLOP per call; 1 MB per expert.
    return MoEModel(name, num_layers=1, num_experts=2, top_k=2, hidden_size=1000, params_per_expert=10 ** 6,
                    bytes_per_param=1, act_bytes=1,
                    description="Toy Top-2 layer of the counterexamples of prop-k2 (chapter Problem and structure).")


def _toy_network(rates_bps: Sequence[float]) -> Network:
    N = len(rates_bps)
    r = np.asarray(rates_bps, float)[None, :]
    return Network(server_capacity_bytes=np.full(N, 2e6), server_flops=np.full(N, 2e9),
                   user_capacity_bytes=[0.0], user_flops=[1e9], rate_up=r, rate_down=r,
                   backhaul_rate_bps=1e9, backhaul_delay_s=5e-3, cloud_flops=100e12)


def counterexample_not_submodular() -> Problem:
    """The smallest instance on which ``R`` is not submodular (:prf:ref:`prop-k2` (a)).

    One user (no device storage), one server, one MoE layer with ``E = K = 2``;
    every token activates the group ``{0, 1}`` (probability 1).  Numbers: the
    hidden state has ``theta = 8000`` bit, an expert costs ``phi = 2e6`` FLOP; the
    radio link runs at 8 Mbit/s both ways, the server at 2 GFLOP/s, so an edge
    call takes ``1 + 1 + 1 = 3`` ms; the cloud call adds the Table 1 backhaul
    (1 Gbit/s, 5 ms each way) and compute (100 TFLOP/s):
    ``2 + 0.016 + 10 + 0.00002 ≈ 12.016`` ms.

    The ground set is ``{(0,0,0,0), (0,0,0,1)}``.  With ``A = ∅``,
    ``B = {(0,0,0,1)}``, ``e = (0,0,0,0)``: ``R(A+e) - R(A) = 0`` (expert 1 still
    waits for the cloud) but ``R(B+e) - R(B) = t_cloud - t_edge > 0``.
    """
    model = _toy_model("toy-top2")
    stats = ActivationStats(2, 2, [[[0, 1]]], probs=[[1.0]], model=model.name,
                            provenance={"source": "synthetic", "generator": "counterexample_not_submodular"})
    return Problem(model, _toy_network([8e6]), stats, name="counterexample: not submodular")


def counterexample_not_supermodular() -> Problem:
    """An instance with two servers on which ``R`` is not supermodular (:prf:ref:`prop-k2` (b)).

    As :func:`counterexample_not_submodular`, with a second server whose radio
    link runs at 4 Mbit/s (edge call ``2 + 1 + 2 = 5`` ms against 3 ms on
    server 0).  With ``A = {(0,0,0,1)}``, ``B = {(0,0,0,0), (0,0,0,1)}`` and
    ``e = (1,0,0,0)`` (expert 0 on the slower server 1):
    ``R(A+e) - R(A) = t_cloud - 5 ms > 0`` but ``R(B+e) - R(B) = 0`` (server 0
    already serves expert 0 faster).
    """
    model = _toy_model("toy-top2")
    stats = ActivationStats(2, 2, [[[0, 1]]], probs=[[1.0]], model=model.name,
                            provenance={"source": "synthetic", "generator": "counterexample_not_supermodular"})
    return Problem(model, _toy_network([8e6, 4e6]), stats, name="counterexample: not supermodular")


def gain_path_example(top_k: int, num_experts: int, seed: int, *, num_servers: int = 2, num_users: int = 2):
    """The widget's instance: a random one-layer problem, its most useful element and a random order.

    The element is user 0's most activated expert (not on its device) on the
    server with user 0's fastest link; the other elements are added in a
    random (seeded) order.

    Returns
    -------
    problem : Problem
    element : (n, u, l, e)
    order : list of (n, u, l, e)
    gains : ndarray, shape (len(order) + 1,), seconds
    """
    from .instances import random_problem
    prob = random_problem(seed, num_users=num_users, num_servers=num_servers, num_layers=1,
                          num_experts=num_experts, top_k=top_k, device_slots=(0, 1))
    p = prob.stats[0].marginals()[0].copy()
    p[prob.device_cache[0][0]] = -1.0
    e = int(np.argmax(p))
    n = int(np.argmin(call_latency(prob).edge[0]))
    elem = (n, 0, 0, e)
    rest = [x for x in ground_set(prob) if x != elem]
    rng = np.random.default_rng(seed)
    order = [rest[i] for i in rng.permutation(len(rest))]
    return prob, elem, order, marginal_gain_path(prob, elem, order)


# -----------------------------------------------------------------------------
# fig-routing-cases: the routing cases of one Top-2 group
# -----------------------------------------------------------------------------
@dataclass
class RoutingCase:
    """One routing case of :numref:`fig-routing-cases`, scored by the evaluator.

    Attributes
    ----------
    key : str
        ``"both-local"``, ``"local-edge"``, ``"same-server"``, ``"two-servers"``, ``"cloud"``.
    title : str
    problem : Problem
        One user, two servers, one MoE layer; group ``{i, j} = {0, 1}`` with probability 1.
    placement : Placement
    where : tuple of str
        Where ``i`` and ``j`` are served: ``"device"``, ``"server 1"``, ``"server 2"`` or ``"cloud"``.
    tau : tuple of float
        ``tau(l, i)`` and ``tau(l, j)`` from :func:`slimlib.expert_latency`, seconds.
    latency : float
        ``tau(l, {i, j})`` from :func:`slimlib.group_latency`, seconds; equals
        ``average_latency(problem, placement)`` because the group has probability 1.
    """

    key: str
    title: str
    problem: Problem
    placement: Placement
    where: tuple
    tau: tuple
    latency: float


def routing_cases(model: MoEModel | str = "moe-llava-phi2-2.7b-4e", params=None,
                  distance_m: Sequence[float] = (100.0, 250.0)) -> list[RoutingCase]:
    """The five hidden-state routing cases of a Top-2 group ``{i, j}`` (:numref:`fig-routing-cases`).

    The example: one user running one MoE layer of ``model`` (default
    MoE-LLaVA-Phi2, fp16), two edge servers at ``distance_m`` metres, Table 1
    parameters; the token activates ``{i, j} = {0, 1}`` with probability 1.
    Each case is a placement; its latencies come from
    :func:`slimlib.expert_latency` and :func:`slimlib.group_latency` — the
    functions :func:`slimlib.average_latency` itself uses.

    Cases (server 1 is the nearer one):
    both local (device holds i, j); one local, one edge (device i, server 1 j);
    both on one server (server 1 holds i, j); two servers (server 1 i,
    server 2 j); one in the cloud (server 1 i, j nowhere).

    Returns
    -------
    list of RoutingCase
    """
    from .io import load_model_card, load_parameters
    mod = load_model_card(model) if isinstance(model, str) else model
    if mod.num_experts < 2:
        raise V.fail("model.num_experts", mod.num_experts, "needs at least 2 experts")
    mod = dataclasses.replace(mod, num_layers=1, top_k=2)
    params = load_parameters() if params is None else params
    d = V.array("distance_m", distance_m, shape=(2,), positive=True)
    net = Network.from_parameters(params, num_users=1, num_servers=2, distance_m=d[None, :],
                                  user_capacity_bytes=2 * mod.expert_bytes,
                                  server_capacity_bytes=2 * mod.expert_bytes)
    stats = ActivationStats(mod.num_experts, 2, [[[0, 1]]], probs=[[1.0]], model=mod.name,
                            provenance={"source": "synthetic", "generator": "routing_cases"})
    prob = Problem(mod, net, stats, device_cache=[np.zeros((1, mod.num_experts), bool)], name="routing-cases example")
    i, j = 0, 1
    specs = [("both-local", "both local", {i: "device", j: "device"}),
             ("local-edge", "one local, one edge", {i: "device", j: "server 1"}),
             ("same-server", "both on one server", {i: "server 1", j: "server 1"}),
             ("two-servers", "two servers", {i: "server 1", j: "server 2"}),
             ("cloud", "one in the cloud", {i: "server 1", j: "cloud"})]
    calls = call_latency(prob)
    out = []
    for key, title, loc in specs:
        P = Placement.empty(prob, method=f"figure5:{key}")
        for e, where in loc.items():
            if where == "device":
                P.device[0][0, e] = True
            elif where.startswith("server"):
                P.server[0][int(where[-1]) - 1, 0, e] = True
        P.check(prob)
        tau = expert_latency(prob, P, 0, calls=calls)
        lat = float(group_latency(tau, np.array([0]), np.array([[i, j]]))[0])
        # where each expert is actually served: the evaluator's choice (the fastest holder)
        options = {"device": calls.local[0], "server 1": calls.edge[0, 0], "server 2": calls.edge[0, 1],
                   "cloud": calls.cloud[0]}
        served = tuple(loc[e] if np.isclose(options[loc[e]], tau[0, e], rtol=0, atol=1e-15) else "cloud"
                       for e in (i, j))
        out.append(RoutingCase(key, title, prob, P, served, (float(tau[0, i]), float(tau[0, j])), lat))
    return out
