"""JSON files of slimlib objects (chapter *Using slimlib in your own analysis*).

Every file is one JSON object with a ``kind`` and a ``version`` field.  Known
kinds: ``model-card`` (:class:`~slimlib.MoEModel`), ``activation-stats``
(:class:`~slimlib.ActivationStats`), ``parameters``
(:class:`~slimlib.Parameters`), ``network`` (:class:`~slimlib.Network`),
``problem`` (:class:`~slimlib.Problem`) and ``placement``
(:class:`~slimlib.Placement`).  :func:`load` reads any of them and
:func:`save` writes any of them (atomically, never over an existing file
unless asked).

This is the only module that imports every data class; the classes
themselves depend only on ``slimlib._validate`` and ``slimlib._serial``.
Size limits (e.g. at most ``MAX_LAYERS`` layers, ``MAX_FILE_BYTES`` per file)
are documented in ``slimlib._validate`` and checked before allocation.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from . import _validate as V
from ._datafiles import data_dirs, find, names, shipped_dir
from ._serial import check_folder_writable, check_writable, read_json, write_json
from .model import MoEModel
from .network import Network, Parameters
from .problem import Placement, Problem
from .stats import ActivationStats
from .trace import RoutingTrace

__all__ = ["load", "save", "data_dir", "data_dirs", "load_model_card", "load_stats",
           "load_parameters", "model_card_names", "from_dict"]

REGISTRY = {"model-card": MoEModel, "activation-stats": ActivationStats, "parameters": Parameters,
            "network": Network, "problem": Problem, "placement": Placement, "routing-trace": RoutingTrace}


def from_dict(data: Any):
    """Build the object a JSON-ready dict describes, dispatching on its ``kind``."""
    if not isinstance(data, dict):
        raise V.fail("json", data, "must be a JSON object")
    kind = data.get("kind")
    if not isinstance(kind, str) or kind not in REGISTRY:
        raise V.fail("kind", kind, f"unknown kind; known: {sorted(REGISTRY)}")
    return REGISTRY[kind].from_dict(data)


def load(path: str | os.PathLike):
    """Read a slimlib JSON file and return the object it describes.

    Raises
    ------
    ValueError
        If the file is missing, a folder, larger than the size limit, not valid
        JSON, has an unknown ``kind``/``version`` or a malformed field (the
        message names the file, the field and the value).
    """
    path = Path(path)
    data = read_json(path)
    try:
        return from_dict(data)
    except ValueError as exc:
        raise ValueError(f"{path.name}: {exc}") from None


def save(obj, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write ``obj.to_dict()`` to ``path`` as indented JSON, atomically.

    The text goes to a temporary file in the same folder, which then replaces
    ``path`` (``os.replace``): a failed write never leaves a partial file.

    Parameters
    ----------
    obj : MoEModel, ActivationStats, Parameters, Network, Problem, Placement or RoutingTrace
    path : str or path-like
        Target file; missing folders are created.
    overwrite : bool
        Replace an existing file (default: refuse with ValueError).

    Raises
    ------
    ValueError
        If ``path`` exists (and not ``overwrite``), is a folder, or its folder
        cannot be written.
    """
    if not isinstance(obj, tuple(REGISTRY.values())):
        raise V.fail("obj", obj, f"must be one of {sorted(c.__name__ for c in REGISTRY.values())}")
    return write_json(obj.to_dict(), path, overwrite=overwrite)


def data_dir() -> Path:
    """Folder of the book's shipped data files (the default target of the data generators).

    The copy shipped inside an installed wheel (``slimlib/_data``, e.g.
    ``pip install "slimlib @ git+..."`` on Colab; see ``setup.py``), else the
    ``data/`` folder of the repository the package was installed from
    (editable install, as ``make`` does it).  Folders in ``$SLIMLIB_DATA``
    are searched before it by the ``load_*`` functions (:func:`slimlib.data_dirs`).
    """
    shipped = shipped_dir()
    return shipped if shipped is not None else data_dirs()[0]


def model_card_names() -> list[str]:
    """Names of the model cards in ``models/`` of every data folder (:func:`slimlib.data_dirs`)."""
    return names("models")


def load_model_card(name: str) -> MoEModel:
    """Load ``models/<name>.json`` (a plain name, no folders) as a :class:`~slimlib.MoEModel`."""
    return _load_as(find("models", name, "model"), MoEModel, "model")


def load_stats(name: str) -> ActivationStats:
    """Load ``stats/<name>.json`` (a plain name, no folders) as :class:`~slimlib.ActivationStats`."""
    return _load_as(find("stats", name, "stats"), ActivationStats, "stats")


def load_parameters(name: str = "table1") -> Parameters:
    """Load ``parameters/<name>.json`` (a plain name, no folders) as :class:`~slimlib.Parameters`."""
    return _load_as(find("parameters", name, "parameters"), Parameters, "parameters")


def _load_as(path: Path, cls, field: str):
    obj = load(path)
    if not isinstance(obj, cls):
        raise V.fail(field, str(path), f"holds a {type(obj).__name__}, not a {cls.__name__}")
    return obj
