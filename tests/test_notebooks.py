"""The downloaded notebooks of the built site run where a reader runs them (``make test``).

The site offers every chapter as an executed ``.ipynb`` (download button,
Colab and Binder links; sphinx-book-theme copies it from
``_build/jupyter_execute`` to ``_build/html/_sources/chapters/``).  A reader
runs it in plain Jupyter with ``pip install "slimlib[notebooks]"``: no
``myst_nb``, no clone of the repository, no ``data/`` folder next to it.

:func:`test_downloaded_notebooks_run_in_a_fresh_venv` does exactly that: it
builds the slimlib wheel, creates a fresh virtual environment holding only the
wheel with its ``[notebooks]`` extra plus ``nbclient`` and ``ipykernel``
(versions constrained by ``requirements/book.lock``, so torch is the CPU
build), and executes every downloaded notebook with nbclient, each in its own
empty working folder, two kernels at a time.  Per-notebook times are written
to ``_build/notebook-times.txt``.

The site is ``_build/html`` or ``$SLIMLIB_SITE`` (e.g. the ``_build/html`` of
a ``make page`` build).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SITE = Path(os.environ.get("SLIMLIB_SITE", ROOT / "_build" / "html")).resolve()
LOCK = ROOT / "requirements" / "book.lock"
WORKERS = int(os.environ.get("SLIMLIB_NB_WORKERS", "2"))   # kernels at a time (CI has 2 cores)
CELL_TIMEOUT = 900                                            # s per cell, as the book build's
TIMES = Path(os.environ.get("SLIMLIB_NB_TIMES", ROOT / "_build" / "notebook-times.txt"))

# Executes one notebook with nbclient inside the fresh venv; prints one JSON line.
RUNNER = r"""
import json, sys, time, nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
src, out, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3])
nb = nbformat.read(src, as_version=4)
t0 = time.perf_counter()
err = None
try:
    NotebookClient(nb, timeout=timeout, startup_timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": "."}}).execute()
except CellExecutionError as e:
    err = str(e)[-4000:]
nbformat.write(nb, out)
print(json.dumps({"seconds": time.perf_counter() - t0, "error": err}))
"""


def chapter_notebooks(site: Path = SITE) -> list[Path]:
    """The downloadable ``.ipynb`` of every chapter page of the site."""
    return sorted((site / "_sources" / "chapters").glob("*.ipynb"))


def _is_notebook(md: Path) -> bool:
    return "kernelspec:" in md.read_text(encoding="utf-8").split("\n---", 1)[0]


def fresh_env(venv: Path) -> dict:
    """Environment of a reader's shell: the venv first on PATH, nothing from this repository."""
    env = {k: v for k, v in os.environ.items()
           if k not in {"PYTHONPATH", "VIRTUAL_ENV", "SLIMLIB_DATA", "SLIMLIB_STATIC", "PYTHONHOME"}}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    env["MPLBACKEND"] = "Agg"
    return env


@pytest.fixture(scope="module")
def reader_venv(tmp_path_factory):
    """A fresh venv with only the slimlib wheel, its [notebooks] extra, nbclient and ipykernel."""
    tmp = tmp_path_factory.mktemp("reader")
    t0 = time.perf_counter()

    def run(argv, **kw):
        done = subprocess.run(argv, cwd=tmp, capture_output=True, text=True, **kw)
        if done.returncode:
            pytest.fail(f"{' '.join(map(str, argv))} failed:\n{done.stderr[-4000:]}")

    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(tmp / "wheel"), str(ROOT)])
    wheel, = (tmp / "wheel").glob("slimlib-*.whl")
    venv = tmp / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "-c", str(LOCK),
         f"slimlib[notebooks] @ {wheel.as_uri()}", "nbclient", "ipykernel"], env=fresh_env(venv))
    return venv, time.perf_counter() - t0


def _run_one(venv: Path, nb: Path, out: Path) -> dict:
    """Execute one notebook in an empty folder (not the repository) with its own empty $TMPDIR."""
    work = Path(tempfile.mkdtemp(prefix=f"nb-{nb.stem}-", dir=out))
    tmp = work / "tmp"
    tmp.mkdir()
    env = {**fresh_env(venv), "TMPDIR": str(tmp)}
    done = subprocess.run([str(venv / "bin" / "python"), "-c", RUNNER, str(nb), str(work / "executed.ipynb"),
                           str(CELL_TIMEOUT)], cwd=work, env=env, capture_output=True, text=True)
    lines = [l for l in done.stdout.splitlines() if l.startswith("{")]
    if done.returncode or not lines:
        return {"seconds": float("nan"), "error": f"runner exit {done.returncode}: {done.stderr[-3000:]}"}
    result = json.loads(lines[-1])
    # a chapter cleans up after itself: nothing left in $TMPDIR (torch's shared compile cache
    # torchinductor_<user> aside), nothing written beside the notebook
    left = sorted(p.name for p in tmp.iterdir() if not p.name.startswith("torchinductor_")) + sorted(
        p.name for p in work.iterdir() if p.name not in {"tmp", "executed.ipynb"})
    if left and not result["error"]:
        result["error"] = f"files left behind after the run: {left[:10]}"
    return result


@pytest.mark.notebooks
def test_site_offers_a_notebook_per_chapter():
    """Every notebook chapter built into the site has its downloadable .ipynb."""
    if not (SITE / "index.html").exists():
        pytest.fail(f"no built site in {SITE}: run `make book` first (or set $SLIMLIB_SITE)")
    built = {p.stem for p in (SITE / "chapters").glob("*.html")}
    wanted = {md.stem for md in (ROOT / "chapters").glob("*.md") if md.stem in built and _is_notebook(md)}
    assert wanted, "no notebook chapter in the site"
    assert wanted == {nb.stem for nb in chapter_notebooks()}


@pytest.mark.notebooks
def test_downloaded_notebooks_run_in_a_fresh_venv(reader_venv, tmp_path):
    venv, setup_s = reader_venv
    # the venv is a reader's: slimlib from the wheel (data included), no myst_nb, no repository on the path
    probe = ("import importlib.util as u, slimlib; print(slimlib.__file__); "
             "print(u.find_spec('myst_nb') is None); print(len(slimlib.model_card_names()))")
    out = subprocess.run([str(venv / "bin" / "python"), "-c", probe], cwd=tmp_path, env=fresh_env(venv),
                         capture_output=True, text=True, check=True).stdout.split()
    assert out[0].startswith(str(venv)) and out[1] == "True" and int(out[2]) > 0, out
    notebooks = sorted(chapter_notebooks(), key=_longest_first_key())
    assert notebooks, f"no downloadable notebooks in {SITE / '_sources' / 'chapters'}"
    t0 = time.perf_counter()
    with ThreadPoolExecutor(WORKERS) as pool:
        results = dict(zip(notebooks, pool.map(lambda nb: _run_one(venv, nb, tmp_path), notebooks)))
    wall = time.perf_counter() - t0
    lines = [f"venv (wheel + [notebooks] + nbclient): {setup_s:.0f} s; "
             f"{len(notebooks)} notebooks, {WORKERS} at a time: {wall:.0f} s wall"]
    lines += [f"{nb.stem:24s} {r['seconds']:7.1f} s  {'ok' if not r['error'] else 'ERROR'}"
              for nb, r in results.items()]
    TIMES.parent.mkdir(parents=True, exist_ok=True)
    TIMES.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    errors = {nb.stem: r["error"] for nb, r in results.items() if r["error"]}
    assert not errors, "\n\n".join(f"--- {k}\n{v}" for k, v in errors.items())


def _longest_first_key():
    """Sort key: the chapters of ``slimlib_read_first`` (``_config.yml``, longest to run) first."""
    import yaml
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    first = [Path(d).name for d in cfg["sphinx"]["config"]["slimlib_read_first"]]
    return lambda nb: (first.index(nb.stem), "") if nb.stem in first else (len(first), nb.stem)


def test_longest_chapters_run_first():
    key = _longest_first_key()
    names = [p.stem for p in sorted(map(Path, ["greedy.ipynb", "drift.ipynb", "moe_primer.ipynb"]), key=key)]
    assert names == ["moe_primer", "greedy", "drift"]


def _repository_url() -> str:
    cfg = (ROOT / "_config.yml").read_text(encoding="utf-8")
    return re.search(r"^repository:\s*\n\s+url:\s*(\S+)", cfg, re.M).group(1)


def test_first_cell_installs_slimlib_notebooks_from_the_repository():
    """Colab/Binder: the first code cell of every chapter installs slimlib[notebooks] from the repo."""
    url = _repository_url()
    for md in sorted((ROOT / "chapters").glob("*.md")):
        if not _is_notebook(md):
            continue
        first = md.read_text(encoding="utf-8").split("```{code-cell}", 2)[1]
        assert "remove-cell" in first, md.name
        assert f'REPO = "git+{url}"' in first and '"slimlib[notebooks] @ {REPO}"' in first, md.name


def test_chapters_import_glue_only_from_slimlib():
    """A plain kernel has no myst_nb: no chapter imports it (glue comes from slimlib.notebook)."""
    for md in sorted((ROOT / "chapters").glob("*.md")):
        text = md.read_text(encoding="utf-8")
        assert not re.search(r"^\s*(from|import)\s+myst_nb\b", text, re.M), md.name


def test_chapters_leave_no_temp_folder_and_do_not_chdir():
    """A reader copying a chapter into a script keeps their working folder and their disk."""
    for md in sorted((ROOT / "chapters").glob("*.md")):
        text = md.read_text(encoding="utf-8")
        assert not re.search(r"\bos\.chdir\(|\bmkdtemp\(", text), md.name
        if "TemporaryDirectory(" in text:
            assert ".cleanup()" in text or "with tempfile.TemporaryDirectory" in text, md.name


def test_readme_installs_cpu_torch_before_collect():
    """`pip install ".[collect]"` alone pulls a CUDA torch; the README says what to run first."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    cpu = readme.find("pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu")
    collect = readme.find('pip install -e ".[collect]"')
    assert 0 <= cpu < collect
    lock = (ROOT / "requirements" / "book.lock").read_text()
    assert re.search(r"^torch==2\.13\.0$", lock, re.M)          # the version the README names


def test_readme_and_makefile_offer_lab():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "## Run the notebooks locally" in readme and "make lab" in readme
    assert re.search(r"^lab:", (ROOT / "Makefile").read_text(), re.M)
    lock = (ROOT / "requirements" / "book.lock").read_text()
    for pkg in ("jupyterlab", "jupytext", "jupyterlab_myst|jupyterlab-myst"):
        assert re.search(rf"^({pkg})==", lock, re.M), pkg
    # notebooks written next to the chapters are neither committed nor built twice
    assert "chapters/*.ipynb" in (ROOT / ".gitignore").read_text()
    assert '"chapters/*.ipynb"' in (ROOT / "_config.yml").read_text()


@pytest.mark.parametrize("name", ["moe_primer", "using_slimlib"])
def test_code_cells_are_short(name):
    """Visible cells <= 8 lines, every source line <= 88 characters (chapters of this branch)."""
    text = (ROOT / "chapters" / f"{name}.md").read_text(encoding="utf-8")
    for m in re.finditer(r"```\{code-cell\}[^\n]*\n(.*?)```", text, re.S):
        lines = m.group(1).split("\n")
        opts = " ".join(l for l in lines if l.startswith(":"))
        code = [l for l in lines if not l.startswith(":") and l.strip()]
        at = f"{name}.md:{text[:m.start()].count(chr(10)) + 1}"
        assert all(len(l) <= 88 for l in code), at
        if not re.search(r"remove-cell|remove-input|hide-input|hide-cell", opts):
            assert len(code) <= 8, at


def test_glue_without_myst_nb(monkeypatch, capsys):
    """In a plain kernel (no myst_nb) glue stores the value and shows it only when asked."""
    import sys as _sys

    from slimlib import notebook
    monkeypatch.setitem(_sys.modules, "myst_nb", None)          # import myst_nb -> ImportError
    monkeypatch.setitem(_sys.modules, "IPython.display", None)  # plain Python: print
    assert not notebook.in_book_build()
    notebook.glue("x_hidden", 41, display=False)
    notebook.glue("x_shown", 42)
    assert notebook.GLUED["x_hidden"] == 41 and notebook.GLUED["x_shown"] == 42
    assert capsys.readouterr().out == "42\n"
    with pytest.raises(ValueError, match="name"):
        notebook.glue("", 1)
