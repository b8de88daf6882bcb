"""Driving the web console in a real headless Chromium (Debian's `chromium`, through Playwright): the
browser's flags, a page that takes a numbered screenshot after each step and fails on any script error,
and logging in. Shared by tests/test_console.py and tests/test_console_replication.py."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import httpx
from playwright.sync_api import Page, expect

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
