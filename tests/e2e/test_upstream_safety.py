"""End-to-end: what a tenant's `base_url` (or the upstream behind it) can make the gateway do.

A gateway of this module's own runs with `upstream.private_networks: deny` and
`allow_hosts: [localhost]`, one worker (so its memory is one process's): the fakes are
reachable as `localhost` and refused as `127.0.0.1`. Every upstream here is on loopback;
nothing is ever sent elsewhere.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.e2e.harness import ACME_KEY, GatewayProcess, ProviderTenant, provider_tenant
from tests.fakes.fixtures import FakeOpenAI
from emulators.server import ServedApp

USER = [{"role": "user", "content": "the prompt must not travel"}]
ANTHROPIC_KEY = "sk-ant-fake-e2e-redirect-0000000001"
AZURE_KEY = "fake-azure-key-e2e-redirect-000000002"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(tmp_path_factory.mktemp("guarded"), workers=1, settings={"upstream": {
        "connect_timeout": 2, "read_timeout": 5, "total_timeout": 10,
        "private_networks": "deny", "allow_hosts": ["localhost"]}})
    with gw.running():
        yield gw


class Recorder:
    """A loopback server that records the headers of whatever reaches it."""

    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []
        self.lock = threading.Lock()

    async def __call__(self, request: Request) -> Response:
        with self.lock:
            self.seen.append(dict(request.headers))
        return JSONResponse({"error": {"message": "the redirect target's own words"}}, status_code=400)


@pytest.fixture(scope="module")
def recorder() -> Iterator[tuple[Recorder, ServedApp]]:
    rec = Recorder()
    with ServedApp(Starlette(routes=[Route("/{p:path}", rec, methods=["GET", "POST"])])) as served:
        yield rec, served


@pytest.fixture(scope="module")
def redirector(recorder: tuple[Recorder, ServedApp]) -> Iterator[ServedApp]:
    """Answers every call with a 307 to the recorder (307 keeps the method and the body)."""
    target = recorder[1].base_url.replace("127.0.0.1", "localhost")

    async def moved(request: Request) -> Response:
        return Response(b"see the target", status_code=307, headers={"Location": target + request.url.path})

    with ServedApp(Starlette(routes=[Route("/{p:path}", moved, methods=["GET", "POST"])])) as served:
        yield served


@contextlib.contextmanager
def tenant_of(gw: GatewayProcess, name: str, setup: list[tuple[str, ...]]) -> Iterator[ProviderTenant]:
    """A tenant with `setup` done, once the (one) worker knows its token, hence its credential."""
    with provider_tenant(gw, name, setup) as made:
        deadline = time.monotonic() + 10
        while httpx.get(gw.v1_url + "/models", headers={"Authorization": f"Bearer {made.token}"},
                        timeout=5).status_code != 200:
            assert time.monotonic() < deadline, "the gateway did not pick the tenant up"
            time.sleep(0.05)
        yield made


def local(url: str) -> str:
    return url.replace("127.0.0.1", "localhost")


def error_of(resp: httpx.Response) -> dict[str, str]:
    body = resp.json()
    assert set(body) == {"error"}, body
    return body["error"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_a_redirect_carries_neither_the_key_nor_the_prompt(guarded: GatewayProcess, redirector: ServedApp,
                                                           recorder: tuple[Recorder, ServedApp], stream: bool) -> None:
    rec = recorder[0]
    setups = {
        "anthropic": ([("providers", "set", "anthropic", f"api_key={ANTHROPIC_KEY}",
                        f"base_url={local(redirector.base_url)}")], "anthropic/claude-3-5-haiku-latest"),
        "azure": ([("models", "add", "azure_openai", "dep", "--type", "llm",
                    f"endpoint={local(redirector.base_url)}", f"api_key={AZURE_KEY}")], "azure_openai/dep"),
    }
    for name, (setup, model) in setups.items():
        with tenant_of(guarded, f"redir-{name}", setup) as tenant, guarded.http(tenant.token) as http:
            resp = http.post("/v1/chat/completions", json={"model": model, "messages": USER, "stream": stream})
            assert resp.status_code == 502, resp.text
            err = error_of(resp)
            assert err["code"] == "upstream_redirect" and "307" in err["message"]
            assert "target" not in err["message"] and "own words" not in resp.text
    assert rec.seen == []


def test_a_base_url_at_the_gateway_itself_is_refused(guarded: GatewayProcess) -> None:
    # `localhost` is allowed, so the only reason left to refuse it is that it is the gateway.
    admin = f"http://localhost:{guarded.port}/admin/v1"
    setup = [("providers", "set", "openai", "api_key=sk-fake-own-port-000001", f"base_url={admin}")]
    with tenant_of(guarded, "own-port", setup) as tenant:
        with pytest.raises(openai.PermissionDeniedError) as caught:
            guarded.client(tenant.token).chat.completions.create(model="openai/gpt-4o-mini", messages=USER)
    assert caught.value.status_code == 403 and caught.value.code == "upstream_destination_refused"
    assert f"localhost:{guarded.port}" in caught.value.message and "the gateway itself" in caught.value.message
    assert "sk-fake" not in caught.value.message


def test_private_networks_deny_refuses_a_loopback_fake(guarded: GatewayProcess, fake_openai: FakeOpenAI) -> None:
    fake_openai.state.api_keys.add(ACME_KEY)
    before = len(fake_openai.state.requests)
    refused = [("providers", "set", "openai", f"api_key={ACME_KEY}", f"base_url={fake_openai.v1_url}")]
    with tenant_of(guarded, "deny", refused) as tenant:
        with guarded.http(tenant.token) as http:
            for stream in (False, True):
                resp = http.post("/v1/chat/completions",
                                 json={"model": "openai/gpt-4o-mini", "messages": USER, "stream": stream})
                assert resp.status_code == 403, resp.text
                err = error_of(resp)
                assert (err["type"], err["code"]) == ("permission_error", "upstream_destination_refused")
                assert "private" in err["message"] and "127.0.0.1" in err["message"]
                assert ACME_KEY not in resp.text
    assert len(fake_openai.state.requests) == before
    # The same fake by an allow-listed name is reachable.
    allowed = [("providers", "set", "openai", f"api_key={ACME_KEY}", f"base_url={local(fake_openai.v1_url)}")]
    with tenant_of(guarded, "allowed", allowed) as tenant:
        reply = guarded.client(tenant.token).chat.completions.create(model="openai/gpt-4o-mini", messages=USER)
    assert reply.choices[0].message.content
    assert len(fake_openai.state.requests) == before + 1


# -- bounded reads: memory ------------------------------------------------------------------------

MiB = 1024 * 1024


def endless_line(content_type: str) -> Response:
    """200 MiB on one line, no newline, no length: from one 1 MiB buffer, sent as fast as read."""
    piece = b"a" * MiB

    async def body() -> object:
        yield b'data: {"id": "' if content_type == "text/event-stream" else b'{"id": "'
        for _ in range(200):
            yield piece

    return StreamingResponse(body(), media_type=content_type)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def flood() -> Iterator[ServedApp]:
    async def chat(request: Request) -> Response:
        streamed = (await request.json()).get("stream")
        return endless_line("text/event-stream" if streamed else "application/json")

    with ServedApp(Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])) as served:
        yield served


def memory_kib(pid: int) -> dict[str, int]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return {k: int(fields[k].split()[0]) for k in ("VmRSS", "VmHWM")}


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the server's memory from /proc")
def test_a_200_mib_line_leaves_the_gateways_memory_flat(guarded: GatewayProcess, flood: ServedApp,
                                                         fake_openai: FakeOpenAI) -> None:
    assert guarded.proc is not None
    pid = guarded.proc.pid  # one worker: uvicorn serves in the process it was started as
    fake_openai.state.api_keys.add(ACME_KEY)
    warm = [("providers", "set", "openai", f"api_key={ACME_KEY}", f"base_url={local(fake_openai.v1_url)}")]
    with tenant_of(guarded, "warm", warm) as tenant:
        for stream in (False, True):  # every code path touched once before measuring
            guarded.client(tenant.token).chat.completions.create(model="openai/gpt-4o-mini", messages=USER,
                                                                 stream=stream)
    setup = [("providers", "set", "openai", "api_key=sk-fake-flood-00000001", f"base_url={local(flood.base_url)}/v1")]
    with tenant_of(guarded, "flood", setup) as tenant:
        before = memory_kib(pid)
        started = time.monotonic()
        with guarded.http(tenant.token) as http:
            for stream in (False, True):
                resp = http.post("/v1/chat/completions",
                                 json={"model": "openai/gpt-4o-mini", "messages": USER, "stream": stream})
                assert resp.status_code == 502, resp.text
                assert error_of(resp)["code"] == "upstream_response_too_large"
        after = memory_kib(pid)
    assert time.monotonic() - started < 30
    # The limits are 8 MiB (body) and 4 MiB (line); a copy or two of that is the most a
    # bounded read may cost. Unbounded, the peak would grow by at least the 200 MiB.
    assert after["VmHWM"] - before["VmHWM"] < 48 * 1024, (before, after)
    assert after["VmRSS"] - before["VmRSS"] < 48 * 1024, (before, after)
    assert httpx.get(guarded.base_url + "/healthz", timeout=5).status_code == 200


# -- bounded parsing: nesting ---------------------------------------------------------------------

# Well-formed and a million levels deep: orjson's parser recurses per level, and unchecked
# this overflows the worker's stack (a segfault, not an exception).
DEEP = b"[" * 1_000_000 + b"]" * 1_000_000


@pytest.fixture(scope="module")
def abyss() -> Iterator[ServedApp]:
    """Answers every POST with 200 and DEEP: as JSON, or as one SSE event."""
    async def deep(request: Request) -> Response:
        body = await request.body()
        if b'"stream":true' in body.replace(b" ", b"") or b"text/event-stream" in request.headers.get("accept", "").encode():
            return Response(b"data: " + DEEP + b"\n\n", media_type="text/event-stream")
        return Response(DEEP, media_type="application/json")

    with ServedApp(Starlette(routes=[Route("/{p:path}", deep, methods=["POST"])])) as served:
        yield served


DEEP_PROVIDERS = {
    "openai": ("openai/gpt-4o-mini", ["api_key=sk-fake-deep-0000000001"], "/v1"),
    "anthropic": ("anthropic/claude-3-5-haiku-latest", ["api_key=sk-ant-fake-deep-000000001"], ""),
    "qwen": ("qwen/qwen-plus", ["api_key=sk-fake-deep-qwen-00001"], "/api/v1"),
    "minimax": ("minimax/abab6.5s-chat", ["api_key=fake-deep-minimax-0001", "group_id=123"], "/v1"),
    "zhipu": ("zhipu/glm-4", ["api_key=fakeid.fakesecret00000000"], "/api/paas/v4"),
    "chatglm": ("chatglm/chatglm2-6b", [], "/v1"),
}


@pytest.mark.parametrize("provider", sorted(DEEP_PROVIDERS))
def test_an_upstream_answer_nested_a_million_deep_is_a_502_not_a_dead_worker(
        guarded: GatewayProcess, abyss: ServedApp, provider: str) -> None:
    model, fields, path = DEEP_PROVIDERS[provider]
    setup = [("providers", "set", provider, *fields, f"base_url={local(abyss.base_url)}{path}")]
    with tenant_of(guarded, f"deep-{provider}", setup) as tenant, guarded.http(tenant.token) as http:
        for stream in (False, True):
            resp = http.post("/v1/chat/completions", json={"model": model, "messages": USER, "stream": stream})
            if stream and resp.status_code == 200:
                # Either the error came as the stream's one frame, or (OpenAI's pass-through,
                # which by design never re-parses a chunk) the bytes went on unparsed.
                assert '"error"' in resp.text or provider == "openai", resp.text[:300]
            else:
                assert resp.status_code == 502, (stream, resp.status_code, resp.text[:300])
                assert set(resp.json()) == {"error"}
        # The one worker is still alive and serving.
        assert http.get("/v1/models").status_code == 200
