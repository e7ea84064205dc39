"""The admin API under /admin/v1 (issue §6), on the session gateway, with the admin
token that the first start wrote to the data directory. Each test works on tenants of its own."""

from __future__ import annotations

import re
import secrets
import stat
import time
import uuid
from collections.abc import Callable

import httpx
import pytest

from tests.e2e.harness import ACME_KEY, BETA_KEY, GatewayProcess
from tests.fakes.fixtures import FakeOpenAI

HI = [{"role": "user", "content": "hi"}]
SPREAD = 6


def admin_token(gw: GatewayProcess) -> str:
    return gw.admin_token()


class Admin:
    """An admin API client that remembers every response body, to check none holds a secret."""

    def __init__(self, gw: GatewayProcess, token: str | None = None) -> None:
        self.client = httpx.Client(base_url=gw.base_url + "/admin/v1", timeout=15,
                                   headers={"Authorization": f"Bearer {token or admin_token(gw)}"})
        self.bodies: list[str] = []

    def __call__(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        response = self.client.request(method, path, **kwargs)  # type: ignore[arg-type]
        self.bodies.append(response.text)
        return response

    def assert_no_secret(self, *values: str) -> None:
        for body in self.bodies:
            for value in values:
                assert value not in body


def tenant_client(gw: GatewayProcess, token: str) -> httpx.Client:
    return httpx.Client(base_url=gw.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=15,
                        limits=httpx.Limits(max_keepalive_connections=0))


def within(seconds: float, check: Callable[[], bool]) -> None:
    """`check` holds within `seconds` and still holds after them (by then on every worker)."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > seconds:
            raise AssertionError(f"condition still false after {seconds}s")
        time.sleep(0.05)
    time.sleep(max(0.0, start + seconds - time.monotonic()))
    assert check(), f"condition held once but not on every worker after {seconds}s"


def chat_status(client: httpx.Client, model: str = "default") -> int:
    return client.post("/v1/chat/completions", json={"model": model, "messages": HI}).status_code


def test_admin_token_is_written_to_a_private_file_and_stored_hashed(gw: GatewayProcess) -> None:
    token = admin_token(gw)
    assert re.fullmatch(r"mpa-[A-Za-z0-9_-]{40,}", token)
    token_file = gw.data_dir / "admin-token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert f"created the admin token for /admin/v1 in {token_file}" in gw.log()
    assert token not in gw.log()  # the path is printed, never the token
    for raw in gw.stored_bytes().values():
        assert token.encode() not in raw
    assert Admin(gw, token)("GET", "/tenants").status_code == 200


@pytest.mark.parametrize("header", [None, "Bearer mpa-wrong", "Bearer", "Basic xyz", "tenant"])
def test_admin_api_rejects_anything_but_the_admin_token(gw: GatewayProcess, header: str | None) -> None:
    if header == "tenant":
        header = f"Bearer {gw.tokens['acme']}"
    headers = {"Authorization": header} if header is not None else {}
    for method, path in (("GET", "/tenants"), ("POST", "/tenants"), ("GET", "/providers"),
                         ("GET", "/tenants/acme/providers"), ("PUT", "/tenants/acme/defaults/llm"),
                         ("DELETE", "/tenants/acme"), ("DELETE", "/tokens/tok_x")):
        response = httpx.request(method, gw.base_url + "/admin/v1" + path, headers=headers,
                                 json={"name": "intruder", "model": "openai/gpt-4o"})
        assert response.status_code == 401, (method, path)
        assert response.json()["error"]["type"] == "authentication_error"
    assert "intruder" not in gw.cli("tenants", "list").out
    assert "acme" in gw.cli("tenants", "list").out


def test_admin_token_is_not_a_tenant_token(gw: GatewayProcess) -> None:
    with tenant_client(gw, admin_token(gw)) as client:
        assert client.get("/v1/models").status_code == 401
        assert chat_status(client) == 401


def test_provider_schema(gw: GatewayProcess) -> None:
    response = Admin(gw)("GET", "/providers")
    assert response.status_code == 200
    providers = {p["name"]: p for p in response.json()["data"]}
    openai = providers["openai"]
    assert openai["per_model"] is False
    assert set(openai["model_types"]) == {"llm", "text-embedding", "speech2text"}
    fields = {f["name"]: f for f in openai["credential_fields"]}
    assert fields["api_key"]["required"] is True and fields["api_key"]["secret"] is True
    assert fields["organization"]["required"] is False


def test_tenant_lifecycle_through_the_admin_api(gw: GatewayProcess, fake_openai: FakeOpenAI) -> None:
    admin = Admin(gw)
    name = "adm-" + uuid.uuid4().hex[:8]
    key = "sk-test-admin-" + secrets.token_hex(12)
    fake_openai.state.api_keys.add(key)

    created = admin("POST", "/tenants", json={"name": name})
    assert created.status_code == 201
    tenant_id = created.json()["id"]
    assert tenant_id.startswith("tn_") and created.json()["name"] == name
    assert admin("POST", "/tenants", json={"name": name}).status_code == 409
    assert admin("POST", "/tenants", json={"name": "bad name!"}).status_code == 400
    assert {"id": tenant_id, "name": name} in [{"id": t["id"], "name": t["name"]}
                                               for t in admin("GET", "/tenants").json()["data"]]

    minted = admin("POST", f"/tenants/{name}/tokens", json={"name": "ci"})
    assert minted.status_code == 201
    token, token_id = minted.json()["token"], minted.json()["id"]
    assert token.startswith("mp-")
    admin.bodies.remove(minted.text)  # the one response that must show the token
    listed = admin("GET", f"/tenants/{tenant_id}/tokens").json()["data"]
    assert [(t["id"], t["name"], t["revoked"]) for t in listed] == [(token_id, "ci", False)]
    assert listed[0]["hint"] == f"{token[:5]}...{token[-4:]}" and "token" not in listed[0]

    put = admin("PUT", f"/tenants/{name}/providers/openai",
                json={"credentials": {"api_key": key, "base_url": fake_openai.v1_url}})
    assert put.status_code == 200
    assert put.json()["fields"] == {"api_key": f"sk-...{key[-4:]}", "base_url": fake_openai.v1_url}
    assert admin("GET", f"/tenants/{tenant_id}/providers").json()["data"] == [put.json()]

    client = tenant_client(gw, token)
    assert chat_status(client) == 400  # no default yet
    put_default = admin("PUT", f"/tenants/{name}/defaults/llm", json={"model": "openai/gpt-4.1"})
    assert put_default.status_code == 200
    assert admin("GET", f"/tenants/{name}/defaults").json() == {
        "llm": "openai/gpt-4.1", "text-embedding": None, "speech2text": None}
    within(1.0, lambda: all(chat_status(client) == 200 for _ in range(SPREAD)))
    upstream = fake_openai.state.last_request
    assert upstream.json["model"] == "gpt-4.1" and upstream.headers["authorization"] == f"Bearer {key}"

    assert admin("DELETE", f"/tenants/{name}/defaults/llm").status_code == 200
    assert admin("GET", f"/tenants/{name}/defaults").json()["llm"] is None
    within(1.0, lambda: all(chat_status(client) == 400 for _ in range(SPREAD)))

    assert admin("GET", f"/tenants/{name}/models").json() == {"object": "list", "data": []}
    assert admin("DELETE", f"/tenants/{name}/providers/openai").status_code == 200
    assert admin("GET", f"/tenants/{name}/providers").json()["data"] == []
    assert admin("DELETE", f"/tenants/{name}/providers/openai").status_code == 404
    within(1.0, lambda: all(chat_status(client, "openai/gpt-4o") == 404 for _ in range(SPREAD)))

    assert admin("DELETE", f"/tokens/{token_id}").json() == {"id": token_id, "revoked": True}
    assert admin("GET", f"/tenants/{name}/tokens").json()["data"][0]["revoked"] is True
    within(1.0, lambda: all(client.get("/v1/models").status_code == 401 for _ in range(SPREAD)))
    assert admin("DELETE", "/tokens/tok_doesnotexist").status_code == 404

    assert admin("DELETE", f"/tenants/{tenant_id}").json()["deleted"] is True
    assert name not in [t["name"] for t in admin("GET", "/tenants").json()["data"]]
    assert admin("GET", f"/tenants/{name}/tokens").status_code == 404
    client.close()
    admin.assert_no_secret(key, key[4:-4], token, ACME_KEY, BETA_KEY)


def test_credential_validation_errors(gw: GatewayProcess) -> None:
    admin = Admin(gw)
    name = "adm-" + uuid.uuid4().hex[:8]
    assert admin("POST", "/tenants", json={"name": name}).status_code == 201
    secret = "sk-test-never-echoed-" + secrets.token_hex(8)

    missing = admin("PUT", f"/tenants/{name}/providers/openai", json={"credentials": {"organization": "org-1"}})
    assert missing.status_code == 400
    error = missing.json()["error"]
    assert error["param"] == "api_key" and "api_key" in error["message"]

    unknown_field = admin("PUT", f"/tenants/{name}/providers/openai",
                          json={"credentials": {"api_key": secret, "api_sekret": "x"}})
    assert unknown_field.status_code == 400 and unknown_field.json()["error"]["param"] == "api_sekret"

    unknown = admin("PUT", f"/tenants/{name}/providers/nosuchvendor", json={"credentials": {"api_key": secret}})
    assert unknown.status_code == 400
    assert unknown.json()["error"]["code"] == "unknown_provider" and "openai" in unknown.json()["error"]["message"]

    bad_url = admin("PUT", f"/tenants/{name}/providers/openai",
                    json={"credentials": {"api_key": secret, "base_url": f"http://u:{secret}@host/v1"}})
    assert bad_url.status_code == 400 and bad_url.json()["error"]["param"] == "base_url"

    own_model = admin("POST", f"/tenants/{name}/models",
                      json={"provider": "openai", "model": "gpt-4o", "type": "llm", "credentials": {"api_key": secret}})
    assert own_model.status_code == 400 and "providers" in own_model.json()["error"]["message"]

    no_credential = admin("PUT", f"/tenants/{name}/defaults/llm", json={"model": "openai/gpt-4o"})
    assert no_credential.status_code == 400 and "providers set" in no_credential.json()["error"]["message"]
    bad_type = admin("PUT", f"/tenants/{name}/defaults/images", json={"model": "openai/gpt-4o"})
    assert bad_type.status_code == 400 and bad_type.json()["error"]["param"] == "type"

    not_json = admin("PUT", f"/tenants/{name}/providers/openai", content=b"{nope",
                     headers={"Content-Type": "application/json"})
    assert not_json.status_code == 400
    extra = admin("POST", "/tenants", json={"name": name + "x", "admin": True})
    assert extra.status_code == 400
    assert admin("GET", "/tenants/nobody-here/providers").status_code == 404

    assert admin("GET", f"/tenants/{name}/providers").json()["data"] == []
    assert admin("DELETE", f"/tenants/{name}").status_code == 200
    for response in admin.bodies:
        assert "Traceback" not in response
    admin.assert_no_secret(secret, secret[-12:])


def test_listing_existing_tenants_masks_their_keys(gw: GatewayProcess) -> None:
    admin = Admin(gw)
    for tenant, key in (("acme", ACME_KEY), ("beta", BETA_KEY)):
        data = admin("GET", f"/tenants/{tenant}/providers").json()["data"]
        assert [p["provider"] for p in data] == ["openai"]
        assert data[0]["fields"]["api_key"] == f"sk-...{key[-4:]}"
    assert admin("GET", "/tenants/acme/defaults").json()["llm"] == "openai/gpt-4o-mini"
    admin.assert_no_secret(ACME_KEY, BETA_KEY)


def test_no_secret_in_the_server_log(gw: GatewayProcess) -> None:
    log = gw.log()
    for secret in (ACME_KEY, BETA_KEY, *gw.tokens.values()):
        assert secret not in log
