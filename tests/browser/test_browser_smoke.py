"""The browser harness itself (tests/browser/conftest.py): chromium opens a page the
gateway serves, requests are recorded, a request off the machine is seen and stopped,
screenshots land in the artifacts directory, and pytest-asyncio still works beside it."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from tests.browser.conftest import BrowserThread, Tab, is_loopback_url
from tests.e2e.harness import GatewayProcess


def test_chromium_opens_the_gateways_healthz(console_gateway: GatewayProcess, tab: Tab) -> None:
    page = tab.page
    response = page.goto(console_gateway.base_url + "/healthz")
    assert response is not None and response.status == 200
    assert json.loads(page.locator("body").inner_text())  # the health document, as JSON
    assert tab.requests == [console_gateway.base_url + "/healthz"]
    assert tab.left_loopback() == []
    shot = tab.shot("healthz")
    assert shot.is_file() and shot.stat().st_size > 0
    ua = page.evaluate("navigator.userAgent")
    assert "HeadlessChrome" in ua or "Chrome" in ua
    assert page.viewport_size == {"width": 1280, "height": 900}


def test_a_request_off_the_machine_is_recorded_and_stopped(console_gateway: GatewayProcess, tab: Tab) -> None:
    tab.page.goto(console_gateway.base_url + "/healthz")
    outcome = tab.page.evaluate("""() => fetch("http://192.0.2.1/x").then(() => "sent", e => "failed: " + e)""")
    assert outcome.startswith("failed")
    assert tab.left_loopback() == ["http://192.0.2.1/x"]


def test_dark_and_narrow_tabs(console_gateway: GatewayProcess, new_tab) -> None:  # type: ignore[no-untyped-def]
    tab = new_tab(viewport={"width": 390, "height": 844}, color_scheme="dark")
    tab.page.goto(console_gateway.base_url + "/healthz")
    assert tab.page.evaluate("matchMedia('(prefers-color-scheme: dark)').matches") is True
    assert tab.page.evaluate("innerWidth") == 390


@pytest.mark.parametrize("url, local", [("http://127.0.0.1:8/x", True), ("ws://127.0.0.1:9/", True),
                                        ("data:text/plain,x", True), ("http://localhost.evil.com/", False),
                                        ("https://example.com/", False), ("http://10.0.0.1/", False)])
def test_is_loopback_url(url: str, local: bool) -> None:
    assert is_loopback_url(url) is local


async def test_asyncio_tests_still_run_while_the_browser_is_alive(browser: BrowserThread, tab: Tab,
                                                                  console_gateway: GatewayProcess) -> None:
    # The browser's thread marks its own loop as running; this thread's loop must be unaffected.
    await asyncio.sleep(0)
    async with httpx.AsyncClient() as client:
        assert (await client.get(console_gateway.base_url + "/healthz")).status_code == 200
    assert browser.call(lambda: tab.page.evaluate("1 + 1")) == 2


def test_the_cli_runs_beside_the_browser(console_gateway: GatewayProcess, tab: Tab) -> None:
    # In the browser's thread `asyncio.run` is refused; the harness's CLI is for fixtures and
    # the main thread. Here: the admin API, which is what browser tests use instead.
    tab.page.goto(console_gateway.base_url + "/healthz")
    listed = httpx.get(console_gateway.base_url + "/admin/v1/tenants", timeout=10,
                       headers={"Authorization": f"Bearer {console_gateway.admin_token()}"})
    assert listed.status_code == 200


def test_a_csp_violation_is_recorded(console_gateway: GatewayProcess, tab: Tab) -> None:
    # What test_console.py relies on to see "no CSP violation": a violation does show up.
    tab.page.goto(console_gateway.base_url + "/console/")
    assert tab.csp_violations() == []
    tab.page.evaluate("""() => { const s = document.createElement("style");
                                 s.textContent = "body { color: red }"; document.head.append(s); }""")
    for _ in range(100):  # events arrive while playwright waits: poll, at most 5 s
        if any("style-src" in v for v in tab.csp_violations()):
            break
        tab.page.wait_for_timeout(50)
    assert any("style-src" in v for v in tab.csp_violations()), tab.console
