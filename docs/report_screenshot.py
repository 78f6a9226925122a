"""Screenshot an attnviz report in headless Chromium, for docs/report.md:

    attnviz report RUN -o /tmp/report.html
    .venv/bin/python docs/report_screenshot.py /tmp/report.html docs/report.png

The browser is Debian's chromium (`apt-get install -y chromium`), driven by Playwright's
Python client; no browser is ever downloaded. tests/test_report_browser.py opens reports the
same way (`open_browser`) and runs `screenshot`, so this script cannot rot unnoticed.
"""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Iterator
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
INSTALL_HINT = ("apt-get install -y chromium (Debian's package, used through Playwright's "
                "Python client: nothing is downloaded)")
VIEWPORT = {"width": 1280, "height": 900}


@contextlib.contextmanager
def open_browser() -> Iterator:
    """Headless Chromium from CHROMIUM, closed on exit."""
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        raise FileNotFoundError(f"no {CHROMIUM}: {INSTALL_HINT}")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM))
        try:
            yield browser
        finally:
            browser.close()


def screenshot(browser, report: Path, png: Path, height: int | None = None) -> Path:
    """Open `report` offline and save the page (its top `height` pixels, if given) as `png`."""
    context = browser.new_context(viewport=VIEWPORT, offline=True)
    try:
        page = context.new_page()
        page.goto(Path(report).resolve().as_uri())
        page.wait_for_selector("#heatmap[aria-label]")  # drawn
        size = page.evaluate("[document.body.scrollWidth, document.body.scrollHeight]")
        clip = {"x": 0, "y": 0, "width": size[0], "height": min(size[1], height or size[1])}
        shot = page.screenshot(clip=clip, full_page=True)
    finally:
        context.close()
    from PIL import Image

    with Image.open(io.BytesIO(shot)) as image:  # 256 colours: a third of the bytes for a page
        image.convert("RGB").quantize(256, method=Image.Quantize.FASTOCTREE).save(
            png, optimize=True)
    return Path(png)


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print(__doc__)
        return 2
    height = int(argv[2]) if len(argv) == 3 else None
    with open_browser() as browser:
        print(f"wrote {screenshot(browser, Path(argv[0]), Path(argv[1]), height)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
