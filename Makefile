# The two commands of the book (see README):
#   make book   - set up .venv if needed and build the book into _build/html
#   make test   - set up .venv if needed, run the tests, build the book, test it in a browser
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
JB_FLAGS := -W -n --keep-going

.PHONY: book test unit venv clean figures bench page

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
	rm -rf _build/html _build/jupyter_execute
	SLIMLIB_STATIC=1 $(VENV)/bin/jupyter-book build . $(JB_FLAGS)

unit: $(STAMP)
	$(PY) -m pytest -q -m "not book and not browser" tests

test: $(STAMP) $(NODE_STAMP) $(CHROMIUM)
	$(MAKE) unit
	$(MAKE) book
	$(PY) -m pytest -q -m "browser" tests

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
