"""The admin API as the console uses it (issue 12), on the session gateway: console tokens
and their scope, validation by a real call, secrets kept on edit, the default pickers'
choices, tokens' last use, and the static page's safety. The browser itself is driven in
tests/browser; cookies, CSRF and sign-in at the HTTP level are in tests/browser/test_console_http.py."""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.harness import GatewayProcess
from tests.e2e.test_admin_api import Admin, within
from tests.fakes.fixtures import FakeOpenAI

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
def tenant(gw: GatewayProcess) -> Iterator[str]:
    name = "con-" + uuid.uuid4().hex[:8]
    gw.cli("tenants", "create", name)
    try:
        yield name
    finally:
        gw.cli("tenants", "delete", name, check=False)


def console_token(admin: Admin, tenant: str) -> str:
    minted = admin("POST", f"/tenants/{tenant}/tokens", json={"name": "console", "kind": "console"})
    assert minted.status_code == 201, minted.text
    assert minted.json()["kind"] == "console"
    return str(minted.json()["token"])


def test_console_tokens_are_created_by_cli_and_listed_with_their_kind(gw: GatewayProcess, tenant: str) -> None:
    token = gw.cli("tokens", "create", tenant, "--console", "--name", "laptop").out.strip()
    assert token.startswith("mpc-") and len(token) > 40
    listed = Admin(gw)("GET", f"/tenants/{tenant}/tokens").json()["data"]
    assert [(t["name"], t["kind"], t["last_used_at"]) for t in listed] == [("laptop", "console", None)]
    assert listed[0]["hint"] == f"{token[:6]}...{token[-4:]}"
    assert Admin(gw)("POST", f"/tenants/{tenant}/tokens", json={"kind": "root"}).status_code == 400


def test_a_console_token_is_no_api_token_and_an_api_token_manages_nothing(gw: GatewayProcess, tenant: str) -> None:
    admin = Admin(gw)
    token = console_token(admin, tenant)
    with httpx.Client(base_url=gw.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=10) as c:
        assert c.get("/v1/models").status_code == 401
        assert c.post("/v1/chat/completions", json={"model": "default", "messages": HI}).status_code == 401
    api = admin("POST", f"/tenants/{tenant}/tokens", json={"name": "app"}).json()["token"]
    with httpx.Client(base_url=gw.base_url + "/admin/v1", headers={"Authorization": f"Bearer {api}"}, timeout=10) as c:
        assert c.get(f"/tenants/{tenant}/providers").status_code == 401
        assert c.post("/session", json={"token": api}).status_code == 401


def test_a_console_token_manages_its_own_tenant_only(gw: GatewayProcess, tenant: str) -> None:
    admin = Admin(gw)
    mine = console_token(admin, tenant)
    other_token = admin("POST", "/tenants/beta/tokens", json={"name": "victim"}).json()["id"]
    scoped = Admin(gw, mine)
    assert [t["name"] for t in scoped("GET", "/tenants").json()["data"]] == [tenant]
    assert scoped("GET", f"/tenants/{tenant}/defaults/choices").status_code == 200
    assert scoped("GET", "/providers").status_code == 200
    for method, path, body in (("GET", "/tenants/beta/providers", None), ("GET", "/tenants/acme/tokens", None),
                               ("PUT", "/tenants/beta/defaults/llm", {"model": "openai/gpt-4o"}),
                               ("DELETE", f"/tokens/{other_token}", None),
                               ("GET", "/usage?tenant=beta", None)):
        response = scoped(method, path, json=body) if body else scoped(method, path)
        assert response.status_code == 404, (method, path, response.text)
    for method, path, body in (("POST", "/tenants", {"name": "sneaky"}), ("DELETE", f"/tenants/{tenant}", None),
                               ("PUT", f"/tenants/{tenant}/quota/openai", {"limit": 99})):
        response = scoped(method, path, json=body) if body else scoped(method, path)
        assert response.status_code == 403 and response.json()["error"]["code"] == "operator_only", path
    assert "sneaky" not in gw.cli("tenants", "list").out
    assert not any(t["revoked"] for t in admin("GET", "/tenants/beta/tokens").json()["data"] if t["id"] == other_token)
    # Its own usage, whatever the query asks for by omission.
    assert scoped("GET", "/usage").json()["object"] == "usage.summary"


def test_validation_by_a_real_call_and_save_that_stores_nothing_on_failure(
        gw: GatewayProcess, tenant: str, fake_openai: FakeOpenAI) -> None:
    admin = Admin(gw)
    good = "sk-test-console-" + secrets.token_hex(10)
    bad = "sk-test-wrong-" + secrets.token_hex(10)
    fake_openai.state.api_keys.add(good)
    wrong = admin("POST", f"/tenants/{tenant}/providers/openai/validate",
                  json={"credentials": {"api_key": bad, "base_url": fake_openai.v1_url}})
    assert wrong.status_code == 400, wrong.text
    error = wrong.json()["error"]
    assert error["code"] == "credential_validation_failed"
    assert error["message"].startswith("Validation failed") and "Incorrect API key provided" in error["message"]
    saved = admin("PUT", f"/tenants/{tenant}/providers/openai",
                  json={"credentials": {"api_key": bad, "base_url": fake_openai.v1_url}, "validate": True})
    assert saved.status_code == 400 and saved.json()["error"]["code"] == "credential_validation_failed"
    assert admin("GET", f"/tenants/{tenant}/providers").json()["data"] == []
    ok = admin("POST", f"/tenants/{tenant}/providers/openai/validate",
               json={"credentials": {"api_key": good, "base_url": fake_openai.v1_url}})
    assert ok.status_code == 200 and ok.json()["valid"] is True
    assert admin("PUT", f"/tenants/{tenant}/providers/openai",
                 json={"credentials": {"api_key": good, "base_url": fake_openai.v1_url}, "validate": True}
                 ).status_code == 200
    assert [p["provider"] for p in admin("GET", f"/tenants/{tenant}/providers").json()["data"]] == ["openai"]
    # The metadata service is no place to validate against.
    refused = admin("POST", f"/tenants/{tenant}/providers/openai/validate",
                    json={"credentials": {"api_key": good, "base_url": "http://169.254.169.254/v1"}})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "credential_validation_failed"
    admin.assert_no_secret(good, bad)


def test_editing_keeps_a_stored_secret_only_for_the_same_destination(
        gw: GatewayProcess, tenant: str, fake_openai: FakeOpenAI) -> None:
    admin = Admin(gw)
    key = "sk-test-keep-" + secrets.token_hex(10)
    fake_openai.state.api_keys.add(key)
    base = {"api_key": key, "base_url": fake_openai.v1_url}
    assert admin("PUT", f"/tenants/{tenant}/providers/openai", json={"credentials": base}).status_code == 200
    # The edit form sends the secret empty: kept, and the kept key still works (validated for real).
    kept = admin("PUT", f"/tenants/{tenant}/providers/openai",
                 json={"credentials": {"api_key": "", "base_url": fake_openai.v1_url}, "keep_secrets": True,
                       "validate": True})
    assert kept.status_code == 200, kept.text
    assert kept.json()["fields"]["api_key"] == f"sk-...{key[-4:]}"
    # Pointing the stored key somewhere else needs the key typed again.
    moved = admin("PUT", f"/tenants/{tenant}/providers/openai",
                  json={"credentials": {"api_key": "", "base_url": "http://127.0.0.1:9/v1"}, "keep_secrets": True})
    assert moved.status_code == 400 and moved.json()["error"]["code"] == "secret_required"
    assert "api_key" in moved.json()["error"]["message"]
    assert admin("GET", f"/tenants/{tenant}/providers").json()["data"][0]["fields"]["base_url"] == fake_openai.v1_url
    # Without keep_secrets an empty required secret is still an error, as before.
    assert admin("PUT", f"/tenants/{tenant}/providers/openai",
                 json={"credentials": {"api_key": "", "base_url": fake_openai.v1_url}}).status_code == 400
    admin.assert_no_secret(key)


def test_default_choices_list_what_is_usable_and_flag_a_removed_default(
        gw: GatewayProcess, tenant: str, fake_openai: FakeOpenAI) -> None:
    admin = Admin(gw)
    empty = admin("GET", f"/tenants/{tenant}/defaults/choices").json()
    assert {t: (c["current"], c["options"]) for t, c in empty.items()} == {
        "llm": (None, []), "text-embedding": (None, []), "speech2text": (None, [])}
    gw.cli("providers", "set", tenant, "openai", "api_key=sk-test-choices-0000000000000001",
           f"base_url={fake_openai.v1_url}")
    gw.cli("models", "add", tenant, "huggingface", "BAAI/bge-small-en-v1.5", "--type", "text-embedding",
           "api_token=hf_test_choices_00000000000001")
    choices = admin("GET", f"/tenants/{tenant}/defaults/choices").json()
    llm = {(o["provider"], o["model"], o["source"]) for o in choices["llm"]["options"]}
    assert ("openai", "gpt-4o-mini", "own") in llm
    assert all(o["display_name"] == "OpenAI" for o in choices["llm"]["options"])
    embedding = {(o["provider"], o["model"]) for o in choices["text-embedding"]["options"]}
    assert ("huggingface", "BAAI/bge-small-en-v1.5") in embedding and ("openai", "text-embedding-3-small") in embedding
    assert admin("PUT", f"/tenants/{tenant}/defaults/text-embedding",
                 json={"model": "huggingface/BAAI/bge-small-en-v1.5"}).status_code == 200
    assert admin("GET", f"/tenants/{tenant}/defaults/choices").json()["text-embedding"]["usable"] is True
    gw.cli("models", "remove", tenant, "huggingface", "BAAI/bge-small-en-v1.5")
    after = admin("GET", f"/tenants/{tenant}/defaults/choices").json()["text-embedding"]
    assert after["current"] == "huggingface/BAAI/bge-small-en-v1.5" and after["usable"] is False
    # An unusable choice is refused by the server, whatever the page offers.
    refused = admin("PUT", f"/tenants/{tenant}/defaults/llm", json={"model": "anthropic/claude-3-5-haiku-latest"})
    assert refused.status_code == 400


def test_tokens_show_when_they_were_last_used(gw: GatewayProcess) -> None:
    admin = Admin(gw)
    minted = admin("POST", "/tenants/acme/tokens", json={"name": "last-used"}).json()
    try:
        def last_used() -> int | None:
            rows = admin("GET", "/tenants/acme/tokens").json()["data"]
            return next(t["last_used_at"] for t in rows if t["id"] == minted["id"])
        assert last_used() is None
        before = int(time.time())
        with httpx.Client(base_url=gw.v1_url, headers={"Authorization": f"Bearer {minted['token']}"}) as c:
            assert c.get("/models").status_code == 200
            assert c.post("/chat/completions", json={"model": "default", "messages": HI}).status_code == 200
        within(3.0, lambda: (last_used() or 0) >= before)  # written with the usage batch (~1 s)
    finally:
        admin("DELETE", f"/tokens/{minted['id']}")


@pytest.mark.parametrize("path", ["/console/../pyproject.toml", "/console/%2e%2e/console.py",
                                  "/console/..%2fconsole.py", "/console/assets/../../console.py",
                                  "/console/.hidden", "/console/nope.html", "/console/assets/%00.js"])
def test_the_console_serves_its_own_files_only(gw: GatewayProcess, path: str) -> None:
    response = httpx.get(gw.base_url + path, timeout=10)
    assert response.status_code == 404
    assert "import " not in response.text


def test_the_console_page_comes_with_a_strict_policy(gw: GatewayProcess) -> None:
    assert httpx.get(gw.base_url + "/console", timeout=10).headers["location"] == "/console/"
    page = httpx.get(gw.base_url + "/console/", timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "<script>" not in page.text.replace(" ", "").lower()  # modules from files only
    assert "http://" not in page.text and "https://" not in page.text  # nothing from elsewhere


def test_an_operator_session_ends_when_the_admin_token_is_reset(gw: GatewayProcess) -> None:
    with httpx.Client(base_url=gw.base_url + "/admin/v1", timeout=10) as browser:
        signed_in = browser.post("/session", json={"token": gw.admin_token()})
        assert signed_in.status_code == 200 and signed_in.json()["principal"] == {"kind": "operator"}
        assert browser.get("/tenants").status_code == 200
        new_token = gw.cli("admin-token", "reset").out.strip()
        within(3.0, lambda: browser.get("/tenants").status_code == 401)
        assert Admin(gw, new_token)("GET", "/tenants").status_code == 200
