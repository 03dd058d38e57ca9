"""The tidy result table of the experiments (chapter *Experiments*): :class:`ResultTable`.

One row per (method, swept value, model, seed); CSV with ``repr`` floats, so a
table written and read back is the same table.
"""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..sweep import write_atomic

#: Public names are re-exported (and documented) by :mod:`slimlib.experiments`.
__all__: list[str] = []

#: Columns that hold wall-clock measurements: the only ones that may differ between two runs of a
#: sweep with the same parameters and seeds (whatever the number of workers or their order).
RUNTIME_COLUMNS = ("runtime_s", "solve_runtime_s")


class ResultTable:
    """A tidy table of experiment results: a list of row dicts plus metadata.

    Columns (always present, in this order): ``figure``, ``panel``, ``method``,
    ``sweep`` (name of the swept quantity), ``value`` (its value, in the unit
    the name ends with), ``model``, ``top_k``, ``bytes_per_param``, ``seed``,
    ``latency_s`` (average per-token latency, seconds), ``comm_latency_s``
    (its communication part, seconds), ``runtime_s`` (solver wall-clock time,
    seconds), ``status`` (``"ok"``, ``"optimal"``, ``"time limit"``, ...),
    ``stats_source``; further columns follow (e.g. ``fraction`` in Figure 11).

    Parameters
    ----------
    rows : iterable of dict
    meta : dict, optional
        ``figure``, ``title``, ``xlabel``, ``scale`` and whatever the draw
        function needs; not part of the CSV.
    """

    COLUMNS = ("figure", "panel", "method", "sweep", "value", "model", "top_k", "bytes_per_param", "seed",
               "latency_s", "comm_latency_s", "runtime_s", "status", "stats_source")

    def __init__(self, rows: Iterable[dict] = (), meta: dict | None = None):
        self.rows = [dict(r) for r in rows]
        self.meta = dict(meta or {})

    # -- access --------------------------------------------------------------
    @property
    def columns(self) -> list[str]:
        """Column names: ``COLUMNS`` first, then extra columns in first-seen order."""
        extra = []
        for r in self.rows:
            for k in r:
                if k not in self.COLUMNS and k not in extra:
                    extra.append(k)
        return list(self.COLUMNS) + extra

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    def __getitem__(self, i):
        return self.rows[i]

    def column(self, name: str) -> list:
        """Values of one column (``None`` where a row lacks it)."""
        return [r.get(name) for r in self.rows]

    def unique(self, name: str) -> list:
        """Distinct values of a column in first-seen order."""
        out = []
        for v in self.column(name):
            if v not in out:
                out.append(v)
        return out

    def where(self, **conditions) -> "ResultTable":
        """Rows whose columns equal the given values (a list/tuple/set value means 'any of')."""
        def ok(r):
            for k, v in conditions.items():
                if isinstance(v, (list, tuple, set, frozenset)):
                    if r.get(k) not in v:
                        return False
                elif r.get(k) != v:
                    return False
            return True
        return ResultTable([r for r in self.rows if ok(r)], self.meta)

    def summary(self, y: str = "latency_s", by: Sequence[str] = ("panel", "method", "value")) -> list[dict]:
        """Mean and spread of column ``y`` across the other columns (typically across seeds).

        Returns
        -------
        list of dict
            One per distinct ``by`` combination (first-seen order), with the
            ``by`` columns and ``mean``, ``std`` (population), ``min``, ``max``,
            ``n``; rows whose ``y`` is missing or NaN are skipped.
        """
        groups: dict[tuple, list[float]] = {}
        for r in self.rows:
            x = r.get(y)
            if x is None or (isinstance(x, float) and math.isnan(x)):
                continue
            groups.setdefault(tuple(r.get(b) for b in by), []).append(float(x))
        out = []
        for key, xs in groups.items():
            a = np.asarray(xs)
            out.append({**dict(zip(by, key)), "mean": float(a.mean()), "std": float(a.std()),
                        "min": float(a.min()), "max": float(a.max()), "n": int(a.size)})
        return out

    def mean(self, y: str = "latency_s", **conditions) -> float:
        """Mean of column ``y`` over the rows matching ``conditions`` (NaN if none).

        Example: ``t.mean("latency_s", method="greedy", value=1.5)``.
        """
        xs = [float(x) for x in self.where(**conditions).column(y)
              if x is not None and not (isinstance(x, float) and math.isnan(x))]
        return float(np.mean(xs)) if xs else float("nan")

    # -- comparison and export ------------------------------------------------
    def equals(self, other: "ResultTable", ignore: Sequence[str] = RUNTIME_COLUMNS) -> bool:
        """Same rows in the same order, ignoring the columns in ``ignore`` (wall-clock times)."""
        if not isinstance(other, ResultTable) or len(self) != len(other):
            return False
        strip = lambda r: {k: v for k, v in r.items() if k not in ignore}  # noqa: E731
        return all(_same(strip(a), strip(b)) for a, b in zip(self.rows, other.rows))

    def to_csv(self, path=None) -> str:
        """CSV text (floats written with ``repr``, so they round-trip exactly); also written to ``path`` (atomically)."""
        buf = io.StringIO()
        cols = self.columns
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(cols)
        for r in self.rows:
            w.writerow([_cell(r.get(c)) for c in cols])
        text = buf.getvalue()
        if path is not None:
            write_atomic(path, text)
        return text

    @classmethod
    def from_csv(cls, path_or_text) -> "ResultTable":
        """Read :meth:`to_csv` output back (numbers parsed, empty cells as ``None``)."""
        text = str(path_or_text)
        if "\n" not in text:
            text = Path(text).read_text(encoding="utf-8")
        rows = []
        for r in csv.DictReader(io.StringIO(text)):
            rows.append({k: _parse(v) for k, v in r.items()})
        return cls(rows)

    def __repr__(self):
        return (f"ResultTable({self.meta.get('figure', '?')}: {len(self)} rows, methods={self.unique('method')}, "
                f"panels={self.unique('panel')})")

    def _repr_html_(self):  # pragma: no cover - notebook display
        cols = [c for c in ("panel", "method", "value", "seed", "latency_s", "comm_latency_s", "runtime_s", "status")
                if c in self.columns]
        head = "".join(f"<th>{c}</th>" for c in cols)

        def fmt(v):
            if isinstance(v, float):
                return f"{v:.4g}"
            return "" if v is None else str(v)
        body = "".join("<tr>" + "".join(f"<td>{fmt(r.get(c))}</td>" for c in cols) + "</tr>" for r in self.rows[:6])
        cap = (f"{self.meta.get('figure', 'table')}: {len(self)} rows; methods {', '.join(map(str, self.unique('method')))}; "
               f"first rows shown (times in seconds); all columns: <code>.to_csv()</code>")
        return f"<table><caption>{cap}</caption><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(v):
    if v is None:
        return ""
    if isinstance(v, (float, np.floating)):
        return repr(float(v))
    if isinstance(v, (np.integer,)):
        return str(int(v))
    return str(v)


def _parse(v: str):
    if v == "":
        return None
    for f in (int, float):
        try:
            return f(v)
        except ValueError:
            pass
    return v


def _same(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    for k in a:
        x, y = a[k], b[k]
        if isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y):
            continue
        if x != y:
            return False
    return True


def write_rows(rows: Sequence[dict], path) -> None:
    """CSV of dict rows (columns in first-seen order, floats with ``repr``, ``None`` as empty)."""
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in rows:
        w.writerow([_cell(r.get(c)) for c in cols])
    write_atomic(path, buf.getvalue())

