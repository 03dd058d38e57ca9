"""The one widget helper of the book: :func:`explore`.

Every interactive figure goes through :func:`explore` (developers' guide:
``continuous_update=False``, redraw on every change).  It has two faces:

* **static** (the rendered site, no kernel): every valid combination of the
  grid is drawn once at build time and embedded as a PNG (identical frames
  stored once); one range input per numeric parameter and one dropdown per
  category switches the shown frame with a few lines of inline JavaScript
  (parameters with a single value are printed instead).  In the notebook the
  frames are ``data:`` URIs, so a downloaded notebook is self-contained; the
  book's Sphinx extension (``_ext/slimbook.py``) moves them into image files
  that the browser loads only when a frame is shown.  Nothing in the page needs a kernel, a CDN or the
  widget manager, so the slider works offline, and no widget state is saved
  into the notebook — the site never shows a frozen panel; a line under the
  figure says to run the notebook for the full one.  The browser test
  (``tests/test_browser.py``) moves every ``[data-slimlib-explorer]`` control
  and checks that ``img.slimlib-frame`` loads the frame of each position.
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
# cannot get confused), and switches the <img> to the frame of the current control positions.
# When a change leads to a combination that has no frame (``valid`` refused it), the other
# controls move to the nearest combination that has one: only valid combinations are shown.
_SCRIPT = """(function(){
 var root=document.currentScript.parentNode;
 var data=JSON.parse(root.querySelector("script.slimlib-frames").textContent);
 var ctl=root.querySelectorAll("[data-slimlib-control]");
 var img=root.querySelector("img.slimlib-frame");
 function pos(){var p=[];for(var i=0;i<ctl.length;i++){p.push(+ctl[i].value);}return p;}
 function nearest(p,fixed){
  var best=null,bd=1e9;
  for(var k in data.frames){
   var q=k.split("-").map(Number);
   if(q[fixed]!==p[fixed])continue;
   var d=0;for(var i=0;i<q.length;i++){if(q[i]!==p[i])d+=1000+Math.abs(q[i]-p[i]);}
   if(d<bd){bd=d;best=q;}
  }
  return best;
 }
 function update(ev){
  var p=pos();
  if(!(p.join("-") in data.frames)){
   var i=Array.prototype.indexOf.call(ctl,ev?ev.target:null);
   var q=nearest(p,i<0?0:i);
   if(q){for(var j=0;j<ctl.length;j++){ctl[j].value=String(q[j]);}p=q;}
  }
  for(var j=0;j<ctl.length;j++){
   var el=ctl[j];
   if(el.type==="range"){el.nextElementSibling.textContent=JSON.parse(el.getAttribute("data-labels"))[+el.value];}
  }
  var key=p.join("-");
  img.src=data.images[data.frames[key]];
  img.setAttribute("data-key",key);
 }
 for(var i=0;i<ctl.length;i++){ctl[i].addEventListener("input",update);ctl[i].addEventListener("change",update);}
})();"""


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _frames(draw: Callable, grid: dict, fixed: dict, dpi: int, valid: Callable | None):
    """Draw every valid combination; return (moving names, images, frames, values kept per name)."""
    names = list(grid)
    moving = [k for k in names if len(grid[k]) > 1]          # one control per parameter that varies
    images, index, frames = [], {}, {}
    for combo in itertools.product(*(range(len(grid[k])) for k in moving)):
        pos = dict(zip(moving, combo))
        params = {k: grid[k][pos.get(k, 0)] for k in names}
        if valid is not None and not valid(**params):
            continue
        fig = draw(**params, **fixed)
        if fig is None:                                       # the draw function refused it
            continue
        uri = "data:image/png;base64," + base64.b64encode(_fig_to_png(fig, dpi)).decode()
        if uri not in index:                                  # identical frames are stored once
            index[uri] = len(images)
            images.append(uri)
        frames[combo] = index[uri]
    if not frames:
        raise ValueError("grid: no valid combination (valid() refused or draw() returned None for all)")
    return moving, images, frames


def _static(draw: Callable, grid: dict, fixed: dict, dpi: int, title: str | None,
            valid: Callable | None = None, start: Mapping | None = None):
    """The static face: every valid frame drawn now, switched by inputs in the browser."""
    from IPython.display import HTML
    names = list(grid)
    moving, images, frames = _frames(draw, grid, fixed, dpi, valid)
    # values that appear in no valid frame are not offered
    kept = {k: sorted({combo[i] for combo in frames}) for i, k in enumerate(moving)}
    moving = [k for k in moving if len(kept[k]) > 1 or len(grid[k]) == 1]
    shown = {k: kept[k] for k in moving}
    renumber = {k: {old: new for new, old in enumerate(kept[k])} for k in kept}
    table = {}
    for combo, img in frames.items():
        key = tuple(renumber[k][combo[i]] for i, k in enumerate(kept) if k in shown)
        table["-".join(map(str, key))] = img
    first = _start_key(grid, shown, table, start)
    digest = hashlib.sha1(json.dumps([names, [[_fmt(v) for v in grid[k]] for k in names],
                                      sorted(map(str, fixed.items())), title or ""]).encode()).hexdigest()[:10]
    uid = f"slx-{digest}-{next(_COUNTER)}"
    mono = "font-family:var(--pst-font-family-monospace,monospace)"
    start_pos = [int(x) for x in first.split("-")] if first else []
    rows = []
    for i, k in enumerate(shown):
        labels = [_fmt(grid[k][j]) for j in shown[k]]
        at = start_pos[i]
        name = f'<span style="min-width:9em;{mono}">{html.escape(k)}</span>'
        if all(_is_number(grid[k][j]) for j in shown[k]):
            rows.append(
                f'<label class="slimlib-control" style="display:flex;gap:.6em;align-items:center;margin:.15em 0">'
                f'{name}<input type="range" data-slimlib-control min="0" max="{len(labels) - 1}" step="1" '
                f'value="{at}" data-index="{i}" data-labels="{html.escape(json.dumps(labels))}" '
                f'aria-label="{html.escape(k)}"><output style="{mono}">{html.escape(labels[at])}</output></label>')
        else:                                                 # categories: a dropdown, never a slider
            opts = "".join(f'<option value="{j}"{" selected" if j == at else ""}>{html.escape(lab)}</option>'
                           for j, lab in enumerate(labels))
            rows.append(
                f'<label class="slimlib-control" style="display:flex;gap:.6em;align-items:center;margin:.15em 0">'
                f'{name}<select data-slimlib-control data-index="{i}" aria-label="{html.escape(k)}">{opts}'
                f'</select></label>')
    for k in names:
        if k not in shown:
            vals = [grid[k][j] for j in kept.get(k, [0])]
            rows.append(f'<div style="margin:.15em 0;{mono}">{html.escape(k)} = '
                        f'{html.escape(_fmt(vals[0]))}</div>')
    head = f'<div style="font-weight:600">{html.escape(title)}</div>' if title else ""
    note = ('<div style="font-size:.8em;opacity:.75">'
            f'{len(table)} precomputed frame{"s" if len(table) != 1 else ""}; '
            'run the notebook for the full widget panel.</div>')
    data = json.dumps({"frames": table, "images": images}).replace("</", "<\\/")
    doc = (f'<div class="slimlib-explorer" id="{uid}" data-slimlib-explorer="{len(table)}">{head}\n'
           f'{"".join(rows)}\n'
           f'<img class="slimlib-frame" alt="{html.escape(title or "figure")}" style="max-width:100%" '
           f'data-key="{first}" src="{images[table[first]]}">\n{note}\n'
           f'<script type="application/json" class="slimlib-frames">{data}</script>\n'
           f'<script>{_SCRIPT}</script></div>')
    return HTML(doc)


def _start_key(grid: dict, shown: dict, table: dict, start: Mapping | None) -> str:
    """Key of the frame to open on: ``start`` (values per parameter) or the first valid frame."""
    if start:
        unknown = [k for k in start if k not in grid]
        if unknown:
            raise ValueError(f"start: unknown parameter(s) {unknown} (grid has {list(grid)})")
        pos = []
        for k in shown:
            if k in start:
                vals = [grid[k][j] for j in shown[k]]
                if start[k] not in vals:
                    raise ValueError(f"start[{k!r}]: {start[k]!r} is not one of the offered values {vals}")
                pos.append(vals.index(start[k]))
            else:
                pos.append(0)
        key = "-".join(map(str, pos))
        if key in table or not shown:
            return key
        raise ValueError(f"start: {dict(start)!r} is not a valid combination of the grid")
    return min(table, key=lambda k: [int(x) for x in k.split("-")] if k else [])


def _live(draw: Callable, grid: dict, fixed: dict, title: str | None, valid: Callable | None = None,
          start: Mapping | None = None):
    import ipywidgets as W
    import matplotlib.pyplot as plt
    from IPython.display import display

    first = dict(start or {})
    if valid is not None and not valid(**{k: first.get(k, v[0]) for k, v in grid.items()}):
        combo = next((c for c in itertools.product(*grid.values()) if valid(**dict(zip(grid, c)))), None)
        if combo is None:
            raise ValueError("grid: no valid combination (valid() refused all)")
        first = {**dict(zip(grid, combo)), **{k: v for k, v in first.items()
                                               if valid(**{**dict(zip(grid, combo)), k: v})}}
    controls = {}
    for k, vals in grid.items():
        opts = [(_fmt(v), v) for v in vals]
        value = first.get(k, vals[0])
        if all(_is_number(v) for v in vals) and len(vals) > 1:
            controls[k] = W.SelectionSlider(options=opts, value=value, description=k,
                                            continuous_update=False, style={"description_width": "initial"})
        else:                                                 # categories: a dropdown, never a slider
            controls[k] = W.Dropdown(options=opts, value=value, description=k,
                                     style={"description_width": "initial"})
    out = W.Output()
    busy = [False]

    def redraw(change=None):
        if busy[0]:
            return
        params = {k: c.value for k, c in controls.items()}
        if valid is not None and not valid(**params) and change is not None:
            # move the other controls to the nearest valid combination that keeps this change
            moved = next(k for k, c in controls.items() if c is change.owner)
            best = None
            for combo in itertools.product(*grid.values()):
                cand = dict(zip(grid, combo))
                if cand[moved] == params[moved] and valid(**cand):
                    d = sum(cand[k] != params[k] for k in grid)
                    if best is None or d < best[0]:
                        best = (d, cand)
            if best is not None:
                busy[0] = True
                for k, c in controls.items():
                    c.value = best[1][k]
                busy[0] = False
                params = best[1]
        with out:
            out.clear_output(wait=True)
            fig = draw(**params, **fixed)
            if fig is None:
                print("no figure for this combination")
                return
            display(fig)
            plt.close(fig)

    for c in controls.values():
        c.observe(redraw, names="value")
    redraw()
    kids = ([W.HTML(f"<b>{html.escape(title)}</b>")] if title else []) + list(controls.values()) + [out]
    return W.VBox(kids)


def explore(draw: Callable, grid: Mapping[str, Sequence], *, mode: str = "auto", dpi: int = 96,
            title: str | None = None, valid: Callable | None = None, start: Mapping | None = None,
            **fixed):
    """Interactive figure over a parameter grid — the book's one widget helper.

    Numbers get a slider; categories (a model, a statistics source, a method:
    any grid whose values are not all numbers) get a dropdown.  Only valid
    combinations are offered, and the figure opens on ``start``.

    Parameters
    ----------
    draw : callable
        ``draw(**params, **fixed) -> matplotlib.figure.Figure``; a draw function
        of ``slimlib.plotting`` wrapped around a data function.  Returning
        ``None`` marks the combination as not existing (like ``valid``).
    grid : mapping of str to sequence
        Values of each parameter, in control order.  The static face draws
        every valid combination, so keep the product small (tens of frames).
    mode : {"auto", "static", "live"}
        See the module docstring.
    dpi : int
        Resolution of the static frames (96 dpi: a figure of the column's
        width, 7 in, is 672 px, shown at its natural size, so 8 pt text is
        10.7 px on the page).
    title : str, optional
        Heading shown above the controls.
    valid : callable, optional
        ``valid(**params) -> bool``: combinations it refuses get no frame and
        are never shown; moving one control to a value whose combination is
        refused moves the others to the nearest valid one.
    start : mapping, optional
        Parameter values of the first frame shown (e.g. Table 1's 10 MHz, a
        DP step with content); default the first valid combination.
    **fixed
        Further keyword arguments passed unchanged to ``draw``.

    Returns
    -------
    IPython.display.HTML or ipywidgets.VBox
        Display it (the last expression of a cell is displayed).

    Raises
    ------
    ValueError
        Naming the field: an empty grid or value list, a bad ``mode``, a
        ``start`` that is not an offered valid combination, or no valid
        combination at all.
    """
    grid = _check_grid(grid)
    if mode not in ("auto", "static", "live"):
        raise ValueError(f"mode: must be 'auto', 'static' or 'live' (got {mode!r})")
    if start is not None and not isinstance(start, Mapping):
        raise ValueError(f"start: must be a mapping of parameter name to value (got {start!r})")
    if mode == "static" or (mode == "auto" and static_mode()):
        return _static(draw, grid, fixed, dpi, title, valid, start)
    return _live(draw, grid, fixed, title, valid, start)
