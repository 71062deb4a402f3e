"""Headless Chromium (Debian's package) driven by Playwright, for the web app's page tests.

The browser is ``/usr/bin/chromium`` (``scripts/env.sh`` installs it when it can), launched
with a fresh profile and without GPU, network services or first-run screens. When it or
Playwright is missing the tests are skipped with the reason.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def browser_missing() -> str:
    """Why the browser tests cannot run here ("" if they can)."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed (pip install playwright; it is in the test extra)"
    if not Path(CHROMIUM).is_file() and not shutil.which("chromium"):
        return (
            "Debian's chromium is not installed (apt-get install chromium; scripts/env.sh "
            "installs it when run as root with apt)"
        )
    return ""


@contextmanager
def chromium_page(profile_dir: Path, downloads_dir: Path) -> Iterator[Any]:
    """A page in a fresh headless Chromium profile (1400×900), closed afterwards."""
    from playwright.sync_api import sync_playwright

    executable = CHROMIUM if Path(CHROMIUM).is_file() else shutil.which("chromium")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile_dir),
            executable_path=executable,
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1400, "height": 900},
            accept_downloads=True,
            downloads_path=str(downloads_dir),
        )
        try:
            page = context.new_page()
            page.set_default_timeout(60_000)
            yield page
        finally:
            context.close()


def ctv_pixels(png_bytes: bytes) -> int:
    """How many pixels of a screenshot have the CTV's orange (255, 170, 0) fill or outline."""
    import io

    from PIL import Image

    rgb = np.asarray(Image.open(io.BytesIO(png_bytes)).convert("RGB")).astype(int)
    red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    # the fill is blended with the CT underneath: orange hue, red well above green above blue
    return int(((red > 90) & (red > green + 30) & (green > blue + 30) & (blue < 90)).sum())
