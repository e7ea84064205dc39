"""Usage accounting end to end: every request becomes one row (written off the hot
path, in batches), with the vendor's token counts; summaries for the tenant
(/v1/usage), the CLI and the admin API; flush on shutdown; retention.

The module's gateway lends the fake Anthropic as a hosted trial; its tenant has its
own credential for the fake OpenAI, so one tenant has both own and hosted traffic.
"""

from __future__ import annotations

import io
import json
import math
import time
import uuid
import wave
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.harness import GatewayProcess
from tests.e2e.hosted_setup import (
    ADMIN_TOKEN,
    HI,
    HOSTED_ANTHROPIC_KEY,
    HOSTED_OPENAI_KEY,
    accept_hosted_keys,
    give_own_openai,
    hosted_env,
    hosted_gateway,
    hosted_settings,
    new_tenant,
    usage_rows,
    wait_until,
)
from tests.fakes.anthropic_fixtures import FakeAnthropic
from tests.fakes.fixtures import FakeOpenAI
from emulators.server import free_port

CLAUDE = "anthropic/claude-haiku-4-5"


@pytest.fixture(scope="module")
def hosted(tmp_path_factory: pytest.TempPathFactory, fake_openai_server: FakeOpenAI,
           fake_anthropic_server: FakeAnthropic, fresh_database: Callable[[], str | None]) -> Iterator[GatewayProcess]:
    with hosted_gateway(tmp_path_factory.mktemp("usage"), fake_openai_server, fake_anthropic_server,
                        quota=4, database=fresh_database()) as gw:
        yield gw


@pytest.fixture
def gw(hosted: GatewayProcess, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic) -> GatewayProcess:
    accept_hosted_keys(fake_openai, fake_anthropic)
    return hosted


def token_id(gw: GatewayProcess, tenant: str) -> str:
    return json.loads(gw.cli("--json", "tokens", "list", tenant).out)[0]["id"]


def wav_bytes() -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x00" * 800)
    return buf.getvalue()


def stream_usage(sdk: Any, model: str) -> Any:
    chunks = list(sdk.chat.completions.create(model=model, messages=HI, stream=True,
                                              stream_options={"include_usage": True}))
    assert chunks[-1].usage is not None and chunks[-1].choices == []
    return chunks[-1].usage


def rows_when(gw: GatewayProcess, tenant: str, count: int) -> list[dict[str, Any]]:
    wait_until(lambda: len(usage_rows(gw, tenant)) >= count, timeout=5)
    rows = usage_rows(gw, tenant)
    assert len(rows) == count, rows
    return rows


def test_rows_for_stream_and_non_stream_own_and_hosted(gw: GatewayProcess, fake_openai: FakeOpenAI) -> None:
    tenant, token = new_tenant(gw)
    give_own_openai(gw, fake_openai, tenant)
    sdk = gw.client(token)
    expected = [
        ("openai", "gpt-4o-mini", "own", False, sdk.chat.completions.create(model="gpt-4o-mini", messages=HI).usage),
        ("openai", "gpt-4o-mini", "own", True, stream_usage(sdk, "gpt-4o-mini")),
        ("anthropic", "claude-haiku-4-5", "hosted", False, sdk.chat.completions.create(model=CLAUDE,
                                                                                       messages=HI).usage),
        ("anthropic", "claude-haiku-4-5", "hosted", True, stream_usage(sdk, CLAUDE)),
    ]
    embedding = sdk.embeddings.create(model="text-embedding-3-small", input="some words to embed").usage
    rows = rows_when(gw, tenant, 5)
    tok = token_id(gw, tenant)
    for row, (provider, model, billing, stream, usage) in zip(rows, expected, strict=False):
        assert (row["provider"], row["model"], row["billing"], bool(row["stream"])) == (provider, model, billing,
                                                                                          stream)
        assert (row["prompt_tokens"], row["completion_tokens"], row["total_tokens"]) == (
            usage.prompt_tokens, usage.completion_tokens, usage.total_tokens)
        assert usage.completion_tokens > 0
        assert row["status"] == 200 and row["estimated"] == 0 and row["token_id"] == tok
        assert row["model_type"] == "llm" and row["endpoint"] == "chat.completions"
        assert row["latency_ms"] > 0
        assert (row["ttft_ms"] is not None) == stream
        if stream:
            assert 0 < row["ttft_ms"] <= row["latency_ms"]
    emb = rows[4]
    assert (emb["model_type"], emb["endpoint"], emb["billing"]) == ("text-embedding", "embeddings", "own")
    assert (emb["prompt_tokens"], emb["total_tokens"]) == (embedding.prompt_tokens, embedding.total_tokens)
    assert abs(time.time() - rows[0]["created_at"]) < 60


def test_failures_and_estimates_are_recorded(gw: GatewayProcess, fake_openai: FakeOpenAI) -> None:
    tenant, token = new_tenant(gw)
    give_own_openai(gw, fake_openai, tenant)
    with httpx.Client(base_url=gw.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=15) as client:
        # The transcription endpoint reports no tokens: estimated from the transcript.
        transcript = client.post("/v1/audio/transcriptions", data={"model": "whisper-1"},
                                 files={"file": ("a.wav", wav_bytes(), "audio/wav")})
        assert transcript.status_code == 200
        assert client.post("/v1/chat/completions", json={"model": "no-such-model", "messages": HI}).status_code \
            == 404
        fake_openai.state.fail_next.append((429, {"error": {"message": "slow down", "type": "requests",
                                                            "param": None, "code": "rate_limit_exceeded"}}))
        assert client.post("/v1/chat/completions", json={"model": "gpt-4o", "messages": HI}).status_code == 429
    assert httpx.get(gw.base_url + "/v1/models").status_code == 401  # nobody to account to: no row
    rows = rows_when(gw, tenant, 3)
    audio, missing, limited = rows
    assert (audio["model_type"], audio["status"], audio["estimated"]) == ("speech2text", 200, 1)
    assert audio["completion_tokens"] == math.ceil(len(transcript.content) / 4) and audio["prompt_tokens"] == 0
    assert (missing["provider"], missing["model"], missing["status"], missing["total_tokens"]) == \
        ("", "no-such-model", 404, 0)
    assert (limited["provider"], limited["status"], limited["estimated"], limited["total_tokens"]) == \
        ("openai", 429, 0, 0)


def test_usage_endpoint_groups_and_windows(gw: GatewayProcess, fake_openai: FakeOpenAI) -> None:
    tenant, token = new_tenant(gw)
    give_own_openai(gw, fake_openai, tenant)
    sdk = gw.client(token)
    replies = [sdk.chat.completions.create(model=m, messages=HI) for m in ("gpt-4o-mini", "gpt-4o-mini", CLAUDE)]
    rows_when(gw, tenant, 3)
    with httpx.Client(base_url=gw.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=15) as client:
        by_model = client.get("/v1/usage").json()
        assert by_model["group_by"] == "model"
        groups = {g["key"]: g for g in by_model["data"]}
        assert set(groups) == {"openai/gpt-4o-mini", "anthropic/claude-haiku-4-5"}
        assert groups["openai/gpt-4o-mini"]["requests"] == 2 and groups["openai/gpt-4o-mini"]["hosted"] == 0
        assert groups["anthropic/claude-haiku-4-5"]["hosted"] == 1
        assert by_model["total"]["total_tokens"] == sum(r.usage.total_tokens for r in replies)
        assert by_model["total"]["requests"] == 3 and by_model["total"]["estimated"] == 0

        by_provider = client.get("/v1/usage", params={"group_by": "provider"}).json()
        assert {g["key"]: g["requests"] for g in by_provider["data"]} == {"openai": 2, "anthropic": 1}
        today = datetime.now(UTC).date().isoformat()
        by_day = client.get("/v1/usage", params={"group_by": "day", "start": today, "end": today}).json()
        assert [(g["key"], g["requests"]) for g in by_day["data"]] == [(today, 3)]
        past = client.get("/v1/usage", params={"start": "2020-01-01", "end": str(int(time.time()) - 3600)}).json()
        assert past["data"] == [] and past["total"]["requests"] == 0
        iso = client.get("/v1/usage", params={"start": "2020-01-01T00:00:00Z"}).json()
        assert iso["total"]["requests"] == 3

        for params in ({"group_by": "tenant"}, {"start": "yesterday"}, {"start": "2030-01-01", "end": "2020-01-01"}):
            bad = client.get("/v1/usage", params=params)
            assert bad.status_code == 400 and bad.json()["error"]["param"] in ("group_by", "start", "end")
    # Another tenant sees none of it.
    _, other = new_tenant(gw)
    assert httpx.get(gw.base_url + "/v1/usage", headers={"Authorization": f"Bearer {other}"}).json()["data"] == []


def test_cli_table_and_admin_api_across_tenants(gw: GatewayProcess, fake_openai: FakeOpenAI) -> None:
    tenant, token = new_tenant(gw)
    give_own_openai(gw, fake_openai, tenant)
    sdk = gw.client(token)
    reply = sdk.chat.completions.create(model="gpt-4o-mini", messages=HI)
    sdk.chat.completions.create(model=CLAUDE, messages=HI)
    rows_when(gw, tenant, 2)

    table = gw.cli("usage", tenant, "--by", "provider").out
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["PROVIDER", "REQUESTS", "ERRORS"]
    assert any(line.split()[:2] == ["openai", "1"] for line in lines)
    assert any(line.split()[:2] == ["total", "2"] for line in lines)
    by_model = json.loads(gw.cli("--json", "usage", tenant, "--since", "2020-01-01").out)
    assert {g["key"] for g in by_model["data"]} == {"openai/gpt-4o-mini", "anthropic/claude-haiku-4-5"}
    assert json.loads(gw.cli("--json", "usage", tenant, "--since", "2020-01-01", "--until", "2020-01-02").out)[
        "data"] == []
    assert gw.cli("usage", tenant, "--since", "soon", check=False).code == 1

    with httpx.Client(base_url=gw.base_url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=15) as admin:
        per_tenant = admin.get("/admin/v1/usage", params={"group_by": "tenant"}).json()
        assert {g["key"]: g["requests"] for g in per_tenant["data"]}[tenant] == 2
        one = admin.get("/admin/v1/usage", params={"tenant": tenant, "group_by": "model"}).json()
        got = {g["key"]: g for g in one["data"]}
        assert got["openai/gpt-4o-mini"]["total_tokens"] == reply.usage.total_tokens
        every = admin.get("/admin/v1/usage").json()
        assert any(g.get("tenant") == tenant for g in every["data"])  # rows say whose they are
        assert admin.get("/admin/v1/usage", params={"tenant": "nobody-" + uuid.uuid4().hex}).status_code == 404
        assert httpx.get(gw.base_url + "/admin/v1/usage", headers={"Authorization": f"Bearer {token}"}
                         ).status_code == 401


def test_platform_keys_not_in_the_log(gw: GatewayProcess) -> None:
    log = gw.log()
    assert "request " in log
    assert HOSTED_OPENAI_KEY not in log and HOSTED_ANTHROPIC_KEY not in log


# -- flush on shutdown, retention ----------------------------------------------------------


def test_rows_are_flushed_on_shutdown_and_old_rows_pruned(tmp_path: Path, fake_openai: FakeOpenAI,
                                                          fake_anthropic: FakeAnthropic,
                                                          fresh_database: Callable[[], str | None]) -> None:
    accept_hosted_keys(fake_openai, fake_anthropic)
    with hosted_env():
        # A flush interval far beyond the test: rows can only reach the database at shutdown.
        gw = GatewayProcess(tmp_path, workers=2, settings=hosted_settings(
            fake_openai, fake_anthropic, usage_flush_interval=300, usage_retention_days=1),
            database=fresh_database())
        gw.port = free_port()
        gw.write_config()
        tenant, token = new_tenant(gw)  # creates and migrates the database
        old = time.time() - 3 * 86_400
        gw.sql_many("INSERT INTO usage (created_at, request_id, tenant_id, token_id, endpoint, provider, "
                           "model, model_type, billing, stream, status, prompt_tokens, completion_tokens, "
                           "total_tokens, estimated, latency_ms, ttft_ms) VALUES "
                           "(?, ?, 'tn_gone', 'tok', 'chat.completions', 'openai', 'm', 'llm', 'own', 0, 200, "
                           "1, 1, 2, 0, 1.0, NULL)", [(old - i, f"req_old_{i}") for i in range(5)])
        gw.start()
        try:
            sdk = gw.client(token)
            for stream in (False, True, False, True):
                if stream:
                    assert list(sdk.chat.completions.create(model=CLAUDE, messages=HI, stream=True))
                else:
                    assert sdk.chat.completions.create(model=CLAUDE, messages=HI).choices
            time.sleep(0.3)
            assert usage_rows(gw, tenant) == []  # still queued in the workers: written off the hot path
        finally:
            gw.stop()
    rows = usage_rows(gw, tenant)
    assert [bool(r["stream"]) for r in rows] == [False, True, False, True]
    assert all(r["billing"] == "hosted" and r["total_tokens"] > 0 for r in rows)
    # each worker prunes as it starts, then about once an hour
    assert gw.sql("SELECT COUNT(*) FROM usage WHERE tenant_id = 'tn_gone'")[0][0] == 0
    assert "usage: deleted 5 rows (records and daily totals) older than the retention period" in gw.log()
