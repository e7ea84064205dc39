"""The console's "Rate limits" panel (issue 13) in headless chromium: an empty list, "Add
limit" for one API token and model (the dialog's own checks and the server's message
shown in it), one for the whole tenant, and "Remove"; the admin API is the truth the
test compares with. The body runs in the browser's thread (conftest.py): httpx, no CLI."""

from __future__ import annotations

import uuid

import pytest
from playwright.sync_api import expect

from tests.browser.admin_api import AdminAPI
from tests.browser.conftest import Tab
from tests.browser.test_console import no_open_dialog, open_dialog, sign_in
from tests.e2e.harness import GatewayProcess

expect.set_options(timeout=10_000)


@pytest.fixture
def tenant(console_gateway: GatewayProcess) -> dict[str, str]:
    admin = AdminAPI(console_gateway)
    created = admin.call("POST", "/tenants", {"name": f"lim-{uuid.uuid4().hex[:8]}"}, status=201)
    token = admin.call("POST", f"/tenants/{created['id']}/tokens", {"name": "app", "kind": "api"}, status=201)
    admin.call("POST", f"/tenants/{created['id']}/tokens", {"name": "desk", "kind": "console"}, status=201)
    return {"id": created["id"], "name": created["name"], "token_id": token["id"]}


def test_rate_limits_panel(console_gateway: GatewayProcess, tenant: dict[str, str], tab: Tab) -> None:
    gw, page, admin = console_gateway, tab.page, AdminAPI(console_gateway)
    assert page.goto(gw.base_url + "/console/") is not None
    sign_in(page, gw.admin_token())
    switcher = page.get_by_label("Tenant", exact=True)
    switcher.select_option(value=tenant["id"])
    panel = page.get_by_role("region", name="Rate limits")
    expect(panel).to_contain_text("No rate limits")

    panel.get_by_role("button", name="Add limit").click()
    dialog = open_dialog(page, "Add limit")
    token = dialog.get_by_label("Token", exact=True)
    # Only the tenant's API tokens: a console token calls no /v1 endpoint.
    assert token.locator("option").all_inner_texts() == ["Whole tenant (every API token)", "app"]
    dialog.get_by_role("button", name="Save").click()
    expect(dialog.get_by_role("alert")).to_have_text("Enter requests per minute, tokens per minute, or both.")
    token.select_option(label="app")
    dialog.get_by_label("Model", exact=True).fill("gpt-4o-mini")
    dialog.get_by_label("Requests per minute").fill("5")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog.get_by_role("alert")).to_contain_text("PROVIDER/MODEL")  # the server's message
    dialog.get_by_label("Model", exact=True).fill("openai/gpt-4o-mini")
    dialog.get_by_role("button", name="Save").click()
    no_open_dialog(page)
    row = panel.get_by_role("row").filter(has_text="openai/gpt-4o-mini")
    expect(row).to_contain_text("app")
    expect(row).to_contain_text("0 / 5")
    assert admin.call("GET", f"/tenants/{tenant['id']}/limits") == [{
        "token_id": tenant["token_id"], "token_name": "app", "model": "openai/gpt-4o-mini", "rpm": 5, "tpm": None,
        "requests_this_minute": 0, "tokens_this_minute": 0}]

    panel.get_by_role("button", name="Add limit").click()
    dialog = open_dialog(page, "Add limit")
    dialog.get_by_label("Tokens per minute").fill("1000")
    dialog.get_by_role("button", name="Save").click()
    no_open_dialog(page)
    expect(panel.get_by_role("row").filter(has_text="Whole tenant")).to_contain_text("Every model")

    panel.get_by_role("button", name="Remove limit app, openai/gpt-4o-mini").click()
    expect(panel.get_by_role("row").filter(has_text="openai/gpt-4o-mini")).to_have_count(0)
    assert [(r["token_id"], r["tpm"]) for r in admin.call("GET", f"/tenants/{tenant['id']}/limits")] == [(None, 1000)]
    assert tab.csp_violations() == [] and tab.page_errors == []
