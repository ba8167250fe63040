"""The browser tests (marker `browser`) drive the demo UI in Debian's Chromium, /usr/bin/chromium.

Where Chromium is missing, tests/conftest.py deselects them outside CI and says so loudly; in CI
(CI=true) they run and fail here, since .ci/run installs Chromium.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGUMENTS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_missing() -> bool:
    return not CHROMIUM.is_file()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Chromium with a fresh profile (Playwright gives each launch its own user data directory)."""
    if chromium_missing():
        pytest.fail(f"{CHROMIUM} is missing and CI=true: .ci/run installs it, so this run is broken")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGUMENTS, timeout=30_000
        )
        try:
            yield launched
        finally:
            launched.close()
