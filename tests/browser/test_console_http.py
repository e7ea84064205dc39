"""The console's sign-in and session at the HTTP level (httpx, no browser), against
the console's contract: the session cookie's flags, CSRF on cookie requests, which
tokens may sign in, sign-out and revocation ending a session server-side.

Every request is made by a fresh client (`httpx.request`), with the cookie given by hand:
nothing is remembered between requests unless a test sends it again (that is how an old
cookie is replayed)."""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.e2e.harness import GatewayProcess

SESSION = "/admin/v1/session"
COOKIE = "mp_console"
HI = [{"role": "user", "content": "hi"}]


def call(gw: GatewayProcess, method: str, path: str, *, cookie: str | None = None, csrf: str | None = None,
         bearer: str | None = None, json: Any = None) -> httpx.Response:
    headers = {}
    if cookie is not None:
        headers["Cookie"] = f"{COOKIE}={cookie}"
    if csrf is not None:
        headers["X-CSRF-Token"] = csrf
    if bearer is not None:
        headers["Authorization"] = f"Bearer {bearer}"
    return httpx.request(method, gw.base_url + path, headers=headers, json=json, timeout=15)


def items(response: httpx.Response) -> list[Any]:
    body = response.json()
    return body["data"] if isinstance(body, dict) else body


def set_cookies(response: httpx.Response, name: str = COOKIE) -> list[dict[str, str | bool]]:
    """The response's Set-Cookie headers for `name`, each as {"value": ..., attribute: value | True}
    (attribute names lower-cased)."""
    found = []
    for header in response.headers.get_list("set-cookie"):
        first, *attributes = [part.strip() for part in header.split(";")]
        key, _, value = first.partition("=")
        if key != name:
            continue
        cookie: dict[str, str | bool] = {"value": value}
        for attribute in attributes:
            k, eq, v = attribute.partition("=")
            cookie[k.strip().lower()] = v.strip() if eq else True
        found.append(cookie)
    return found


@dataclass
class Session:
    cookie: str
    csrf: str
    body: dict[str, Any]


def sign_in(gw: GatewayProcess, token: str) -> Session:
    response = call(gw, "POST", SESSION, json={"token": token})
    assert response.status_code == 200, response.text
    cookies = set_cookies(response)
    assert len(cookies) == 1, response.headers.get_list("set-cookie")
    body = response.json()
    return Session(str(cookies[0]["value"]), body["csrf_token"], body)


def eventually(check: Callable[[], bool], seconds: float = 3.0, what: str = "condition") -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: still false after {seconds}s")
        time.sleep(0.05)


@dataclass
class Setup:
    gw: GatewayProcess
    admin: str
    tenant: dict[str, Any]
    other: dict[str, Any]

    def token(self, kind: str, tenant: dict[str, Any] | None = None) -> dict[str, Any]:
        t = (tenant or self.tenant)["id"]
        made = call(self.gw, "POST", f"/admin/v1/tenants/{t}/tokens", bearer=self.admin,
                    json={"name": f"{kind}-{uuid.uuid4().hex[:6]}", "kind": kind})
        assert made.status_code == 201, made.text
        return made.json()


@pytest.fixture(scope="module")
def setup(console_gateway: GatewayProcess) -> Iterator[Setup]:
    gw, admin = console_gateway, console_gateway.admin_token()
    made = []
    for prefix in ("http", "other"):
        response = call(gw, "POST", "/admin/v1/tenants", bearer=admin, json={"name": f"{prefix}-{uuid.uuid4().hex[:8]}"})
        assert response.status_code == 201, response.text
        made.append(response.json())
    yield Setup(gw, admin, made[0], made[1])
    for tenant in made:
        call(gw, "DELETE", f"/admin/v1/tenants/{tenant['id']}", bearer=admin)


def test_sign_in_sets_an_httponly_strict_cookie_for_the_admin_api_only(setup: Setup) -> None:
    response = call(setup.gw, "POST", SESSION, json={"token": setup.admin})
    assert response.status_code == 200, response.text
    [cookie] = set_cookies(response)
    assert cookie.get("httponly") is True
    assert str(cookie.get("samesite", "")).lower() == "strict"
    assert cookie.get("path") == "/admin/v1"
    assert "domain" not in cookie  # host-only
    assert setup.admin not in str(cookie["value"])
    body = response.json()
    assert body["principal"] == {"kind": "operator"}
    assert isinstance(body["csrf_token"], str) and len(body["csrf_token"]) >= 16
    assert body["csrf_token"] != cookie["value"]
    assert isinstance(body["expires_at"], int) and body["expires_at"] > time.time()
    assert setup.admin not in response.text
    # GET hands the page the same CSRF token again (after a reload).
    again = call(setup.gw, "GET", SESSION, cookie=str(cookie["value"]))
    assert again.status_code == 200, again.text
    assert again.json()["csrf_token"] == body["csrf_token"]
    assert again.json()["principal"] == {"kind": "operator"}


# Made per test, not at collection: every xdist worker must collect the same test ids.
WRONG_TOKENS: dict[str, Callable[[], str]] = {
    "admin-like": lambda: "mpa-" + secrets.token_urlsafe(40),
    "console-like": lambda: "mpc-" + secrets.token_urlsafe(40),
    "no-prefix": lambda: "not-a-token",
    "too-long": lambda: "mpc-" + "x" * 296,
}


@pytest.mark.parametrize("kind", list(WRONG_TOKENS))
def test_a_wrong_token_cannot_sign_in_and_nothing_is_set(setup: Setup, kind: str) -> None:
    token = WRONG_TOKENS[kind]()
    response = call(setup.gw, "POST", SESSION, json={"token": token})
    assert response.status_code == 401, response.text
    assert response.headers.get_list("set-cookie") == []
    error = response.json()["error"]
    assert error["message"] and token not in error["message"]


def test_an_api_token_cannot_sign_in(setup: Setup) -> None:
    api = setup.token("api")
    assert api["token"].startswith("mp-")
    response = call(setup.gw, "POST", SESSION, json={"token": api["token"]})
    assert response.status_code == 401, response.text
    assert response.headers.get_list("set-cookie") == []
    # Nor manage anything with it as a bearer token.
    assert call(setup.gw, "GET", "/admin/v1/tenants", bearer=api["token"]).status_code == 401


def test_a_console_token_cannot_call_the_v1_api(setup: Setup) -> None:
    console = setup.token("console")
    assert console["token"].startswith("mpc-")
    chat = call(setup.gw, "POST", "/v1/chat/completions", bearer=console["token"],
                json={"model": "default", "messages": HI})
    assert chat.status_code == 401, chat.text
    assert call(setup.gw, "GET", "/v1/models", bearer=console["token"]).status_code == 401
    # ...while it does manage its tenant through the admin API.
    assert call(setup.gw, "GET", f"/admin/v1/tenants/{setup.tenant['id']}/tokens",
                bearer=console["token"]).status_code == 200


def test_cookie_requests_that_change_state_need_the_csrf_header(setup: Setup) -> None:
    gw, session = setup.gw, sign_in(setup.gw, setup.admin)
    name = f"csrf-{uuid.uuid4().hex[:8]}"

    def listed() -> set[str]:
        return {t["name"] for t in items(call(gw, "GET", "/admin/v1/tenants", bearer=setup.admin))}

    # A GET needs no CSRF header.
    assert call(gw, "GET", "/admin/v1/tenants", cookie=session.cookie).status_code == 200
    refused = call(gw, "POST", "/admin/v1/tenants", cookie=session.cookie, json={"name": name})
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["message"]
    wrong = call(gw, "POST", "/admin/v1/tenants", cookie=session.cookie, csrf="x" + session.csrf, json={"name": name})
    assert wrong.status_code == 403, wrong.text
    assert name not in listed()
    made = call(gw, "POST", "/admin/v1/tenants", cookie=session.cookie, csrf=session.csrf, json={"name": name})
    assert made.status_code == 201, made.text
    assert name in listed()
    # DELETE too: refused without, allowed with.
    tenant = made.json()["id"]
    assert call(gw, "DELETE", f"/admin/v1/tenants/{tenant}", cookie=session.cookie).status_code == 403
    assert name in listed()
    assert call(gw, "DELETE", f"/admin/v1/tenants/{tenant}", cookie=session.cookie,
                csrf=session.csrf).status_code == 200
    assert name not in listed()
    # Signing out is a state change as well.
    assert call(gw, "DELETE", SESSION, cookie=session.cookie).status_code == 403
    assert call(gw, "GET", SESSION, cookie=session.cookie).status_code == 200


def test_sign_out_ends_the_session_on_the_server(setup: Setup) -> None:
    gw, session = setup.gw, sign_in(setup.gw, setup.admin)
    out = call(gw, "DELETE", SESSION, cookie=session.cookie, csrf=session.csrf)
    assert out.status_code == 200, out.text
    assert out.json() == {"signed_out": True}
    # The browser is told to drop the cookie...
    [cleared] = set_cookies(out)
    assert cleared["value"] in ("", '""') or cleared.get("max-age") == "0"
    # ...and replaying the old one gets nowhere.
    assert call(gw, "GET", SESSION, cookie=session.cookie).status_code == 401
    assert call(gw, "GET", "/admin/v1/tenants", cookie=session.cookie).status_code == 401
    replay = call(gw, "POST", "/admin/v1/tenants", cookie=session.cookie, csrf=session.csrf,
                  json={"name": f"replay-{uuid.uuid4().hex[:8]}"})
    assert replay.status_code == 401, replay.text


def test_revoking_the_console_token_ends_its_session(setup: Setup) -> None:
    gw, console = setup.gw, setup.token("console")
    session = sign_in(gw, console["token"])
    assert session.body["principal"] == {"kind": "tenant", "tenant": {"id": setup.tenant["id"],
                                                                      "name": setup.tenant["name"]}}
    assert call(gw, "GET", SESSION, cookie=session.cookie).status_code == 200
    revoked = call(gw, "DELETE", f"/admin/v1/tokens/{console['id']}", bearer=setup.admin)
    assert revoked.status_code == 200, revoked.text
    eventually(lambda: call(gw, "GET", SESSION, cookie=session.cookie).status_code == 401,
               what="the revoked console token's session is still accepted")
    assert call(gw, "GET", f"/admin/v1/tenants/{setup.tenant['id']}/tokens", cookie=session.cookie).status_code == 401
    assert call(gw, "GET", "/admin/v1/tenants", bearer=console["token"]).status_code == 401
    again = call(gw, "POST", SESSION, json={"token": console["token"]})
    assert again.status_code == 401 and again.headers.get_list("set-cookie") == []


def test_a_console_session_sees_and_manages_only_its_tenant(setup: Setup) -> None:
    gw, console = setup.gw, setup.token("console")
    session = sign_in(gw, console["token"])
    tenants = items(call(gw, "GET", "/admin/v1/tenants", cookie=session.cookie))
    assert [t["id"] for t in tenants] == [setup.tenant["id"]]
    other = setup.other["id"]
    for path in (f"/admin/v1/tenants/{other}/providers", f"/admin/v1/tenants/{other}/tokens",
                 f"/admin/v1/usage?tenant={other}"):
        assert call(gw, "GET", path, cookie=session.cookie).status_code in (403, 404), path
    made = call(gw, "POST", f"/admin/v1/tenants/{other}/tokens", cookie=session.cookie, csrf=session.csrf,
                json={"name": "intruder", "kind": "api"})
    assert made.status_code in (403, 404), made.text
    new_tenant = call(gw, "POST", "/admin/v1/tenants", cookie=session.cookie, csrf=session.csrf,
                      json={"name": f"nope-{uuid.uuid4().hex[:8]}"})
    assert new_tenant.status_code == 403, new_tenant.text
    # Its own tenant's tokens: yes.
    assert call(gw, "GET", f"/admin/v1/tenants/{setup.tenant['id']}/tokens", cookie=session.cookie).status_code == 200
