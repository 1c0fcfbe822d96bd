"""pytest fixtures of the conformance kit (installed as the pytest plugin ``atlas_core``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ..plugins import Registry, load, make_manager
from .numpy_model import NumpyModel

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


@pytest.fixture
def atlas_plugin_manager():
    """A pluggy manager with the hookspecs and no plugin at all."""
    return make_manager()


@pytest.fixture
def atlas_registry():
    """Build an isolated registry: built-ins plus the plugins you pass, no entry points.

    Usage: ``registry = atlas_registry(my_plugin_module)``.
    """

    def build(*plugins) -> Registry:
        return load(entry_points=False,
                    extra=tuple((getattr(p, "__name__", repr(p)), p) for p in plugins))

    return build


@pytest.fixture
def atlas_numpy_model():
    """The conformance kit's tiny numpy network (32 px input)."""
    return NumpyModel()


@pytest.fixture(scope="session")
def atlas_browser():
    """Debian's headless Chromium driven by Playwright (skips without either): for tests of the pages."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is absent (make browser installs Debian's chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e .[test])")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
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
def atlas_open_page(atlas_browser):
    """``open_page(url, size=(1000, 700))``: a :class:`Page` in the browser, closed after the test."""
    pages = []

    def open_(url, size=(1000, 700)):
        pages.append(Page(atlas_browser, url, size))
        return pages[-1]

    yield open_
    for p in pages:
        p.page.close()
