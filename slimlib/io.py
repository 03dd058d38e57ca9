"""JSON files of slimlib objects (chapter *Using slimlib in your own analysis*).

Every file is one JSON object with a ``kind`` and a ``version`` field.  Known
kinds: ``model-card`` (:class:`~slimlib.MoEModel`), ``activation-stats``
(:class:`~slimlib.ActivationStats`), ``parameters``
(:class:`~slimlib.Parameters`), ``network`` (:class:`~slimlib.Network`),
``problem`` (:class:`~slimlib.Problem`) and ``placement``
(:class:`~slimlib.Placement`).  :func:`load` reads any of them and
:func:`save` writes any of them.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from . import _validate as V

__all__ = ["load", "save", "data_dir", "load_model_card", "load_stats",
           "load_parameters", "model_card_names"]


def check_header(data: Any, kind: str, version: int) -> None:
    """Raise ValueError unless ``data`` is a dict of this ``kind`` and ``version``."""
    if not isinstance(data, dict):
        raise V.fail(kind, data, "must be a JSON object")
    if "kind" not in data:
        raise V.fail(f"{kind}.kind", None, "missing required field")
    if data["kind"] != kind:
        raise V.fail("kind", data["kind"], f"expected {kind!r}")
    if "version" not in data:
        raise V.fail(f"{kind}.version", None, "missing required field")
    if data["version"] != version:
        raise V.fail(f"{kind}.version", data["version"], f"unsupported version; this slimlib reads {version}")


def _registry():
    from .model import MoEModel
    from .stats import ActivationStats
    from .network import Parameters, Network
    from .problem import Problem, Placement
    return {"model-card": MoEModel, "activation-stats": ActivationStats,
            "parameters": Parameters, "network": Network, "problem": Problem,
            "placement": Placement}


def from_json(data: Any):
    """Build the object a JSON dict describes, dispatching on its ``kind``."""
    reg = _registry()
    if not isinstance(data, dict):
        raise V.fail("json", data, "must be a JSON object")
    kind = data.get("kind")
    if kind not in reg:
        raise V.fail("kind", kind, f"unknown kind; known: {sorted(reg)}")
    return reg[kind].from_json(data)


def load(path: str | os.PathLike):
    """Read a slimlib JSON file and return the object it describes.

    Raises
    ------
    ValueError
        If the file is not valid JSON, has an unknown ``kind``/``version`` or a
        malformed field (the message names the field and the value).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise V.fail("path", str(path), "no such file") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise V.fail("path", str(path), f"not valid JSON: {exc.msg} at line {exc.lineno}") from None
    try:
        return from_json(data)
    except ValueError as exc:
        raise ValueError(f"{path.name}: {exc}") from None


def save(obj, path: str | os.PathLike) -> Path:
    """Write ``obj.to_json()`` to ``path`` (indented, keys in a stable order)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj.to_json(), indent=1) + "\n", encoding="utf-8")
    return path


def data_dir() -> Path:
    """Folder of the book's data files.

    ``$SLIMLIB_DATA`` if set, else the copy shipped inside an installed wheel
    (``slimlib/_data``, e.g. ``pip install "slimlib @ git+..."`` on Colab; see
    ``setup.py``), else the ``data/`` folder of the repository the package was
    installed from (editable install, as ``make`` does it).
    """
    env = os.environ.get("SLIMLIB_DATA")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent
    for cand in (here / "_data", here.parent / "data"):
        if (cand / "models").is_dir():
            return cand
    raise V.fail("SLIMLIB_DATA", None, "cannot find the data folder; set $SLIMLIB_DATA to the repository's data/")


def model_card_names() -> list[str]:
    """Names of the model cards shipped in ``data/models``."""
    import re
    key = lambda name: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]
    return sorted((p.stem for p in (data_dir() / "models").glob("*.json")), key=key)


def load_model_card(name: str):
    """Load ``data/models/<name>.json`` as a :class:`~slimlib.MoEModel`."""
    path = data_dir() / "models" / f"{name}.json"
    if not path.exists():
        raise V.fail("model", name, f"unknown model card; known: {model_card_names()}")
    return load(path)


def load_stats(name: str):
    """Load ``data/stats/<name>.json`` as :class:`~slimlib.ActivationStats`."""
    path = data_dir() / "stats" / f"{name}.json"
    if not path.exists():
        known = sorted(p.stem for p in (data_dir() / "stats").glob("*.json"))
        raise V.fail("stats", name, f"unknown statistics file; known: {known}")
    return load(path)


def load_parameters(name: str = "table1"):
    """Load ``data/parameters/<name>.json`` as :class:`~slimlib.Parameters`."""
    path = data_dir() / "parameters" / f"{name}.json"
    if not path.exists():
        raise V.fail("parameters", name, "unknown parameter set")
    return load(path)
