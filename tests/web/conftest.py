"""The browser tests (marker `browser`) drive the demo UI in Debian's Chromium, /usr/bin/chromium.

Where Chromium is missing they cannot run. Outside CI they are then deselected, and the end of
the run says so loudly, with how to run them; in CI (CI=true) they fail instead, since .ci/run
installs Chromium and a CI run must never pass without them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
BROWSER_TESTS_NOT_RUN = pytest.StashKey[int]()
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


def in_ci() -> bool:
    return os.environ.get("CI") == "true"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not chromium_missing() or in_ci():
        return
    browser_items = [item for item in items if item.get_closest_marker("browser") is not None]
    if not browser_items:
        return
    config.hook.pytest_deselected(items=browser_items)
    items[:] = [item for item in items if item.get_closest_marker("browser") is None]
    config.stash[BROWSER_TESTS_NOT_RUN] = len(browser_items)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    not_run = config.stash.get(BROWSER_TESTS_NOT_RUN, 0)
    if not not_run:
        return
    terminalreporter.write_sep("!", f"{not_run} BROWSER TESTS NOT RUN: {CHROMIUM} is missing", yellow=True)
    terminalreporter.write_line(
        "Install Chromium (apt-get install -y chromium), then run them alone with: "
        ".venv/bin/pytest -m browser tests/web",
        yellow=True,
        bold=True,
    )


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
