"""Helpers for running the book's chapters as plain notebooks.

Every chapter of the book is a notebook.  In the book build, numbers computed in
a code cell are pasted into the prose with MyST-NB's ``glue``; in a plain
Jupyter kernel, on Colab or on Binder, ``myst_nb`` is usually not installed.
:func:`glue` works in both places: it hands the value to MyST-NB when that is
importable, and otherwise shows it plainly (or keeps it quietly in
:data:`GLUED` when the book would not display it), so a downloaded chapter runs
top to bottom with only ``pip install "slimlib[notebooks]"``.

See the chapter *Using slimlib in your own analysis*, section "Run the notebooks
yourself".
"""
from __future__ import annotations

from typing import Any

__all__ = ["glue", "GLUED", "in_book_build"]

#: Values glued in this kernel, by name (filled whether or not MyST-NB is present).
GLUED: dict[str, Any] = {}


def in_book_build() -> bool:
    """True when MyST-NB (the book's notebook engine) can be imported."""
    try:
        import myst_nb  # noqa: F401
    except ImportError:
        return False
    return True


def glue(name: str, value: Any, display: bool = True) -> None:
    """Make ``value`` available to the book's prose under ``name``.

    Parameters
    ----------
    name : str
        Key used by the ``{glue:text}``, ``{glue:figure}`` and ``{glue}`` roles
        and directives of the chapter.
    value : object
        Any displayable object: a number, a string, a Markdown object, a
        matplotlib figure.
    display : bool, default True
        Also show the value as the cell's output.  With ``False`` the value
        only feeds the prose (the book's default for numbers quoted in text).

    Notes
    -----
    With MyST-NB importable this is exactly ``myst_nb.glue``.  Without it, a
    displayed value is shown with :func:`IPython.display.display` (or printed
    outside IPython) and every value is stored in :data:`GLUED`.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name: must be a non-empty string (got {name!r})")
    GLUED[name] = value
    try:
        from myst_nb import glue as _myst_glue
    except ImportError:
        _myst_glue = None
    if _myst_glue is not None:
        _myst_glue(name, value, display=display)
        return
    if not display:
        return
    try:
        from IPython.display import display as _display
    except ImportError:  # plain Python: a script copied from a chapter
        print(value)
        return
    _display(value)
