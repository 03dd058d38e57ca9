"""Sphinx extension of the SlimCaching book (book machinery, not part of ``slimlib``).

Loaded through ``_config.yml`` (``sphinx.local_extensions: {slimbook: _ext/}``),
it makes the built site work for readers with no network and no kernel, and
keeps its pages light:

* **Local browser assets.**  MathJax 3, require.js and the Jupyter widgets
  HTML manager come from the npm packages pinned in the repository's
  ``package.json``/``package-lock.json`` (``make book`` runs ``npm ci``).  At
  the end of a build they are copied into ``<html>/_vendor/`` — deliberately
  *not* ``_static``, because jupyter-book links every ``.js``/``.css`` under
  ``_static`` into every page.  ``mathjax_path`` and ``nb_ipywidgets_js`` in
  ``_config.yml`` point there.  A build without ``node_modules`` fails with a
  message saying how to install it.
* **No duplicate inline scripts.**  Sphinx 7.4 adds a script registered
  during the build (``app.add_js_file(None, body=...)``, as sphinx-thebe and
  sphinx-togglebutton do) to each page twice — once with the file name
  ``None`` and once with ``''`` — so ``const THEBE_JS_URL`` is declared twice
  and the browser reports a ``SyntaxError``.  Every page's script list is
  de-duplicated here.
* **Launch buttons that open a notebook.**  The chapters are MyST markdown
  notebooks; Colab cannot open a ``.md`` file.  The site publishes the
  executed ``.ipynb`` of every chapter under ``_sources/`` (the download
  button); with ``slimlib_notebook_branch`` set (the branch the built site is
  published to), the Colab and Binder buttons open that notebook.  Its first
  cell installs slimlib from the repository when it is missing.  The
  repository itself is the one ``repository.url`` setting of ``_config.yml``.
* **The API reference.**  The ``slimlib-api`` directive documents names of
  ``slimlib.__all__`` with autodoc (chapter *API reference*); with the
  ``:rest:`` flag it documents every name the page has not documented yet,
  so a name added to ``__all__`` appears without editing the chapter.
  ``:module: slimlib.x`` documents the rest of one public submodule (one page
  per module under ``chapters/api/``); references to a re-exported name
  through its submodule (``slimlib.latency.average_latency``) resolve to its
  one entry, ``slimlib.average_latency``.
* **Slider frames as files.**  :func:`slimlib.widgets.explore` embeds its
  frames as ``data:`` URIs (so a downloaded notebook works on its own).  When
  a page is written, every such frame is moved into
  ``_images/frames/<sha1>.png`` and the page refers to it by URL, so the
  browser loads a frame only when a slider shows it and no page carries
  megabytes of base64.
* **Reading on a phone.**  ``static/slimbook.css`` lets inline code and long
  words wrap, and lets wide tables and displays scroll inside their own box
  instead of the whole page; ``static/slimbook.js`` opens a figure full size
  when it is tapped and shown smaller than drawn.
* **Parallel reading.**  ``SLIMBOOK_JOBS=N`` (``make book`` sets ``N = 2``)
  gives Sphinx ``N`` processes: pages, and so their notebooks, are read ``N``
  at a time, one page per task, the chapters of ``slimlib_read_first`` (the
  longest to execute) first.  jupyter-book 1's command line has no ``-j``;
  two extensions it loads that keep no per-page data are declared safe here.
* **One citation style.**  The bibliography is labelled author–year
  (``bibtex_default_style: slimbook``) like the citations in the text.
"""
from __future__ import annotations

import base64
import hashlib
import importlib
import inspect
import json
import os
import re
import shutil
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.errors import ExtensionError
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)

VENDOR_DIR = "_vendor"

#: What is copied from ``node_modules`` into ``<html>/_vendor``:
#: (package folder, destination folder, files or folders to take, suffixes to skip).
ASSETS = [
    ("mathjax/es5", "mathjax",
     ["tex-mml-chtml.js", "input", "output", "a11y", "adaptors", "ui", "sre"], (".map",)),
    ("mathjax", "mathjax", ["LICENSE"], ()),
    ("requirejs", "requirejs", ["require.js", "README.md"], ()),
    ("@jupyter-widgets/html-manager/dist", "html-manager", ["embed-amd.js", "*.woff", "*.woff2", "*.ttf",
                                                           "*.eot", "*.svg", "*.LICENSE.txt"], (".map",)),
    ("@jupyter-widgets/html-manager", "html-manager", ["LICENSE"], ()),
]


def node_modules_dir(app=None) -> Path:
    """Folder of the installed npm packages.

    ``slimlib_node_modules`` (Sphinx config), else ``$SLIMLIB_NODE_MODULES``,
    else ``node_modules/`` beside the repository's ``package.json``.
    """
    if app is not None and app.config.slimlib_node_modules:
        return Path(app.config.slimlib_node_modules)
    if os.environ.get("SLIMLIB_NODE_MODULES"):
        return Path(os.environ["SLIMLIB_NODE_MODULES"])
    return Path(__file__).resolve().parent.parent / "node_modules"


#: Loaded between require.js and the widgets manager (``nb_ipywidgets_js``): the manager finds
#: its font files next to its AMD modules (``@jupyter-widgets/base``, ``.../controls``,
#: ``.../html-manager/dist/libembed-amd``), which require.js would otherwise place under the
#: page's own folder.
REQUIRE_CONFIG = """// Written by slimbook: serve the widgets manager's files from this folder.
(function () {
  var src = document.currentScript.src;
  var here = src.slice(0, src.lastIndexOf("/"));
  require.config({paths: {"@jupyter-widgets": here, "@jupyter-widgets/html-manager/dist": here}});
})();
"""


def copy_assets(node_modules: Path, outdir: Path) -> list[Path]:
    """Copy the browser assets from ``node_modules`` into ``outdir/_vendor``; return the copied files."""
    node_modules = Path(node_modules)
    missing = [pkg for pkg, _, _, _ in ASSETS if not (node_modules / pkg).is_dir()]
    if missing:
        raise ExtensionError(
            f"slimbook: npm packages missing in {node_modules} ({', '.join(missing)}); "
            "run `npm ci` in the repository (make book does it) or set $SLIMLIB_NODE_MODULES")
    copied = []
    dest_root = Path(outdir) / VENDOR_DIR
    for pkg, dest, patterns, skip in ASSETS:
        src_root = node_modules / pkg
        for pattern in patterns:
            for src in sorted(src_root.glob(pattern)):
                rel = src.relative_to(src_root)
                files = [src] if src.is_file() else sorted(p for p in src.rglob("*") if p.is_file())
                for f in files:
                    if f.suffix in skip:
                        continue
                    target = dest_root / dest / rel / f.relative_to(src) if f != src else dest_root / dest / rel
                    target.parent.mkdir(parents=True, exist_ok=True)
                    if not target.exists() or target.stat().st_size != f.stat().st_size \
                            or target.stat().st_mtime < f.stat().st_mtime:
                        shutil.copy2(f, target)
                    copied.append(target)
    config = dest_root / "html-manager" / "require-config.js"
    if not config.exists() or config.read_text() != REQUIRE_CONFIG:
        config.write_text(REQUIRE_CONFIG)
    copied.append(config)
    return copied


def _check_node_modules(app):
    if app.builder.format != "html":
        return
    nm = node_modules_dir(app)
    # Fail early (before executing every notebook) rather than at the very end.
    copy_assets(nm, Path(app.outdir))


def _copy_at_end(app, exception):
    if exception is None and app.builder.format == "html":
        files = copy_assets(node_modules_dir(app), Path(app.outdir))
        logger.info(f"slimbook: {len(files)} browser asset files in {VENDOR_DIR}/")


def _dedupe_scripts(app, pagename, templatename, context, doctree):
    """Drop the second copy of each inline script (Sphinx 7.4 registers them as ``None`` and ``''``)."""
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, keep = set(), []
    for js in scripts:
        filename = getattr(js, "filename", js)
        attrs = getattr(js, "attributes", {})
        key = (filename or "", getattr(js, "priority", None), tuple(sorted(attrs.items())))
        if key in seen:
            continue
        seen.add(key)
        keep.append(js)
    if len(keep) != len(scripts):
        scripts[:] = keep


def _launch_to_notebook(app, pagename, templatename, context, doctree):
    """Point the Colab/Binder buttons at the published ``.ipynb`` of the page."""
    branch = app.config.slimlib_notebook_branch
    ipynb = context.get("ipynb_source")
    if not branch or not ipynb:
        return
    from sphinx_book_theme.header_buttons import get_repo_parts
    _, org, repo, provider = get_repo_parts(context)
    if org is None or str(provider).lower() != "github":
        return
    path = f"_sources/{ipynb}"
    for group in context.get("header_buttons", []):
        if group.get("label") != "launch-buttons":
            continue
        for button in group.get("buttons", []):
            url = button.get("url", "")
            if button.get("text") == "Colab":
                button["url"] = f"{url.split('/github/')[0]}/github/{org}/{repo}/blob/{branch}/{path}"
            elif button.get("text") == "Binder" and "?urlpath=" in url:
                base, query = url.split("?urlpath=", 1)
                base = base.rsplit("/", 1)[0] + f"/{branch}"
                ui = query.split("/", 1)[0] if not query.startswith("lab/tree") else "lab/tree"
                button["url"] = f"{base}?urlpath={ui}/{path}"


# --------------------------------------------------------------------------- API reference

def _public_names() -> list[str]:
    import slimlib
    return list(slimlib.__all__)


def _import(name: str):
    mod, _, attr = name.rpartition(".")
    return getattr(importlib.import_module(mod), attr)


class SlimlibApi(SphinxDirective):
    """``slimlib-api``: autodoc entries for names of ``slimlib.__all__``.

    Content: one name per line (``solve`` or ``slimlib.solve``; names outside
    ``__all__`` such as ``slimlib.widgets.explore`` are allowed).  Options:
    ``:rest:`` adds every name of ``__all__`` not documented earlier on the
    page; ``:summary:`` only writes a summary table (link and first paragraph
    of the docstring of each name) instead of the entries; ``:module: name``
    documents one public submodule (``automodule``, members of its
    ``__all__``) except the names already documented as ``slimlib.<name>``;
    ``:modules:`` does so for every public submodule that has no page
    ``chapters/api/<module>.md`` yet.
    """

    has_content = True
    option_spec = {"rest": directives.flag, "summary": directives.flag, "modules": directives.flag,
                   "module": directives.unchanged_required}

    def run(self):
        done = self.env.temp_data.setdefault("slimlib_api_done", set())
        names = []
        for line in self.content:
            name = line.strip()
            if name:
                names.append(name if "." in name else f"slimlib.{name}")
        summary_only = "summary" in self.options
        if "modules" in self.options:
            # one page per module lives in chapters/api/<module>.md; a module added to the
            # library without its page yet is documented here, so nothing goes missing
            api_dir = Path(self.env.srcdir) / "chapters" / "api"
            rest = [m for m in library_modules() if not (api_dir / f"{m}.md").exists()]
            return self._parse(_modules_rst(rest)) if rest else []
        if "module" in self.options:
            name = self.options["module"].strip()
            if name not in library_modules():
                raise self.error(f"slimlib-api: {name!r} is not a public module of slimlib "
                                 f"(one of {', '.join(library_modules())})")
            return self._parse(_modules_rst([name], rubric=False))
        if "rest" in self.options:
            names += [f"slimlib.{n}" for n in _public_names()
                      if f"slimlib.{n}" not in done and f"slimlib.{n}" not in names]
        if not names:
            return []
        # Resolve short names in docstrings (``Problem``, :func:`solve`) against the public namespace.
        for n in names:
            try:
                _import(n)
            except (ImportError, AttributeError) as exc:
                raise self.error(f"slimlib-api: cannot import {n}: {exc}")
        lines = [".. currentmodule:: slimlib", ""]
        if summary_only:
            # One row per name: link and the first paragraph of its docstring (autosummary would
            # cut the sentence at the first "eq. (1)").
            lines += [".. list-table::", "   :widths: 30 70", "   :class: slimlib-api-summary", ""]
            for n in names:
                doc = inspect.getdoc(_import(n)) or ""
                first = " ".join(doc.split("\n\n")[0].split())
                short = n[len("slimlib."):] if n.startswith("slimlib.") else n
                lines += [f"   * - :py:obj:`{short} <{n}>`", f"     - {first}"]
            lines.append("")
        else:
            for n in names:
                obj = _import(n)
                if isinstance(obj, type):
                    lines += [f".. autoclass:: {n}", "   :members:", ""]
                elif callable(obj):
                    lines += [f".. autofunction:: {n}", ""]
                else:
                    lines += [f".. autodata:: {n}", "   :annotation:", ""]
                done.add(n)
        return self._parse(lines)

    def _parse(self, lines):
        """Parse generated reStructuredText here (inside ``{eval-rst}`` when the page is MyST)."""
        container = nodes.container()
        try:
            from myst_parser.mocking import MockState
            in_myst = isinstance(self.state, MockState)
        except ImportError:  # pragma: no cover
            in_myst = False
        if in_myst:
            text = ["```{eval-rst}"] + lines + ["```"]
        else:
            text = lines
        self.state.nested_parse(StringList(text, source=self.get_source_info()[0]), self.content_offset, container)
        return container.children


#: Submodules that are book machinery, not library API.
_NOT_API = {"slimlib.__main__"}


def library_modules() -> list[str]:
    """Public submodules of slimlib (no ``_private`` part), sorted."""
    import pkgutil
    import slimlib
    names = []
    for info in pkgutil.walk_packages(slimlib.__path__, "slimlib."):
        if info.name in _NOT_API or any(part.startswith("_") for part in info.name.split(".")):
            continue
        names.append(info.name)
    return sorted(names)


def _modules_rst(modules=None, rubric: bool = True) -> list[str]:
    """``automodule`` of submodules (default: all), without the names documented as ``slimlib.<name>``."""
    import slimlib
    public = {id(getattr(slimlib, n)) for n in slimlib.__all__}
    lines = []
    for name in (library_modules() if modules is None else modules):
        mod = importlib.import_module(name)
        members = getattr(mod, "__all__", None)
        if members is None:
            members = [k for k, v in vars(mod).items() if not k.startswith("_")
                       and getattr(v, "__module__", None) == name and (inspect.isclass(v) or inspect.isfunction(v))]
        skip = [k for k in members if id(getattr(mod, k, None)) in public]
        if rubric:
            lines += [f".. rubric:: {name}", "   :class: slimlib-api-module", ""]
        lines += [f".. automodule:: {name}", "   :members:"]
        if skip:
            lines.append(f"   :exclude-members: {', '.join(sorted(skip))}")
        lines.append("")
    return lines


def _resolve_public_alias(app, env, node, contnode):
    """Resolve a Python reference through slimlib's public names.

    Functions re-exported by ``slimlib`` are documented once, as
    ``slimlib.<name>``; a docstring of their own module may still say
    :func:`average_latency` (module context ``slimlib.latency``) or
    ``slimlib.latency.average_latency``.  Try ``slimlib.<name>`` (and
    ``slimlib.<Class>.<member>``), and a short name used in
    ``slimlib.plotting.moe`` also in ``slimlib.plotting``, before reporting the
    reference as missing.
    """
    if node.get("refdomain") != "py":
        return None
    import slimlib
    target = node.get("reftarget", "")
    parts = target.lstrip("~.").split(".")
    if parts and parts[0] == "slimlib":
        parts = parts[1:]
    candidates = []
    for i in range(len(parts)):
        if parts[i] in slimlib.__all__:
            candidates.append("slimlib." + ".".join(parts[i:]))
    # a short name used inside a subpackage: look in the enclosing packages too
    module = node.get("py:module") or ""
    if module.startswith("slimlib.") and not target.startswith("slimlib."):
        pkg = module.split(".")
        candidates += [".".join(pkg[:k] + [target.lstrip("~.")]) for k in range(len(pkg) - 1, 0, -1)]
    if not candidates:
        return None
    domain = env.get_domain("py")
    for cand in candidates:
        new = node.deepcopy()
        new["reftarget"] = cand
        new["py:module"] = "slimlib"
        new["py:class"] = None
        found = domain.resolve_xref(env, node.get("refdoc", ""), app.builder, node["reftype"], cand, new, contnode)
        if found is not None:
            return found
    return None


# --------------------------------------------------------------------------- slider frames as files

FRAMES_DIR = "_images/frames"
_DATA_URI = re.compile(r"data:image/png;base64,([A-Za-z0-9+/=]+)")
_FRAME_BLOCKS = re.compile(r'(<img class="slimlib-frame"[^>]*>|<script type="application/json" '
                           r'class="slimlib-frames">.*?</script>)', re.S)


def externalise_frames(body: str, outdir, prefix: str) -> tuple[str, int]:
    """Move the ``data:`` frames of every static explorer in ``body`` into files.

    Each distinct PNG is written once as ``outdir/_images/frames/<sha1>.png``
    and referred to as ``prefix + "_images/frames/<sha1>.png"`` (``prefix`` is
    the way from the page up to the site root, e.g. ``"../"``).  Only the
    explorer's ``<img class="slimlib-frame">`` and its JSON frame table are
    touched.  Returns the new body and the number of frames replaced.
    """
    folder = Path(outdir) / FRAMES_DIR
    count = 0

    def to_file(m):
        nonlocal count
        png = base64.b64decode(m.group(1))
        name = hashlib.sha1(png).hexdigest()[:20] + ".png"
        target = folder / name
        if not target.exists():
            folder.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(".tmp")
            tmp.write_bytes(png)
            os.replace(tmp, target)
        count += 1
        return f"{prefix}{FRAMES_DIR}/{name}"

    new = _FRAME_BLOCKS.sub(lambda b: _DATA_URI.sub(to_file, b.group(0)), body)
    return new, count


def _frames_to_files(app, pagename, templatename, context, doctree):
    body = context.get("body")
    if app.builder.format != "html" or not body or "slimlib-frame" not in body:
        return
    prefix = "../" * pagename.count("/")
    context["body"], n = externalise_frames(body, app.outdir, prefix)
    if n:
        logger.info(f"slimbook: {pagename}: {n} slider frames written to {FRAMES_DIR}/")


# --------------------------------------------------------------------------- citations

def _register_bib_style():
    """``slimbook`` pybtex style: the bibliography labelled "Author et al., year", like the text."""
    try:
        from pybtex.plugin import register_plugin
        from pybtex.richtext import Text
        from pybtex.style.formatting.plain import Style as Plain
        from pybtex.style.labels import BaseLabelStyle
    except ImportError:  # pragma: no cover - sphinxcontrib-bibtex brings pybtex
        return

    def surname(person) -> str:
        return Text.from_latex(" ".join(person.prelast_names + person.last_names)).render_as("text")

    class AuthorYearLabels(BaseLabelStyle):
        def format_labels(self, sorted_entries):
            for entry in sorted_entries:
                people = entry.persons.get("author") or entry.persons.get("editor") or []
                if not people:
                    who = entry.fields.get("organization", entry.key)
                elif len(people) == 1:
                    who = surname(people[0])
                elif len(people) == 2:
                    who = f"{surname(people[0])} and {surname(people[1])}"
                else:
                    who = f"{surname(people[0])} et al."
                yield f"{who}, {entry.fields.get('year', 'n.d.')}"

    class AuthorYearStyle(Plain):
        default_label_style = AuthorYearLabels
        default_sorting_style = "author_year_title"

    register_plugin("pybtex.style.labels", "slimbook", AuthorYearLabels, force=True)
    register_plugin("pybtex.style.formatting", "slimbook", AuthorYearStyle, force=True)


def _clear_api_state(app, docname, source):
    app.env.temp_data.pop("slimlib_api_done", None)


# jupyter-book 1's CLI has no ``-j``: ``SLIMBOOK_JOBS=N`` (the Makefile sets it) gives Sphinx N
# processes, so pages are read -- and their notebooks executed -- N at a time.  Two extensions
# that jupyter-book loads do not declare parallel safety (Sphinx then reads serially): both keep
# no per-document environment data (sphinx_multitoc_numbering renumbers sections after reading,
# in the main process; sphinx_jupyterbook_latex acts only in LaTeX builds), so they are safe.
_UNDECLARED_BUT_SAFE = ("sphinx_multitoc_numbering", "sphinx_jupyterbook_latex")


def _parallel_jobs(app, config):
    raw = os.environ.get("SLIMBOOK_JOBS", "")
    if not raw:
        return
    if not raw.isdigit() or int(raw) < 1:
        raise ExtensionError(f"SLIMBOOK_JOBS={raw!r}: expected a whole number of processes >= 1")
    app.parallel = int(raw)
    # sphinx-proof declares parallel reading safe but its domain lacks merge_domaindata: it keeps
    # no domain data (its registry env.proof_list is merged by its own env-merge-info handler),
    # so there is nothing to merge.
    from sphinx.domains import Domain
    from sphinx_proof.domain import ProofDomain
    if ProofDomain.merge_domaindata is Domain.merge_domaindata:
        ProofDomain.merge_domaindata = lambda self, docnames, otherdata: None
    # Sphinx hands each process batches of ~sqrt(n / N * 10) consecutive pages, so every chapter
    # lands in the same batch after the API pages and is executed serially.  One page per task,
    # longest first (_longest_first), keeps both processes busy to the end.
    import sphinx.builders
    sphinx.builders.make_chunks = lambda arguments, nproc, maxbatch=10: [[a] for a in arguments]


def _longest_first(app, env, docnames):
    """Read the pages of ``slimlib_read_first`` first, then pages with notebooks, then the rest."""
    if app.parallel <= 1:
        return
    first = list(app.config.slimlib_read_first)
    def key(doc):
        if doc in first:
            return (0, first.index(doc))
        path = Path(env.doc2path(doc))
        head = path.read_text(encoding="utf-8")[:2000] if path.is_file() else ""
        return (1, 0) if "kernelspec" in head else (2, 0)
    docnames.sort(key=key)            # stable: the alphabetical order within each class
    for name in _UNDECLARED_BUT_SAFE:
        ext = app.extensions.get(name)
        if ext is not None and ext.parallel_read_safe is None:
            ext.parallel_read_safe = ext.parallel_write_safe = True


def setup(app):
    _register_bib_style()
    app.connect("config-inited", _parallel_jobs)
    app.connect("env-before-read-docs", _longest_first)
    static = str(Path(__file__).resolve().parent / "static")
    if static not in app.config.html_static_path:
        app.config.html_static_path.append(static)
    app.add_css_file("slimbook.css")
    app.add_js_file("slimbook.js")
    app.connect("html-page-context", _frames_to_files, priority=950)
    app.add_config_value("slimlib_node_modules", "", "env")
    app.add_config_value("slimlib_notebook_branch", "", "html")
    app.add_config_value("slimlib_read_first", [], "env")
    app.add_directive("slimlib-api", SlimlibApi)
    app.connect("source-read", _clear_api_state)
    app.connect("missing-reference", _resolve_public_alias)
    app.connect("builder-inited", _check_node_modules)
    app.connect("build-finished", _copy_at_end)
    app.connect("html-page-context", _dedupe_scripts, priority=900)
    app.connect("html-page-context", _launch_to_notebook, priority=900)
    return {"version": "0.1", "parallel_read_safe": True, "parallel_write_safe": True}
