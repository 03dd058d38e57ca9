"""Wireless edge network and the simulation parameters of Table 1.

Chapter *The system model*, section "The network" and Table 1.
:class:`Parameters` is Table 1 (loaded from ``data/parameters/table1.json``);
:class:`Network` is one drawn instance: server and device storage and compute,
uplink/downlink rates between every user and server, the backhaul to the cloud.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields as dc_fields
from typing import Any

import numpy as np

from . import _validate as V
from ._datafiles import find
from ._serial import Serial, read_json

__all__ = ["Parameters", "Network", "path_loss_db", "shannon_rate_bps"]

PARAMS_KIND = "parameters"
NETWORK_KIND = "network"
VERSION = 1


@dataclass(frozen=True)
class Parameters(Serial):
    """Simulation parameters (Table 1 of the paper, chapter *The system model*).

    Every field is a number in the unit its name ends with.  The shipped
    defaults live in ``data/parameters/table1.json`` (:func:`slimlib.load_parameters`),
    which also holds a label, unit and source for each, so that Table 1 in the
    book is rendered from the same file the code reads.

    Attributes
    ----------
    bandwidth_hz : float
        Bandwidth of every user–server link, Hz.
    user_tx_power_dbm, server_tx_power_dbm : float
        Transmit powers for the uplink and the downlink, dBm.
    noise_psd_dbm_per_hz : float
        Noise power spectral density, dBm/Hz.
    path_loss_intercept_db, path_loss_slope_db : float
        Path loss ``a + b log10(d_km)`` in dB.
    distance_min_m, distance_max_m : float
        User–server distances are drawn uniformly in this range, metres.
    device_flops, edge_flops, cloud_flops : float
        Effective compute, FLOP/s.
    backhaul_rate_bps, backhaul_delay_s : float
        Edge–cloud backhaul rate (bit/s) and one-way delay (s).
    server_capacity_bytes, device_capacity_bytes : float
        Expert storage of every edge server and every device, bytes.
    num_servers, num_users : int
        Size of the default network.
    """

    bandwidth_hz: float = 10e6
    user_tx_power_dbm: float = 23.0
    server_tx_power_dbm: float = 30.0
    noise_psd_dbm_per_hz: float = -174.0
    path_loss_intercept_db: float = 128.1
    path_loss_slope_db: float = 37.6
    distance_min_m: float = 50.0
    distance_max_m: float = 300.0
    device_flops: float = 1e12
    edge_flops: float = 20e12
    cloud_flops: float = 100e12
    backhaul_rate_bps: float = 1e9
    backhaul_delay_s: float = 5e-3
    server_capacity_bytes: float = 1.5e9
    device_capacity_bytes: float = 0.5e9
    num_servers: int = 5
    num_users: int = 10
    meta: dict = field(default_factory=dict, compare=False, repr=False)

    _POSITIVE = ("bandwidth_hz", "device_flops", "edge_flops", "cloud_flops", "backhaul_rate_bps",
                 "distance_min_m", "distance_max_m")
    _NONNEG = ("backhaul_delay_s", "server_capacity_bytes", "device_capacity_bytes")

    def __post_init__(self):
        for f in self.names():
            v = getattr(self, f)
            if f in ("num_servers", "num_users"):
                v = V.size(f"Parameters.{f}", v, V.MAX_SERVERS if f == "num_servers" else V.MAX_USERS)
            else:
                v = V.number(f"Parameters.{f}", v, positive=f in self._POSITIVE, nonneg=f in self._NONNEG)
            object.__setattr__(self, f, v)
        if self.distance_min_m > self.distance_max_m:
            raise V.fail("Parameters.distance_min_m", self.distance_min_m,
                         f"must be <= distance_max_m={self.distance_max_m}")
        if not isinstance(self.meta, dict):
            raise V.fail("Parameters.meta", self.meta, "must be a dict")

    @classmethod
    def names(cls) -> list[str]:
        """Names of the numeric parameters, in Table 1 order."""
        return [f.name for f in dc_fields(cls) if f.name != "meta"]

    def replace(self, **changes) -> "Parameters":
        """Copy with some parameters changed (unknown names raise ValueError)."""
        for k in changes:
            if k not in self.names():
                raise V.fail(f"Parameters.{k}", changes[k], f"unknown parameter; known: {self.names()}")
        values = {f: getattr(self, f) for f in self.names()}
        values.update(changes)
        return Parameters(**values, meta=self.meta)

    def table(self) -> list[dict]:
        """Rows of Table 1: ``name``, ``label``, ``value``, ``unit``, ``display``, ``source``."""
        rows = []
        for f in self.names():
            m = self.meta.get(f, {})
            rows.append({"name": f, "label": m.get("label", f), "value": getattr(self, f),
                         "unit": m.get("unit", ""), "display": m.get("display", str(getattr(self, f))),
                         "source": m.get("source", "")})
        return rows

    def to_dict(self) -> dict:
        """JSON-ready dict: every parameter as ``{"value", "unit", "label", ...}``."""
        body = {}
        for f in self.names():
            entry = {"value": getattr(self, f)}
            entry.update({k: v for k, v in self.meta.get(f, {}).items()})
            body[f] = entry
        return {"kind": PARAMS_KIND, "version": VERSION, "parameters": body}

    @classmethod
    def from_dict(cls, data) -> "Parameters":
        """Build from :meth:`to_dict` output.  Missing parameters keep their defaults."""
        V.check_header(data, PARAMS_KIND, VERSION)
        V.fields("parameters", data, ["kind", "version", "parameters"], ["name", "description"])
        for k in ("name", "description"):
            if k in data and not isinstance(data[k], str):
                raise V.fail(f"parameters.{k}", data[k], "must be a string")
        body = data["parameters"]
        if not isinstance(body, dict):
            raise V.fail("parameters.parameters", body, "must be a JSON object")
        values, meta = {}, {}
        for k, entry in body.items():
            if k not in cls.names():
                raise V.fail(f"parameters.{k}", entry, f"unknown parameter; known: {cls.names()}")
            if isinstance(entry, dict):
                V.fields(f"parameters.{k}", entry, ["value"], ["unit", "label", "display", "source"])
                for kk in ("unit", "label", "display", "source"):
                    if kk in entry and not isinstance(entry[kk], str):
                        raise V.fail(f"parameters.{k}.{kk}", entry[kk], "must be a string")
                values[k] = entry["value"]
                meta[k] = {kk: vv for kk, vv in entry.items() if kk != "value"}
            else:
                values[k] = entry
        return cls(**values, meta=meta)


def path_loss_db(distance_m, intercept_db: float = 128.1, slope_db: float = 37.6) -> np.ndarray:
    """Path loss ``intercept + slope * log10(d / 1 km)`` in dB (Table 1).

    Parameters
    ----------
    distance_m : array_like
        Distances in metres (> 0).
    """
    d = V.array("distance_m", distance_m, positive=True)
    return intercept_db + slope_db * np.log10(d / 1000.0)


def shannon_rate_bps(bandwidth_hz: float, tx_power_dbm: float, path_loss, noise_psd_dbm_per_hz: float) -> np.ndarray:
    """Shannon rate ``B log2(1 + P g / (N0 B))`` in bit/s (chapter *The system model*, eq. (1.1)).

    Parameters
    ----------
    bandwidth_hz : float
        ``B``, Hz.
    tx_power_dbm : float
        ``P``, dBm.
    path_loss : array_like
        Path loss in dB (``g = 10^(-PL/10)``).
    noise_psd_dbm_per_hz : float
        ``N0``, dBm/Hz.
    """
    snr_db = tx_power_dbm - np.asarray(path_loss, float) - (noise_psd_dbm_per_hz + 10 * np.log10(bandwidth_hz))
    return bandwidth_hz * np.log2(1.0 + 10.0 ** (snr_db / 10.0))


class Network(Serial):
    """Users, edge servers and the cloud (chapter *The system model*, Fig. 4a).

    Parameters
    ----------
    server_capacity_bytes : array_like, shape (N,)
        ``Q_n``, expert storage of each server, bytes.
    server_flops : array_like, shape (N,)
        ``f_n``, FLOP/s.
    user_capacity_bytes : array_like, shape (M,)
        ``C_m``, expert storage of each device, bytes.
    user_flops : array_like, shape (M,)
        ``f_m``, FLOP/s.
    rate_up, rate_down : array_like, shape (M, N)
        Uplink and downlink rates between user ``m`` and server ``n``, bit/s.
    backhaul_rate_bps : float
        ``r_bh``, bit/s.
    backhaul_delay_s : float
        ``d_bh``, one-way, seconds.
    cloud_flops : float
        ``f_c``, FLOP/s.
    user_weight : array_like, shape (M,), optional
        ``w_m`` (default 1).
    distance_m : array_like, shape (M, N), optional
        User–server distances, kept for plots only.
    """

    def __init__(self, server_capacity_bytes, server_flops, user_capacity_bytes, user_flops,
                 rate_up, rate_down, backhaul_rate_bps: float, backhaul_delay_s: float,
                 cloud_flops: float, user_weight=None, distance_m=None):
        self.server_capacity_bytes = V.array("Network.server_capacity_bytes", server_capacity_bytes, ndim=1, nonneg=True)
        N = len(self.server_capacity_bytes)
        if N == 0:
            raise V.fail("Network.server_capacity_bytes", [], "needs at least one edge server")
        if N > V.MAX_SERVERS:
            raise V.fail("Network.server_capacity_bytes", f"{N} servers", f"more than the size limit {V.MAX_SERVERS}")
        self.server_flops = V.array("Network.server_flops", server_flops, shape=(N,), positive=True)
        self.user_capacity_bytes = V.array("Network.user_capacity_bytes", user_capacity_bytes, ndim=1, nonneg=True)
        M = len(self.user_capacity_bytes)
        if M == 0:
            raise V.fail("Network.user_capacity_bytes", [], "needs at least one user")
        if M > V.MAX_USERS:
            raise V.fail("Network.user_capacity_bytes", f"{M} users", f"more than the size limit {V.MAX_USERS}")
        self.user_flops = V.array("Network.user_flops", user_flops, shape=(M,), positive=True)
        self.rate_up = V.array("Network.rate_up", rate_up, shape=(M, N), positive=True)
        self.rate_down = V.array("Network.rate_down", rate_down, shape=(M, N), positive=True)
        self.backhaul_rate_bps = V.number("Network.backhaul_rate_bps", backhaul_rate_bps, positive=True)
        self.backhaul_delay_s = V.number("Network.backhaul_delay_s", backhaul_delay_s, nonneg=True)
        self.cloud_flops = V.number("Network.cloud_flops", cloud_flops, positive=True)
        w = np.ones(M) if user_weight is None else user_weight
        self.user_weight = V.array("Network.user_weight", w, shape=(M,), nonneg=True)
        total = float(self.user_weight.sum())
        if not total > 0:
            raise V.fail("Network.user_weight", self.user_weight.tolist(), "must not all be zero")
        if not total <= V.MAX_MAGNITUDE:
            raise V.fail("Network.user_weight", f"sum {total:g}", f"must sum to at most {V.MAX_MAGNITUDE:g}")
        self.distance_m = None if distance_m is None else V.array("Network.distance_m", distance_m, shape=(M, N), positive=True)

    @property
    def num_servers(self) -> int:
        """``N``."""
        return len(self.server_capacity_bytes)

    @property
    def num_users(self) -> int:
        """``M``."""
        return len(self.user_capacity_bytes)

    @classmethod
    def from_parameters(cls, params: Parameters | None = None, *, num_users: int | None = None,
                        num_servers: int | None = None, seed: int = 0, distance_m=None,
                        user_capacity_bytes=None, server_capacity_bytes=None) -> "Network":
        """Draw a network from Table 1 (chapter *The system model*, eq. (1.1)).

        Distances are uniform in ``[distance_min_m, distance_max_m]`` (seeded)
        unless ``distance_m`` (shape ``(M, N)``) is given; rates follow
        :func:`shannon_rate_bps` with the user's power on the uplink and the
        server's on the downlink.
        """
        if params is None:
            params = Parameters.from_dict(read_json(find("parameters", "table1", "parameters")))
        if not isinstance(params, Parameters):
            raise V.fail("params", params, "must be Parameters (slimlib.load_parameters())")
        M = params.num_users if num_users is None else V.size("num_users", num_users, V.MAX_USERS)
        N = params.num_servers if num_servers is None else V.size("num_servers", num_servers, V.MAX_SERVERS)
        V.cells("(num_users, num_servers)", (M, N), V.MAX_TOTAL_CELLS // 8)
        if distance_m is None:
            rng = np.random.default_rng(seed)
            d = rng.uniform(params.distance_min_m, params.distance_max_m, size=(M, N))
        else:
            d = V.array("distance_m", distance_m, shape=(M, N), positive=True)
        pl = path_loss_db(d, params.path_loss_intercept_db, params.path_loss_slope_db)
        up = shannon_rate_bps(params.bandwidth_hz, params.user_tx_power_dbm, pl, params.noise_psd_dbm_per_hz)
        dn = shannon_rate_bps(params.bandwidth_hz, params.server_tx_power_dbm, pl, params.noise_psd_dbm_per_hz)
        q = np.full(N, params.server_capacity_bytes) if server_capacity_bytes is None else np.broadcast_to(server_capacity_bytes, (N,))
        c = np.full(M, params.device_capacity_bytes) if user_capacity_bytes is None else np.broadcast_to(user_capacity_bytes, (M,))
        return cls(server_capacity_bytes=q, server_flops=np.full(N, params.edge_flops),
                   user_capacity_bytes=c, user_flops=np.full(M, params.device_flops),
                   rate_up=up, rate_down=dn, backhaul_rate_bps=params.backhaul_rate_bps,
                   backhaul_delay_s=params.backhaul_delay_s, cloud_flops=params.cloud_flops,
                   distance_m=d)

    def replace(self, **changes) -> "Network":
        """Copy with some attributes changed (validated again)."""
        kw = self._kwargs()
        for k in changes:
            if k not in kw:
                raise V.fail(f"Network.{k}", changes[k], f"unknown field; known: {sorted(kw)}")
        kw.update(changes)
        return Network(**kw)

    def _kwargs(self) -> dict:
        return dict(server_capacity_bytes=self.server_capacity_bytes, server_flops=self.server_flops,
                    user_capacity_bytes=self.user_capacity_bytes, user_flops=self.user_flops,
                    rate_up=self.rate_up, rate_down=self.rate_down,
                    backhaul_rate_bps=self.backhaul_rate_bps, backhaul_delay_s=self.backhaul_delay_s,
                    cloud_flops=self.cloud_flops, user_weight=self.user_weight, distance_m=self.distance_m)

    def to_dict(self) -> dict:
        """JSON-ready dict (arrays as nested lists)."""
        out = {"kind": NETWORK_KIND, "version": VERSION}
        for k, v in self._kwargs().items():
            if v is None:
                continue
            out[k] = v.tolist() if isinstance(v, np.ndarray) else v
        return out

    @classmethod
    def from_dict(cls, data) -> "Network":
        """Build from :meth:`to_dict` output, validating every field."""
        V.check_header(data, NETWORK_KIND, VERSION)
        req = ["server_capacity_bytes", "server_flops", "user_capacity_bytes", "user_flops",
               "rate_up", "rate_down", "backhaul_rate_bps", "backhaul_delay_s", "cloud_flops"]
        V.fields("network", data, ["kind", "version", *req], ["user_weight", "distance_m"])
        return cls(**{k: v for k, v in data.items() if k not in ("kind", "version")})

    def __eq__(self, other):
        if not isinstance(other, Network):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def __repr__(self):
        return f"Network(M={self.num_users}, N={self.num_servers})"
