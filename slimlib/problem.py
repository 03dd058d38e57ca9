"""The caching problem P1 and its decision, the placement.

Chapter *The system model*, section "The problem": a
:class:`Problem` bundles the MoE model(s), the network, every user's model and
activation statistics, and the device caches fixed by the default device
policy; a :class:`Placement` says which server caches which expert.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from . import _validate as V
from ._serial import Serial
from .model import MoEModel
from .network import Network, Parameters
from .stats import ActivationStats

__all__ = ["Problem", "Placement", "default_device_cache"]

PROBLEM_KIND = "problem"
PLACEMENT_KIND = "placement"
VERSION = 1


def default_device_cache(model: MoEModel, stats: ActivationStats, capacity_bytes: float) -> np.ndarray:
    """The paper's device policy: cache the most activated experts until full.

    Chapter *The system model*, section "Device caches".  Experts are ranked
    by their marginal activation probability ``p_{l,e}`` over all layers (ties
    broken by layer, then expert index) and taken while they fit.

    Parameters
    ----------
    model : MoEModel
    stats : ActivationStats
        Statistics of this user, shape-compatible with ``model``.
    capacity_bytes : float
        ``C_m``, bytes.

    Returns
    -------
    ndarray of bool, shape (L, E)
        ``y[l, e]``.
    """
    p = stats.marginals()
    n = int(np.floor(capacity_bytes / model.expert_bytes + 1e-9))
    y = np.zeros(p.shape, dtype=bool)
    if n > 0:
        order = np.argsort(-p.ravel(), kind="stable")[:n]
        y.ravel()[order] = True
    return y


class Problem(Serial):
    """One instance of P1 (chapter *The system model*, problem (P1)).

    Parameters
    ----------
    models : MoEModel or sequence of MoEModel
        The models ``u`` in the system.
    network : Network
        ``M`` users and ``N`` servers.
    stats : ActivationStats or sequence of ActivationStats
        Statistics of each user (length ``M``), or one shared by all users.
    user_model : sequence of int, optional
        ``u(m)``: index into ``models`` of each user's model (default: all 0).
    device_cache : sequence of ndarray, optional
        ``y``: per user a bool array ``(L_u, E_u)``.  Default: the device
        policy :func:`default_device_cache` with each user's ``C_m``.
    name : str
        A label for plots and files.
    """

    def __init__(self, models, network: Network, stats, user_model=None, device_cache=None, name: str = ""):
        if isinstance(models, MoEModel):
            models = [models]
        if not isinstance(models, (list, tuple)):
            raise V.fail("Problem.models", models, "must be a MoEModel or a non-empty list of them")
        self.models: list[MoEModel] = list(models)
        if not self.models or not all(isinstance(m, MoEModel) for m in self.models):
            raise V.fail("Problem.models", models, "must be a MoEModel or a non-empty list of them")
        if not isinstance(network, Network):
            raise V.fail("Problem.network", network, "must be a Network")
        self.network = network
        M = network.num_users
        if user_model is None:
            user_model = np.zeros(M, dtype=int)
        um = V.array("Problem.user_model", user_model, shape=(M,), dtype=np.int64)
        bad = np.flatnonzero((um < 0) | (um >= len(self.models)))
        if bad.size:
            raise V.fail(f"Problem.user_model[{bad[0]}]", int(um[bad[0]]), f"must index one of {len(self.models)} model(s)")
        self.user_model = um
        if isinstance(stats, ActivationStats):
            stats = [stats] * M
        if not isinstance(stats, (list, tuple)):
            raise V.fail("Problem.stats", stats, "must be ActivationStats or a list with one per user")
        stats = list(stats)
        if len(stats) != M:
            raise V.fail("Problem.stats", f"{len(stats)} entries", f"needs one ActivationStats per user (M={M})")
        for m, s in enumerate(stats):
            if not isinstance(s, ActivationStats):
                raise V.fail(f"Problem.stats[{m}]", s, "must be ActivationStats")
            mod = self.models[um[m]]
            for attr, want in (("num_layers", mod.num_layers), ("num_experts", mod.num_experts), ("top_k", mod.top_k)):
                if getattr(s, attr) != want:
                    raise V.fail(f"Problem.stats[{m}].{attr}", getattr(s, attr),
                                 f"does not match model {mod.name!r} ({attr}={want})")
        self.stats = stats
        if not isinstance(name, str):
            raise V.fail("Problem.name", name, "must be a string")
        self.name = name
        _check_device_cells("Problem device caches", self.models, um)
        _check_latency_scale(self.models, network, um)
        if device_cache is None:
            device_cache = [default_device_cache(self.models[um[m]], stats[m], network.user_capacity_bytes[m])
                            for m in range(M)]
        if not isinstance(device_cache, (list, tuple)) or len(device_cache) != M:
            raise V.fail("Problem.device_cache", device_cache, f"needs a list with one entry per user (M={M})")
        dc = []
        for m, y in enumerate(device_cache):
            mod = self.models[um[m]]
            y = V.array(f"Problem.device_cache[{m}]", y, shape=(mod.num_layers, mod.num_experts), dtype=bool)
            used = y.sum() * mod.expert_bytes
            if used > network.user_capacity_bytes[m] * (1 + 1e-9):
                raise V.fail(f"Problem.device_cache[{m}]", f"{used:.4g} bytes",
                             f"exceeds the device capacity {network.user_capacity_bytes[m]:.4g} bytes")
            dc.append(y)
        self.device_cache = dc

    # -- convenience ---------------------------------------------------------
    @classmethod
    def build(cls, model: MoEModel, stats, params: Parameters | None = None, *, num_users: int | None = None,
              num_servers: int | None = None, seed: int = 0, name: str = "", **network_kw) -> "Problem":
        """One model, a network drawn from Table 1 (seeded), shared or per-user statistics."""
        net = Network.from_parameters(params, num_users=num_users, num_servers=num_servers, seed=seed, **network_kw)
        return cls(model, net, stats, name=name)

    @property
    def num_users(self) -> int:
        return self.network.num_users

    @property
    def num_servers(self) -> int:
        return self.network.num_servers

    def users_of(self, u: int) -> np.ndarray:
        """Indices of the users running model ``u``."""
        return np.flatnonzero(self.user_model == u)

    def replace(self, **changes) -> "Problem":
        """Copy with ``models``, ``network``, ``stats``, ``user_model``, ``device_cache`` or ``name`` changed.

        The device caches are recomputed by the default policy unless given.
        """
        kw = dict(models=self.models, network=self.network, stats=self.stats, user_model=self.user_model,
                  device_cache=None, name=self.name)
        for k in changes:
            if k not in kw:
                raise V.fail(f"Problem.{k}", changes[k], f"unknown field; known: {sorted(kw)}")
        kw.update(changes)
        return Problem(**kw)

    def __repr__(self):
        names = ",".join(m.name for m in self.models)
        return f"Problem({self.name!r}, models=[{names}], M={self.num_users}, N={self.num_servers})"

    # -- JSON (to_json/from_json for text: slimlib._serial) --------------------
    def to_dict(self) -> dict:
        """Self-contained JSON-ready dict: models, network, per-user statistics and device caches."""
        return {"kind": PROBLEM_KIND, "version": VERSION, "name": self.name,
                "models": [m.to_dict() for m in self.models], "network": self.network.to_dict(),
                "user_model": self.user_model.tolist(), "stats": [s.to_dict() for s in self.stats],
                "device_cache": [np.argwhere(y).tolist() for y in self.device_cache]}

    @classmethod
    def from_dict(cls, data) -> "Problem":
        """Build from :meth:`to_dict` output, validating every field before indexing with it."""
        V.check_header(data, PROBLEM_KIND, VERSION)
        V.fields("problem", data, ["kind", "version", "models", "network", "stats"],
                 ["name", "user_model", "device_cache"])
        raw_models = V.sequence("problem.models", data["models"], nonempty=True, maximum=V.MAX_USERS)
        models = [MoEModel.from_dict(m) for m in raw_models]
        net = Network.from_dict(data["network"])
        M = net.num_users
        raw_stats = V.sequence("problem.stats", data["stats"], nonempty=True, maximum=M)
        if len(raw_stats) not in (1, M):
            raise V.fail("problem.stats", f"{len(raw_stats)} entries", f"needs one per user (M={M}) or one shared")
        stats = [ActivationStats.from_dict(s) for s in raw_stats]
        if data.get("user_model") is None:
            um = np.zeros(M, dtype=np.int64)
        else:
            um = V.array("problem.user_model", data["user_model"], shape=(M,), dtype=np.int64)
            bad = np.flatnonzero((um < 0) | (um >= len(models)))
            if bad.size:
                raise V.fail(f"problem.user_model[{bad[0]}]", int(um[bad[0]]),
                             f"must index one of {len(models)} model(s)")
        _check_device_cells("problem.device_cache", models, um)
        dc = None
        if data.get("device_cache") is not None:
            entries = V.sequence("problem.device_cache", data["device_cache"], length=M)
            dc = []
            for m, idx in enumerate(entries):
                mod = models[int(um[m])]
                shape = (mod.num_layers, mod.num_experts)
                dc.append(_from_indices(f"problem.device_cache[{m}]", idx, shape))
        name = data.get("name", "")
        return cls(models, net, stats if len(stats) == M else stats[0], user_model=um, device_cache=dc,
                   name=name)


def _check_device_cells(field: str, models, user_model) -> None:
    # One (L, E) bool array per user: check the total before any is allocated.
    per_model = np.bincount(user_model, minlength=len(models))
    total = sum(int(c) * m.num_layers * m.num_experts for c, m in zip(per_model, models))
    if total > V.MAX_TOTAL_CELLS:
        raise V.fail(field, f"{total} cells (users x layers x experts)",
                     f"more than the size limit {V.MAX_TOTAL_CELLS} (slimlib._validate.MAX_TOTAL_CELLS)")


def _check_latency_scale(models, network: Network, user_model) -> None:
    # The slowest possible token (every expert of every layer fetched over the worst link and run on the
    # slowest processor), weighted by all users, must be a finite float64: extreme inputs are refused
    # here instead of overflowing to inf (or to a reported "0.0000 ms") in the evaluator.
    slowest_flops = min(network.server_flops.min(), network.user_flops.min(), network.cloud_flops)
    slowest_rate = min(network.rate_up.min(), network.rate_down.min(), network.backhaul_rate_bps)
    worst = 0.0
    with np.errstate(over="ignore"):
        for u in set(int(x) for x in user_model):
            mod = models[u]
            hop = 2 * mod.hidden_bits / slowest_rate + 2 * network.backhaul_delay_s
            worst = max(worst, mod.num_layers * mod.top_k * (hop + mod.flops_per_expert / slowest_flops))
        total = worst * float(network.user_weight.sum())
    if not np.isfinite(total) or total > V.MAX_MAGNITUDE ** 2:
        raise V.fail("Problem", f"latency scale {total:g}",
                     "inputs so extreme that latencies would overflow float64 (rates, FLOP/s, sizes or weights)")


def _from_indices(field: str, idx, shape: tuple) -> np.ndarray:
    """A bool array of ``shape`` with the listed ``[i, j, ...]`` entries set (checked before allocation)."""
    V.cells(field, shape, V.MAX_TOTAL_CELLS)
    nd = len(shape)
    if not isinstance(idx, (list, tuple)):
        raise V.fail(field, idx, f"must be a list of {nd}-element index lists")
    arr = np.zeros(shape, bool)
    if len(idx) == 0:
        return arr
    ind = V.array(field, idx, dtype=np.int64)
    if ind.ndim != 2 or ind.shape[1] != nd:
        raise V.fail(field, idx, f"must be a list of {nd}-element index lists")
    if (ind < 0).any() or (ind >= np.array(shape)).any():
        raise V.fail(field, ind.tolist(), f"indices must lie inside shape {shape}")
    arr[tuple(ind.T)] = True
    return arr


class Placement(Serial):
    """Which server caches which expert, plus the device caches.

    Chapter *The system model*, decision variables ``x`` and ``y``.

    Parameters
    ----------
    server : sequence of ndarray
        ``server[u]`` is a bool array of shape ``(N, L_u, E_u)``: ``x[n, u, l, e]``.
    device : sequence of ndarray
        ``device[m]`` is a bool array of shape ``(L_u(m), E_u(m))``: ``y[m, l, e]``.
    method : str
        Name of the method that produced it (for reports).
    info : dict
        Solver diagnostics (run time, MILP gap, ...).
    """

    def __init__(self, server: Sequence, device: Sequence, method: str = "", info: dict | None = None):
        server = V.sequence("Placement.server", server)
        device = V.sequence("Placement.device", device)
        self.server = [V.array(f"Placement.server[{u}]", x, dtype=bool, ndim=3) for u, x in enumerate(server)]
        self.device = [V.array(f"Placement.device[{m}]", y, dtype=bool, ndim=2) for m, y in enumerate(device)]
        if not isinstance(method, str):
            raise V.fail("Placement.method", method, "must be a string")
        if info is not None and not isinstance(info, dict):
            raise V.fail("Placement.info", info, "must be a dict")
        self.method = method
        self.info = dict(info or {})

    @classmethod
    def empty(cls, problem: Problem, method: str = "none") -> "Placement":
        """No edge caching; device caches from the problem."""
        N = problem.num_servers
        server = [np.zeros((N, m.num_layers, m.num_experts), bool) for m in problem.models]
        return cls(server, [y.copy() for y in problem.device_cache], method=method)

    def copy(self) -> "Placement":
        return Placement([x.copy() for x in self.server], [y.copy() for y in self.device], self.method, dict(self.info))

    def used_bytes(self, problem: Problem) -> np.ndarray:
        """Storage used on each server, bytes, shape ``(N,)``."""
        used = np.zeros(problem.num_servers)
        for u, (mod, x) in enumerate(zip(problem.models, self.server)):
            used += x.reshape(x.shape[0], -1).sum(axis=1) * mod.expert_bytes
        return used

    def check(self, problem: Problem) -> None:
        """Raise ValueError unless the placement fits ``problem`` and every capacity."""
        if len(self.server) != len(problem.models):
            raise V.fail("Placement.server", f"{len(self.server)} models", f"problem has {len(problem.models)}")
        for u, (mod, x) in enumerate(zip(problem.models, self.server)):
            want = (problem.num_servers, mod.num_layers, mod.num_experts)
            if x.shape != want:
                raise V.fail(f"Placement.server[{u}]", x.shape, f"must have shape {want}")
        if len(self.device) != problem.num_users:
            raise V.fail("Placement.device", f"{len(self.device)} users", f"problem has {problem.num_users}")
        for m, y in enumerate(self.device):
            mod = problem.models[problem.user_model[m]]
            if y.shape != (mod.num_layers, mod.num_experts):
                raise V.fail(f"Placement.device[{m}]", y.shape, f"must have shape {(mod.num_layers, mod.num_experts)}")
            if y.sum() * mod.expert_bytes > problem.network.user_capacity_bytes[m] * (1 + 1e-9):
                raise V.fail(f"Placement.device[{m}]", int(y.sum()), "exceeds the device capacity")
        used = self.used_bytes(problem)
        cap = problem.network.server_capacity_bytes
        over = np.flatnonzero(used > cap * (1 + 1e-9) + 1e-6)
        if over.size:
            n = over[0]
            raise V.fail(f"Placement.server (server {n})", f"{used[n]:.6g} bytes", f"exceeds capacity {cap[n]:.6g} bytes")

    def is_feasible(self, problem: Problem) -> bool:
        """``True`` when :meth:`check` passes."""
        try:
            self.check(problem)
        except ValueError:
            return False
        return True

    def cached(self, n: int) -> list[tuple[int, int, int]]:
        """``(u, l, e)`` of every expert cached on server ``n``."""
        out = []
        for u, x in enumerate(self.server):
            out += [(u, int(l), int(e)) for l, e in np.argwhere(x[n])]
        return out

    def __eq__(self, other):
        if not isinstance(other, Placement):
            return NotImplemented
        return (len(self.server) == len(other.server) and len(self.device) == len(other.device)
                and all(np.array_equal(a, b) for a, b in zip(self.server, other.server))
                and all(np.array_equal(a, b) for a, b in zip(self.device, other.device)))

    def __repr__(self):
        n = sum(int(x.sum()) for x in self.server)
        return f"Placement(method={self.method!r}, edge copies={n})"

    def to_dict(self) -> dict:
        """JSON-ready dict: shapes and the indices of cached experts.

        ``info`` keeps its numbers, strings, booleans and ``None``; a
        non-finite float (a MIP gap of infinity) is written as the string
        ``"inf"``/``"-inf"``/``"nan"`` so that the file is strict JSON.
        """
        info = {}
        for k, v in self.info.items():
            if isinstance(v, (bool, np.bool_)):
                info[k] = bool(v)
            elif isinstance(v, (int, np.integer)):
                info[k] = int(v)
            elif isinstance(v, (float, np.floating)):
                info[k] = float(v) if np.isfinite(v) else str(float(v))
            elif isinstance(v, str) or v is None:
                info[k] = v
        return {"kind": PLACEMENT_KIND, "version": VERSION, "method": self.method, "info": info,
                "server_shapes": [list(x.shape) for x in self.server],
                "server": [np.argwhere(x).tolist() for x in self.server],
                "device_shapes": [list(y.shape) for y in self.device],
                "device": [np.argwhere(y).tolist() for y in self.device]}

    @classmethod
    def from_dict(cls, data) -> "Placement":
        """Build from :meth:`to_dict` output, validating shapes (before allocation) and indices."""
        V.check_header(data, PLACEMENT_KIND, VERSION)
        V.fields("placement", data, ["kind", "version", "server_shapes", "server", "device_shapes", "device"],
                 ["method", "info"])
        shapes = {}
        total = 0
        for field, nd in (("server", 3), ("device", 2)):
            raw = V.sequence(f"placement.{field}_shapes", data[f"{field}_shapes"], maximum=V.MAX_USERS)
            V.sequence(f"placement.{field}", data[field], length=len(raw))
            shapes[field] = []
            for i, shape in enumerate(raw):
                shape = V.array(f"placement.{field}_shapes[{i}]", shape, shape=(nd,), dtype=np.int64, nonneg=True)
                shape = tuple(int(x) for x in shape)
                total += V.cells(f"placement.{field}_shapes[{i}]", shape, V.MAX_TOTAL_CELLS)
                shapes[field].append(shape)
        if total > V.MAX_TOTAL_CELLS:
            raise V.fail("placement", f"{total} cells", f"more than the size limit {V.MAX_TOTAL_CELLS}")
        server = [_from_indices(f"placement.server[{i}]", idx, sh) for i, (idx, sh)
                  in enumerate(zip(data["server"], shapes["server"]))]
        device = [_from_indices(f"placement.device[{i}]", idx, sh) for i, (idx, sh)
                  in enumerate(zip(data["device"], shapes["device"]))]
        method = data.get("method", "")
        info = data.get("info") or {}
        return cls(server, device, method=method, info=info)
