# The two commands of the book (see README):
#   make book   - set up .venv if needed and build the book into _build/html
#   make test   - set up .venv if needed, run the tests, build the book, test it in a browser,
#                 run its downloaded notebooks in a fresh venv, and check that a rebuild works
#   make lab    - open chapters/ in JupyterLab (the .md chapters open as notebooks, MyST rendered)
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
JB_FLAGS := -W -n --keep-going
# Processes for the book build (pages and their notebooks read JOBS at a time, through
# _ext/slimbook.py) and for the unit tests (pytest-xdist).
JOBS   ?= 2

.PHONY: book book-build test test-site-browser test-site-notebooks unit venv clean figures bench page lab

$(STAMP): requirements/book.lock pyproject.toml setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements/book.lock
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

venv: $(STAMP)

# Browser assets of the site (MathJax 3, require.js, widgets HTML manager): pinned in
# package-lock.json, copied into _build/html/_vendor by _ext/slimbook.py. No CDN at read time.
NODE_STAMP := node_modules/.installed
$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
	touch $(NODE_STAMP)

# Debian's Chromium for the browser test (driven by Playwright with executable_path; no browser download).
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	$$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get install -y -qq chromium

book: $(STAMP) $(NODE_STAMP)
	$(MAKE) book-build BOOK=.

# The recipe of `make book`, for any book folder (tests/test_rebuild.py runs it twice on a tiny book).
# Every build starts from nothing: html, executed notebooks AND Sphinx's pickled environment
# (_build/.doctrees) go, and --all re-reads every page. A kept environment would skip the pages it
# thinks unchanged (not re-executed after a change in slimlib, and their _build/jupyter_execute
# notebook missing for the download / launch buttons, which broke a second `make book`).
BOOK ?= .
book-build:
	rm -rf $(BOOK)/_build/html $(BOOK)/_build/jupyter_execute $(BOOK)/_build/.doctrees
	SLIMLIB_STATIC=1 SLIMBOOK_JOBS=$(JOBS) $(abspath $(VENV))/bin/jupyter-book build $(BOOK) --all $(JB_FLAGS)

unit: $(STAMP)
	$(PY) -m pytest -q -n $(JOBS) -m "not book and not browser and not notebooks and not lab and not rebuild" tests

# After the book, side by side (output kept per part): the site in a browser, BROWSERS pages at a
# time (the browser test mostly waits for pages, so 3 processes on 2 cores); and every downloaded
# .ipynb of the site executed in a fresh venv that holds only the slimlib wheel + [notebooks]
# (tests/test_notebooks.py, 2 kernels at a time), `make lab` serving the chapters, and the book
# recipe run twice on a tiny book.
BROWSERS ?= 3
test: $(STAMP) $(NODE_STAMP) $(CHROMIUM)
	$(MAKE) unit
	$(MAKE) book
	$(MAKE) -j2 --output-sync=target test-site-browser test-site-notebooks

test-site-browser:
	$(PY) -m pytest -q -n $(BROWSERS) -m "browser" tests
test-site-notebooks:
	$(PY) -m pytest -q -m "notebooks or lab or rebuild" tests

# JupyterLab on chapters/: jupytext opens the .md chapters as notebooks (a double-click does, through
# the default viewer set in .venv's overrides.json below), jupyterlab-myst renders MyST. Saving writes
# the .md back; a chapters/*.ipynb you create is ignored by git and the build. As root (a container),
# Jupyter needs --allow-root.
LAB_SETTINGS := $(VENV)/share/jupyter/lab/settings/overrides.json
$(LAB_SETTINGS): $(STAMP)
	mkdir -p $(dir $@)
	printf '%s\n' '{"@jupyterlab/docmanager-extension:plugin":' \
	  '  {"defaultViewers": {"markdown": "Jupytext Notebook", "myst": "Jupytext Notebook"}}}' > $@
LAB_ARGS ?=
lab: $(STAMP) $(LAB_SETTINGS)
	$(VENV)/bin/jupyter lab --notebook-dir=chapters $$( [ "$$(id -u)" = 0 ] && echo --allow-root ) $(LAB_ARGS)

figures: $(STAMP)
	$(PY) -m slimlib figures --out _build/figures

bench: $(STAMP)
	$(PY) benchmarks/bench_solvers.py

clean:
	rm -rf _build .pytest_cache .hypothesis

# Build some pages alone, for writing a chapter: make page PAGES="chapters/greedy chapters/maxplus"
# (warnings about references into chapters not built are expected here; `make book` is the gate).
PAGES ?= chapters/system_model
page: $(STAMP) $(NODE_STAMP)
	@d=$$(mktemp -d /tmp/slimbook.XXXXXX); cp _config.yml references.bib $$d/; ln -s $(CURDIR)/chapters $$d/chapters; ln -s $(CURDIR)/_ext $$d/_ext; \
	{ echo "format: jb-book"; echo "root: chapters/intro"; echo "chapters:"; \
	  for p in $(PAGES); do echo "  - file: $$p"; done; echo "  - file: chapters/references"; } > $$d/_toc.yml; \
	SLIMLIB_STATIC=1 $(VENV)/bin/jupyter-book build $$d --keep-going 2>&1 | grep -vE "IPKernelApp|^\s*$$" | tail -40; \
	echo "HTML in $$d/_build/html"
