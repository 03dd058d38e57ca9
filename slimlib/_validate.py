"""Input validation shared by every slimlib object.

Every malformed input raises exactly one :class:`ValueError` whose message
names the offending field and value (developers' guide, "Standards").
Nothing here is public API; the public constructors call these helpers.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

import numpy as np

__all__: list[str] = []


def _fmt(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def fail(field: str, value: Any, why: str) -> ValueError:
    """Build the one ValueError format used across slimlib."""
    return ValueError(f"{field}: {why} (got {_fmt(value)})")


def number(field: str, value: Any, *, positive: bool = False, nonneg: bool = False,
           integer: bool = False, minimum: float | None = None,
           maximum: float | None = None) -> float:
    """Return ``value`` as a float (or int) after checking it is finite and in range."""
    if isinstance(value, bool) or value is None:
        raise fail(field, value, "must be a number")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise fail(field, value, "must be a number") from None
    if math.isnan(x) or math.isinf(x):
        raise fail(field, value, "must be finite")
    if integer:
        if x != int(x):
            raise fail(field, value, "must be an integer")
    if positive and not x > 0:
        raise fail(field, value, "must be > 0")
    if nonneg and not x >= 0:
        raise fail(field, value, "must be >= 0")
    if minimum is not None and x < minimum:
        raise fail(field, value, f"must be >= {minimum}")
    if maximum is not None and x > maximum:
        raise fail(field, value, f"must be <= {maximum}")
    return int(x) if integer else x


def array(field: str, value: Any, *, shape: tuple | None = None, ndim: int | None = None,
          positive: bool = False, nonneg: bool = False, dtype=float) -> np.ndarray:
    """Return ``value`` as a numpy array after checking shape, finiteness and sign.

    ``shape`` may contain ``None`` for a free axis.
    """
    try:
        arr = np.array(value, dtype=dtype)
    except (TypeError, ValueError):
        raise fail(field, value, f"must be an array of {np.dtype(dtype).name}") from None
    if ndim is not None and arr.ndim != ndim:
        raise fail(field, value, f"must have {ndim} dimension(s), has {arr.ndim}")
    if shape is not None:
        if arr.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, arr.shape)):
            want = tuple("*" if s is None else s for s in shape)
            raise fail(field, value, f"must have shape {want}, has {arr.shape}")
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr)
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            raise fail(f"{field}{list(idx)}", arr[idx], "must be finite")
    if positive and arr.size and not (arr > 0).all():
        idx = tuple(int(i) for i in np.argwhere(~(arr > 0))[0])
        raise fail(f"{field}{list(idx)}", arr[idx], "must be > 0")
    if nonneg and arr.size and not (arr >= 0).all():
        idx = tuple(int(i) for i in np.argwhere(~(arr >= 0))[0])
        raise fail(f"{field}{list(idx)}", arr[idx], "must be >= 0")
    return arr


def fields(kind: str, data: Any, required: Iterable[str], optional: Iterable[str] = ()) -> Mapping:
    """Check that a JSON object has exactly the allowed keys."""
    if not isinstance(data, Mapping):
        raise fail(kind, data, "must be a JSON object")
    required = list(required)
    allowed = set(required) | set(optional)
    for key in data:
        if key not in allowed:
            raise fail(f"{kind}.{key}", data[key], f"unknown field; allowed: {sorted(allowed)}")
    for key in required:
        if key not in data:
            raise fail(f"{kind}.{key}", None, "missing required field")
    return data


def text(field: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise fail(field, value, "must be a non-empty string")
    return value
