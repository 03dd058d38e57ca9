"""The built site, read in a real browser with the network unplugged (``make test`` runs it).

Serves ``_build/html`` (or ``$SLIMLIB_SITE``) on 127.0.0.1, opens every page in
headless Debian Chromium driven by Playwright (``executable_path``, no browser
download; ``make test`` installs the ``chromium`` package when it is missing),
blocks every request that does not go to 127.0.0.1, and checks what a reader
would see:

* no console error, no uncaught exception, no failed or blocked request;
* every ``<img>`` loaded (``naturalWidth > 0``);
* math typeset by the site's own MathJax: no raw ``$...$``, ``\\(...\\)`` or
  ``\\[...\\]`` left in the text, every ``.math`` element rendered;
* every static slider and dropdown of :func:`slimlib.widgets.explore` changes
  the shown frame when moved with the keyboard, as a reader would, and the
  frame is an image *file* that loads then (no ``data:`` frames in the page);
* at 1280 px no display equation is wider than its box (nothing cut off);
* at 390 px (a phone) the page does not scroll sideways;
* every chapter's HTML is at most 1 MB;
* every saved ipywidgets view is rendered by the site's own widget manager;
* every internal link resolves (the file exists, and so does its ``#anchor``).

Screenshots (JPEG) of each page at 1280 px and 390 px go to ``_build/screens/`` (or
``$SLIMLIB_SCREENS``).  ``$SLIMLIB_SITE`` points the test at another build,
e.g. the folder ``make page`` prints.
One more test loads the vendored require.js + widgets HTML manager on a small
page with a saved slider, so that machinery is checked even when no chapter
saves a live widget.
"""
from __future__ import annotations

import functools
import http.server
import json
import os
import re
import threading
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
SITE = Path(os.environ.get("SLIMLIB_SITE", ROOT / "_build" / "html")).resolve()
SCREENS = Path(os.environ.get("SLIMLIB_SCREENS", ROOT / "_build" / "screens")).resolve()
CHROMIUM = os.environ.get("SLIMLIB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SKIP_DIRS = {"_static", "_vendor", "_sources", "_images", "_downloads"}
SESSION_START = time.time()
MAX_PAGE_BYTES = 1_000_000           # a chapter's HTML (frames and figures are separate files)
WIDTHS = {"desktop": (1280, 900), "phone": (390, 844)}


def site_pages() -> list[str]:
    """Every HTML page of the site, relative to its root (assets excluded)."""
    if not (SITE / "index.html").exists():
        return ["<no site>"]
    return sorted(p.relative_to(SITE).as_posix() for p in SITE.rglob("*.html")
                  if not SKIP_DIRS.intersection(p.relative_to(SITE).parts[:-1]))


# ----------------------------------------------------------------------------- fixtures

class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output clean
        pass


def _serve(directory: Path):
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def base_url():
    if not (SITE / "index.html").exists():
        pytest.fail(f"no built site in {SITE}: run `make book` first (or set $SLIMLIB_SITE)")
    server = _serve(SITE)
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `apt-get install chromium` (make test does it)")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


class Visit:
    """One page opened offline, with everything that went wrong while loading it."""

    def __init__(self, browser, url: str, redirect: bool = False):
        self.problems: list[str] = []
        self.context = browser.new_context(viewport={"width": 1280, "height": 900}, service_workers="block")
        self.page = self.context.new_page()
        self.page.set_default_timeout(30_000)
        self.context.route("**/*", self._route)
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.problems.append(f"uncaught exception: {exc}"))
        self.page.on("requestfailed", self._failed)
        self.page.on("response", self._response)
        if redirect:   # a redirect page (jupyter-book's index.html): check the page it leads to
            self.page.goto(url, wait_until="commit")
            self.page.wait_for_url(lambda u: u != url, wait_until="load")
        else:
            self.page.goto(url, wait_until="load")

    def _failed(self, req):
        # an explorer frame superseded while loading (the slider check moves faster than a reader) is
        # aborted by the browser, not broken: every frame shown is checked to have loaded (check_sliders)
        if "/_images/frames/" in req.url and "ERR_ABORTED" in str(req.failure):
            return
        self.problems.append(f"request failed: {req.url[:120]} ({req.failure})")

    def _route(self, route):
        url = route.request.url
        if urlsplit(url).scheme in ("data", "blob", "about") or urlsplit(url).hostname == "127.0.0.1":
            route.continue_()
        else:
            self.problems.append(f"blocked request to the network: {url[:120]}")
            route.abort("blockedbyclient")

    def _console(self, msg):
        if msg.type == "error":
            self.problems.append(f"console error: {msg.text[:300]}")

    def _response(self, resp):
        if resp.status >= 400:
            self.problems.append(f"HTTP {resp.status}: {resp.url[:120]}")

    def close(self):
        self.context.close()


# ----------------------------------------------------------------------------- in-page checks

WAIT_READY = """async () => {
  // every image loads now (no lazy loading below the fold), then decodes
  const imgs = Array.from(document.images);
  imgs.forEach(i => { if (i.loading === 'lazy') i.loading = 'eager'; });
  await Promise.all(imgs.map(i => i.decode().catch(() => null)));
  // MathJax of the site: wait for the first typeset
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) { await MathJax.startup.promise; }
  // widgets HTML manager: give it time to render saved views
  const views = document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]');
  for (let t = 0; t < 100 && views.length; t++) {
    const done = Array.from(views).every(v => v.previousElementSibling &&
        v.previousElementSibling.classList.contains('widget-subarea') &&
        v.previousElementSibling.children.length > 0);
    if (done) break;
    await new Promise(r => setTimeout(r, 100));
  }
  await document.fonts.ready;
}"""

BROKEN_IMAGES = """() => Array.from(document.images)
  .filter(i => !(i.complete && i.naturalWidth > 0))
  .map(i => (i.currentSrc || i.src || '<no src>').slice(0, 100))"""

RAW_MATH = r"""() => {
  const skip = 'pre, code, script, style, textarea, kbd, samp, mjx-container, .highlight, .MathJax';
  const patterns = [/\$\$/, /\$[^\s$][^$]*\$/, /\\\(/, /\\\)/, /\\\[/, /\\\]/, /\\begin\{/];
  const out = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const el = n.parentElement;
    if (!el || el.closest(skip)) continue;
    const text = n.textContent;
    if (patterns.some(p => p.test(text))) out.push(text.trim().slice(0, 120));
  }
  // every math element of Sphinx/MyST must have been replaced by MathJax output
  document.querySelectorAll('.math').forEach(m => {
    if (!m.querySelector('mjx-container') && !m.closest('mjx-container'))
      out.push('untypeset .math: ' + m.textContent.trim().slice(0, 100));
  });
  return out;
}"""

UNRENDERED_WIDGETS = """() => Array.from(
    document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]'))
  .filter(v => !(v.previousElementSibling && v.previousElementSibling.classList.contains('widget-subarea')
                 && v.previousElementSibling.children.length > 0))
  .map(v => v.textContent.slice(0, 100))"""

LINKS = """() => Array.from(document.querySelectorAll('a[href]')).map(a => a.href)"""

# display math cut off: wider than the box it sits in (MathJax CHTML output and Sphinx's div.math)
WIDE_MATH = """() => Array.from(document.querySelectorAll('div.math, mjx-container[display="true"]'))
  .filter(el => el.offsetParent !== null && el.scrollWidth > el.clientWidth + 1)
  .map(el => (el.closest('[id]') ? '#' + el.closest('[id]').id + ': ' : '') +
       el.scrollWidth + ' px in ' + el.clientWidth + ' px: ' + (el.textContent || '').trim().slice(0, 60))"""

# the page scrolls sideways: something is wider than the window; name the widest culprits
PAGE_OVERFLOW = """() => {
  const w = document.documentElement.clientWidth;
  if (document.documentElement.scrollWidth <= w + 1) return [];
  const out = [];
  document.querySelectorAll('body *').forEach(el => {
    const r = el.getBoundingClientRect();
    if (r.right > w + 1 && r.width > 0 && !el.closest('.bd-sidebar-primary, .bd-sidebar-secondary'))
      out.push([Math.round(r.right), el.tagName.toLowerCase() + (el.className && el.className.baseVal === undefined
                ? '.' + String(el.className).split(' ')[0] : '') + ': ' + (el.textContent || '').trim().slice(0, 50)]);
  });
  out.sort((a, b) => b[0] - a[0]);
  return ['page is ' + document.documentElement.scrollWidth + ' px wide in a ' + w + ' px window'].concat(
    out.slice(0, 3).map(x => x[0] + ' px: ' + x[1]));
}"""


def check_sliders(page) -> tuple[int, list[str]]:
    """Move every slider of every static explorer with the keyboard; return (sliders, problems)."""
    problems, count = [], 0
    explorers = page.locator("[data-slimlib-explorer]")
    for i in range(explorers.count()):
        ex = explorers.nth(i)
        ex.scroll_into_view_if_needed()
        opened = ex.evaluate("""e => Array.from(e.querySelectorAll('[data-slimlib-control]'))
                                  .map(c => c.value)""")
        img = ex.locator("img.slimlib-frame")
        frames = json.loads(ex.locator("script.slimlib-frames").text_content())
        sliders = ex.locator("input[type=range]")
        selects = ex.locator("select")
        if int(ex.get_attribute("data-slimlib-explorer")) > 1 and sliders.count() + selects.count() == 0:
            problems.append(f"explorer {i}: several frames but no control")
        if any(u.startswith("data:") for u in frames["images"]) or img.get_attribute("src").startswith("data:"):
            problems.append(f"explorer {i}: frames embedded in the page, not image files")
        for j in range(selects.count()):
            count += 1
            sel = selects.nth(j)
            values = sel.locator("option").evaluate_all("os => os.map(o => o.value)")
            start_key, seen = img.get_attribute("data-key"), set()
            for v in values:
                sel.select_option(v)
                key = img.get_attribute("data-key")
                if sel.input_value() != v:
                    problems.append(f"explorer {i} dropdown {j}: option {v} did not stay selected")
                if key not in frames["frames"] or img.get_attribute("src") != frames["images"][frames["frames"][key]]:
                    problems.append(f"explorer {i} dropdown {j}: option {v} shows no valid frame ({key})")
                img.evaluate("i => i.decode().catch(() => null)")
                if img.evaluate("i => !(i.complete && i.naturalWidth > 0)"):
                    problems.append(f"explorer {i} dropdown {j}: frame {key} did not load")
                seen.add(key)
            if len(values) > 1 and len(seen) < 2:
                problems.append(f"explorer {i} dropdown {j}: choosing its options never changed the picture")
            sel.select_option(values[0])
        for j in range(sliders.count()):
            count += 1
            s = sliders.nth(j)
            steps = int(s.get_attribute("max"))
            s.focus()
            page.keyboard.press("Home")            # from the first value (the explorer may open elsewhere)
            start_src, changed = img.get_attribute("src"), False
            for step in range(1, steps + 1):
                key_before = img.get_attribute("data-key")
                page.keyboard.press("ArrowRight")
                value, key = s.input_value(), img.get_attribute("data-key")
                src = img.get_attribute("src")
                if value != str(step) or key == key_before:
                    problems.append(f"explorer {i} slider {j}: ArrowRight to {step} gave value {value}, "
                                    f"frame {key_before} -> {key}")
                    break
                if key not in frames["frames"] or src != frames["images"][frames["frames"][key]]:
                    problems.append(f"explorer {i} slider {j}: shown image is not frame {key}")
                img.evaluate("i => i.decode().catch(() => null)")
                if img.evaluate("i => !(i.complete && i.naturalWidth > 0)"):
                    problems.append(f"explorer {i} slider {j}: frame {key} did not load")
                changed |= src != start_src
            if steps and not changed:
                problems.append(f"explorer {i} slider {j}: moving it never changed the picture")
        # back to the frame the explorer opened on, for the screenshot
        ex.evaluate("""(e, vals) => { const cs = e.querySelectorAll('[data-slimlib-control]');
            cs.forEach((c, k) => { c.value = vals[k]; });
            if (cs.length) cs[0].dispatchEvent(new Event('input')); }""", opened)
    return count, problems


@functools.lru_cache(maxsize=None)
def _anchors(path: Path) -> frozenset:
    text = path.read_text(encoding="utf-8", errors="replace")
    return frozenset(unquote(m) for m in re.findall(r'\b(?:id|name)="([^"]+)"', text))


def check_links(links: list[str], base_url: str) -> list[str]:
    problems, base = [], urlsplit(base_url)
    for href in links:
        u = urlsplit(href)
        if u.scheme not in ("http", "https") or u.hostname != "127.0.0.1" or u.port != base.port:
            continue
        target = SITE / unquote(u.path).lstrip("/")
        if u.path.endswith("/") or target.is_dir():
            target = target / "index.html"
        if not target.is_file():
            problems.append(f"broken link: {u.path}")
        elif u.fragment and target.suffix == ".html" and unquote(u.fragment) not in _anchors(target):
            problems.append(f"broken anchor: {u.path}#{u.fragment}")
    return sorted(set(problems))


def screenshot_path(rel: str, width: str = "desktop") -> Path:
    return SCREENS / f"{rel[:-5].replace('/', '__')}__{WIDTHS[width][0]}.jpg"


# ----------------------------------------------------------------------------- tests

@pytest.mark.parametrize("rel", site_pages())
def test_page(rel, base_url, browser):
    assert rel != "<no site>", f"no built site in {SITE}: run `make book` first"
    redirect = bool(re.search(r'<meta[^>]+http-equiv="refresh"', (SITE / rel).read_text(errors="replace"), re.I))
    visit = Visit(browser, base_url + rel, redirect=redirect)
    try:
        page = visit.page
        page.evaluate(WAIT_READY)
        problems = list(visit.problems)
        problems += [f"image not loaded: {s}" for s in page.evaluate(BROKEN_IMAGES)]
        problems += [f"raw math: {t!r}" for t in page.evaluate(RAW_MATH)]
        problems += [f"widget not rendered: {t}" for t in page.evaluate(UNRENDERED_WIDGETS)]
        _, slider_problems = check_sliders(page)
        problems += slider_problems
        problems += check_links(page.evaluate(LINKS), base_url)
        problems += [f"display math cut off at 1280 px: {t}" for t in page.evaluate(WIDE_MATH)]
        SCREENS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(screenshot_path(rel)), full_page=True, type="jpeg", quality=70)
        page.set_viewport_size(dict(zip(("width", "height"), WIDTHS["phone"])))
        page.wait_for_timeout(300)
        problems += [f"scrolls sideways at 390 px: {t}" for t in page.evaluate(PAGE_OVERFLOW)]
        page.screenshot(path=str(screenshot_path(rel, "phone")), full_page=True, type="jpeg", quality=70)
        problems += [p for p in visit.problems if p not in problems]   # anything raised by the checks
    finally:
        visit.close()
    size = (SITE / rel).stat().st_size
    if size > MAX_PAGE_BYTES:
        problems.append(f"{size / 1e6:.2f} MB of HTML (limit {MAX_PAGE_BYTES / 1e6:g} MB)")
    assert not problems, f"{rel}:\n  " + "\n  ".join(problems)
    # a fresh screenshot of this page at both widths (the parametrisation covers every page)
    for width in WIDTHS:
        shot = screenshot_path(rel, width).stat()
        assert shot.st_size > 0 and shot.st_mtime >= SESSION_START - 1, (rel, width)


def test_vendored_widget_manager_offline(browser, tmp_path):
    """require.js + the widgets HTML manager from ``_vendor/`` render a saved slider with no network."""
    ipywidgets = pytest.importorskip("ipywidgets")
    from ipywidgets.embed import embed_data
    vendor = SITE / "_vendor"
    assert (vendor / "requirejs" / "require.js").is_file(), f"{vendor} lacks require.js"
    assert (vendor / "html-manager" / "embed-amd.js").is_file(), f"{vendor} lacks the widgets HTML manager"
    assert (vendor / "mathjax" / "tex-mml-chtml.js").is_file(), f"{vendor} lacks MathJax"
    slider = ipywidgets.IntSlider(value=3, min=0, max=10, description="experts")
    button = ipywidgets.Button(description="cache", icon="check")     # an icon: the manager's fonts load
    data = embed_data(views=[ipywidgets.VBox([slider, button])])
    (tmp_path / "_vendor").symlink_to(vendor)
    (tmp_path / "index.html").write_text(f"""<!DOCTYPE html><html><head><meta charset="utf-8">
<script src="_vendor/requirejs/require.js"></script>
<script src="_vendor/html-manager/require-config.js"></script>
<script src="_vendor/html-manager/embed-amd.js"></script>
<script type="application/vnd.jupyter.widget-state+json">{json.dumps(data["manager_state"])}</script>
</head><body><div class="cell_output">
<script type="application/vnd.jupyter.widget-view+json">{json.dumps(data["view_specs"][0])}</script>
</div></body></html>""", encoding="utf-8")
    server = _serve(tmp_path)
    try:
        visit = Visit(browser, f"http://127.0.0.1:{server.server_address[1]}/index.html")
        try:
            visit.page.evaluate(WAIT_READY)
            assert visit.page.evaluate(UNRENDERED_WIDGETS) == []
            label = visit.page.locator(".widget-subarea .widget-readout").first.text_content(timeout=10_000)
            assert label.strip() == "3"
            assert visit.page.locator(".widget-subarea button i.fa-check").count() == 1
            loaded = visit.page.evaluate("""async () => { await document.fonts.ready;
                return Array.from(document.fonts).filter(f => f.status === 'loaded').map(f => f.family); }""")
            assert any("Font Awesome" in f or "FontAwesome" in f for f in loaded), loaded
            assert not visit.problems, "\n".join(visit.problems)
        finally:
            visit.close()
    finally:
        server.shutdown()
        server.server_close()
