"""The reader-facing pieces that are not chapters' numbers: API reference, naming guide, packaging.

* The API chapter documents every name of ``slimlib.__all__`` (through the
  ``slimlib-api`` directive of the book's Sphinx extension ``_ext/slimbook.py``,
  which adds any name the chapter's sections do not list), and every public
  submodule has its own page under ``chapters/api/``.
* The library imports no Sphinx: the book machinery lives in ``_ext/``.
* Every ``slimlib`` name the naming guide mentions exists.
* A wheel built from the repository (what ``pip install "slimlib @ git+..."``
  installs on Colab) carries every file of ``data/``, and ``slimlib.data_dir``
  finds it in an installed (non-editable) copy.
* The browser assets are copied into ``_vendor/`` with the files the site
  configuration points at.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

import slimlib
from slimlib.instances import random_problem

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "_ext"))
import slimbook  # noqa: E402  (the book's Sphinx extension, _ext/slimbook.py)


def _api_listed_names() -> set[str]:
    text = (ROOT / "chapters" / "api.md").read_text()
    names = set()
    for block in re.findall(r"```\{slimlib-api\}\n(.*?)```", text, re.S):
        names |= {line.strip() for line in block.splitlines() if line.strip() and not line.startswith(":")}
    return names


def test_api_chapter_covers_every_public_name():
    text = (ROOT / "chapters" / "api.md").read_text()
    listed = _api_listed_names()
    unknown = [n for n in listed if n.startswith("slimlib.") is False and n not in slimlib.__all__]
    assert not unknown, f"api.md lists names that are not in slimlib.__all__: {unknown}"
    # names the sections do not list are added by the `:rest:` directive, which must be there
    assert re.search(r"```\{slimlib-api\}\n:rest:\n```", text)
    assert re.search(r"```\{slimlib-api\}\n:summary:\n:rest:\n```", text)
    assert re.search(r"```\{slimlib-api\}\n:modules:\n```", text)


def test_every_public_name_has_a_docstring():
    missing = [n for n in slimlib.__all__ if not (getattr(slimlib, n).__doc__ or "").strip()]
    assert not missing


def test_public_submodules_import_and_exclude_book_machinery():
    mods = slimbook.library_modules()
    assert "slimlib.latency" in mods and "slimlib.widgets" in mods
    assert not any("sphinx" in m for m in mods) and not any("._" in m for m in mods)


def test_importing_slimlib_imports_no_sphinx():
    code = ("import sys, slimlib, slimlib.widgets, slimlib.plotting; "
            "print(sorted(m for m in sys.modules if 'sphinx' in m or 'docutils' in m))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PATH": "/usr/bin:/bin", "MPLBACKEND": "Agg"}, cwd=ROOT).stdout
    assert out.strip() == "[]"
    assert not (ROOT / "slimlib" / "slimbook.py").exists()


def test_every_public_module_has_its_own_api_page():
    toc = (ROOT / "_toc.yml").read_text()
    assert "- glob: chapters/api/*" in toc                   # every page of chapters/api/ is listed
    for mod in slimbook.library_modules():
        page = ROOT / "chapters" / "api" / f"{mod}.md"
        assert page.is_file(), f"no API page for {mod} (the api chapter's :modules: lists it meanwhile)"
        assert re.search(r"```\{slimlib-api\}\n:module: " + re.escape(mod) + r"\n```", page.read_text())
    for page in (ROOT / "chapters" / "api").glob("*.md"):
        assert page.stem in slimbook.library_modules(), f"{page.name} documents no public module"


def test_slider_frames_become_files_named_by_their_content(tmp_path):
    import base64
    png = b"\x89PNG fake frame"
    uri = "data:image/png;base64," + base64.b64encode(png).decode()
    other = "data:image/png;base64," + base64.b64encode(b"another").decode()
    body = (f'<p>keep {other}</p><div class="slimlib-explorer"><img class="slimlib-frame" alt="x" '
            f'src="{uri}"><script type="application/json" class="slimlib-frames">'
            f'{{"frames": {{"0": 0}}, "images": ["{uri}"]}}</script></div>')
    new, n = slimbook.externalise_frames(body, tmp_path, "../")
    assert n == 2 and "base64" not in new.split("</p>", 1)[1] and other in new   # only explorer frames
    files = list((tmp_path / "_images" / "frames").iterdir())
    assert len(files) == 1 and files[0].read_bytes() == png
    assert new.count(f'"../_images/frames/{files[0].name}"') == 2


def test_bibliography_labels_are_author_year():
    pybtex = pytest.importorskip("pybtex")
    from pybtex.database import parse_string
    from pybtex.plugin import find_plugin
    slimbook._register_bib_style()
    bib = parse_string(r"""@article{a, author={Chen, X. and Li, Y. and Wu, Z.}, title={T}, journal={J}, year={2025}}
@book{b, author={Kellerer, H. and Pferschy, U.}, title={K}, publisher={S}, year={2004}}
@article{c, author={Minoux, M.}, title={M}, journal={J}, year={1978}}""", "bibtex")
    style = find_plugin("pybtex.style.formatting", "slimbook")()
    labels = {e.key: e.label for e in style.format_entries(bib.entries.values())}
    assert labels == {"a": "Chen et al., 2025", "b": "Kellerer and Pferschy, 2004", "c": "Minoux, 1978"}


def test_naming_guide_names_exist():
    text = (ROOT / "chapters" / "naming.md").read_text()
    problem = random_problem(0, num_users=2, num_servers=2)
    placement = slimlib.Placement.empty(problem)
    instances = {"MoEModel": problem.models[0], "ActivationStats": problem.stats[0], "Network": problem.network,
                 "Problem": problem, "Placement": placement, "CallLatency": slimlib.call_latency(problem)}
    checked = 0
    for cls, attr in re.findall(r"`(MoEModel|ActivationStats|Network|Problem|Placement|CallLatency)\.(\w+)", text):
        assert hasattr(instances[cls], attr), f"naming.md: {cls}.{attr} does not exist"
        checked += 1
    for ref in re.findall(r"\{(?:func|class|mod)\}`(slimlib[\w.]*)`", text):
        parts = ref.split(".")
        obj = __import__(parts[0])
        for i, p in enumerate(parts[1:], 1):
            if not hasattr(obj, p):
                obj = __import__(".".join(parts[:i + 1]), fromlist=["x"])
            else:
                obj = getattr(obj, p)
        checked += 1
    methods = set(slimlib.methods())
    for name in re.findall(r'method="([\w-]+)"', text) + re.findall(r'`"([\w-]+)"`', text):
        assert name in methods, f"naming.md: method {name!r} is not registered"
    assert checked > 40


def test_config_points_at_the_vendored_assets(tmp_path):
    if not (slimbook.node_modules_dir() / "mathjax").is_dir():
        pytest.skip("npm packages not installed (make book / make test run `npm ci` first)")
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())["sphinx"]["config"]
    copied = slimbook.copy_assets(slimbook.node_modules_dir(), tmp_path)
    rel = {p.relative_to(tmp_path).as_posix() for p in copied}
    for path in [cfg["mathjax_path"], *cfg["nb_ipywidgets_js"]]:
        assert path.startswith("../_vendor/"), path          # relative to _static/, outside it
        assert path[3:] in rel, f"{path} is not among the copied assets"
    assert any(p.startswith("_vendor/mathjax/output/chtml/fonts/") for p in rel)
    assert any(p.startswith("_vendor/mathjax/input/tex/extensions/") for p in rel)
    assert not any(p.endswith(".map") for p in rel)
    sphinx = yaml.safe_load((ROOT / "_config.yml").read_text())["sphinx"]
    assert sphinx["local_extensions"] == {"slimbook": "_ext/"}
    assert sphinx["config"]["bibtex_default_style"] == "slimbook"


def test_wheel_ships_the_data_folder_and_data_dir_finds_it(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "slimlib", src / "slimlib", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "data", src / "data")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "dist"), str(src)], check=True, capture_output=True)
    wheel = next((tmp_path / "dist").glob("slimlib-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    data_files = [p.relative_to(ROOT / "data").as_posix() for p in (ROOT / "data").rglob("*.json")]
    assert data_files and all(f"slimlib/_data/{f}" in names for f in data_files)
    # install = unpack: the installed package finds its data without the repository
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = ("import slimlib, sys; d = slimlib.data_dir(); print(d); "
            "print(len(slimlib.model_card_names())); print(slimlib.load_parameters().bandwidth_hz)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "MPLBACKEND": "Agg"},
                         cwd=tmp_path).stdout.split()
    assert out[0] == str(site / "slimlib" / "_data")
    assert int(out[1]) == len(list((ROOT / "data" / "models").glob("*.json")))
    assert float(out[2]) == slimlib.load_parameters().bandwidth_hz


def test_docstrings_cite_the_book_not_internal_documents():
    """Docstrings name the book's chapters and labels: no internal planning document, no paper numbering."""
    bad = []
    for path in sorted((ROOT / "slimlib").rglob("*.py")):
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"\bSPEC\b|of the book\)|\beq\. \(\d+\)", line):
                bad.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not bad, "\n".join(bad)


def test_docstrings_use_rest_roles_not_myst():
    """Docstrings are reStructuredText (autodoc): a MyST role such as {prf:ref}`x` would show raw on the API page."""
    bad = []
    for path in sorted((ROOT / "slimlib").rglob("*.py")):
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"(?<!`)\{[a-z]+(?::[a-z]+)?\}`", line):          # ``{glue}`` (literal) is fine
                bad.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not bad, "\n".join(bad)
