"""``make book`` repeats: the Makefile's book recipe run twice on a tiny two-page book (``make test``).

The recipe once removed ``_build/html`` and ``_build/jupyter_execute`` but kept
Sphinx's pickled environment (``_build/.doctrees``): the second build skipped
the "unchanged" notebook pages, did not execute them, and sphinx-book-theme's
launch-button handler failed copying the missing
``_build/jupyter_execute/<page>.ipynb``.  Here a tiny book with one notebook
page (launch buttons on, as in the book) is built with ``make book-build``
(the recipe of ``make book``), a module it imports is changed, and it is built
again: the second build must succeed, execute the page afresh (the new value
shows) and offer the downloaded ``.ipynb`` again.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.rebuild

ROOT = Path(__file__).resolve().parents[1]

CONFIG = """\
title: tiny
author: tests
only_build_toc_files: true
exclude_patterns: ["_build/*"]
execute:
  execute_notebooks: force
  timeout: 120
repository:
  url: https://github.com/slimcaching/slimcaching-book
  branch: main
launch_buttons:
  binderhub_url: "https://mybinder.org"
  colab_url: "https://colab.research.google.com"
"""

PAGE = """\
---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---
# A page

```{code-cell} ipython3
import tinymod
print(f"value is {tinymod.VALUE}")
```
"""


def _build(book: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), "book-build", f"BOOK={book}"],
                          capture_output=True, text=True)


def test_book_recipe_builds_twice_and_re_executes(tmp_path):
    book = tmp_path / "book"
    book.mkdir()
    (book / "_config.yml").write_text(CONFIG)
    (book / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n  - file: page\n")
    (book / "intro.md").write_text("# Intro\n\nA tiny book.\n")
    (book / "page.md").write_text(PAGE)
    seen = []
    for value in (1, 2):                     # a change in the "library" between the two builds
        (book / "tinymod.py").write_text(f"VALUE = {value}\n")
        done = _build(book)
        assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
        html = (book / "_build" / "html" / "page.html").read_text()
        assert (book / "_build" / "html" / "_sources" / "page.ipynb").is_file()
        seen.append(f"value is {value}" in html)
    assert seen == [True, True]
