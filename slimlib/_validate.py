"""Input validation shared by every slimlib object (the ground floor of the library).

Every malformed input raises exactly one :class:`ValueError` whose message
names the offending field and value (developers' guide, "Standards").
Types are strict: a string is never read as a number, a boolean never as a
number or a count, and a count must be a whole number.  Sizes are checked
against the documented limits below *before* anything is allocated.

Nothing here is public API; the public constructors call these helpers.  This
module imports nothing from slimlib, so every other module may import it.

Limits
------
``MAX_LAYERS``, ``MAX_EXPERTS``, ``MAX_TOP_K``
    Largest ``L``, ``E`` and ``K`` of a model card or statistics file
    (DeepSeek-V3 has 58 x 256 with K=8; the limits leave two orders of room).
``MAX_CELLS``
    Largest ``L * E`` of one model: one ``(L, E)`` array of float64 is at most
    128 MiB.
``MAX_TOTAL_CELLS``
    Largest number of cells of all ``x``/``y`` arrays built for one problem or
    placement (one byte each: 1 GiB).
``MAX_USERS``, ``MAX_SERVERS``
    Largest ``M`` and ``N``.
``MAX_FILE_BYTES``
    Largest JSON file :func:`slimlib.load` reads.
``MAX_JSON_OBJECTS``
    Largest number of JSON objects (``{...}``) in one text or file, counted
    before parsing (a statistics layer, a model card and a problem are one
    object each), so that a file of a million layers is refused in
    milliseconds instead of being parsed.
``MAX_MAGNITUDE``
    Largest absolute value of any number in an input, so that sums and
    products of inputs stay finite in float64.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Iterable, Mapping

import numpy as np

__all__: list[str] = []

MAX_LAYERS = 4096
MAX_EXPERTS = 65536
MAX_TOP_K = 1024
MAX_CELLS = 2 ** 24
MAX_TOTAL_CELLS = 2 ** 30
MAX_USERS = 10 ** 6
MAX_SERVERS = 10 ** 4
MAX_FILE_BYTES = 512 * 2 ** 20
MAX_JSON_OBJECTS = 2 ** 19
MAX_MAGNITUDE = 1e100


def _fmt(value: Any) -> str:
    try:
        text = repr(value)
    except ValueError:  # e.g. an int too large to print
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 80 else text[:77] + "..."


def fail(field: str, value: Any, why: str) -> ValueError:
    """Build the one ValueError format used across slimlib."""
    return ValueError(f"{field}: {why} (got {_fmt(value)})")


def is_number(value: Any) -> bool:
    """True for real numbers (Python or numpy), False for bool, str, None and everything else."""
    return isinstance(value, (numbers.Real, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def number(field: str, value: Any, *, positive: bool = False, nonneg: bool = False,
           integer: bool = False, minimum: float | None = None,
           maximum: float | None = None) -> float:
    """Return ``value`` as a float (or int) after checking type, finiteness and range.

    Strings and booleans are refused; with ``integer=True`` the value must be
    a whole number (an integral float such as ``2.0`` counts as ``2``).
    """
    if not is_number(value):
        raise fail(field, value, "must be a number" if not integer else "must be an integer")
    if integer and isinstance(value, (int, np.integer)):
        x = int(value)
        if abs(x) > MAX_MAGNITUDE:
            raise fail(field, value, f"must be at most {MAX_MAGNITUDE:g} in absolute value")
    else:
        try:
            x = float(value)
        except (OverflowError, TypeError, ValueError):
            raise fail(field, value, f"must be a finite number of at most {MAX_MAGNITUDE:g}") from None
        if math.isnan(x) or math.isinf(x):
            raise fail(field, value, "must be finite")
        if abs(x) > MAX_MAGNITUDE:
            raise fail(field, value, f"must be at most {MAX_MAGNITUDE:g} in absolute value")
        if integer:
            if x != int(x):
                raise fail(field, value, "must be an integer")
            x = int(x)
    if positive and not x > 0:
        raise fail(field, value, "must be > 0")
    if nonneg and not x >= 0:
        raise fail(field, value, "must be >= 0")
    if minimum is not None and x < minimum:
        raise fail(field, value, f"must be >= {minimum}")
    if maximum is not None and x > maximum:
        raise fail(field, value, f"must be <= {maximum}")
    return x


def flag(field: str, value: Any) -> bool:
    """Return ``value`` if it is a boolean (``True``/``False``), else raise."""
    if not isinstance(value, (bool, np.bool_)):
        raise fail(field, value, "must be true or false")
    return bool(value)


def _kind_ok(arr: np.ndarray, dtype) -> bool:
    want = np.dtype(dtype).kind
    if want == "b":
        return arr.dtype.kind == "b" or (arr.dtype.kind in "iuf" and bool(((arr == 0) | (arr == 1)).all()))
    if want in "iu":
        if arr.dtype.kind in "iu":
            return True
        return arr.dtype.kind == "f" and bool(np.isfinite(arr).all() and (arr == np.round(arr)).all()
                                              and (np.abs(arr) <= 2.0 ** 53).all())
    return arr.dtype.kind in "iuf"


def _has_bool(value) -> bool:
    # numpy turns [1.0, True] into [1.0, 1.0]; look at the Python elements of nested lists instead
    # (one set of element types per innermost list: about 0.1 s per million numbers).
    stack = [value]
    while stack:
        v = stack.pop()
        types = set(map(type, v))
        if bool in types or np.bool_ in types:
            return True
        if list in types or tuple in types:
            stack.extend(x for x in v if isinstance(x, (list, tuple)))
    return False


def array(field: str, value: Any, *, shape: tuple | None = None, ndim: int | None = None,
          positive: bool = False, nonneg: bool = False, dtype=float) -> np.ndarray:
    """Return ``value`` as a numpy array after checking type, shape, finiteness and sign.

    ``shape`` may contain ``None`` for a free axis.  Elements must be numbers
    (booleans only for ``dtype=bool``, where 0/1 integers are accepted too;
    whole numbers for an integer ``dtype``); strings, booleans in a numeric
    array and ragged nesting are refused.
    """
    if isinstance(value, (str, bytes, Mapping)):
        raise fail(field, value, f"must be an array of {np.dtype(dtype).name}")
    try:
        raw = np.asarray(value)
    except (TypeError, ValueError, OverflowError, RecursionError):
        raise fail(field, value, f"must be a (non-ragged) array of {np.dtype(dtype).name}") from None
    if raw.dtype.kind == "b" and np.dtype(dtype).kind != "b":
        raise fail(field, value, "must be an array of numbers, not booleans")
    if raw.dtype.kind in "iuf" and isinstance(value, (list, tuple)) and _has_bool(value):
        raise fail(field, value, "must be an array of numbers, not booleans")   # [1.0, True] is not [1.0, 1.0]
    if raw.size and not _kind_ok(raw, dtype):
        want = {"b": "booleans", "i": "integers", "u": "integers"}.get(np.dtype(dtype).kind, "numbers")
        raise fail(field, value, f"must be an array of {want}")
    try:
        arr = raw.astype(dtype)
    except (TypeError, ValueError, OverflowError):
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
        big = np.abs(arr) > MAX_MAGNITUDE
        if big.any():
            idx = tuple(int(i) for i in np.argwhere(big)[0])
            raise fail(f"{field}{list(idx)}", arr[idx], f"must be at most {MAX_MAGNITUDE:g} in absolute value")
    if positive and arr.size and not (arr > 0).all():
        idx = tuple(int(i) for i in np.argwhere(~(arr > 0))[0])
        raise fail(f"{field}{list(idx)}", arr[idx], "must be > 0")
    if nonneg and arr.size and not (arr >= 0).all():
        idx = tuple(int(i) for i in np.argwhere(~(arr >= 0))[0])
        raise fail(f"{field}{list(idx)}", arr[idx], "must be >= 0")
    return arr


def sequence(field: str, value: Any, *, length: int | None = None, nonempty: bool = False,
             maximum: int | None = None) -> list:
    """Return ``value`` as a list after checking it is a list/tuple of the right length."""
    if not isinstance(value, (list, tuple)):
        raise fail(field, value, "must be a list")
    if length is not None and len(value) != length:
        raise fail(field, f"{len(value)} entries", f"needs exactly {length}")
    if nonempty and not value:
        raise fail(field, value, "must not be empty")
    if maximum is not None and len(value) > maximum:
        raise fail(field, f"{len(value)} entries", f"at most {maximum} allowed (a documented size limit)")
    return list(value)


def size(field: str, value: Any, maximum: int) -> int:
    """A positive count no larger than the documented limit ``maximum``."""
    n = number(field, value, integer=True, positive=True)
    if n > maximum:
        raise fail(field, value, f"exceeds the size limit {maximum} (slimlib._validate)")
    return n


def cells(field: str, shape: Iterable[int], maximum: int = MAX_CELLS) -> int:
    """Check that an array of ``shape`` has at most ``maximum`` cells before it is allocated."""
    total = 1
    for s in shape:
        total *= int(s)
    if total > maximum:
        raise fail(field, tuple(int(s) for s in shape),
                   f"has {total} cells, more than the size limit {maximum} (slimlib._validate)")
    return total


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


def check_header(data: Any, kind: str, version: int) -> None:
    """Raise ValueError unless ``data`` is a dict of this ``kind`` and ``version``."""
    if not isinstance(data, Mapping):
        raise fail(kind, data, "must be a JSON object")
    if "kind" not in data:
        raise fail(f"{kind}.kind", None, "missing required field")
    if data["kind"] != kind:
        raise fail("kind", data["kind"], f"expected {kind!r}")
    if "version" not in data:
        raise fail(f"{kind}.version", None, "missing required field")
    if isinstance(data["version"], bool) or data["version"] != version:
        raise fail(f"{kind}.version", data["version"], f"unsupported version; this slimlib reads {version}")


def text(field: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise fail(field, value, "must be a non-empty string")
    return value


def plain_name(field: str, value: Any) -> str:
    """A file stem without folders: letters, digits, ``.``, ``_``, ``-``; not starting with ``.``."""
    import re
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,199}", value) or ".." in value:
        raise fail(field, value, "must be a plain name (letters, digits, '.', '_', '-'; no folders)")
    return value


def options(method: str, func, given: Mapping[str, Any]) -> dict:
    """Check solver options against the keyword annotations of ``func``.

    An option annotated ``bool`` must be ``True``/``False``; ``int`` a whole
    number (not a boolean); ``float`` a number.  Unknown names raise.  Other
    annotations (``str``, unions with ``None``, ...) are left to the method.
    """
    import inspect
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):  # pragma: no cover - builtins
        return dict(given)
    params = {name: p for name, p in sig.parameters.items() if p.kind == p.KEYWORD_ONLY
              or (p.kind == p.POSITIONAL_OR_KEYWORD and name != "problem")}
    has_var_kw = any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())
    out = {}
    for name, value in given.items():
        if name not in params:
            if has_var_kw:
                out[name] = value
                continue
            raise fail("options", sorted(given), f"{name!r} is not accepted by method {method!r}; "
                                                 f"accepted: {sorted(params)}")
        ann = params[name].annotation
        ann = ann if isinstance(ann, str) else getattr(ann, "__name__", str(ann))
        ann = ann.replace(" ", "")
        field = f"option {name}"
        if ann == "bool":
            value = flag(field, value)
        elif ann == "int":
            value = number(field, value, integer=True)
        elif ann == "float":
            value = number(field, value)
        elif ann in ("float|None", "None|float", "Optional[float]") and value is not None:
            value = number(field, value)
        elif ann in ("int|None", "None|int", "Optional[int]") and value is not None:
            value = number(field, value, integer=True)
        out[name] = value
    return out
