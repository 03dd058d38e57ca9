"""JSON text of slimlib objects: ``to_dict``/``from_dict`` and ``to_json``/``from_json``.

Chapter *Using slimlib in your own analysis*, section "Save everything as JSON".  Every data
class of slimlib (:class:`~slimlib.MoEModel`, :class:`~slimlib.ActivationStats`,
:class:`~slimlib.Parameters`, :class:`~slimlib.Network`,
:class:`~slimlib.Problem`, :class:`~slimlib.Placement`) has

* ``to_dict()`` / ``from_dict(d)``: plain Python objects (dicts, lists,
  numbers, strings) with a ``kind`` and a ``version``;
* ``to_json()`` / ``from_json(text)``: the same as JSON *text* (a ``str``),
  as in pydantic, pandas and dataclasses-json.

Up to slimlib 0.1 ``to_json`` returned a dict and ``from_json`` took one.  A
dict passed to ``from_json`` still works but warns (``DeprecationWarning``,
pointing to ``from_dict``); the text ``to_json`` returns refuses to be
indexed like the old dict, with a message that names ``to_dict``.

Files (:func:`slimlib.load`, :func:`slimlib.save`) are read with
:func:`read_json`, which checks the size limit of :mod:`slimlib._validate`
before reading and turns every parsing failure into one ValueError.
"""
from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

from . import _validate as V

__all__: list[str] = []


class JSONText(str):
    """The ``str`` returned by ``to_json()``: JSON text that explains itself when indexed like a dict."""

    def __getitem__(self, key):
        if isinstance(key, str):
            raise TypeError(f"to_json() returns JSON text since slimlib 0.2; use to_dict()[{key!r}] "
                            "for the Python dict")
        return str.__getitem__(self, key)


def parse_json(text: Any, source: str = "json") -> Any:
    """Parse JSON text (``str`` or ``bytes``); every failure is one ValueError naming ``source``."""
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise V.fail(source, f"byte {exc.start}", "not UTF-8 text") from None
    if not isinstance(text, str):
        raise V.fail(source, text, "must be JSON text (a str)")
    if len(text) > V.MAX_FILE_BYTES:
        raise V.fail(source, f"{len(text)} characters", f"larger than the limit {V.MAX_FILE_BYTES} "
                                                      "(slimlib._validate.MAX_FILE_BYTES)")
    objects = text.count("{")      # an upper bound (braces inside strings count too), in milliseconds
    if objects > V.MAX_JSON_OBJECTS:
        raise V.fail(source, f"{objects} JSON objects", f"more than the limit {V.MAX_JSON_OBJECTS} "
                                                        "(slimlib._validate.MAX_JSON_OBJECTS)")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise V.fail(source, text[:40], f"not valid JSON: {exc.msg} at line {exc.lineno}") from None
    except RecursionError:
        raise V.fail(source, text[:40], "JSON nested too deeply") from None
    except ValueError as exc:  # e.g. an integer literal with more than 4300 digits
        raise V.fail(source, text[:40], f"not valid JSON: {exc}") from None


def read_json(path: str | os.PathLike) -> Any:
    """Read and parse a JSON file, checking its size before reading it."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise V.fail("path", str(path), "no such file") from None
    except OSError as exc:
        raise V.fail("path", str(path), f"cannot read: {exc.strerror or exc}") from None
    if path.is_dir():
        raise V.fail("path", str(path), "is a folder, not a file")
    if not path.is_file():       # a device or a pipe (/dev/zero) would be read without end
        raise V.fail("path", str(path), "is not a regular file")
    if size > V.MAX_FILE_BYTES:
        raise V.fail("path", str(path), f"file of {size} bytes is larger than the limit {V.MAX_FILE_BYTES} "
                                        "(slimlib._validate.MAX_FILE_BYTES)")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise V.fail("path", str(path), f"cannot read: {exc.strerror or exc}") from None
    return parse_json(raw, str(path))


class Serial:
    """Mixin: ``to_json``/``from_json`` (text) on top of a class's ``to_dict``/``from_dict``."""

    def __init_subclass__(cls, **kwargs):
        # Put both methods in every data class's own namespace, so that the API chapter (autodoc
        # ``:members:``, which skips inherited ones) lists them next to to_dict/from_dict.
        super().__init_subclass__(**kwargs)
        for name in ("to_json", "from_json"):
            if name not in cls.__dict__:
                setattr(cls, name, Serial.__dict__[name])

    def to_dict(self) -> dict:  # pragma: no cover - every class overrides it
        raise NotImplementedError

    @classmethod
    def from_dict(cls, data: dict):  # pragma: no cover - every class overrides it
        raise NotImplementedError

    def to_json(self, indent: int | None = None) -> str:
        """JSON text of :meth:`to_dict` (a ``str``; ``indent`` as in ``json.dumps``)."""
        return JSONText(json.dumps(self.to_dict(), indent=indent))

    @classmethod
    def from_json(cls, text):
        """Build from JSON text (``str`` or ``bytes``) as written by :meth:`to_json`.

        A dict is accepted for compatibility with slimlib 0.1 but warns: use
        :meth:`from_dict` for Python objects.
        """
        if isinstance(text, dict):
            warnings.warn(f"{cls.__name__}.from_json(dict) is deprecated since slimlib 0.2: "
                          f"use {cls.__name__}.from_dict(dict); from_json takes JSON text",
                          DeprecationWarning, stacklevel=2)
            return cls.from_dict(text)
        return cls.from_dict(parse_json(text, f"{cls.__name__}.from_json"))


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


def write_json(data: Any, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write the JSON-ready ``data`` to ``path`` as indented JSON, atomically.

    A temporary file in the same folder replaces ``path`` (``os.replace``), so a
    failed write never leaves a partial file; an existing ``path`` is refused
    unless ``overwrite``.  :func:`slimlib.save` writes through this function.
    """
    path = check_writable(path, overwrite=V.flag("overwrite", overwrite))
    text = json.dumps(data, indent=1) + "\n"
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
