"""The core's tests use the kit's browser fixtures (atlas_core.testing.fixtures) under short names."""

import pytest


@pytest.fixture(scope="session")
def browser(atlas_browser):
    return atlas_browser


@pytest.fixture
def open_page(atlas_open_page):
    return atlas_open_page
