"""The settings console (/console/) in headless chromium, the issue's flow end to end,
selecting by the accessible names the console's contract fixes (the page's labels,
roles and dialog titles):

operator sign-in -> new tenant -> OpenAI set up with a wrong key (the fake's own error,
nothing stored) then the right one -> system reasoning model -> a Hugging Face model ->
a console token and an API token -> sign out -> sign in with the console token (one tenant
only) -> a chat through the official openai SDK with the API token -> the API token
revoked in the console -> the SDK gets 401.

Alongside: the session cookie's flags, the CSP header and no CSP violation, no token in a
URL or in web storage, no request off the machine; screenshots of the main states at
1280 px, one at 390 px and one in dark mode (see conftest.py for where they go).

The test body runs in the browser's thread (conftest.py): the admin API is called with
httpx (never `gw.cli`), the gateway is this module's own (`console_gateway`).
"""

from __future__ import annotations

import contextlib
import re
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import openai
from openai.types.chat import ChatCompletionMessageParam
from playwright.sync_api import Locator, Page, expect

from tests.browser.admin_api import AdminAPI
from tests.browser.conftest import MOBILE, Tab
from tests.e2e.harness import GatewayProcess
from tests.fakes.fixtures import FakeOpenAI
from tests.fakes.huggingface_fixtures import FakeHF

HF_MODEL = "meta-llama/Meta-Llama-3-8B-Instruct"  # the fake serves it (TGI Messages API)
HI: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say hello"}]
VALIDATION_TIMEOUT_MS = 10_000  # ~800 ms debounce + a call to the fake through the gateway

expect.set_options(timeout=10_000)


def eventually(check: Callable[[], Any], seconds: float, what: str) -> Any:
    """`check()`'s first truthy result within `seconds` (bounded polling)."""
    deadline = time.monotonic() + seconds
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} (waited {seconds}s)")
        time.sleep(0.1)


@contextlib.contextmanager
def step(tab: Tab, name: str) -> Iterator[None]:
    """A named step: on failure, a screenshot of the page and the step's name in the report."""
    try:
        yield
    except BaseException as exc:
        shot = "no screenshot"
        with contextlib.suppress(Exception):
            shot = str(tab.shot(f"step-failed-{name}"))
        exc.add_note(f"console flow: failed at step {name!r}; page screenshot: {shot}")
        raise


def open_dialog(page: Page, title: str) -> Locator:
    """The open modal <dialog> whose text holds `title`."""
    dialog = page.locator("dialog[open]").filter(has_text=title)
    expect(dialog).to_be_visible()
    assert dialog.evaluate("d => d.matches(':modal')"), f"the {title!r} dialog is not modal (showModal())"
    return dialog


def no_open_dialog(page: Page) -> None:
    expect(page.locator("dialog[open]")).to_have_count(0)


def sign_in(page: Page, token: str) -> None:
    field = page.get_by_label("Token", exact=True)
    expect(field).to_have_attribute("type", "password")
    field.fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def default_picker(page: Page, label: str) -> Locator:
    return page.get_by_role("combobox", name=label).or_(page.get_by_role("button", name=label))


def create_token(page: Page, name: str, kind_label: str) -> str:
    page.get_by_role("button", name="Create token").click()
    dialog = open_dialog(page, "Create")
    dialog.get_by_label("Name", exact=True).fill(name)
    dialog.get_by_label("Kind").select_option(label=kind_label)
    dialog.get_by_role("button", name="Create", exact=True).click()
    shown = page.get_by_label("New token")
    expect(shown).to_have_value(re.compile(r"^mp[ac]?-"))
    assert shown.evaluate("e => e.readOnly"), "the New token field is not readonly"
    expect(page.get_by_role("button", name="Copy")).to_be_visible()
    value = shown.input_value()
    page.get_by_role("button", name="Done").click()
    expect(page.get_by_label("New token")).to_have_count(0)
    return value


def session_fetch(page: Page, path: str) -> tuple[int, Any]:
    """GET `path` from the page, with its session cookie (what the page's own code can do)."""
    status, body = page.evaluate("""async (path) => {
        const r = await fetch(path, {credentials: "same-origin"});
        return [r.status, await r.json()];
    }""", path)
    return status, body


def chat(client: openai.OpenAI) -> Any:
    return client.chat.completions.create(model="default", messages=HI)


def test_console_flow(console_gateway: GatewayProcess, fake_openai_server: FakeOpenAI, fake_hf_server: FakeHF,
                      tab: Tab, new_tab: Callable[..., Tab]) -> None:
    gw, page, fake = console_gateway, tab.page, fake_openai_server
    admin_token = gw.admin_token()
    api = AdminAPI(gw, admin_token)
    console_url = gw.base_url + "/console/"
    good_key = f"sk-console-{uuid.uuid4().hex}"
    wrong_key = f"sk-wrong-{uuid.uuid4().hex}"
    tenant_name = f"console-{uuid.uuid4().hex[:8]}"
    secrets_made: dict[str, str] = {"admin token": admin_token}
    tabs = [tab]
    fake.state.api_keys.add(good_key)
    try:
        with step(tab, "open the console signed out"):
            response = page.goto(console_url)
            assert response is not None and response.status == 200
            csp = response.headers.get("content-security-policy")
            assert csp, "no Content-Security-Policy header on /console/"
            assert "'unsafe-inline'" not in csp, csp
            assert re.search(r"(^|;)\s*(script-src|default-src)\s", csp), f"the CSP does not restrict scripts: {csp}"
            expect(page.get_by_label("Token", exact=True)).to_be_visible()
            tab.shot("01-signed-out")

        with step(tab, "a wrong token is refused"):
            page.get_by_label("Token", exact=True).fill("mpa-" + uuid.uuid4().hex * 2)
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_role("alert")).to_be_visible()
            expect(page.get_by_role("button", name="Sign out")).to_have_count(0)
            assert not [c for c in tab.context.cookies() if c["name"] == "mp_console"]

        with step(tab, "sign in as the operator"):
            sign_in(page, admin_token)
            expect(page.get_by_text("Operator", exact=True).first).to_be_visible()
            [cookie] = [c for c in tab.context.cookies() if c["name"] == "mp_console"]
            assert cookie["httpOnly"] is True
            assert cookie["sameSite"] == "Strict"
            assert cookie["path"] == "/admin/v1"
            assert "mp_console" not in page.evaluate("document.cookie")
            # Not even a page under /admin/v1 can read it (HttpOnly, not just the path).
            status, session = session_fetch(page, "/admin/v1/session")
            assert status == 200 and session["principal"] == {"kind": "operator"}, session
            secrets_made["operator csrf token"] = session["csrf_token"]

        with step(tab, "create a tenant"):
            page.get_by_role("button", name="New tenant").click()
            dialog = open_dialog(page, "Tenant name")
            dialog.get_by_label("Tenant name").fill(tenant_name)
            dialog.get_by_role("button", name="Create", exact=True).click()
            no_open_dialog(page)
            tenant = eventually(lambda: next((t for t in api.get("/tenants") if t["name"] == tenant_name), None),
                                5, f"tenant {tenant_name} was not created")
            tid = tenant["id"]
            select = page.get_by_label("Tenant", exact=True)
            if select.input_value() != tid:
                select.select_option(value=tid)
            expect(select).to_have_value(tid)
            openai_card = page.get_by_role("article", name="OpenAI", exact=True)
            expect(openai_card).to_be_visible()
            missing = re.compile(r"^\s*No default model set for:")
            banner = page.get_by_role("alert").filter(has_text=missing).or_(
                page.get_by_role("status").filter(has_text=missing))
            expect(banner).to_contain_text("System reasoning model")
            expect(banner).to_contain_text("Embedding model")
            expect(banner).to_contain_text("Speech-to-text model")
            expect(page.get_by_role("heading", name="Providers")).to_be_visible()
            expect(page.get_by_role("heading", name="To be configured")).to_be_visible()
            link = openai_card.get_by_role("link", name="Get your API key")
            expect(link).to_have_attribute("href", "https://platform.openai.com/api-keys")
            expect(link).to_have_attribute("rel", re.compile(r"(?=.*\bnoopener\b)(?=.*\bnoreferrer\b)"))
            tab.shot("02-tenant-overview")

        with step(tab, "OpenAI with a wrong key: the fake's own error, nothing stored"):
            openai_card.get_by_role("button", name="Set up").click()
            dialog = open_dialog(page, "Set up OpenAI")
            key_field = dialog.get_by_label("API key")
            expect(key_field).to_have_attribute("type", "password")
            expect(key_field).to_have_attribute("required", "")
            dialog.get_by_label("API base URL").fill(fake.v1_url)
            key_field.fill(wrong_key)
            alert = dialog.get_by_role("alert").filter(has_text="Validation failed")
            expect(alert).to_contain_text(re.compile(r"^\s*Validation failed: .*Incorrect API key provided"),
                                          timeout=VALIDATION_TIMEOUT_MS)
            expect(dialog).to_contain_text("encrypted with this tenant's own RSA key pair")
            tab.shot("03-credential-error")
            with page.expect_response(lambda r: r.request.method == "PUT"
                                      and r.url.endswith(f"/tenants/{tid}/providers/openai")) as saved:
                dialog.get_by_role("button", name="Save").click()
            assert saved.value.status == 400, saved.value.text()
            assert saved.value.json()["error"]["code"] == "credential_validation_failed"
            assert saved.value.request.post_data_json.get("validate") is True
            expect(dialog).to_be_visible()
            expect(alert).to_contain_text("Incorrect API key provided")
            assert api.get(f"/tenants/{tid}/providers") == []

        with step(tab, "OpenAI with the right key: valid, saved"):
            key_field.fill(good_key)
            expect(dialog.get_by_text("Credentials are valid")).to_be_visible(timeout=VALIDATION_TIMEOUT_MS)
            expect(dialog.get_by_text("Validation failed")).to_have_count(0)
            tab.shot("04-credential-valid")
            with page.expect_response(lambda r: r.request.method == "PUT"
                                      and r.url.endswith(f"/tenants/{tid}/providers/openai")) as saved:
                dialog.get_by_role("button", name="Save").click()
            assert saved.value.status == 200, saved.value.text()
            no_open_dialog(page)
            [stored] = api.get(f"/tenants/{tid}/providers")
            assert stored["provider"] == "openai" and stored["fields"]["base_url"] == fake.v1_url
            assert stored["fields"]["api_key"] != good_key and good_key[-4:] in stored["fields"]["api_key"]
            openai_card = page.get_by_role("article", name="OpenAI", exact=True)
            expect(openai_card.get_by_role("button", name="Edit")).to_be_visible()
            expect(openai_card.get_by_role("button", name="Remove")).to_be_visible()
            expect(openai_card).to_contain_text(stored["fields"]["api_key"])
            assert good_key not in page.content()

        with step(tab, "pick the system reasoning model"):
            default_picker(page, "System reasoning model").click()
            page.get_by_label("Search models").fill("gpt-4o-mini")
            page.get_by_role("option", name="gpt-4o-mini", exact=True).click()
            expect(page.get_by_role("status").filter(has_text="Modified successfully")).to_be_visible()
            eventually(lambda: api.get(f"/tenants/{tid}/defaults").get("llm") == "openai/gpt-4o-mini", 5,
                       "GET T/defaults does not show openai/gpt-4o-mini as the llm default")
            expect(banner).not_to_contain_text("System reasoning model")
            expect(banner).to_contain_text("Embedding model")

        with step(tab, "add a Hugging Face model"):
            registry = {p["name"]: p for p in api.get("/providers")}
            fields = registry["huggingface"]["credential_fields"]
            [secret] = [f for f in fields if f["secret"] and f["required"]]
            [base_url] = [f for f in fields if f["name"] == "base_url"]
            hf_card = page.get_by_role("article", name="Hugging Face", exact=True)
            hf_card.get_by_role("button", name="Add model").click()
            dialog = open_dialog(page, "Add model to Hugging Face")
            dialog.get_by_label("Model name").fill(HF_MODEL)
            dialog.get_by_label("Model type").select_option("llm")
            token_field = dialog.get_by_label(secret["label"])
            expect(token_field).to_have_attribute("name", secret["name"])
            expect(token_field).to_have_attribute("type", "password")
            dialog.get_by_label(base_url["label"]).fill(fake_hf_server.base_url)
            token_field.fill(fake_hf_server.token)
            expect(dialog.get_by_text("Credentials are valid")).to_be_visible(timeout=VALIDATION_TIMEOUT_MS)
            with page.expect_response(lambda r: r.request.method == "POST"
                                      and r.url.endswith(f"/tenants/{tid}/models")) as saved:
                dialog.get_by_role("button", name="Save").click()
            assert saved.value.status == 201, saved.value.text()
            no_open_dialog(page)
            models = api.get(f"/tenants/{tid}/models")
            assert [(m["provider"], m["model"], m["type"]) for m in models] == [("huggingface", HF_MODEL, "llm")]
            assert fake_hf_server.token not in str(models)
            expect(hf_card.get_by_role("button", name=f"Edit {HF_MODEL}")).to_be_visible()
            expect(hf_card.get_by_role("button", name=f"Remove {HF_MODEL}")).to_be_visible()

        with step(tab, "create a console token and an API token"):
            expect(page.get_by_role("heading", name="Tokens")).to_be_visible()
            console_token = create_token(page, "console-e2e", "Console token")
            assert console_token.startswith("mpc-"), console_token[:4]
            secrets_made["console token"] = console_token
            api_token = create_token(page, "sdk-e2e", "API token")
            assert api_token.startswith("mp-"), api_token[:4]
            secrets_made["API token"] = api_token
            listed = {t["name"]: t for t in api.get(f"/tenants/{tid}/tokens")}
            assert listed["console-e2e"]["kind"] == "console" and listed["sdk-e2e"]["kind"] == "api"
            expect(page.get_by_role("button", name="Revoke sdk-e2e")).to_be_visible()
            page.get_by_role("heading", name="Tokens").scroll_into_view_if_needed()
            tab.shot("05-tokens")

        with step(tab, "sign out"):
            page.get_by_role("button", name="Sign out").click()
            expect(page.get_by_label("Token", exact=True)).to_be_visible()
            assert not [c for c in tab.context.cookies() if c["name"] == "mp_console"], "the cookie was not dropped"
            assert session_fetch(page, "/admin/v1/session")[0] == 401

        with step(tab, "sign in with the console token: one tenant only"):
            sign_in(page, console_token)
            expect(page.get_by_text(tenant_name).first).to_be_visible()
            expect(page.get_by_label("Tenant", exact=True)).to_have_count(0)
            expect(page.get_by_role("button", name="New tenant")).to_have_count(0)
            expect(page.get_by_role("button", name="Delete tenant")).to_have_count(0)
            status, tenants = session_fetch(page, "/admin/v1/tenants")
            assert status == 200, tenants
            tenants = tenants["data"] if isinstance(tenants, dict) else tenants
            assert [t["id"] for t in tenants] == [tid]
            status, session = session_fetch(page, "/admin/v1/session")
            assert session["principal"] == {"kind": "tenant", "tenant": {"id": tid, "name": tenant_name}}, session
            secrets_made["tenant csrf token"] = session["csrf_token"]

        with step(tab, "390 px wide and dark mode"):
            narrow = new_tab(viewport=MOBILE)
            tabs.append(narrow)
            narrow.page.goto(console_url)
            sign_in(narrow.page, console_token)
            expect(narrow.page.get_by_role("article", name="OpenAI", exact=True)).to_be_visible()
            width = narrow.page.evaluate("document.documentElement.scrollWidth")
            narrow.shot("06-narrow-390")
            assert width <= MOBILE["width"], f"the page scrolls sideways at 390 px (scrollWidth {width})"
            dark = new_tab(color_scheme="dark")
            tabs.append(dark)
            dark.page.goto(console_url)
            sign_in(dark.page, console_token)
            expect(dark.page.get_by_role("article", name="OpenAI", exact=True)).to_be_visible()
            dark.shot("07-dark")

        with step(tab, "a chat through the openai SDK with the API token"):
            client = openai.OpenAI(base_url=gw.v1_url, api_key=api_token, max_retries=0, timeout=10)
            sent_before = len(fake.state.requests_to("/v1/chat/completions"))

            def answered() -> Any:
                with contextlib.suppress(openai.AuthenticationError, openai.NotFoundError, openai.BadRequestError):
                    return chat(client)
                return None
            reply = eventually(answered, 5, "the API token's chat with model 'default' never succeeded")
            assert reply.choices[0].message.content
            sent = fake.state.requests_to("/v1/chat/completions")[sent_before:]
            assert any(r.headers.get("authorization") == f"Bearer {good_key}" for r in sent), \
                "the fake OpenAI did not receive the chat with the tenant's key"

        with step(tab, "revoke the API token in the console: the SDK gets 401"):
            page.get_by_role("button", name="Revoke sdk-e2e").click()
            dialog = open_dialog(page, "Revoke")
            dialog.get_by_role("button", name="Revoke", exact=True).click()
            no_open_dialog(page)

            def refused() -> bool:
                try:
                    chat(client)
                except openai.AuthenticationError as err:
                    return err.status_code == 401
                return False
            # Every worker must notice (they poll the change counter): ~1 s, bounded.
            eventually(refused, 3, "the revoked API token still gets answers")
            time.sleep(0.5)
            assert refused(), "a worker still accepts the revoked API token"
            assert {t["name"]: t for t in api.get(f"/tenants/{tid}/tokens")}["sdk-e2e"]["revoked"] is True

        with step(tab, "usage after a reload (the session survives it)"):
            page.reload()
            expect(page.get_by_role("button", name="Sign out")).to_be_visible()
            heading = page.get_by_role("heading", name="Usage")
            heading.scroll_into_view_if_needed()
            expect(page.get_by_role("img", name="Calls per day, last 30 days")).to_be_visible()
            tab.shot("08-usage")

        with step(tab, "nothing leaked, nothing left the machine"):
            for t in tabs:
                storage, urls = t.storage(), t.navigations + t.requests
                for what, value in secrets_made.items():
                    assert value not in storage, f"the {what} is in web storage of {t.prefix}"
                    assert not [u for u in urls if value in u], f"the {what} appears in a URL"
                assert t.left_loopback() == [], f"requests left 127.0.0.1: {t.left_loopback()}"
                assert t.csp_violations() == [], f"CSP violations: {t.csp_violations()}"
                assert t.page_errors == [], f"uncaught page errors: {t.page_errors}"
    finally:
        fake.state.api_keys.discard(good_key)
