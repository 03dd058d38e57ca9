"""The one widget helper of the book: :func:`explore`.

Every interactive figure goes through :func:`explore` (developers' guide:
``continuous_update=False``, redraw on every change).  It has two faces:

* **static** (the rendered site, no kernel): every combination of the grid is
  drawn once at build time and embedded as a PNG (identical frames stored
  once); one range input per parameter that takes several values switches the
  shown frame with a few lines of inline JavaScript (parameters with a single
  value are printed instead).  Nothing in the page needs a kernel, a CDN or the
  widget manager, so the slider works offline, and no widget state is saved
  into the notebook — the site never shows a frozen panel; a line under the
  figure says to run the notebook for the full one.  The browser test
  (``tests/test_browser.py``) moves every ``[data-slimlib-explorer]`` slider
  and checks that ``img.slimlib-frame`` shows the frame of each position.
* **live** (a notebook with a kernel): a full ipywidgets panel — one slider or
  dropdown per parameter, ``continuous_update=False`` — that redraws the figure
  on every change.

The face is chosen by ``mode``: ``"auto"`` (default) is static while the book
is being built (``SLIMLIB_STATIC=1``, set by ``make book``) or when ipywidgets
is missing, and live otherwise.
"""
from __future__ import annotations

import base64
import hashlib
import html
import io
import itertools
import json
import os
from typing import Callable, Mapping, Sequence

__all__ = ["explore", "static_mode"]


def static_mode() -> bool:
    """True while the book is being built (``SLIMLIB_STATIC=1``) or without ipywidgets."""
    if os.environ.get("SLIMLIB_STATIC", "") == "1":
        return True
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return True
    return False


def _fig_to_png(fig, dpi: int) -> bytes:
    import matplotlib.pyplot as plt
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _check_grid(grid: Mapping[str, Sequence]) -> dict:
    if not isinstance(grid, Mapping) or not grid:
        raise ValueError(f"grid: must be a non-empty mapping of parameter name to values (got {grid!r})")
    out = {}
    for k, vals in grid.items():
        vals = list(vals)
        if not vals:
            raise ValueError(f"grid[{k!r}]: needs at least one value (got {vals!r})")
        out[k] = vals
    return out


_COUNTER = itertools.count()

# The inline control: a few lines of JavaScript, no library, no network.  It finds its own
# explorer through document.currentScript (so two explorers with the same grid on one page
# cannot get confused), and switches the <img> to the frame of the current slider positions.
_SCRIPT = """(function(){
 var root=document.currentScript.parentNode;
 var data=JSON.parse(root.querySelector("script.slimlib-frames").textContent);
 var inputs=root.querySelectorAll("input[type=range]");
 var img=root.querySelector("img.slimlib-frame");
 function update(){
  var key=[];
  for(var i=0;i<inputs.length;i++){
   var el=inputs[i];
   key.push(el.value);
   el.nextElementSibling.textContent=JSON.parse(el.getAttribute("data-labels"))[+el.value];
  }
  key=key.join("-");
  img.src=data.images[data.frames[key]];
  img.setAttribute("data-key",key);
 }
 for(var i=0;i<inputs.length;i++){inputs[i].addEventListener("input",update);}
})();"""


def _static(draw: Callable, grid: dict, fixed: dict, dpi: int, title: str | None):
    """The static face: every frame drawn now, switched by range inputs in the browser."""
    from IPython.display import HTML
    names = list(grid)
    moving = [k for k in names if len(grid[k]) > 1]          # one slider per parameter that varies
    images, index, frames = [], {}, {}
    for combo in itertools.product(*(range(len(grid[k])) for k in moving)):
        pos = dict(zip(moving, combo))
        params = {k: grid[k][pos.get(k, 0)] for k in names}
        uri = "data:image/png;base64," + base64.b64encode(_fig_to_png(draw(**params, **fixed), dpi)).decode()
        if uri not in index:                                  # identical frames are stored once
            index[uri] = len(images)
            images.append(uri)
        frames["-".join(map(str, combo))] = index[uri]
    digest = hashlib.sha1(json.dumps([names, [[_fmt(v) for v in grid[k]] for k in names],
                                      sorted(map(str, fixed.items())), title or ""]).encode()).hexdigest()[:10]
    uid = f"slx-{digest}-{next(_COUNTER)}"
    first = "-".join("0" for _ in moving)
    mono = "font-family:var(--pst-font-family-monospace,monospace)"
    rows = []
    for i, k in enumerate(moving):
        labels = [_fmt(v) for v in grid[k]]
        rows.append(
            f'<label style="display:flex;gap:.6em;align-items:center;margin:.15em 0">'
            f'<span style="min-width:9em;{mono}">{html.escape(k)}</span>'
            f'<input type="range" min="0" max="{len(labels) - 1}" step="1" value="0" data-index="{i}" '
            f'data-labels="{html.escape(json.dumps(labels))}" aria-label="{html.escape(k)}">'
            f'<output style="{mono}">{html.escape(labels[0])}</output></label>')
    for k in names:
        if k not in moving:
            rows.append(f'<div style="margin:.15em 0;{mono}">{html.escape(k)} = {html.escape(_fmt(grid[k][0]))}</div>')
    head = f'<div style="font-weight:600">{html.escape(title)}</div>' if title else ""
    note = ('<div style="font-size:.8em;opacity:.75">'
            f'{len(frames)} precomputed frame{"s" if len(frames) != 1 else ""}; '
            'run the notebook for the full widget panel.</div>')
    data = json.dumps({"frames": frames, "images": images}).replace("</", "<\\/")
    doc = (f'<div class="slimlib-explorer" id="{uid}" data-slimlib-explorer="{len(frames)}">{head}\n'
           f'{"".join(rows)}\n'
           f'<img class="slimlib-frame" alt="{html.escape(title or "figure")}" style="max-width:100%" '
           f'data-key="{first}" src="{images[frames[first]]}">\n{note}\n'
           f'<script type="application/json" class="slimlib-frames">{data}</script>\n'
           f'<script>{_SCRIPT}</script></div>')
    return HTML(doc)


def _live(draw: Callable, grid: dict, fixed: dict, title: str | None):
    import ipywidgets as W
    import matplotlib.pyplot as plt
    from IPython.display import display

    controls = {}
    for k, vals in grid.items():
        opts = [(_fmt(v), v) for v in vals]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals) and len(vals) > 1:
            controls[k] = W.SelectionSlider(options=opts, value=vals[0], description=k,
                                            continuous_update=False, style={"description_width": "initial"})
        else:
            controls[k] = W.Dropdown(options=opts, value=vals[0], description=k,
                                     style={"description_width": "initial"})
    out = W.Output()

    def redraw(*_):
        with out:
            out.clear_output(wait=True)
            fig = draw(**{k: c.value for k, c in controls.items()}, **fixed)
            display(fig)
            plt.close(fig)

    for c in controls.values():
        c.observe(redraw, names="value")
    redraw()
    kids = ([W.HTML(f"<b>{html.escape(title)}</b>")] if title else []) + list(controls.values()) + [out]
    return W.VBox(kids)


def explore(draw: Callable, grid: Mapping[str, Sequence], *, mode: str = "auto", dpi: int = 80,
            title: str | None = None, **fixed):
    """Interactive figure over a parameter grid — the book's one widget helper.

    Parameters
    ----------
    draw : callable
        ``draw(**params, **fixed) -> matplotlib.figure.Figure``; a draw function
        of ``slimlib.plotting`` wrapped around a data function.
    grid : mapping of str to sequence
        Values of each parameter, in slider order.  The static face draws every
        combination, so keep the product small (tens of frames).
    mode : {"auto", "static", "live"}
        See the module docstring.
    dpi : int
        Resolution of the static frames.
    title : str, optional
        Heading shown above the controls.
    **fixed
        Further keyword arguments passed unchanged to ``draw``.

    Returns
    -------
    IPython.display.HTML or ipywidgets.VBox
        Display it (the last expression of a cell is displayed).
    """
    grid = _check_grid(grid)
    if mode not in ("auto", "static", "live"):
        raise ValueError(f"mode: must be 'auto', 'static' or 'live' (got {mode!r})")
    if mode == "static" or (mode == "auto" and static_mode()):
        return _static(draw, grid, fixed, dpi, title)
    return _live(draw, grid, fixed, title)
