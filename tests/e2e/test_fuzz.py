"""Property-based fuzzing of every public endpoint against a real server (issue 10).

Random bodies, headers and query strings, plus strategies aimed at the known traps (deep
nesting, integers beyond 64 bits, wrong types in fields translators read, odd unicode,
nulls, broken JSON, broken multipart), go to the session gateway, whose tenant `acme`
points at the fake OpenAI. Whatever comes in, the answer is never a 5xx, and every error
is OpenAI's error body: `{"error": {"message", "type", "param", "code"}}`.

Reproducible and bounded: hypothesis runs derandomized (a fixed seed), with no example
database, and a fixed number of examples per endpoint (about 420 requests in all).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.e2e.harness import GatewayProcess
from tests.fakes.fixtures import FakeOpenAI

SETTINGS = settings(deadline=None, derandomize=True, database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much])


def fuzz(examples: int) -> settings:
    return settings(SETTINGS, max_examples=examples)
ERROR_KEYS = {"message", "type", "param", "code"}


@pytest.fixture(scope="module")
def client(gateway: GatewayProcess, fake_openai_server: FakeOpenAI) -> Iterator[httpx.Client]:
    fake_openai_server.reset()
    fake_openai_server.state.record_requests = False  # hundreds of requests: keep the fake's memory flat
    with httpx.Client(base_url=gateway.base_url, timeout=20.0,
                      headers={"Authorization": f"Bearer {gateway.tokens['acme']}"}) as c:
        yield c
    fake_openai_server.reset()


# uvicorn's HTTP parser (h11) answers a request it cannot parse (a control character in a
# header value) itself, before the application sees it: a plain-text 400, never a 5xx.
PROTOCOL_ERROR = "Invalid HTTP request received."


def check(resp: httpx.Response) -> None:
    """No 5xx; every error in OpenAI's shape."""
    assert resp.status_code < 500, f"{resp.status_code}: {resp.text[:500]}"
    if resp.status_code == 400 and resp.text == PROTOCOL_ERROR:
        return
    if resp.status_code >= 400:
        assert resp.headers.get("content-type", "").startswith("application/json"), resp.text[:300]
        body = resp.json()
        assert isinstance(body, dict) and set(body) == {"error"}, body
        assert isinstance(body["error"], dict) and set(body["error"]) == ERROR_KEYS, body
        assert isinstance(body["error"]["message"], str) and body["error"]["message"], body
    elif "text/event-stream" in resp.headers.get("content-type", ""):
        assert b"Traceback" not in resp.content


# -- values -------------------------------------------------------------------------------------

ODD_TEXT = st.sampled_from(["", " ", "\x00", "\u202e", "\ufeff", "\ud7ff", "😀" * 3, "é", "\n\r", "null",
                            "default", "openai/gpt-4o-mini", "gpt-4o-mini", "openai/", "/", "a" * 300])
TEXT = st.one_of(st.text(max_size=12), ODD_TEXT)
HUGE_INTS = st.sampled_from([2**63 - 1, 2**63, 2**64 - 1, 2**64, 10**19, 10**30, -(2**63), -(2**63) - 1, -(10**25)])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-1000, 1000), HUGE_INTS,
                    st.floats(allow_nan=False, allow_infinity=False), TEXT)
JSON: st.SearchStrategy[Any] = st.recursive(
    SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(TEXT, inner, max_size=3)),
    max_leaves=6)

CHAT_FIELDS = ["stream", "stream_options", "max_tokens", "max_completion_tokens", "temperature", "top_p", "n",
               "stop", "tools", "tool_choice", "parallel_tool_calls", "user", "modalities", "audio",
               "response_format", "logprobs", "top_logprobs", "seed", "presence_penalty", "frequency_penalty",
               "functions", "function_call", "logit_bias", "metadata", "store", "top_k"]
COMPLETION_FIELDS = ["stream", "stream_options", "max_tokens", "temperature", "top_p", "n", "stop", "suffix",
                     "echo", "user", "logprobs", "best_of", "seed"]
EMBEDDING_FIELDS = ["encoding_format", "user", "input_type", "normalize"]  # `dimensions` apart: see below

PART = st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": st.one_of(TEXT, JSON)}),
    st.fixed_dictionaries({"type": st.sampled_from(["image_url", "input_audio", "x"]),
                           "image_url": st.one_of(JSON, st.fixed_dictionaries({"url": TEXT}))}),
    JSON)
MESSAGE = st.one_of(
    st.fixed_dictionaries({"role": st.sampled_from(["system", "developer", "user", "assistant", "tool", "x"])},
                          optional={"content": st.one_of(TEXT, st.lists(PART, max_size=3), JSON),
                                    "name": SCALARS, "tool_call_id": SCALARS, "tool_calls": JSON}),
    JSON)
MODEL = st.one_of(st.sampled_from(["default", "gpt-4o-mini", "openai/gpt-4o-mini"]), TEXT, JSON)


def _with_fields(base: st.SearchStrategy[dict[str, Any]], fields: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    extra = st.dictionaries(st.one_of(st.sampled_from(fields), TEXT), JSON, max_size=4)
    return st.builds(lambda b, e: {**b, **e}, base, extra)


def _encoded(bodies: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    """Python values as JSON text: integers keep every digit, lone surrogates stay escaped."""
    return bodies.map(lambda v: json.dumps(v).encode())


def _nest(depth: int, inner: str = "1") -> str:
    return "[" * depth + inner + "]" * depth


TRAPS = st.one_of(
    st.integers(100, 140).map(lambda d: f'{{"model": "default", "messages": {_nest(d)}}}'.encode()),
    st.integers(100, 140).map(
        lambda d: f'{{"model": "default", "messages": [{{"role": "user", "content": "hi"}}], "x": {_nest(d)}}}'
        .encode()),
    st.sampled_from([20_000, 300_000]).map(lambda d: b"[" * d + b"]" * d),
    st.sampled_from([b"", b"null", b"[]", b"1", b'"x"', b"{", b'{"model": "default",', b"\xff\xfe{}",
                     b'\xef\xbb\xbf{"model": "default"}', b'{"model": NaN}', b'{"model": "default", "n": 1e400}',
                     b'{"model": "\\ud800", "messages": []}', b'{"model": "default", "model": 5}',
                     b'{"model": "default", "messages": [{"role": "user", "content": "\\u0000"}]}',
                     b'{"model": "default", "messages": [{"role": "user", "content": "hi"}], "max_tokens": '
                     b'99999999999999999999999999}',
                     b'{"model": "default", "input": [[18446744073709551616]]}',
                     b'{"model": "default", "prompt": [18446744073709551615]}',
                     "{\"model\": \"default\", \"messages\": [{\"role\": \"user\", \"content\": \"\u202e😀\"}]}"
                     .encode()]),
    st.binary(max_size=64),
)

CHAT = _encoded(st.one_of(
    _with_fields(st.fixed_dictionaries({"model": MODEL, "messages": st.lists(MESSAGE, min_size=1, max_size=3)}),
                 CHAT_FIELDS),
    _with_fields(st.fixed_dictionaries({"model": st.just("default"), "messages": st.just(
        [{"role": "user", "content": "hi"}])}), CHAT_FIELDS),
    JSON))
COMPLETIONS = _encoded(st.one_of(
    _with_fields(st.fixed_dictionaries({"model": MODEL}, optional={"prompt": JSON}), COMPLETION_FIELDS), JSON))
EMBEDDINGS = _encoded(st.one_of(
    _with_fields(st.fixed_dictionaries(
        {"model": MODEL, "input": st.one_of(TEXT, st.lists(TEXT, max_size=3), JSON)},
        # A huge but valid `dimensions` would reach the fake, which builds the vector: bounded.
        optional={"dimensions": st.one_of(st.integers(-3, 64), st.sampled_from([2**64, 10**30]), TEXT)}),
        EMBEDDING_FIELDS),
    JSON))
CONTENT_TYPES = st.one_of(st.just("application/json"), st.sampled_from(
    ["application/json; charset=utf-8", "application/vnd.x+json", "text/plain", "", "multipart/form-data",
     "application/json; charset=latin-1", "APPLICATION/JSON", "application/x-www-form-urlencoded"]))


@pytest.mark.parametrize("path, bodies, examples", [
    ("/v1/chat/completions", st.one_of(CHAT, TRAPS), 130),
    ("/v1/completions", st.one_of(COMPLETIONS, TRAPS), 60),
    ("/v1/embeddings", st.one_of(EMBEDDINGS, TRAPS), 60),
])
def test_json_endpoints(client: httpx.Client, path: str, bodies: st.SearchStrategy[bytes], examples: int) -> None:
    @fuzz(examples)
    @given(body=bodies, content_type=CONTENT_TYPES)
    def run(body: bytes, content_type: str) -> None:
        check(client.post(path, content=body, headers={"content-type": content_type}))

    run()


# -- multipart ------------------------------------------------------------------------------------

WAV = (b"RIFF$\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00@\x1f\x00\x00\x80>\x00\x00\x02\x00\x10\x00"
       b"data\x00\x00\x00\x00")


def _part(name: str, value: bytes, filename: str | None = None, ctype: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
    head = f"Content-Disposition: {disposition}\r\n" + (f"Content-Type: {ctype}\r\n" if ctype else "")
    return b"--B0undary\r\n" + head.encode("utf-8", "surrogatepass") + b"\r\n" + value + b"\r\n"


FIELD_NAMES = st.one_of(st.sampled_from(["model", "language", "prompt", "temperature", "response_format",
                                         "timestamp_granularities[]", "file", "x[]", ""]), TEXT)
FIELD_VALUES = st.one_of(TEXT.map(lambda t: t.encode("utf-8", "surrogatepass")),
                         st.sampled_from([b"default", b"0.2", b"nan", b"1e400", b"-1", b"json", b"srt",
                                          b"verbose_json", b"word", b"\xff\xfe"]))
FORM = st.builds(
    lambda fields, file, end: b"".join(fields) + file + end,
    st.lists(st.builds(_part, FIELD_NAMES, FIELD_VALUES), max_size=5),
    st.one_of(st.just(b""), st.builds(lambda name, content: _part("file", content, name, "audio/wav"),
                                      st.one_of(st.just("a.wav"), TEXT), st.one_of(st.just(WAV), st.binary(max_size=40)))),
    st.sampled_from([b"--B0undary--\r\n", b"--B0undary", b"", b"--Other--\r\n", b"garbage"]))
MULTIPART_TYPES = st.sampled_from(["multipart/form-data; boundary=B0undary", "multipart/form-data",
                                   "multipart/form-data; boundary=", "multipart/form-data; boundary=Other",
                                   "application/json", "multipart/mixed; boundary=B0undary"])


@fuzz(60)
@given(body=FORM, content_type=MULTIPART_TYPES)
def test_transcriptions(client: httpx.Client, body: bytes, content_type: str) -> None:
    check(client.post("/v1/audio/transcriptions", content=body, headers={"content-type": content_type}))


# -- GET endpoints, query strings, headers --------------------------------------------------------------

QUERY_VALUES = st.one_of(TEXT, st.sampled_from(
    ["9999-12-31", "0001-01-01", "10000-01-01", "2024-02-30", "1e400", "nan", "-1", "99999999999999999999999",
     "2024-05-01T12:00:00+25:00", "2024-05-01T12:00:00Z", "1714521600", "model", "day", "provider", "tenant"]))
QUERIES = st.fixed_dictionaries({}, optional={"start": QUERY_VALUES, "end": QUERY_VALUES, "group_by": QUERY_VALUES,
                                              "tenant": TEXT, "x": TEXT})


@fuzz(60)
@given(path=st.sampled_from(["/v1/usage", "/v1/quota", "/v1/models"]), params=QUERIES)
@example(path="/v1/usage", params={"end": "9999-12-31"})  # the traps found before, always tried
@example(path="/v1/usage", params={"end": "99999999999999999999999"})
def test_get_endpoints(client: httpx.Client, path: str, params: dict[str, str]) -> None:
    check(client.get(path, params=params))


@fuzz(30)
@given(model=st.text(min_size=1, max_size=20))
def test_model_lookup(client: httpx.Client, model: str) -> None:
    check(client.get("/v1/models/" + quote(model, safe="/")))


AUTH = st.one_of(st.none(), st.sampled_from(["Bearer", "Bearer ", "Basic abc", "bearer mp-x", "Bearer mp-\x7f",
                                              "Bearer mp-\x00", "Bearer " + "x" * 5000]),
                 st.text(alphabet=st.characters(min_codepoint=1, max_codepoint=255, exclude_characters="\r\n"),
                         max_size=30))


def raw_request(gateway: GatewayProcess, method: str, path: str, headers: list[bytes], body: bytes) -> httpx.Response:
    """One request written by hand (header values httpx refuses to send), read until close."""
    head = [f"{method} {path} HTTP/1.1".encode(), b"Host: 127.0.0.1", b"Connection: close",
            f"Content-Length: {len(body)}".encode(), *headers]
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=20) as sock:
        sock.sendall(b"\r\n".join(head) + b"\r\n\r\n" + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    status_line, _, rest = data.partition(b"\r\n")
    raw_headers, _, content = rest.partition(b"\r\n\r\n")
    fields = [line.split(b":", 1) for line in raw_headers.split(b"\r\n") if b":" in line]
    return httpx.Response(int(status_line.split()[1]), headers=[(k.strip(), v.strip()) for k, v in fields],
                          content=content)


@fuzz(40)
@given(auth=AUTH, path=st.sampled_from(["/v1/chat/completions", "/v1/models", "/v1/usage", "/v1/quota",
                                        "/v1/embeddings", "/v1/audio/transcriptions", "/v1/completions"]))
def test_authorization_headers(gateway: GatewayProcess, auth: str | None, path: str) -> None:
    headers = [] if auth is None else [b"Authorization: " + auth.encode("latin-1")]
    get = path in ("/v1/models", "/v1/usage", "/v1/quota")
    body = b"" if get else b'{"model": "default"}'
    check(raw_request(gateway, "GET" if get else "POST", path, [*headers, b"Content-Type: application/json"], body))
