"""JSON files of slimlib objects (chapter *Using slimlib in your own analysis*).

Every file is one JSON object with a ``kind`` and a ``version`` field.  Known
kinds: ``model-card`` (:class:`~slimlib.MoEModel`), ``activation-stats``
(:class:`~slimlib.ActivationStats`), ``parameters``
(:class:`~slimlib.Parameters`), ``network`` (:class:`~slimlib.Network`),
``problem`` (:class:`~slimlib.Problem`) and ``placement``
(:class:`~slimlib.Placement`).  :func:`load` reads any of them and
:func:`save` writes any of them (atomically, never over an existing file
unless asked).  :func:`load_model_card`, :func:`load_stats` and
:func:`load_parameters` find the book's data by name, and
:func:`load_activation_stats` a model card's statistics by source
(:data:`SOURCES`).

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
from ._datafiles import data_dir, data_dirs, find, names
from ._serial import check_folder_writable, check_writable, read_json, write_json
from .model import MoEModel
from .network import Network, Parameters
from .problem import Placement, Problem
from .stats import ActivationStats
from .trace import RoutingTrace

__all__ = ["load", "save", "data_dir", "data_dirs", "load_model_card", "load_stats",
           "load_parameters", "model_card_names", "from_dict", "load_activation_stats", "SOURCES"]

#: Statistics sources of the book, in the order chapters list them (:func:`load_activation_stats`).
SOURCES = ("measured", "measured-tiny", "synthetic")

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


def model_card_names() -> list[str]:
    """Names of the model cards in ``models/`` of every data folder (:func:`slimlib.data_dirs`)."""
    return names("models")


def load_model_card(name: str) -> MoEModel:
    """Load ``models/<name>.json`` (a plain name, no folders) as a :class:`~slimlib.MoEModel`."""
    return _load_as(find("models", name, "model"), MoEModel, "model")


def load_stats(name: str) -> ActivationStats:
    """Load ``stats/<name>.json`` (a plain name, no folders) as :class:`~slimlib.ActivationStats`.

    ``<card>-synthetic`` of a large model card (:func:`slimlib.synthetic.is_large_card`, e.g.
    ``qwen3-moe-like-48x128``) is generated when no data folder has its file:
    the book does not ship these multi-MB files, and
    :func:`slimlib.synthetic.large_card_stats` produces the same object from
    the card (seed 0) in a few seconds, then keeps it in memory.

    Raises
    ------
    ValueError
        If ``name`` is not a plain name, or there is neither such a file nor
        a large card ``<card>`` for ``<card>-synthetic`` (the message lists the
        known names).
    """
    V.plain_name("stats", name)
    try:
        path = find("stats", name, "stats")
    except ValueError:
        from .synthetic import is_large_card, large_card_stats
        card = name.removesuffix("-synthetic")
        if card != name and card in names("models"):           # only the named card is read
            model = load_model_card(card)
            if is_large_card(model):
                return large_card_stats(model)
        generated = [f"{c}-synthetic" for c in names("models") if is_large_card(load_model_card(c))]
        raise V.fail("stats", name, f"unknown statistics file; known: {names('stats')}, "
                                    f"generated: {generated}") from None
    return _load_as(path, ActivationStats, "stats")


def load_activation_stats(model: str, source: str = "synthetic") -> ActivationStats:
    """Statistics of a model card from one source (chapter *Mixture of experts and where the experts go*).

    Parameters
    ----------
    model : str
        Model card name, e.g. ``"moe-llava-phi2-2.7b-4e"``.
    source : str
        ``"synthetic"`` -> ``data/stats/<model>-synthetic.json``;
        ``"measured"`` or ``"measured-tiny"`` -> ``data/stats/<model>-measured.json``
        (its provenance must carry that source); anything else is read as the
        path of a statistics file (e.g. written by ``python -m slimlib collect``).

    Raises
    ------
    ValueError
        If no such statistics exist.
    """
    if source == "synthetic":
        return load_stats(f"{model}-synthetic")
    if source in ("measured", "measured-tiny"):
        s = load_stats(f"{model}-measured")
        if s.provenance.get("source") != source:
            raise V.fail("source", source, f"data/stats/{model}-measured.json holds "
                                           f"{s.provenance.get('source')!r} statistics")
        return s
    path = Path(source)
    if not path.is_file():
        raise V.fail("source", source, f"not one of {SOURCES} and not a statistics file")
    s = load(path)
    if not isinstance(s, ActivationStats):
        raise V.fail("source", source, f"holds a {type(s).__name__}, not activation statistics")
    return s


def load_parameters(name: str = "table1") -> Parameters:
    """Load ``parameters/<name>.json`` (a plain name, no folders) as :class:`~slimlib.Parameters`."""
    return _load_as(find("parameters", name, "parameters"), Parameters, "parameters")


def _load_as(path: Path, cls, field: str):
    obj = load(path)
    if not isinstance(obj, cls):
        raise V.fail(field, str(path), f"holds a {type(obj).__name__}, not a {cls.__name__}")
    return obj
