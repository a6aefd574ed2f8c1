"""Headless Chromium (Debian's ``chromium`` package, driven by Playwright) for the report's tests and screenshots.

``scripts/install-browser.sh`` installs Chromium on a fresh machine (``.ci/run`` calls it). Where it cannot be had,
:func:`chromium_path` gives the reason and the tests skip with it; with ``HYPERBRACE_REQUIRE_BROWSER=1`` (CI)
they fail instead.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
#: Every wait in a browser test is bounded by this (milliseconds). A report loads in about a second on an idle
#: machine (plotly.js is 4.7 MB of JavaScript to parse); with 9 processes per core it took 20 s here, and over
#: 90 s with 25 per core.
TIMEOUT_MS = 240_000

# For each plot in the report: is Plotly's graph div there, with data and a drawn SVG of non-zero size?
_PLOTS_JS = """() => [...document.querySelectorAll('[data-plot]')].map(d => {
  const g = d.querySelector('.js-plotly-plot'); const r = g ? g.getBoundingClientRect() : null;
  return {key: d.dataset.plot, traces: g && g.data ? g.data.length : 0,
          points: g && g.calcdata ? g.calcdata.reduce((n, c) => n + (c ? c.length : 0), 0) : 0,
          names: g && g.data ? g.data.map(t => t.name || '') : [],
          width: r ? r.width : 0, height: r ? r.height : 0,
          svgs: g ? g.querySelectorAll('svg.main-svg').length : 0};
})"""


def chromium_path() -> tuple[str | None, str]:
    """(the browser's path, or None and why not)."""
    for candidate in (os.environ.get("HYPERBRACE_CHROMIUM"), *CANDIDATES):
        if candidate and os.path.exists(candidate):
            break
    else:
        return None, ("no Chromium at " + ", ".join(CANDIDATES) + " (install it with `bash scripts/install-browser.sh`,"
                      " i.e. apt-get install -y chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return None, "Playwright is not installed (pip install -r requirements.txt)"
    return candidate, ""


def launch(playwright: Any) -> Any:
    path, _ = chromium_path()
    # --no-sandbox: tests run as root in containers, where Chromium's sandbox cannot start.
    return playwright.chromium.launch(executable_path=path, args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
                                      timeout=TIMEOUT_MS)


def open_report(browser: Any, html: Path, screenshot: Path | None = None, full_page: bool = False,
                width: int = 1400, sort_by: str | None = None, height: int = 1000) -> dict[str, Any]:
    """Load a report; return its console errors, its plots' state, and the page's text. Writes ``screenshot``.

    ``sort_by``: a column of the trials table to click twice (descending); its cells come back in ``"sorted"``.
    """
    page = browser.new_page(viewport={"width": width, "height": height})
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    requests: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(f"uncaught: {error}"))
    page.on("request", lambda request: requests.append(request.url))
    try:
        page.goto(Path(html).resolve().as_uri(), wait_until="load")
        page.wait_for_function("() => [...document.querySelectorAll('[data-plot]')].every("
                               "d => d.querySelector('svg.main-svg'))")
        info = {"errors": errors, "plots": {p["key"]: p for p in page.evaluate(_PLOTS_JS)},
                "not_drawn": page.evaluate("() => [...document.querySelectorAll('[data-noplot]')]"
                                           ".map(p => [p.dataset.noplot, p.textContent])"),
                "text": page.inner_text("body"),
                "external": [u for u in requests if not u.startswith(("file:", "data:", "blob:", "about:"))]}
        if screenshot is not None:
            page.screenshot(path=str(screenshot), full_page=full_page)
        if sort_by is not None:
            info["sorted"] = _sort(page, sort_by)
        return info
    finally:
        page.close()


def _sort(page: Any, column: str) -> list[str]:
    header = page.locator("#trials-table th", has_text=column).first
    header.click()
    header.click()
    index = page.evaluate(f"() => [...document.querySelectorAll('#trials-table th')].findIndex("
                          f"h => h.textContent === {column!r})")
    return page.evaluate(f"() => [...document.querySelectorAll('#trials-table tbody tr')]"
                         f".map(r => r.children[{index}].textContent)")
