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

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from . import _validate as V
from ._datafiles import data_dirs, find, names, shipped_dir
from ._serial import read_json
from .model import MoEModel
from .network import Network, Parameters
from .problem import Placement, Problem
from .stats import ActivationStats

__all__ = ["load", "save", "data_dir", "data_dirs", "load_model_card", "load_stats",
           "load_parameters", "model_card_names", "from_dict"]

REGISTRY = {"model-card": MoEModel, "activation-stats": ActivationStats, "parameters": Parameters,
            "network": Network, "problem": Problem, "placement": Placement}


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


def check_writable(path: str | os.PathLike, *, overwrite: bool = False, field: str = "path") -> Path:
    """Raise ValueError unless ``path`` can be written by :func:`slimlib.save` (checked before long work).

    The folder must exist or be creatable, be a folder and be writable;
    ``path`` must not be a folder, and must not exist unless ``overwrite``.
    """
    path = Path(path)
    if path.is_dir():
        raise V.fail(field, str(path), "is a folder; give a file name")
    if path.exists() and not overwrite:
        raise V.fail(field, str(path), "file exists; pass overwrite=True (CLI: --force) to replace it")
    check_folder_writable(path.parent, field=field, path=path)
    return path


def check_folder_writable(folder: str | os.PathLike, *, field: str = "path", path=None) -> Path:
    """Raise ValueError unless ``folder`` is, or can be created as, a writable folder.

    The nearest existing ancestor must be a folder in which a file can really
    be created (tried with a temporary file, removed at once: permission bits
    alone do not tell, e.g. for root or read-only mounts).  Nothing is created.
    """
    folder = Path(folder) if str(folder) else Path(".")
    shown = str(folder if path is None else path)
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise V.fail(field, shown, f"{probe} is not a folder")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".slimlib-probe-", dir=probe)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise V.fail(field, shown, f"folder {probe} is not writable: {exc.strerror or exc}") from None
    return folder


def save(obj, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write ``obj.to_dict()`` to ``path`` as indented JSON, atomically.

    The text goes to a temporary file in the same folder, which then replaces
    ``path`` (``os.replace``): a failed write never leaves a partial file.

    Parameters
    ----------
    obj : MoEModel, ActivationStats, Parameters, Network, Problem or Placement
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
    path = check_writable(path, overwrite=V.flag("overwrite", overwrite))
    text = json.dumps(obj.to_dict(), indent=1) + "\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise V.fail("path", str(path), f"cannot write: {exc.strerror or exc}") from None
    try:
        os.chmod(tmp, 0o666 & ~_umask())       # mkstemp makes 0600; give the file the usual mode
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if not overwrite and path.exists():
            raise V.fail("path", str(path), "file exists; pass overwrite=True (CLI: --force) to replace it")
        os.replace(tmp, path)
    except OSError as exc:
        raise V.fail("path", str(path), f"cannot write: {exc.strerror or exc}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


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
