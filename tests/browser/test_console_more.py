"""More of the settings console (/console/) in headless chromium, what test_console.py's
end-to-end flow does not reach, on a gateway of this module's own that lends a hosted
OpenAI (and Anthropic) trial (tests/e2e/hosted_setup.py):

- the hosted trial on the OpenAI card and in the System reasoning model picker (chosen with
  the keyboard), the operator's "Set limit" on the trial quota (0 -> "quota exhausted", the
  default shown as removed), and a tenant's console that sees the quota but cannot set it;
- editing a stored credential keeps its secret (empty key field, masked placeholder) and
  refuses to carry the kept key to another base URL;
- removing a provider that holds a default warns about it (Cancel keeps, Remove removes);
- Escape closes a dialog (and the picker) with focus back on the opener;
- a tenant's console session cannot see other tenants, even by fetching their URLs.

Each test uses fresh tenants, made by fixtures with the admin API (httpx). The test bodies
run in the browser's thread (conftest.py): the admin API is called with httpx, never
`gw.cli`. Every test ends by checking its tabs: no CSP violation, no uncaught page error,
no request off the machine.
"""

from __future__ import annotations

import re
import secrets
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import openai
import pytest
from playwright.sync_api import Locator, Page, expect

from tests.browser.admin_api import AdminAPI
from tests.browser.conftest import Tab
from tests.browser.test_console import (
    HI,
    VALIDATION_TIMEOUT_MS,
    default_picker,
    eventually,
    no_open_dialog,
    open_dialog,
    session_fetch,
    sign_in,
    step,
)
from tests.e2e.harness import GatewayProcess
from tests.e2e.hosted_setup import (
    ADMIN_TOKEN,
    ANTHROPIC_MODELS,
    HOSTED_OPENAI_KEY,
    OPENAI_MODELS,
    accept_hosted_keys,
    hosted_env,
    hosted_settings,
)
from tests.fakes.anthropic_fixtures import FakeAnthropic
from tests.fakes.fixtures import FakeOpenAI
from emulators.server import free_port

QUOTA = 5
TRIAL_LLMS = [m for m in OPENAI_MODELS if not m.startswith("text-embedding")]  # gpt-3.5-turbo, -16k
REMOVED = "removed: pick another model"
DEFAULT_WARNING = "gpt-4o-mini is the system reasoning model; requests for `default` will fail until you pick another."

expect.set_options(timeout=10_000)


# -- the admin API (the test's view of the truth) ------------------------------------------


class Admin(AdminAPI):
    """The admin API with a bearer token (the hosted gateway's fixed admin token by default)."""

    def __init__(self, gw: GatewayProcess, token: str = ADMIN_TOKEN) -> None:
        super().__init__(gw, token)


@dataclass
class Tenant:
    id: str
    name: str
    api_token: str  # an API token (mp-...) of the tenant


# -- fixtures (main thread) ------------------------------------------------------------------


@pytest.fixture(scope="module")
def trial_gateway(tmp_path_factory: pytest.TempPathFactory, fake_openai_server: FakeOpenAI,
                  fake_anthropic_server: FakeAnthropic) -> Iterator[GatewayProcess]:
    """A 2-worker gateway whose `hosted:` section lends the fake OpenAI and Anthropic on
    platform keys (QUOTA calls per tenant). The keys reach its config as ${VAR}: the
    variables are set while the subprocess starts (it keeps its own copy of them)."""
    gw = GatewayProcess(tmp_path_factory.mktemp("console-trial"), workers=2,
                        settings=hosted_settings(fake_openai_server, fake_anthropic_server, quota=QUOTA))
    gw.port = free_port()
    with hosted_env():
        gw.start()
    try:
        yield gw
    finally:
        gw.stop()
        shutil.rmtree(gw.data_dir, ignore_errors=True)  # holds the tenants' wrapped keys


@pytest.fixture
def gw(trial_gateway: GatewayProcess, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic) -> GatewayProcess:
    """The module's gateway, with the fakes reset and accepting the platform keys again."""
    accept_hosted_keys(fake_openai, fake_anthropic)
    return trial_gateway


@pytest.fixture
def make_tenant(gw: GatewayProcess) -> Callable[[], Tenant]:
    """Fresh tenants with no credential of their own, and an API token each."""
    admin = Admin(gw)

    def make() -> Tenant:
        created = admin.call("POST", "/tenants", {"name": f"more-{uuid.uuid4().hex[:8]}"}, status=201)
        token = admin.call("POST", f"/tenants/{created['id']}/tokens", {"name": "sdk", "kind": "api"}, status=201)
        return Tenant(created["id"], created["name"], token["token"])
    return make


@pytest.fixture
def tenant(make_tenant: Callable[[], Tenant]) -> Tenant:
    return make_tenant()


# -- helpers (browser thread) ----------------------------------------------------------------


def open_console(tab: Tab, gw: GatewayProcess, token: str) -> Page:
    response = tab.page.goto(gw.base_url + "/console/")
    assert response is not None and response.status == 200
    sign_in(tab.page, token)
    return tab.page


def show_tenant(page: Page, tenant: Tenant) -> None:
    """The operator's tenant switcher on `tenant`, its cards loaded."""
    select = page.get_by_label("Tenant", exact=True)
    expect(select.locator("option", has_text=tenant.name)).to_have_count(1)
    if select.input_value() != tenant.id:
        select.select_option(value=tenant.id)
    expect(select).to_have_value(tenant.id)
    expect(provider_card(page, "OpenAI")).to_be_visible()


def provider_card(page: Page, display_name: str) -> Locator:
    return page.get_by_role("article", name=display_name, exact=True)


def quota_panel(page: Page) -> Locator:
    return page.locator("div.panel").filter(has=page.get_by_role("heading", name="Hosted trial quota", exact=True))


def toast(page: Page, text: str) -> Locator:
    """A toast with `text` shown since the last `age_toasts` (a newer one replaces an older one)."""
    return page.locator("#toasts [role=status]:not([data-test-seen])").filter(has_text=text)


def age_toasts(page: Page) -> None:
    """Mark the toasts shown now, so that `toast` waits for a new one with the same text."""
    page.evaluate("() => document.querySelectorAll('#toasts > *').forEach(e => { e.dataset.testSeen = '1'; })")


def is_red(locator: Locator) -> bool:
    """The element's computed text colour is a red (the page's --danger)."""
    color = locator.evaluate("e => getComputedStyle(e).color")
    match = re.match(r"rgba?\((\d+), (\d+), (\d+)", color)
    assert match, f"unexpected colour {color!r}"
    r, g, b = (int(v) for v in match.groups())
    return r >= 150 and r > 2 * g and r > 2 * b


def active_option(page: Page) -> str | None:
    """The aria-label of the picker option the search box points at (aria-activedescendant)."""
    return page.get_by_label("Search models").evaluate(
        "s => document.getElementById(s.getAttribute('aria-activedescendant') || '')?.getAttribute('aria-label') ?? null")


def listed_options(page: Page) -> list[str]:
    return [o.get_attribute("aria-label") or "" for o in
            page.get_by_role("listbox", name="Available models").get_by_role("option").all()]


def page_fetch(page: Page, method: str, path: str, body: Any = None, csrf: str | None = None) -> tuple[int, Any]:
    """A request from the page's own code, with its session cookie (and the CSRF token)."""
    status, data = page.evaluate("""async ([method, path, body, csrf]) => {
        const headers = {Accept: "application/json"};
        if (body !== null) headers["Content-Type"] = "application/json";
        if (csrf) headers["X-CSRF-Token"] = csrf;
        const r = await fetch(path, {method, headers, credentials: "same-origin",
                                     body: body === null ? undefined : JSON.stringify(body)});
        return [r.status, await r.json()];
    }""", [method, path, body, csrf])
    return status, data


def sdk(gw: GatewayProcess, token: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.v1_url, api_key=token, max_retries=0, timeout=10)


def sent_with(fake: FakeOpenAI, key: str) -> int:
    """How many requests reached the fake OpenAI with `key` (any path)."""
    return sum(1 for r in list(fake.state.requests) if r.headers.get("authorization") == f"Bearer {key}")


def give_own_openai(gw: GatewayProcess, fake: FakeOpenAI, tenant: Tenant) -> str:
    """The tenant's own OpenAI key (accepted by the fake), stored through the admin API."""
    key = "sk-own-" + secrets.token_hex(12)
    fake.state.api_keys.add(key)
    Admin(gw).call("PUT", f"/tenants/{tenant.id}/providers/openai",
                   {"credentials": {"api_key": key, "base_url": fake.v1_url}})
    return key


def check_tabs(*tabs: Tab) -> None:
    for t in tabs:
        assert t.csp_violations() == [], f"CSP violations in {t.prefix}: {t.csp_violations()}"
        assert t.left_loopback() == [], f"requests left 127.0.0.1 in {t.prefix}: {t.left_loopback()}"
        assert t.page_errors == [], f"uncaught page errors in {t.prefix}: {t.page_errors}"


# -- 1. the hosted trial and the operator's quota control ------------------------------------


def test_hosted_trial_and_operator_quota(gw: GatewayProcess, fake_openai: FakeOpenAI, tenant: Tenant, tab: Tab,
                                         new_tab: Callable[..., Tab]) -> None:
    api, page, tid = Admin(gw), tab.page, tenant.id
    client = sdk(gw, tenant.api_token)

    with step(tab, "one hosted call with the tenant's API token"):
        def answered() -> Any:
            try:
                return client.chat.completions.create(model="openai/gpt-3.5-turbo", messages=HI)
            except openai.AuthenticationError:
                return None  # the new token not yet seen by this worker
        assert eventually(answered, 5, "the hosted chat never succeeded").choices[0].message.content
        assert sent_with(fake_openai, HOSTED_OPENAI_KEY) == 1, "the hosted call did not go with the platform key"
        [quota] = [q for q in api.get(f"/tenants/{tid}/quota") if q["provider"] == "openai"]
        assert (quota["used"], quota["limit"], quota["own_credential"]) == (1, QUOTA, False), quota

    with step(tab, "the operator sees the trial on the OpenAI card"):
        open_console(tab, gw, ADMIN_TOKEN)
        show_tenant(page, tenant)
        card = provider_card(page, "OpenAI")
        expect(card).to_contain_text(re.compile(rf"Hosted trial\s*1 / {QUOTA} calls used"))
        expect(card.get_by_text("quota exhausted")).to_have_count(0)
        expect(card.get_by_role("button", name="Set up")).to_be_visible()  # no key of its own
        expect(card.get_by_role("button", name="Edit")).to_have_count(0)
        expect(provider_card(page, "Anthropic")).to_contain_text(re.compile(rf"Hosted trial\s*0 / {QUOTA} calls used"))
        card.scroll_into_view_if_needed()
        tab.shot("01-trial-card")

    with step(tab, "the picker lists the trial's models; chosen with the keyboard"):
        picker = default_picker(page, "System reasoning model")
        expect(picker).to_contain_text("Select a model")
        picker.focus()
        page.keyboard.press("ArrowDown")
        search = page.get_by_label("Search models")
        expect(search).to_be_focused()
        expect(page.get_by_role("listbox", name="Available models").get_by_role("option")).to_have_count(
            len(TRIAL_LLMS) + len(ANTHROPIC_MODELS))
        assert sorted(listed_options(page)) == sorted(TRIAL_LLMS + ANTHROPIC_MODELS), listed_options(page)
        api_options = api.get(f"/tenants/{tid}/defaults/choices")["llm"]["options"]
        assert {(o["provider"], o["model"], o["source"]) for o in api_options} == \
            {("openai", m, "hosted") for m in TRIAL_LLMS} | {("anthropic", m, "hosted") for m in ANTHROPIC_MODELS}
        page.keyboard.type("gpt-3.5")
        expect(page.get_by_role("listbox", name="Available models").get_by_role("option")).to_have_count(2)
        assert active_option(page) == "gpt-3.5-turbo"
        page.keyboard.press("ArrowDown")
        assert active_option(page) == "gpt-3.5-turbo-16k"
        with page.expect_response(lambda r: r.request.method == "PUT"
                                  and r.url.endswith(f"/tenants/{tid}/defaults/llm")) as saved:
            page.keyboard.press("Enter")
        assert saved.value.status == 200, saved.value.text()
        assert saved.value.request.post_data_json == {"model": "openai/gpt-3.5-turbo-16k"}
        expect(toast(page, "Modified successfully")).to_be_visible()
        assert api.get(f"/tenants/{tid}/defaults")["llm"] == "openai/gpt-3.5-turbo-16k"
        picker = default_picker(page, "System reasoning model")
        expect(picker).to_contain_text("gpt-3.5-turbo-16k")
        expect(picker).to_be_focused()  # back on the (re-rendered) picker
        expect(page.get_by_text(REMOVED)).to_have_count(0)

    with step(tab, "the quota panel and the operator's Set limit dialog"):
        panel = quota_panel(page)
        panel.scroll_into_view_if_needed()
        expect(panel).to_contain_text(f"OpenAI: 1 / {QUOTA} calls used")
        expect(panel).to_contain_text(f"{QUOTA - 1} calls left.")
        bar = panel.get_by_role("progressbar", name=f"OpenAI: 1 / {QUOTA} calls used")
        assert bar.evaluate("e => [e.value, e.max]") == [1, QUOTA]
        set_limit = panel.get_by_role("button", name="Set the OpenAI trial limit", exact=True)
        expect(set_limit).to_have_text("Set limit")
        set_limit.click()
        dialog = open_dialog(page, "OpenAI trial limit")
        calls = dialog.get_by_label("Calls allowed")
        expect(calls).to_be_focused()
        expect(calls).to_have_value(str(QUOTA))
        calls.fill("0")
        tab.shot("02-quota-dialog")
        age_toasts(page)  # the picker's "Modified successfully" may still be up
        with page.expect_response(lambda r: r.request.method == "PUT"
                                  and r.url.endswith(f"/tenants/{tid}/quota/openai")) as saved:
            dialog.get_by_role("button", name="Save").click()
        assert saved.value.status == 200, saved.value.text()
        assert saved.value.request.post_data_json == {"limit": 0}
        no_open_dialog(page)
        expect(toast(page, "Modified successfully")).to_be_visible()
        [quota] = [q for q in api.get(f"/tenants/{tid}/quota") if q["provider"] == "openai"]
        assert (quota["used"], quota["limit"], quota["remaining"]) == (1, 0, 0), quota

    with step(tab, "exhausted: the panel, the card in red, the default shown as removed"):
        expect(panel).to_contain_text("OpenAI: 1 / 0 calls used")
        expect(panel.get_by_text("quota exhausted", exact=True)).to_be_visible()
        expect(panel.get_by_role("progressbar", name="OpenAI: 1 / 0 calls used")).to_have_class(
            re.compile(r"\bis-exhausted\b"))
        exhausted = provider_card(page, "OpenAI").get_by_text("quota exhausted", exact=True)
        expect(exhausted).to_be_visible()
        assert is_red(exhausted), "the card's 'quota exhausted' is not shown in red"
        choice = api.get(f"/tenants/{tid}/defaults/choices")["llm"]
        assert choice["current"] == "openai/gpt-3.5-turbo-16k" and choice["usable"] is False, choice
        assert {o["provider"] for o in choice["options"]} == {"anthropic"}, choice["options"]
        removed = page.get_by_text(REMOVED, exact=True)
        expect(removed).to_be_visible()
        assert is_red(removed), f"{REMOVED!r} is not shown in red"
        picker = default_picker(page, "System reasoning model")
        picker.click()
        expect(page.get_by_label("Search models")).to_be_focused()
        expect(page.get_by_role("listbox", name="Available models").get_by_role("option")).to_have_count(
            len(ANTHROPIC_MODELS))
        page.keyboard.press("Escape")
        expect(page.get_by_label("Search models")).to_have_count(0)
        tab.shot("03-quota-exhausted")

    with step(tab, "the SDK's hosted call is now refused (insufficient_quota)"):
        def refused() -> bool:
            try:
                client.chat.completions.create(model="openai/gpt-3.5-turbo", messages=HI)
            except openai.RateLimitError as err:
                return err.code == "insufficient_quota"
            return False
        eventually(refused, 3, "the hosted trial still answers after the limit was set to 0")
        assert sent_with(fake_openai, HOSTED_OPENAI_KEY) == 1, "a call went upstream on an exhausted trial"

    with step(tab, "a tenant's console sees the quota, without Set limit"):
        console_token = api.call("POST", f"/tenants/{tid}/tokens", {"name": "console-more", "kind": "console"},
                                 status=201)["token"]
        assert console_token.startswith("mpc-")
        other = new_tab()
        tenant_page = open_console(other, gw, console_token)
        expect(tenant_page.get_by_text(tenant.name).first).to_be_visible()
        expect(tenant_page.get_by_label("Tenant", exact=True)).to_have_count(0)
        tenant_panel = quota_panel(tenant_page)
        expect(tenant_panel).to_contain_text("OpenAI: 1 / 0 calls used")
        expect(tenant_panel.get_by_text("quota exhausted", exact=True)).to_be_visible()
        expect(provider_card(tenant_page, "OpenAI").get_by_text("quota exhausted", exact=True)).to_be_visible()
        expect(tenant_page.get_by_text(REMOVED, exact=True)).to_be_visible()
        expect(tenant_page.get_by_role("button", name="Set limit")).to_have_count(0)
        expect(tenant_page.get_by_role("button", name=re.compile(r"trial limit"))).to_have_count(0)
        tenant_panel.scroll_into_view_if_needed()
        other.shot("04-tenant-quota-read-only")
        # Nor can the page's code set it: the operator's action, refused with a 403.
        status, session = session_fetch(tenant_page, "/admin/v1/session")
        assert status == 200 and session["principal"]["kind"] == "tenant", session
        status, body = page_fetch(tenant_page, "PUT", f"/admin/v1/tenants/{tid}/quota/openai", {"limit": 100},
                                  session["csrf_token"])
        assert status == 403 and body["error"]["code"] == "operator_only", (status, body)
        [quota] = [q for q in api.get(f"/tenants/{tid}/quota") if q["provider"] == "openai"]
        assert quota["limit"] == 0, quota

    with step(tab, "no CSP violation, nothing left the machine"):
        check_tabs(tab, other)


# -- 2. editing keeps the stored secret --------------------------------------------------------


def test_edit_keeps_the_stored_secret(gw: GatewayProcess, fake_openai: FakeOpenAI, tenant: Tenant, tab: Tab) -> None:
    api, page, tid, fake = Admin(gw), tab.page, tenant.id, fake_openai
    own_key = give_own_openai(gw, fake, tenant)
    [stored] = api.get(f"/tenants/{tid}/providers")
    masked = stored["fields"]["api_key"]
    assert masked != own_key and stored["fields"]["base_url"] == fake.v1_url

    with step(tab, "Edit: the key field is empty, the masked key its placeholder"):
        open_console(tab, gw, ADMIN_TOKEN)
        show_tenant(page, tenant)
        card = provider_card(page, "OpenAI")
        expect(card).to_contain_text(masked)
        card.get_by_role("button", name="Edit").click()
        dialog = open_dialog(page, "Set up OpenAI")
        key_field = dialog.get_by_label("API key")
        expect(key_field).to_have_value("")
        expect(key_field).to_have_attribute("placeholder", masked)
        expect(key_field).to_have_attribute("type", "password")
        assert key_field.evaluate("e => e.required") is False, "a kept key must not be required"
        expect(dialog.get_by_label("API base URL")).to_have_value(fake.v1_url)
        assert own_key not in page.content()
        tab.shot("05-edit-kept-secret")

    with step(tab, "Save with nothing changed: the stored key is kept"):
        with page.expect_response(lambda r: r.request.method == "PUT"
                                  and r.url.endswith(f"/tenants/{tid}/providers/openai")) as saved:
            dialog.get_by_role("button", name="Save").click()
        assert saved.value.status == 200, saved.value.text()
        sent = saved.value.request.post_data_json
        assert sent["keep_secrets"] is True and sent["validate"] is True, sent
        assert not sent["credentials"].get("api_key"), "the page sent a key it should not have"
        no_open_dialog(page)
        expect(toast(page, "OpenAI credentials saved")).to_be_visible()
        assert api.get(f"/tenants/{tid}/providers") == [stored]

    with step(tab, "the kept key still works through the openai SDK"):
        client = sdk(gw, tenant.api_token)
        before = sent_with(fake, own_key)

        def answered() -> Any:
            try:
                return client.chat.completions.create(model="openai/gpt-4o-mini", messages=HI)
            except openai.AuthenticationError:
                return None  # the new token not yet seen by this worker
        assert eventually(answered, 5, "the chat with the kept key never succeeded").choices[0].message.content
        assert sent_with(fake, own_key) == before + 1, "the chat did not go with the tenant's own key"
        assert sent_with(fake, HOSTED_OPENAI_KEY) == 0, "the tenant's own key must win over the trial"

    with step(tab, "Edit, another base URL, key left empty: the server asks to re-enter it"):
        other_url = f"{fake.base_url}/elsewhere/v1"  # loopback too: a request there would be recorded
        before = sent_with(fake, own_key)
        card.get_by_role("button", name="Edit").click()
        dialog = open_dialog(page, "Set up OpenAI")
        expect(dialog.get_by_label("API key")).to_have_value("")
        dialog.get_by_label("API base URL").fill(other_url)
        alert = dialog.get_by_role("alert").filter(has_text="re-enter api_key")
        expect(alert).to_be_visible(timeout=VALIDATION_TIMEOUT_MS)
        expect(alert).to_contain_text("re-enter api_key to change base_url")
        expect(dialog.get_by_text("Credentials are valid")).to_have_count(0)
        tab.shot("06-edit-reenter-key")
        with page.expect_response(lambda r: r.request.method == "PUT"
                                  and r.url.endswith(f"/tenants/{tid}/providers/openai")) as saved:
            dialog.get_by_role("button", name="Save").click()
        assert saved.value.status == 400, saved.value.text()
        error = saved.value.json()["error"]
        assert error["code"] == "secret_required" and error["message"].startswith("re-enter api_key"), error
        expect(dialog).to_be_visible()
        expect(dialog.get_by_role("alert").filter(has_text="re-enter api_key")).to_be_visible()
        dialog.get_by_role("button", name="Cancel").click()
        no_open_dialog(page)
        assert api.get(f"/tenants/{tid}/providers") == [stored], "the refused edit changed the credential"
        assert sent_with(fake, own_key) == before, "the kept key was sent somewhere"
        assert not [r for r in list(fake.state.requests) if r.path.startswith("/elsewhere")]

    with step(tab, "no CSP violation, nothing left the machine"):
        check_tabs(tab)


# -- 3. Remove warns about a default -----------------------------------------------------------


def test_remove_warns_about_a_default(gw: GatewayProcess, fake_openai: FakeOpenAI, tenant: Tenant, tab: Tab) -> None:
    api, page, tid = Admin(gw), tab.page, tenant.id
    give_own_openai(gw, fake_openai, tenant)
    api.call("PUT", f"/tenants/{tid}/defaults/llm", {"model": "openai/gpt-4o-mini"})

    with step(tab, "Remove on the OpenAI card: the dialog warns about the default"):
        open_console(tab, gw, ADMIN_TOKEN)
        show_tenant(page, tenant)
        picker = default_picker(page, "System reasoning model")
        expect(picker).to_contain_text("gpt-4o-mini")
        expect(page.get_by_text(REMOVED)).to_have_count(0)
        card = provider_card(page, "OpenAI")
        remove = card.get_by_role("button", name="Remove")
        remove.click()
        dialog = open_dialog(page, "Remove OpenAI credentials?")
        expect(dialog).to_contain_text(DEFAULT_WARNING)
        expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()  # the safe choice first
        tab.shot("07-remove-warning")

    with step(tab, "Cancel keeps it"):
        dialog.get_by_role("button", name="Cancel").click()
        no_open_dialog(page)
        expect(remove).to_be_focused()
        assert [p["provider"] for p in api.get(f"/tenants/{tid}/providers")] == ["openai"]
        assert api.get(f"/tenants/{tid}/defaults")["llm"] == "openai/gpt-4o-mini"

    with step(tab, "Remove removes it; the picker shows the default as removed"):
        remove.click()
        dialog = open_dialog(page, "Remove OpenAI credentials?")
        expect(dialog).to_contain_text(DEFAULT_WARNING)
        with page.expect_response(lambda r: r.request.method == "DELETE"
                                  and r.url.endswith(f"/tenants/{tid}/providers/openai")) as removed_call:
            dialog.get_by_role("button", name="Remove", exact=True).click()
        assert removed_call.value.status == 200, removed_call.value.text()
        no_open_dialog(page)
        expect(toast(page, "OpenAI credentials removed")).to_be_visible()
        assert api.get(f"/tenants/{tid}/providers") == []
        choice = api.get(f"/tenants/{tid}/defaults/choices")["llm"]
        assert choice["current"] == "openai/gpt-4o-mini" and choice["usable"] is False, choice
        removed = page.get_by_text(REMOVED, exact=True)
        expect(removed).to_be_visible()
        assert is_red(removed), f"{REMOVED!r} is not shown in red"
        card = provider_card(page, "OpenAI")
        expect(card.get_by_role("button", name="Set up")).to_be_visible()
        expect(card).to_contain_text(re.compile(rf"Hosted trial\s*0 / {QUOTA} calls used"))  # back on the trial
        tab.shot("08-default-removed")

    with step(tab, "no CSP violation, nothing left the machine"):
        check_tabs(tab)


# -- 4. Escape closes a dialog, focus goes back to its opener ----------------------------------


def test_escape_closes_dialogs_focus_returns(gw: GatewayProcess, tenant: Tenant, tab: Tab) -> None:
    api, page, tid = Admin(gw), tab.page, tenant.id
    tokens_before = api.get(f"/tenants/{tid}/tokens")

    with step(tab, "Create token: Escape closes, nothing is created, focus back on the button"):
        open_console(tab, gw, ADMIN_TOKEN)
        show_tenant(page, tenant)
        opener = page.get_by_role("button", name="Create token")
        opener.click()
        dialog = open_dialog(page, "Create token")
        name = dialog.get_by_label("Name", exact=True)
        expect(name).to_be_focused()
        name.fill("never-created")
        page.keyboard.press("Escape")
        no_open_dialog(page)
        expect(opener).to_be_focused()
        assert api.get(f"/tenants/{tid}/tokens") == tokens_before

    with step(tab, "the credential dialog: Escape, focus back on Set up"):
        setup = provider_card(page, "OpenAI").get_by_role("button", name="Set up")
        setup.click()
        dialog = open_dialog(page, "Set up OpenAI")
        expect(dialog.get_by_label("API key")).to_be_focused()
        page.keyboard.press("Escape")
        no_open_dialog(page)
        expect(setup).to_be_focused()
        assert api.get(f"/tenants/{tid}/providers") == []

    with step(tab, "the model picker: Escape, focus back on the picker"):
        picker = default_picker(page, "System reasoning model")
        picker.click()
        expect(page.get_by_label("Search models")).to_be_focused()
        expect(picker).to_have_attribute("aria-expanded", "true")
        page.keyboard.press("Escape")
        expect(page.get_by_label("Search models")).to_have_count(0)
        expect(picker).to_be_focused()
        expect(picker).to_have_attribute("aria-expanded", "false")

    with step(tab, "no CSP violation, nothing left the machine"):
        check_tabs(tab)


# -- 5. a tenant's console session sees its own tenant only -------------------------------------


def test_tenant_session_cannot_see_other_tenants(gw: GatewayProcess, make_tenant: Callable[[], Tenant],
                                                 tab: Tab) -> None:
    api = Admin(gw)
    mine, theirs = make_tenant(), make_tenant()
    console_token = api.call("POST", f"/tenants/{mine.id}/tokens", {"name": "console-more", "kind": "console"},
                             status=201)["token"]

    with step(tab, "signed in with a console token: no tenant switcher"):
        page = open_console(tab, gw, console_token)
        expect(page.get_by_text(mine.name).first).to_be_visible()
        expect(provider_card(page, "OpenAI")).to_be_visible()
        expect(page.get_by_label("Tenant", exact=True)).to_have_count(0)
        expect(page.get_by_role("combobox", name="Tenant", exact=True)).to_have_count(0)
        expect(page.get_by_role("button", name="New tenant")).to_have_count(0)
        expect(page.get_by_role("button", name="Delete tenant")).to_have_count(0)
        assert theirs.name not in page.content()

    with step(tab, "the page's own fetches: another tenant is a 404, like one that does not exist"):
        status, listed = session_fetch(page, "/admin/v1/tenants")
        assert status == 200, listed
        listed = listed["data"] if isinstance(listed, dict) else listed
        assert [t["id"] for t in listed] == [mine.id], listed
        status, own = session_fetch(page, f"/admin/v1/tenants/{mine.id}/providers")
        assert status == 200, own
        nobody = "tn_" + secrets.token_hex(8)
        for ref in (theirs.id, theirs.name, nobody):
            for path in (f"/admin/v1/tenants/{ref}/providers", f"/admin/v1/tenants/{ref}/tokens",
                         f"/admin/v1/tenants/{ref}/quota"):
                status, body = session_fetch(page, path)
                assert status == 404, (path, status, body)
                # The same answer as for no tenant at all: nothing tells that it exists.
                assert body == {"error": {"message": f"tenant '{ref}' not found", "type": "invalid_request_error",
                                          "param": None, "code": "not_found"}}, body
        status, session = session_fetch(page, "/admin/v1/session")
        assert status == 200
        status, body = page_fetch(page, "PUT", f"/admin/v1/tenants/{theirs.id}/defaults/llm",
                                  {"model": "openai/gpt-3.5-turbo"}, session["csrf_token"])
        assert status == 404, (status, body)
        assert api.get(f"/tenants/{theirs.id}/defaults")["llm"] is None

    with step(tab, "no CSP violation, nothing left the machine"):
        check_tabs(tab)
