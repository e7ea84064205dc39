"""The console of `modelport serve --demo`: the console token it prints signs in to the
demo tenant, whose providers are all configured against the emulators."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Tab
from tests.browser.test_console import sign_in
from tests.demo_server import Demo, served_demo


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    with served_demo(tmp_path_factory.mktemp("newcomer-console")) as running:
        yield running


def test_the_console_shows_the_demo_tenant_and_its_providers(demo: Demo, tab: Tab) -> None:
    page = tab.page
    page.goto(demo.base_url + "/console/")
    sign_in(page, demo.console_token)
    expect(page.get_by_text("demo", exact=True).first).to_be_visible()
    expect(page.get_by_role("heading", name="Providers")).to_be_visible()
    for title in ("Anthropic", "Alibaba Qwen", "iFlytek Spark"):
        expect(page.get_by_text(title, exact=False).first).to_be_visible()
    assert tab.left_loopback() == []
