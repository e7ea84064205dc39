"""No bad input is a 500 (issue 10): each trap the fuzzer found, against a real server.

Deep JSON nesting, integers beyond 64 bits, wrong types in fields a translator reads,
out-of-range usage windows, nonsense usage counts from an upstream (which must not stop
usage recording), credential values with line breaks, and a client that leaves in the
middle of its upload. Every refusal is a 4xx in OpenAI's error shape naming the field.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.harness import GatewayProcess, ProviderTenant, provider_tenant
from tests.e2e.hosted_setup import usage_rows, wait_until
from tests.e2e.test_errors import check_error
from tests.fakes.fixtures import FakeOpenAI

USER = [{"role": "user", "content": "Hello"}]
CHAT = {"model": "default", "messages": USER}


@pytest.fixture
def tenant(gw: GatewayProcess, fake_openai: FakeOpenAI) -> Iterator[ProviderTenant]:
    """A fresh tenant on the fake OpenAI, so its usage rows are its own."""
    key = "sk-test-bad-input-not-a-real-key-0003"
    fake_openai.state.api_keys.add(key)
    with provider_tenant(gw, "bad-input", [("providers", "set", "openai", f"api_key={key}",
                                            f"base_url={fake_openai.v1_url}"),
                                           ("defaults", "set", "llm", "openai/gpt-4o-mini")],
                         listed={"default"}) as made:
        yield made


def post(gw: GatewayProcess, body: bytes, token: str | None = None, path: str = "/v1/chat/completions") -> httpx.Response:
    with gw.http(token) as client:
        return client.post(path, content=body, headers={"content-type": "application/json"})


def chat_with(extra: str) -> bytes:
    return b'{"model": "default", "messages": [{"role": "user", "content": "hi"}], ' + extra.encode() + b"}"


# -- JSON the gateway cannot carry --------------------------------------------------------------


def test_nesting_deeper_than_128_levels_is_a_400(gw: GatewayProcess, fake_openai: FakeOpenAI) -> None:
    ok = post(gw, chat_with('"metadata_x": ' + "[" * 127 + "]" * 127))
    assert ok.status_code == 200, ok.text
    err = check_error(post(gw, chat_with('"x": ' + "[" * 300 + "]" * 300)), 400, "invalid_request_error",
                      "invalid_json")
    assert "128" in err["message"]
    # Brackets inside strings are text, not nesting.
    assert post(gw, chat_with('"user": "' + "[{" * 400 + '"')).status_code == 200


def test_a_megabyte_of_brackets_does_not_crash_a_worker(gw: GatewayProcess) -> None:
    # orjson's parser recurses without a limit: this body used to overflow the worker's stack.
    for _ in range(4):  # both workers
        check_error(post(gw, b"[" * 400_000 + b"]" * 400_000), 400, code="invalid_json")
    check_error(post(gw, b'{"a": ' + b"[" * 200_000), 400, code="invalid_json")
    for _ in range(4):
        assert httpx.get(gw.base_url + "/healthz", timeout=5).status_code == 200


@pytest.mark.parametrize("extra, param", [
    ('"max_tokens": 18446744073709551616', "max_tokens"),
    ('"seed": 18446744073709551616', "seed"),
    ('"seed": -9223372036854775809', "seed"),
    ('"metadata": {"run": [1, 99999999999999999999999]}', "metadata.run[1]"),
])
def test_integers_beyond_64_bits_are_a_400_naming_the_field(gw: GatewayProcess, extra: str, param: str) -> None:
    check_error(post(gw, chat_with(extra)), 400, "invalid_request_error", param=param)


def test_a_long_digit_run_inside_a_string_is_text(gw: GatewayProcess, fake_openai: FakeOpenAI) -> None:
    assert post(gw, chat_with('"user": "99999999999999999999999"')).status_code == 200


@pytest.mark.parametrize("extra, param", [
    ('"modalities": 1', "modalities"),
    ('"modalities": "audio"', "modalities"),
    ('"stop": 5', "stop"),
    ('"tools": "x"', "tools"),
    ('"response_format": "json"', "response_format"),
    ('"logprobs": "yes"', "logprobs"),
    ('"audio": 3', "audio"),
    ('"seed": 1.5', "seed"),
])
def test_wrong_types_on_fields_translators_read_are_a_400(gw: GatewayProcess, extra: str, param: str) -> None:
    check_error(post(gw, chat_with(extra)), 400, "invalid_request_error", param=param)


def test_wrong_type_inside_a_message_names_the_path(gw: GatewayProcess) -> None:
    body = b'{"model": "default", "messages": [{"role": "user", "content": 7}]}'
    check_error(post(gw, body), 400, param="messages[0].content")
    body = b'{"model": "default", "prompt": "hi", "best_of": "2"}'
    check_error(post(gw, body, path="/v1/completions"), 400, param="best_of")


# -- usage windows ------------------------------------------------------------------------------


@pytest.mark.parametrize("query, param", [
    ("end=9999-12-31", "end"),
    ("start=100000000000000000000000000000", "start"),
    ("end=9999-12-31T23:59:59-05:00", "end"),
    ("start=0001-01-01T00:00:00%2B14:00", "start"),
])
def test_usage_windows_out_of_range_are_a_400(gw: GatewayProcess, query: str, param: str) -> None:
    with gw.http() as client:
        check_error(client.get("/v1/usage?" + query), 400, "invalid_request_error", param=param)
    admin = {"Authorization": f"Bearer {gw.admin_token()}"}
    check_error(httpx.get(gw.base_url + "/admin/v1/usage?" + query, headers=admin, timeout=10), 400, param=param)


def test_the_last_representable_day_still_works(gw: GatewayProcess) -> None:
    with gw.http() as client:
        resp = client.get("/v1/usage?start=2024-01-01&end=9999-12-30")
    assert resp.status_code == 200, resp.text
    assert resp.json()["end"] == "9999-12-31T00:00:00Z"


# -- nonsense usage from an upstream ------------------------------------------------------------


def _reply(usage: dict[str, Any]) -> dict[str, Any]:
    return {"id": "chatcmpl-x", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "odd"}, "finish_reason": "stop"}],
            "usage": usage}


def test_absurd_upstream_usage_neither_fails_nor_stops_usage_recording(
        gw: GatewayProcess, fake_openai: FakeOpenAI, tenant: ProviderTenant) -> None:
    fake_openai.state.fail_next.extend([
        (200, _reply({"prompt_tokens": 10**19, "completion_tokens": 5, "total_tokens": 10**19 + 5})),
        (200, _reply({"prompt_tokens": "many", "completion_tokens": -4, "total_tokens": [1]})),
    ])
    with gw.http(tenant.token) as client:
        for _ in range(2):
            odd = client.post("/v1/chat/completions", json=CHAT)
            assert odd.status_code == 200, odd.text
        for _ in range(8):  # spread over both workers, after the odd rows
            assert client.post("/v1/chat/completions", json=CHAT).status_code == 200
    wait_until(lambda: len(usage_rows(gw, tenant.name)) >= 10, timeout=8)
    rows = usage_rows(gw, tenant.name)
    assert len(rows) == 10 and all(r["status"] == 200 for r in rows)
    assert rows[0]["prompt_tokens"] == 2**31 - 1  # clamped, not refused
    assert (rows[1]["prompt_tokens"], rows[1]["completion_tokens"]) == (0, 0)
    with gw.http(tenant.token) as client:
        assert client.get("/v1/usage").json()["total"]["requests"] == 10
    assert "Traceback" not in gw.log()


# -- credentials ----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["sk-test-a\r\nX-Injected: 1", "sk-test-b\nmore", "sk-test-c\x00tail"])
def test_credential_values_with_line_breaks_or_nul_are_refused(gw: GatewayProcess, tenant: ProviderTenant,
                                                               value: str) -> None:
    result = gw.cli("providers", "set", tenant.name, "openai", f"api_key={value}", check=False)
    assert result.code != 0
    assert "api_key" in result.err and value not in result.err + result.out
    admin = {"Authorization": f"Bearer {gw.admin_token()}"}
    resp = httpx.put(f"{gw.base_url}/admin/v1/tenants/{tenant.name}/providers/openai", headers=admin, timeout=10,
                     json={"credentials": {"api_key": value}})
    err = check_error(resp, 400, "invalid_request_error", param="api_key")
    assert value.split("\n")[0].split("\r")[0].split("\x00")[0][-6:] not in err["message"]
    assert gw.cli("providers", "set", tenant.name, "openai", "api_key=sk-test-trailing-newline-ok\n").code == 0


# -- a client that leaves mid-upload ------------------------------------------------------------------


def test_a_client_that_leaves_mid_upload_is_a_499_not_a_traceback(gw: GatewayProcess,
                                                                  tenant: ProviderTenant) -> None:
    before = len(gw.log())
    for _ in range(4):  # both workers
        with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as sock:
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Authorization: Bearer " + tenant.token.encode() + b"\r\n"
                         b"Content-Length: 100000\r\n\r\n" + b'{"model": "default", "x": "' + b"a" * 50_000)
            time.sleep(0.3)
    time.sleep(1.5)  # a flush of the usage writer
    log = gw.log()[before:]
    assert "Traceback" not in log and "ERROR" not in log, log
    rows = usage_rows(gw, tenant.name)
    assert all(r["status"] == 499 for r in rows), rows
