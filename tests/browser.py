"""Pytest fixtures that drive Debian's Chromium with Playwright, against a real server.

No browser is ever downloaded (`playwright install` is never run): Playwright launches
/usr/bin/chromium. Every request the page makes is routed through a check: one to a host
outside the loopback is aborted and fails the test.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Route, sync_playwright

from tests.server import Server

CHROMIUM = Path("/usr/bin/chromium")
# Quiet and offline: no GPU, no sandbox (tests run as root in CI), and none of the requests
# Chromium makes on its own (component updates, sync, first-run pages).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def chromium_or_skip() -> Path:
    """Debian's Chromium; in CI a missing one fails the test (`.ci/run` installs it)."""
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing: apt-get install -y chromium"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return CHROMIUM


def is_loopback(url: str) -> bool:
    """Whether `url` names this machine (or is not a network URL at all)."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https", "ws", "wss"}:
        return True  # data:, blob:, about:
    host = parts.hostname or ""
    return host in LOOPBACK or host.startswith("127.")


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the test process."""
    executable = chromium_or_skip()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(executable), headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


class OffMachine:
    """The requests a page tried to send off this machine."""

    def __init__(self) -> None:
        self.urls: list[str] = []

    def route(self, route: Route) -> None:
        url = route.request.url
        if is_loopback(url):
            route.continue_()
            return
        self.urls.append(url)
        route.abort("blockedbyclient")


def guarded_context(browser: Browser) -> tuple[BrowserContext, OffMachine]:
    """A fresh browser context (its own cookies) whose off-machine requests are recorded."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    off = OffMachine()
    context.route("**/*", off.route)
    return context, off


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A browser context for one test; fails the test if a page reached past the loopback."""
    made, off = guarded_context(browser)
    yield made
    made.close()
    assert off.urls == [], f"requests left the machine: {off.urls}"


@pytest.fixture
def page(context: BrowserContext) -> Page:
    """A page in the test's guarded context."""
    return context.new_page()


def demo_server(tmp_path_factory: pytest.TempPathFactory, **env: str) -> Server:
    """`mlops serve --demo` with auth enabled, on SQLite, started (the caller stops it)."""
    return Server(tmp_path_factory.mktemp("browser-server"), args=("--demo",), **env).start()
