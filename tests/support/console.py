"""Driving the web console in a real headless Chromium (Debian's `chromium`, through Playwright): the
browser's flags, a page that takes a numbered screenshot after each step and fails on any script error,
logging in, and the `browser` and `page` fixtures (a plugin of tests/conftest.py). Shared by the
tests/test_console*.py modules."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.support.server import Server

ROOT = Path(__file__).resolve().parent.parent.parent
ARTIFACTS = ROOT / "test-artifacts" / "console"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class Steps:
    """A page, and a numbered screenshot after each step; fails on any script error in the page."""

    def __init__(self, page: Page, name: str) -> None:
        self.page = page
        self.dir = ARTIFACTS / name
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        self.n = 0
        self.errors: list[str] = []
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        # Answers like the 401 of a wrong password are logged as failed loads; anything else is a bug.
        page.on("console", lambda m: self.errors.append(m.text)
                if m.type == "error" and not m.text.startswith("Failed to load resource") else None)

    def shot(self, step: str) -> None:
        self.n += 1
        self.page.screenshot(path=str(self.dir / f"{self.n:02d}-{step}.png"), full_page=True)
        assert not self.errors, f"errors in the page: {self.errors}"


def log_in(page: Page, server: Server, username: str, password: str) -> None:
    page.goto(server.url + "/")
    expect(page).to_have_url(re.compile(r"/console/"))
    page.get_by_label("User name or access key ID").fill(username)
    page.get_by_label("Password or secret").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", level=1, name="Registries")).to_be_visible()


def api_get(server: Server, path: str, auth: tuple[str, str] | None = None) -> httpx.Response:
    return httpx.get(f"{server.url}/api/v1{path}", auth=auth or server.admin, timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium per test module."""
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Steps]:
    """A fresh browser context per test (no cookies or storage carried over), allowed to use the clipboard
    (the console copies an access key's secret)."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    try:
        yield Steps(context.new_page(), request.node.name)
    finally:
        context.close()
