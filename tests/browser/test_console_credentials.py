"""Several named credentials per own-model provider in the console (issue 13), in headless
chromium, on a gateway of this module's own (`console_gateway`):

operator sign-in -> OpenAI "default" set up with the fake -> a second credential "backup"
with weight 3 (a taken name is refused in the dialog) -> the card lists both, with
per-credential Edit / Remove -> editing "backup" keeps its key and changes its weight ->
the fake stops accepting "default"'s key and a chat through the gateway meets the vendor's
401: after a reload the card shows "default" as invalid (red) -> a 429 puts "backup" in a
cooldown (amber) -> the card at 390 px in dark mode -> "backup" removed: one credential
left, the card back to its plain Edit / Remove -> "default" fixed with its key again.

The test body runs in the browser's thread (conftest.py): the admin API and the chats are
httpx calls (never `gw.cli`). Every wait is bounded. Ends by checking its tabs: no CSP
violation, no uncaught page error, no request off the machine.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
from playwright.sync_api import Locator, Page, expect

from tests.browser.admin_api import AdminAPI
from tests.browser.conftest import MOBILE, Tab
from tests.browser.test_console import (
    VALIDATION_TIMEOUT_MS,
    eventually,
    no_open_dialog,
    open_dialog,
    sign_in,
    step,
)
from tests.e2e.harness import GatewayProcess
from tests.fakes.fixtures import FakeOpenAI

expect.set_options(timeout=10_000)

INVALID = "Invalid: rejected by the vendor"
COOLING = re.compile(r"Cooling down until (\d{2}):(\d{2}):(\d{2})")
RATE_LIMITED = (429, {"error": {"message": "Rate limit reached for requests", "type": "requests",
                                "param": None, "code": "rate_limit_exceeded"}})


class Admin(AdminAPI):
    def credentials(self, tenant_id: str) -> dict[str, dict[str, Any]]:
        """The tenant's OpenAI credentials by name."""
        return {row["name"]: row for row in self.call("GET", f"/tenants/{tenant_id}/providers")
                if row["provider"] == "openai"}


def rgb(css: str) -> tuple[int, int, int]:
    match = re.search(r"rgba?\((\d+), (\d+), (\d+)", css)
    assert match, f"no colour in {css!r}"
    r, g, b = (int(v) for v in match.groups())
    return r, g, b


def is_red(badge: Locator) -> bool:
    """The badge's text is a red (the page's --danger: #b42318 light, #ff8b82 dark)."""
    r, g, b = rgb(badge.evaluate("e => getComputedStyle(e).color"))
    return r >= 150 and r - g >= 90 and r - b >= 90


def is_amber(badge: Locator) -> bool:
    """The badge's outline (box-shadow) is an amber: red and some green, no blue."""
    r, g, b = rgb(badge.evaluate("e => getComputedStyle(e).boxShadow"))
    return r >= 150 and 0.3 * r <= g < 0.85 * r and b < 0.5 * g


def openai_card(page: Page) -> Locator:
    return page.get_by_role("article", name="OpenAI", exact=True)


def credential_item(card: Locator, name: str) -> Locator:
    """One credential of the card's list (several credentials), found by its Edit button."""
    return card.get_by_role("listitem").filter(
        has=card.page.get_by_role("button", name=f"Edit credential {name}", exact=True))


def show_tenant(page: Page, tenant_id: str, tenant_name: str) -> None:
    select = page.get_by_label("Tenant", exact=True)
    expect(select.locator("option", has_text=tenant_name)).to_have_count(1)
    if select.input_value() != tenant_id:
        select.select_option(value=tenant_id)
    expect(select).to_have_value(tenant_id)
    expect(openai_card(page)).to_be_visible()


def open_console(tab: Tab, gw: GatewayProcess, token: str, tenant_id: str, tenant_name: str) -> Page:
    response = tab.page.goto(gw.base_url + "/console/")
    assert response is not None and response.status == 200
    sign_in(tab.page, token)
    show_tenant(tab.page, tenant_id, tenant_name)
    return tab.page


def element_shot(tab: Tab, locator: Locator, name: str) -> None:
    path = tab.artifacts / f"{tab.prefix}{name}.png"
    locator.scroll_into_view_if_needed()
    locator.screenshot(path=str(path), animations="disabled")
    tab.shots.append(path)


def put_response(page: Page, tenant_id: str) -> Any:
    return page.expect_response(lambda r: r.request.method == "PUT"
                                and r.url.endswith(f"/tenants/{tenant_id}/providers/openai"))


def test_several_credentials(console_gateway: GatewayProcess, fake_openai_server: FakeOpenAI, tab: Tab,
                             new_tab: Callable[..., Tab]) -> None:
    gw, page, fake = console_gateway, tab.page, fake_openai_server
    admin_token = gw.admin_token()
    api = Admin(gw, admin_token)
    default_key = f"sk-default-{uuid.uuid4().hex}"
    backup_key = f"sk-backup-{uuid.uuid4().hex}"
    tenant = api.call("POST", "/tenants", {"name": f"creds-{uuid.uuid4().hex[:8]}"}, status=201)
    tid = tenant["id"]
    api_token = api.call("POST", f"/tenants/{tid}/tokens", {"name": "sdk", "kind": "api"}, status=201)["token"]
    tabs = [tab]
    fake.state.api_keys.update({default_key, backup_key})
    try:
        with step(tab, "set up OpenAI: the first credential is named default"):
            open_console(tab, gw, admin_token, tid, tenant["name"])
            card = openai_card(page)
            card.get_by_role("button", name="Set up", exact=True).click()
            dialog = open_dialog(page, "Set up OpenAI")
            name_field = dialog.get_by_label("Credential name", exact=True)
            weight_field = dialog.get_by_label("Weight", exact=True)
            expect(name_field).to_have_value("default")
            expect(name_field).to_have_attribute("name", "name")
            expect(name_field).not_to_have_attribute("readonly", "")
            assert name_field.evaluate("e => e.required") is True
            expect(weight_field).to_have_attribute("type", "number")
            expect(weight_field).to_have_attribute("name", "weight")
            expect(weight_field).to_have_value("1")
            expect(weight_field).to_have_attribute("min", "1")
            expect(weight_field).to_have_attribute("max", "1000")
            expect(weight_field).to_have_accessible_description(
                "Share of requests when the provider has several credentials")
            key_field = dialog.get_by_label("API key", exact=True)
            expect(key_field).to_be_focused()
            dialog.get_by_label("API base URL").fill(fake.v1_url)
            key_field.fill(default_key)
            expect(dialog.get_by_text("Credentials are valid")).to_be_visible(timeout=VALIDATION_TIMEOUT_MS)
            with put_response(page, tid) as saved:
                dialog.get_by_role("button", name="Save").click()
            assert saved.value.status == 200, saved.value.text()
            sent = saved.value.request.post_data_json
            assert (sent["name"], sent["weight"], sent["validate"], sent["keep_secrets"]) == ("default", 1, True, False)
            no_open_dialog(page)
            stored = api.credentials(tid)
            assert list(stored) == ["default"] and stored["default"]["weight"] == 1, stored

        with step(tab, "one credential: the card keeps its Edit and Remove"):
            card = openai_card(page)
            expect(card.get_by_role("button", name="Edit", exact=True)).to_be_visible()
            expect(card.get_by_role("button", name="Remove", exact=True)).to_be_visible()
            expect(card.get_by_role("button", name="Add credential", exact=True)).to_be_visible()
            expect(card.get_by_role("button", name=re.compile(r"credential default"))).to_have_count(0)
            expect(card).to_contain_text(stored["default"]["fields"]["api_key"])
            expect(card).to_contain_text("default")
            expect(card.get_by_text(INVALID)).to_have_count(0)

        with step(tab, "Add credential: a taken name is refused, backup with weight 3 is saved"):
            card.get_by_role("button", name="Add credential", exact=True).click()
            dialog = open_dialog(page, "Add a credential to OpenAI")
            expect(page.get_by_role("dialog", name="Add a credential to OpenAI")).to_be_visible()
            name_field = dialog.get_by_label("Credential name", exact=True)
            expect(name_field).to_be_focused()
            expect(name_field).to_have_value("")
            name_field.fill("default")
            taken = dialog.get_by_text("already has a credential named default")
            expect(taken).to_be_visible()
            expect(name_field).to_have_attribute("aria-invalid", "true")
            element_shot(tab, dialog, "00-add-credential-name-taken")
            name_field.fill("-bad")
            expect(name_field).to_have_accessible_description(re.compile(r"A credential's name is 1-64 letters"))
            expect(name_field).to_have_attribute("aria-invalid", "true")
            name_field.fill("backup")
            expect(taken).to_have_count(0)
            expect(name_field).not_to_have_attribute("aria-invalid", "true")
            dialog.get_by_label("Weight", exact=True).fill("3")
            dialog.get_by_label("API base URL").fill(fake.v1_url)
            dialog.get_by_label("API key", exact=True).fill(backup_key)
            expect(dialog.get_by_text("Credentials are valid")).to_be_visible(timeout=VALIDATION_TIMEOUT_MS)
            with put_response(page, tid) as saved:
                dialog.get_by_role("button", name="Save").click()
            assert saved.value.status == 200, saved.value.text()
            sent = saved.value.request.post_data_json
            assert (sent["name"], sent["weight"], sent["keep_secrets"]) == ("backup", 3, False), sent
            assert sent["credentials"]["api_key"] == backup_key
            no_open_dialog(page)
            stored = api.credentials(tid)
            assert [(n, c["weight"]) for n, c in stored.items()] == [("default", 1), ("backup", 3)], stored

        with step(tab, "two credentials: both listed with their names, weights and own buttons"):
            card = openai_card(page)
            credentials = card.get_by_role("list", name="OpenAI credentials")
            expect(credentials.get_by_role("listitem")).to_have_count(2)
            for name in ("default", "backup"):
                item = credential_item(card, name)
                expect(item).to_contain_text(name)
                expect(item).to_contain_text(stored[name]["fields"]["api_key"])
                expect(item.get_by_role("button", name=f"Remove credential {name}", exact=True)).to_be_visible()
                expect(item.get_by_text("Active", exact=True)).to_be_visible()
            expect(credential_item(card, "default")).to_contain_text("Weight 1")
            expect(credential_item(card, "backup")).to_contain_text("Weight 3")
            expect(card.get_by_role("button", name="Edit", exact=True)).to_have_count(0)
            expect(card.get_by_role("button", name="Remove", exact=True)).to_have_count(0)
            expect(card.get_by_role("button", name="Add credential", exact=True)).to_be_visible()
            assert default_key not in page.content() and backup_key not in page.content()
            element_shot(tab, card, "01-card-two-credentials")
            tab.shot("02-two-credentials")

        with step(tab, "Edit credential backup: the name is fixed, the key kept, the weight changed"):
            card.get_by_role("button", name="Edit credential backup", exact=True).click()
            dialog = open_dialog(page, "Edit credential backup of OpenAI")
            name_field = dialog.get_by_label("Credential name", exact=True)
            expect(name_field).to_have_value("backup")
            assert name_field.evaluate("e => e.readOnly") is True
            key_field = dialog.get_by_label("API key", exact=True)
            expect(key_field).to_have_value("")
            expect(key_field).to_have_attribute("placeholder", stored["backup"]["fields"]["api_key"])
            weight_field = dialog.get_by_label("Weight", exact=True)
            expect(weight_field).to_have_value("3")
            weight_field.fill("0")
            expect(dialog.get_by_text("a whole number from 1 to 1000").first).to_be_visible()
            weight_field.fill("2")
            with put_response(page, tid) as saved:
                dialog.get_by_role("button", name="Save").click()
            assert saved.value.status == 200, saved.value.text()
            sent = saved.value.request.post_data_json
            assert (sent["name"], sent["weight"], sent["keep_secrets"]) == ("backup", 2, True), sent
            assert not sent["credentials"].get("api_key"), "the page sent a key it should not have"
            no_open_dialog(page)
            stored = api.credentials(tid)
            assert stored["backup"]["weight"] == 2, stored
            expect(credential_item(openai_card(page), "backup")).to_contain_text("Weight 2")

        with step(tab, "the vendor rejects default's key: a chat marks it invalid"):
            fake.state.api_keys.discard(default_key)

            def chat() -> httpx.Response:
                return httpx.post(gw.v1_url + "/chat/completions", timeout=15,
                                  headers={"Authorization": f"Bearer {api_token}"},
                                  json={"model": "openai/gpt-4o-mini",
                                        "messages": [{"role": "user", "content": "Say hello"}]})

            def marked() -> bool:
                # 200: backup served; 401: the new API token not yet seen by this worker; 403
                # (upstream_credential_rejected): default's turn, the vendor's 401 (the test
                # gateway makes no retries: tests/e2e/harness.py, routing.retries 0).
                response = chat()
                assert response.status_code in (200, 401, 403), response.text
                if response.status_code == 403:
                    assert response.json()["error"]["code"] == "upstream_credential_rejected", response.text
                return bool(api.credentials(tid)["default"]["invalid"])
            eventually(marked, 20, "the gateway never marked the rejected credential invalid")
            assert not api.credentials(tid)["backup"]["invalid"]
            assert any(r.headers.get("authorization") == f"Bearer {default_key}"
                       for r in fake.state.requests_to("/v1/chat/completions"))

        with step(tab, "a 429 on backup: it cools down"):
            # Every worker reloads the tenant's credentials on its change poll (0.2 s here):
            # after that, none tries default (the fake checks the key before a scripted failure).
            time.sleep(1.5)
            fake.state.fail_next.append(RATE_LIMITED)
            response = chat()
            assert response.status_code == 429, response.text  # no retries on the test gateway
            cooling = api.credentials(tid)["backup"]["cooling_down_until"]
            assert cooling and cooling > time.time(), api.credentials(tid)

        with step(tab, "after a reload: default invalid (red), backup cooling down (amber)"):
            page.reload()
            expect(page.get_by_role("button", name="Sign out")).to_be_visible()
            show_tenant(page, tid, tenant["name"])
            card = openai_card(page)
            invalid = credential_item(card, "default").get_by_text(INVALID, exact=True)
            expect(invalid).to_be_visible()
            assert is_red(invalid), "the Invalid badge is not red"
            expect(credential_item(card, "backup").get_by_text(INVALID)).to_have_count(0)
            badge = credential_item(card, "backup").get_by_text(COOLING)
            expect(badge).to_be_visible()
            assert is_amber(badge) and not is_red(badge), "the Cooling down badge is not amber"
            shown = badge.locator("time").get_attribute("datetime")
            assert shown and abs(datetime.fromisoformat(shown).timestamp() - cooling) < 1, shown
            expect(credential_item(card, "default").get_by_text("Active", exact=True)).to_have_count(0)
            element_shot(tab, card, "03-card-invalid-and-cooling")

        with step(tab, "the card at 390 px, dark"):
            narrow = new_tab(viewport=MOBILE, color_scheme="dark")
            tabs.append(narrow)
            open_console(narrow, gw, admin_token, tid, tenant["name"])
            narrow_card = openai_card(narrow.page)
            expect(credential_item(narrow_card, "default").get_by_text(INVALID, exact=True)).to_be_visible()
            assert is_red(credential_item(narrow_card, "default").get_by_text(INVALID, exact=True))
            width = narrow.page.evaluate("document.documentElement.scrollWidth")
            element_shot(narrow, narrow_card, "04-card-390-dark")
            assert width <= MOBILE["width"], f"the page scrolls sideways at 390 px (scrollWidth {width})"

        with step(tab, "Remove credential backup: requests go to default; one left"):
            card.get_by_role("button", name="Remove credential backup", exact=True).click()
            dialog = open_dialog(page, "Remove credential backup of OpenAI?")
            expect(dialog).to_contain_text("Requests go to the other credential: default.")
            expect(dialog).to_contain_text("rejected by the vendor")  # the one left is invalid
            expect(dialog).not_to_contain_text("will fail until you pick another")  # no default warning
            expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()
            tab.shot("05-remove-one-of-two")
            with page.expect_response(lambda r: r.request.method == "DELETE"
                                      and "/providers/openai?" in r.url) as removed:
                dialog.get_by_role("button", name="Remove", exact=True).click()
            assert removed.value.status == 200, removed.value.text()
            assert removed.value.url.endswith(f"/tenants/{tid}/providers/openai?name=backup"), removed.value.url
            no_open_dialog(page)
            assert list(api.credentials(tid)) == ["default"]
            card = openai_card(page)
            expect(card.get_by_role("list", name="OpenAI credentials")).to_have_count(0)
            expect(card.get_by_role("button", name="Edit", exact=True)).to_be_visible()
            expect(card.get_by_role("button", name="Remove", exact=True)).to_be_visible()
            expect(card.get_by_text(INVALID, exact=True)).to_be_visible()
            expect(card).not_to_contain_text("backup")

        with step(tab, "default fixed with its key again: no longer invalid"):
            fake.state.api_keys.add(default_key)
            card.get_by_role("button", name="Edit", exact=True).click()
            dialog = open_dialog(page, "Set up OpenAI")
            expect(dialog.get_by_label("Credential name", exact=True)).to_have_value("default")
            dialog.get_by_label("API key", exact=True).fill(default_key)
            expect(dialog.get_by_text("Credentials are valid")).to_be_visible(timeout=VALIDATION_TIMEOUT_MS)
            with put_response(page, tid) as saved:
                dialog.get_by_role("button", name="Save").click()
            assert saved.value.status == 200, saved.value.text()
            no_open_dialog(page)
            assert api.credentials(tid)["default"]["invalid"] is False
            expect(openai_card(page).get_by_text(INVALID)).to_have_count(0)
            element_shot(tab, openai_card(page), "06-card-one-credential-fixed")

        with step(tab, "no CSP violation, nothing left the machine"):
            for t in tabs:
                assert t.csp_violations() == [], f"CSP violations in {t.prefix}: {t.csp_violations()}"
                assert t.left_loopback() == [], f"requests left 127.0.0.1 in {t.prefix}: {t.left_loopback()}"
                assert t.page_errors == [], f"uncaught page errors in {t.prefix}: {t.page_errors}"
    finally:
        fake.state.api_keys.difference_update({default_key, backup_key})
        fake.state.fail_next.clear()


def test_a_per_model_entry_with_two_credentials(console_gateway: GatewayProcess, tab: Tab) -> None:
    """A Hugging Face model with a second named credential (`models add --name`): the card
    names each, removing one keeps the model."""
    gw = console_gateway
    admin = AdminAPI(gw)
    created = admin.call("POST", "/tenants", {"name": f"pm-{uuid.uuid4().hex[:8]}"}, status=201)
    model = "BAAI/bge-small-en-v1.5"
    for name, weight in (("default", 1), ("backup", 2)):
        admin.call("POST", f"/tenants/{created['id']}/models",
                   {"provider": "huggingface", "model": model, "type": "text-embedding", "name": name,
                    "weight": weight, "credentials": {"api_token": f"hf_test_{name}_000000000000001"}}, status=201)
    page = open_console(tab, gw, gw.admin_token(), created["id"], created["name"])
    card = page.get_by_role("article", name="Hugging Face")
    expect(card.get_by_role("button", name=f"Remove {model} credential backup")).to_be_visible()
    expect(card.get_by_text("Weight 2")).to_be_visible()
    card.get_by_role("button", name=f"Remove {model} credential backup").click()
    dialog = open_dialog(page, "Remove credential backup")
    expect(dialog).to_contain_text("go to its other credential(s): default")
    dialog.get_by_role("button", name="Remove", exact=True).click()
    no_open_dialog(page)
    eventually(lambda: [m["name"] for m in admin.get(f"/tenants/{created['id']}/models")] == ["default"], 5,
               "the backup credential was not removed")
    expect(card.get_by_role("button", name=f"Remove {model}", exact=True)).to_be_visible()
    tab.shot("per-model-one-left")
    assert not tab.csp_violations() and not tab.left_loopback()
