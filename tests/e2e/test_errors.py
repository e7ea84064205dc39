"""End-to-end errors (issue §8): every failure is OpenAI's error body with the right status,
seen through the official openai SDK's exception classes and on the raw wire."""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.harness import ACME_KEY, BETA_KEY, GatewayProcess
from tests.e2e.test_endpoints import USER, check_schema, wav_bytes
from emulators._openai_wire import error_body
from tests.fakes.fixtures import FakeOpenAI

CHAT = {"model": "default", "messages": USER}


def check_error(resp: httpx.Response, status: int, type_: str | None = None, code: str | None = None,
                param: str | None = None) -> dict[str, Any]:
    """The response is `status` with exactly OpenAI's error body; returns the inner error."""
    assert "Traceback" not in resp.text
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    check_schema("error_response.json", body)
    assert set(body) == {"error"}
    err = body["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["message"]
    if type_ is not None:
        assert err["type"] == type_, err
    if code is not None:
        assert err["code"] == code, err
    if param is not None:
        assert err["param"] == param, err
    return err


def no_secret(gw: GatewayProcess, *texts: str) -> None:
    for text in (*texts, gw.log()):
        for secret in (ACME_KEY, BETA_KEY):
            assert secret not in text


# -- authentication -----------------------------------------------------------------------------

ENDPOINTS: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/v1/chat/completions", {"json": CHAT}),
    ("POST", "/v1/completions", {"json": {"model": "default", "prompt": "hi"}}),
    ("POST", "/v1/embeddings", {"json": {"model": "default", "input": "hi"}}),
    ("POST", "/v1/audio/transcriptions", {"data": {"model": "default"},
                                          "files": {"file": ("a.wav", b"RIFF0000WAVE", "audio/wav")}}),
    ("GET", "/v1/models", {}),
    ("GET", "/v1/models/gpt-4o-mini", {}),
]
BAD_AUTH: dict[str, dict[str, str]] = {
    "missing": {},
    "not-bearer": {"Authorization": "Basic dXNlcjpwYXNz"},
    "bare-bearer": {"Authorization": "Bearer"},
    "not-mp": {"Authorization": "Bearer sk-this-is-an-openai-key"},
    "unknown": {"Authorization": "Bearer mp-" + "0" * 40},
}


@pytest.mark.parametrize("kind", list(BAD_AUTH))
def test_bad_token_is_401_on_every_endpoint(gw: GatewayProcess, fake_openai: FakeOpenAI, kind: str) -> None:
    with httpx.Client(base_url=gw.base_url, timeout=10) as http:
        for method, path, kwargs in ENDPOINTS:
            resp = http.request(method, path, headers=BAD_AUTH[kind], **kwargs)
            check_error(resp, 401, "authentication_error")
            assert resp.headers.get("www-authenticate", "").lower().startswith("bearer")
    assert fake_openai.state.requests == []  # nothing went upstream


def test_unknown_token_is_authentication_error_in_the_sdk(gw: GatewayProcess) -> None:
    client = gw.client("mp-" + secrets.token_urlsafe(32))
    calls = [
        lambda: client.chat.completions.create(model="default", messages=USER),
        lambda: client.chat.completions.create(model="default", messages=USER, stream=True),
        lambda: client.completions.create(model="default", prompt="hi"),
        lambda: client.embeddings.create(model="default", input="hi"),
        lambda: client.audio.transcriptions.create(model="default", file=("a.wav", wav_bytes(), "audio/wav")),
        lambda: client.models.list(),
        lambda: client.models.retrieve("default"),
    ]
    for call in calls:
        with pytest.raises(openai.AuthenticationError) as caught:
            call()
        assert caught.value.status_code == 401
        assert caught.value.type == "authentication_error"


# -- bad requests -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "content", "code"), [
    ("/v1/chat/completions", b'{"model": "default", "messages": [', "invalid_json"),
    ("/v1/chat/completions", b"[1, 2]", "invalid_json"),
    ("/v1/embeddings", b"\xff\xfe not json", "invalid_json"),
    ("/v1/completions", b"", "invalid_json"),
])
def test_malformed_json_is_400(gw: GatewayProcess, path: str, content: bytes, code: str) -> None:
    with gw.http() as http:
        resp = http.post(path, content=content, headers={"Content-Type": "application/json"})
    check_error(resp, 400, "invalid_request_error", code)


@pytest.mark.parametrize(("path", "body", "param", "code"), [
    ("/v1/chat/completions", {"model": "default"}, "messages", "missing_required_parameter"),
    ("/v1/chat/completions", {"messages": USER}, "model", "missing_required_parameter"),
    ("/v1/chat/completions", {"model": "default", "messages": []}, "messages", "invalid_value"),
    ("/v1/chat/completions", {"model": "default", "messages": "hi"}, "messages", "invalid_type"),
    ("/v1/chat/completions", {"model": "default", "messages": [{"content": "x"}]}, "messages[0].role", None),
    ("/v1/chat/completions", {**CHAT, "temperature": 5}, "temperature", "invalid_value"),
    # Not coerced: the client's JSON is forwarded as is, so "yes" must not become `true` here only.
    ("/v1/chat/completions", {**CHAT, "stream": "yes"}, "stream", "invalid_type"),
    ("/v1/chat/completions", {**CHAT, "stream": 1}, "stream", "invalid_type"),
    ("/v1/chat/completions", {**CHAT, "temperature": "0.5"}, "temperature", "invalid_type"),
    ("/v1/chat/completions", {"model": 123, "messages": USER}, "model", "invalid_type"),
    ("/v1/completions", {"model": "default", "prompt": "x", "max_tokens": -1}, "max_tokens", "invalid_value"),
    ("/v1/embeddings", {"model": "default"}, "input", "missing_required_parameter"),
    ("/v1/embeddings", {"model": "default", "input": "x", "encoding_format": "int8"}, "encoding_format",
     "invalid_value"),
])
def test_invalid_fields_are_400_with_param(gw: GatewayProcess, fake_openai: FakeOpenAI, path: str,
                                           body: dict[str, Any], param: str, code: str | None) -> None:
    with gw.http() as http:
        resp = http.post(path, json=body)
    check_error(resp, 400, "invalid_request_error", code, param)
    assert fake_openai.state.requests == []


def test_invalid_field_through_the_sdk(gw: GatewayProcess) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        gw.client().chat.completions.create(model="default", messages=USER, temperature=5)
    assert caught.value.status_code == 400
    assert caught.value.param == "temperature"


def test_transcription_form_errors(gw: GatewayProcess) -> None:
    with gw.http() as http:
        missing_file = http.post("/v1/audio/transcriptions", data={"model": "default"},
                                 files={"other": ("x.txt", b"hi", "text/plain")})
        no_file = http.post("/v1/audio/transcriptions", data={"model": "default"},
                            files={"unused": (None, "x")})
        bad_format = http.post("/v1/audio/transcriptions", data={"model": "default", "response_format": "mp3"},
                               files={"file": ("a.wav", wav_bytes(), "audio/wav")})
        garbage = http.post("/v1/audio/transcriptions", content=b"--nope\r\n\r\n",
                            headers={"Content-Type": "multipart/form-data; boundary=xyz"})
    check_error(missing_file, 400, "invalid_request_error", param="other")
    check_error(no_file, 400, "invalid_request_error", "missing_required_parameter", "file")
    check_error(bad_format, 400, "invalid_request_error", "invalid_value", "response_format")
    check_error(garbage, 400, "invalid_request_error")


def test_body_over_the_limit_is_413(gw: GatewayProcess, fake_openai: FakeOpenAI) -> None:
    big = {"model": "default", "messages": [{"role": "user", "content": "x" * 1_100_000}]}
    with pytest.raises(openai.APIStatusError) as caught:
        gw.client().chat.completions.create(**big)  # type: ignore[arg-type]
    assert caught.value.status_code == 413
    with gw.http() as http:
        declared = http.post("/v1/chat/completions", json=big)

        def chunked() -> Iterator[bytes]:  # no Content-Length: the limit must hold while reading
            yield b'{"model": "default", "messages": [{"role": "user", "content": "'
            for _ in range(11):
                yield b"y" * 100_000
            yield b'"}]}'

        streamed = http.post("/v1/chat/completions", content=chunked(),
                             headers={"Content-Type": "application/json"})
        upload = http.post("/v1/audio/transcriptions", data={"model": "default"},
                           files={"file": ("a.wav", b"\x00" * 1_100_000, "audio/wav")})
    for resp in (declared, streamed, upload):
        check_error(resp, 413, "invalid_request_error")
    assert fake_openai.state.requests == []


def test_wrong_content_type_is_415(gw: GatewayProcess) -> None:
    with gw.http() as http:
        text = http.post("/v1/chat/completions", content=b'{"model": "default"}',
                         headers={"Content-Type": "text/plain"})
        form = http.post("/v1/embeddings", data={"model": "default", "input": "hi"})
        json_to_audio = http.post("/v1/audio/transcriptions", json={"model": "default"})
    for resp in (text, form, json_to_audio):
        check_error(resp, 415, "invalid_request_error")


def test_unknown_url_and_method(gw: GatewayProcess) -> None:
    with gw.http() as http:
        check_error(http.post("/v1/nope", json={}), 404, "invalid_request_error")
        check_error(http.get("/v1/chat/completions"), 405, "invalid_request_error")


# -- model resolution -----------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["llama-3-70b", "nosuchprovider/gpt-4o", "openai/"])
def test_unknown_model_is_404(gw: GatewayProcess, model: str) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        gw.client().chat.completions.create(model=model, messages=USER)
    assert caught.value.code == "model_not_found"
    assert caught.value.param == "model"
    with pytest.raises(openai.NotFoundError):
        gw.client().models.retrieve(model)


def test_default_without_a_default_tells_how_to_set_one(gw: GatewayProcess, fake_openai: FakeOpenAI) -> None:
    beta = gw.client(gw.tokens["beta"])
    with pytest.raises(openai.BadRequestError) as caught:
        beta.chat.completions.create(model="default", messages=USER)
    assert caught.value.param == "model"
    assert "modelport defaults set beta llm" in caught.value.message
    with pytest.raises(openai.BadRequestError) as caught:
        beta.embeddings.create(model="default", input="hi")
    assert "defaults set beta text-embedding" in caught.value.message
    assert fake_openai.state.requests == []
    # The same tenant reaches its provider by name, with its own key.
    assert beta.chat.completions.create(model="gpt-4o-mini", messages=USER).model == "gpt-4o-mini"
    assert fake_openai.state.last_request.headers["authorization"] == f"Bearer {BETA_KEY}"


# -- upstream failures ------------------------------------------------------------------------------


def test_upstream_400_keeps_its_message(gw: GatewayProcess, fake_openai: FakeOpenAI) -> None:
    fake_openai.state.fail_next.append(
        (400, error_body("Invalid 'logit_bias': too many keys.", param="logit_bias", code="invalid_value")))
    with pytest.raises(openai.BadRequestError) as caught:
        gw.client().chat.completions.create(model="default", messages=USER)
    assert "Invalid 'logit_bias': too many keys." in caught.value.message
    assert caught.value.param == "logit_bias"
    assert caught.value.code == "invalid_value"


def test_upstream_401_is_403_naming_the_provider(gw: GatewayProcess, fake_openai: FakeOpenAI) -> None:
    fake_openai.state.api_keys.discard(ACME_KEY)  # OpenAI now refuses the tenant's key
    client = gw.client()
    with pytest.raises(openai.PermissionDeniedError) as caught:
        client.chat.completions.create(model="default", messages=USER)
    err = caught.value
    assert err.status_code == 403
    assert err.code == "upstream_credential_rejected"
    assert err.type == "permission_error"
    assert "openai" in err.message
    for call in (lambda: client.embeddings.create(model="default", input="x"),
                 lambda: client.completions.create(model="default", prompt="x"),
                 lambda: client.audio.transcriptions.create(model="default",
                                                            file=("a.wav", wav_bytes(), "audio/wav"))):
        with pytest.raises(openai.PermissionDeniedError):
            call()
    # A vendor that echoes the key in full must not get it past the gateway either.
    fake_openai.state.fail_next.append((401, error_body(f"Incorrect API key provided: {ACME_KEY}.")))
    fake_openai.state.api_keys.add(ACME_KEY)
    with gw.http() as http:
        resp = http.post("/v1/chat/completions", json=CHAT)
    check_error(resp, 403, "permission_error", "upstream_credential_rejected")
    no_secret(gw, err.message, resp.text)


@pytest.mark.parametrize("stream", [False, True])
def test_upstream_429_is_rate_limit_with_retry_after(gw: GatewayProcess, fake_openai: FakeOpenAI,
                                                     stream: bool) -> None:
    fake_openai.state.fail_next.append(
        (429, error_body("Rate limit reached for gpt-4o-mini.", type="requests", code="rate_limit_exceeded"),
         {"retry-after": "7"}))
    with pytest.raises(openai.RateLimitError) as caught:
        gw.client().chat.completions.create(model="default", messages=USER, stream=stream)
    assert caught.value.status_code == 429
    assert caught.value.response.headers["retry-after"] == "7"
    assert "Rate limit reached" in caught.value.message
    assert caught.value.code == "rate_limit_exceeded"


@pytest.mark.parametrize("failure", [
    (500, error_body("The server had an error processing your request.", type="server_error")),
    (500, "<html>Internal Server Error</html>"),
    (502, "Bad gateway"),
], ids=["json", "html", "502-text"])
def test_upstream_5xx_is_502(gw: GatewayProcess, fake_openai: FakeOpenAI, failure: Any) -> None:
    fake_openai.state.fail_next.append(failure)
    with pytest.raises(openai.InternalServerError) as caught:
        gw.client().chat.completions.create(model="default", messages=USER)
    assert caught.value.status_code == 502
    assert "openai" in caught.value.message
    if isinstance(failure[1], dict):
        assert "The server had an error processing your request." in caught.value.message
    with gw.http() as http:
        fake_openai.state.fail_next.append(failure)
        check_error(http.post("/v1/embeddings", json={"model": "default", "input": "x"}), 502, "server_error")


@pytest.mark.parametrize(("failure", "status", "code"), [
    ((401, error_body("Incorrect API key provided.", code="invalid_api_key")), 403, "upstream_credential_rejected"),
    ((429, error_body("Slow down.", type="requests"), {"retry-after": "3"}), 429, "rate_limit_exceeded"),
    ((400, error_body("Bad 'n'.", param="n", code="invalid_value")), 400, "invalid_value"),
    ((500, error_body("Boom.", type="server_error")), 502, None),
], ids=["401", "429", "400", "500"])
def test_upstream_error_before_the_first_byte_is_a_real_status(gw: GatewayProcess, fake_openai: FakeOpenAI,
                                                               failure: Any, status: int, code: str | None) -> None:
    for path, body in [("/v1/chat/completions", {**CHAT, "stream": True}),
                       ("/v1/completions", {"model": "default", "prompt": "x", "stream": True,
                                            "stream_options": {"include_usage": True}})]:
        fake_openai.state.fail_next.append(failure)
        with gw.http() as http:
            resp = http.post(path, json=body)
        check_error(resp, status, code=code)
        if status == 429:
            assert resp.headers["retry-after"] == "3"
    fake_openai.state.fail_next.append(failure)
    with pytest.raises(openai.APIStatusError) as caught:
        gw.client().chat.completions.create(model="default", messages=USER, stream=True)
    assert caught.value.status_code == status


@pytest.mark.parametrize(("failure", "status", "code"), [
    ((200, error_body("Model overloaded, try later.", code="overloaded")), 400, "overloaded"),
    ((200, "this is not an event stream"), 502, "upstream_bad_response"),
    ((200, []), 502, "upstream_bad_response"),
], ids=["error-in-200", "text", "json-array"])
def test_streamed_request_answered_without_events_is_an_error(gw: GatewayProcess, fake_openai: FakeOpenAI,
                                                              failure: Any, status: int, code: str) -> None:
    """Not an empty 200 stream that looks like success: the upstream's error is a real status."""
    fake_openai.state.fail_next.append(failure)
    with gw.http() as http:
        err = check_error(http.post("/v1/chat/completions", json={**CHAT, "stream": True}), status, code=code)
    if status == 400:
        assert err["message"] == "Model overloaded, try later."
    fake_openai.state.fail_next.append(failure)
    with pytest.raises(openai.APIStatusError) as caught:
        gw.client().completions.create(model="default", prompt="x", stream=True)
    assert caught.value.status_code == status


def test_upstream_timeout_is_504(gw: GatewayProcess, fake_openai: FakeOpenAI) -> None:
    fake_openai.state.delay = 2.6  # the harness's upstream read_timeout is 2 s
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as caught:
        gw.client().chat.completions.create(model="default", messages=USER)
    assert caught.value.status_code == 504
    assert caught.value.code == "upstream_timeout"
    with gw.http() as http:
        check_error(http.post("/v1/chat/completions", json={**CHAT, "stream": True}), 504, "server_error",
                    "upstream_timeout")
    assert time.monotonic() - started < 8
    # The fake is still sleeping on the abandoned request; let it finish here, or it would
    # wake during the next test and take that test's scripted answer.
    time.sleep(0.8)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_upstream_unreachable_is_502(gw: GatewayProcess) -> None:
    name = "unreach-" + secrets.token_hex(4)
    key = "sk-unreachable-" + secrets.token_hex(16)
    gw.cli("tenants", "create", name)
    gw.cli("providers", "set", name, "openai", f"api_key={key}", f"base_url=http://127.0.0.1:{_closed_port()}/v1")
    token = gw.new_token(name)
    with gw.http(token) as http:
        deadline = time.monotonic() + 5
        while http.get("/v1/models").status_code != 200:  # every worker learns of the new tenant
            assert time.monotonic() < deadline, "the new tenant's token never worked"
            time.sleep(0.1)
        for body in (
            {"model": "gpt-4o-mini", "messages": USER},
            {"model": "gpt-4o-mini", "messages": USER, "stream": True},
            {"model": "openai/gpt-4o", "messages": USER, "stream": True, "stream_options": {"include_usage": True}},
        ):
            resp = http.post("/v1/chat/completions", json=body)
            err = check_error(resp, 502, "server_error", "upstream_unreachable")
            assert key not in err["message"]
    with pytest.raises(openai.InternalServerError) as caught:
        gw.client(token).embeddings.create(model="text-embedding-3-small", input="x")
    assert caught.value.status_code == 502
    assert key not in gw.log()
    gw.cli("tenants", "delete", name)


def test_no_secret_in_the_server_log(gw: GatewayProcess, fake_openai: FakeOpenAI) -> None:
    fake_openai.state.fail_next.append((401, error_body(f"Incorrect API key provided: {ACME_KEY}")))
    with gw.http() as http:
        check_error(http.post("/v1/chat/completions", json={**CHAT, "stream": True}), 403)
    no_secret(gw)
    assert gw.tokens["acme"] not in gw.log()
