"""Write a run's HTML report and a PNG screenshot of it in headless Chromium (for the docs).

    python scripts/report_screenshot.py hyperbrace-runs/<study> docs/report-gala.png [--height 2200]

Uses Debian's Chromium (scripts/install-browser.sh) through Playwright, as the report's tests do.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hyperbrace.cli import main as hyperbrace  # noqa: E402
from tests.helpers.browser import chromium_path, launch, open_report  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a run directory, journal file or database URL")
    parser.add_argument("png", help="where to write the screenshot")
    parser.add_argument("--study", help="the study's name, for a database holding several")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=2400, help="the page height captured (pixels)")
    args = parser.parse_args()
    path, reason = chromium_path()
    if path is None:
        print(f"report_screenshot: {reason}", file=sys.stderr)
        return 1
    html = Path(tempfile.mkdtemp()) / "report.html"
    argv = ["report", args.run, "-o", str(html)] + (["--study", args.study] if args.study else [])
    if hyperbrace(argv) != 0:
        return 1
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch(playwright)
        info = open_report(browser, html, screenshot=Path(args.png), width=args.width, height=args.height)
        browser.close()
    if info["errors"]:
        print(f"report_screenshot: the page logged errors: {info['errors']}", file=sys.stderr)
        return 1
    print(f"wrote {args.png} ({len(info['plots'])} plots drawn)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
