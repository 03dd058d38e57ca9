"""The caching problem P1 and its decision, the placement.

Chapter *The system model*, section "The problem" (SPEC §1): a
:class:`Problem` bundles the MoE model(s), the network, every user's model and
activation statistics, and the device caches fixed by the default device
policy; a :class:`Placement` says which server caches which expert.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from . import _validate as V
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


class Problem:
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
        self.models: list[MoEModel] = [models] if isinstance(models, MoEModel) else list(models)
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
        self.name = name
        if device_cache is None:
            device_cache = [default_device_cache(self.models[um[m]], stats[m], network.user_capacity_bytes[m])
                            for m in range(M)]
        if len(device_cache) != M:
            raise V.fail("Problem.device_cache", f"{len(device_cache)} entries", f"needs one per user (M={M})")
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

    # -- JSON ----------------------------------------------------------------
    def to_json(self) -> dict:
        """Self-contained JSON: models, network, per-user statistics and device caches."""
        return {"kind": PROBLEM_KIND, "version": VERSION, "name": self.name,
                "models": [m.to_json() for m in self.models], "network": self.network.to_json(),
                "user_model": self.user_model.tolist(), "stats": [s.to_json() for s in self.stats],
                "device_cache": [np.argwhere(y).tolist() for y in self.device_cache]}

    @classmethod
    def from_json(cls, data) -> "Problem":
        """Build from :meth:`to_json` output, validating every field."""
        from .io import check_header
        check_header(data, PROBLEM_KIND, VERSION)
        V.fields("problem", data, ["kind", "version", "models", "network", "stats"],
                 ["name", "user_model", "device_cache"])
        if not isinstance(data["models"], list):
            raise V.fail("problem.models", data["models"], "must be a list")
        models = [MoEModel.from_json(m) for m in data["models"]]
        net = Network.from_json(data["network"])
        if not isinstance(data["stats"], list):
            raise V.fail("problem.stats", data["stats"], "must be a list")
        stats = [ActivationStats.from_json(s) for s in data["stats"]]
        um = data.get("user_model")
        dc = None
        if data.get("device_cache") is not None:
            um_arr = np.zeros(net.num_users, int) if um is None else np.asarray(um)
            dc = []
            if len(data["device_cache"]) != net.num_users:
                raise V.fail("problem.device_cache", data["device_cache"], f"needs one entry per user (M={net.num_users})")
            for m, idx in enumerate(data["device_cache"]):
                mod = models[int(um_arr[m])] if 0 <= int(um_arr[m]) < len(models) else models[0]
                y = np.zeros((mod.num_layers, mod.num_experts), bool)
                idx = V.array(f"problem.device_cache[{m}]", idx if idx else np.zeros((0, 2)), dtype=np.int64)
                if idx.size:
                    if idx.ndim != 2 or idx.shape[1] != 2 or (idx < 0).any() or (idx[:, 0] >= mod.num_layers).any() or (idx[:, 1] >= mod.num_experts).any():
                        raise V.fail(f"problem.device_cache[{m}]", idx.tolist(), "entries must be [layer, expert] in range")
                    y[idx[:, 0], idx[:, 1]] = True
                dc.append(y)
        return cls(models, net, stats, user_model=um, device_cache=dc, name=data.get("name", ""))


class Placement:
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
        self.server = [np.array(x, dtype=bool) for x in server]
        self.device = [np.array(y, dtype=bool) for y in device]
        for u, x in enumerate(self.server):
            if x.ndim != 3:
                raise V.fail(f"Placement.server[{u}]", x.shape, "must have shape (N, L, E)")
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

    def to_json(self) -> dict:
        """JSON: shapes and the indices of cached experts."""
        info = {k: v for k, v in self.info.items() if isinstance(v, (int, float, str, bool)) or v is None}
        return {"kind": PLACEMENT_KIND, "version": VERSION, "method": self.method, "info": info,
                "server_shapes": [list(x.shape) for x in self.server],
                "server": [np.argwhere(x).tolist() for x in self.server],
                "device_shapes": [list(y.shape) for y in self.device],
                "device": [np.argwhere(y).tolist() for y in self.device]}

    @classmethod
    def from_json(cls, data) -> "Placement":
        """Build from :meth:`to_json` output, validating indices against the shapes."""
        from .io import check_header
        check_header(data, PLACEMENT_KIND, VERSION)
        V.fields("placement", data, ["kind", "version", "server_shapes", "server", "device_shapes", "device"],
                 ["method", "info"])

        def fill(field, shapes, idxs, nd):
            if not isinstance(shapes, list) or not isinstance(idxs, list) or len(shapes) != len(idxs):
                raise V.fail(f"placement.{field}", idxs, f"must be a list matching {field}_shapes")
            out = []
            for i, (shape, idx) in enumerate(zip(shapes, idxs)):
                shape = tuple(V.array(f"placement.{field}_shapes[{i}]", shape, shape=(nd,), dtype=np.int64, nonneg=True))
                arr = np.zeros(shape, bool)
                idx = V.array(f"placement.{field}[{i}]", idx if idx else np.zeros((0, nd)), dtype=np.int64)
                if idx.size:
                    if idx.ndim != 2 or idx.shape[1] != nd or (idx < 0).any() or (idx >= np.array(shape)).any():
                        raise V.fail(f"placement.{field}[{i}]", idx.tolist(), f"indices must lie inside shape {shape}")
                    arr[tuple(idx.T)] = True
                out.append(arr)
            return out

        server = fill("server", data["server_shapes"], data["server"], 3)
        device = fill("device", data["device_shapes"], data["device"], 2)
        return cls(server, device, method=data.get("method", ""), info=data.get("info") or {})
