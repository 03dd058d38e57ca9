"""Tables for the book: rows of dicts rendered as Markdown (chapter *The system model*, Table 1).

Notebooks display the result with ``IPython.display.Markdown``; the book renders
Markdown outputs as MyST (``nb_render_markdown_format: myst``), so tables work.
"""
from __future__ import annotations

from typing import Iterable, Mapping, Sequence

__all__ = ["markdown_table", "parameter_table"]


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v).replace("|", "\\|")


def markdown_table(rows: Iterable[Mapping], columns: Sequence[str], headers: Sequence[str] | None = None,
                   align: str | None = None) -> str:
    """Markdown (GFM) table of ``rows`` restricted to ``columns``.

    Parameters
    ----------
    rows : iterable of mapping
    columns : sequence of str
        Keys to show, in order.
    headers : sequence of str, optional
        Column titles (default: the keys).
    align : str, optional
        One of ``l``, ``r``, ``c`` per column (default all left).
    """
    headers = list(columns) if headers is None else list(headers)
    if len(headers) != len(columns):
        raise ValueError(f"headers: needs {len(columns)} titles (got {len(headers)})")
    align = align or "l" * len(columns)
    sep = {"l": ":--", "r": "--:", "c": ":-:"}
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(sep[a] for a in align) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(_cell(r.get(c, "")) for c in columns) + " |")
    return "\n".join(lines)


def parameter_table(params) -> str:
    """Table 1: every simulation parameter with its value, unit and source (from ``data/parameters``)."""
    return markdown_table(params.table(), ["label", "display", "name", "source"],
                          ["Parameter", "Value", "slimlib name", "Source"])
