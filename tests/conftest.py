"""Shared fixtures of the core's tests: a real headless Chromium (Debian's, driven by Playwright)."""

from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is absent (make browser installs Debian's chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e .[test])")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


class Page:
    """A page with its console errors, dialogs and every non-file request recorded."""

    def __init__(self, browser, url, size=(1000, 700)):
        self.page = browser.new_page(viewport={"width": size[0], "height": size[1]})
        self.errors, self.dialogs, self.remote = [], [], []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.on("request", lambda r: r.url.startswith(("file:", "data:", "about:")) or self.remote.append(r.url))
        self.page.goto(url)

    def attr(self, name):
        return self.page.evaluate(f"document.documentElement.dataset.{name}")

    def __getattr__(self, name):
        return getattr(self.page, name)




@pytest.fixture
def open_page(browser):
    """Open a page in the browser, with its console errors, dialogs and non-file requests recorded."""
    pages = []

    def open_(url, size=(1000, 700)):
        pages.append(Page(browser, url, size))
        return pages[-1]

    yield open_
    for p in pages:
        p.page.close()
