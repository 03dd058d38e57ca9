"""The book's data folders: shipped model cards, statistics and parameter sets.

Chapter *Using slimlib in your own analysis*, section "Save everything as JSON".  The shipped
folder is ``slimlib/_data`` inside an installed wheel (see ``setup.py``) or the
repository's ``data/`` for an editable install.  ``$SLIMLIB_DATA`` holds more
folders (separated by ``os.pathsep``, ``:`` on Linux and macOS) that are
searched *before* the shipped one, so a folder with one new model card adds
that card and keeps everything else.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from . import _validate as V

__all__: list[str] = []

SUBFOLDERS = {"models": "model card", "stats": "statistics file", "parameters": "parameter set",
              "traces": "routing trace"}


def shipped_dir() -> Path | None:
    """The data folder that comes with slimlib, or ``None`` if there is none."""
    here = Path(__file__).resolve().parent
    for cand in (here / "_data", here.parent / "data"):
        if (cand / "models").is_dir():
            return cand
    return None


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


def data_dirs() -> list[Path]:
    """Folders searched for model cards, statistics and parameter sets, first match first.

    The entries of ``$SLIMLIB_DATA`` (separated by ``os.pathsep``; each must
    be an existing folder with ``models/``, ``stats/`` or ``parameters/``
    inside), then the shipped data folder (:func:`slimlib.data_dir`).  A card
    in an ``$SLIMLIB_DATA`` folder with the name of a shipped one replaces it.

    Returns
    -------
    list of pathlib.Path
    """
    out = []
    for entry in os.environ.get("SLIMLIB_DATA", "").split(os.pathsep):
        if entry:
            p = Path(entry)
            if not p.is_dir():
                raise V.fail("SLIMLIB_DATA", entry, "is not a folder")
            out.append(p)
    shipped = shipped_dir()
    if shipped is not None:
        out.append(shipped)
    if not out:
        raise V.fail("SLIMLIB_DATA", None, "cannot find the data folder; set $SLIMLIB_DATA to the repository's data/")
    return out


def names(sub: str) -> list[str]:
    """Stems of the ``*.json`` files in ``<folder>/<sub>`` of every data folder, in natural order."""
    key = lambda name: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]
    found = {p.stem for d in data_dirs() for p in (d / sub).glob("*.json")}
    return sorted(found, key=key)


def find(sub: str, name: str, field: str) -> Path:
    """Path of ``<sub>/<name>.json`` in the first data folder that has it.

    ``name`` must be a plain name (no folders, no ``..``): this looks up the
    book's data, it does not open arbitrary files (use :func:`slimlib.load`).
    """
    V.plain_name(field, name)
    for d in data_dirs():
        path = d / sub / f"{name}.json"
        if path.is_file():
            return path
    raise V.fail(field, name, f"unknown {SUBFOLDERS[sub]}; known: {names(sub)}")
