"""Usage accounting without a server: token estimates, the request record, the
background writer (batches, bounded queue, requeue, flush on close, retention) and
the summaries (windows, groups, the CLI table)."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from proxy import usage_writer
from proxy.store import Store, UsageRow
from proxy.usage import (
    RequestRecord,
    estimate_completion_tokens,
    estimate_prompt_tokens,
)
from proxy.usage_report import parse_time, summarize, table
from proxy.usage_writer import UsageWriter
from translators.errors import ApiError
from translators.types import (
    ChatRequest,
    CompletionRequest,
    EmbeddingRequest,
    TranscriptionResult,
    Usage,
)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = Store(tmp_path / "modelport.db")
    await s.open()
    await s.create_tenant("tn_1", "acme", b"public", b"wrapped")
    await s.create_tenant("tn_2", "beta", b"public", b"wrapped")
    yield s
    await s.close()


def row(created: float = 1000.0, tenant: str = "tn_1", provider: str = "openai", model: str = "m",
        billing: str = "own", status: int = 200, tokens: tuple[int, int] = (3, 4), estimated: bool = False,
        request_id: str = "req", cost: int | None = None) -> UsageRow:
    return UsageRow(created, request_id, tenant, "tok", "chat.completions", provider, model, "llm", billing, False,
                    status, tokens[0], tokens[1], sum(tokens), estimated, 12.5, None, cost_nanos=cost)


# -- estimates ------------------------------------------------------------------------------


def test_prompt_estimates_are_about_four_characters_per_token() -> None:
    chat = ChatRequest.parse({"model": "m", "messages": [
        {"role": "system", "content": "12345678"},
        {"role": "user", "content": [{"type": "text", "text": "abcd"},
                                     {"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}]})
    assert estimate_prompt_tokens(chat) == 3
    assert estimate_prompt_tokens(CompletionRequest.parse({"model": "m", "prompt": ["abcde", "fgh"]})) == 3
    assert estimate_prompt_tokens(CompletionRequest.parse({"model": "m", "prompt": [1, 2, 3, 4, 5]})) == 5
    assert estimate_prompt_tokens(EmbeddingRequest.parse({"model": "m", "input": "x" * 10})) == 3
    assert estimate_prompt_tokens(None) == 0


def test_completion_estimates_from_the_answer_or_the_chunk_count() -> None:
    assert estimate_completion_tokens({"choices": [{"message": {"content": "x" * 9}}, {"text": "abcd"}]}) == 4
    assert estimate_completion_tokens({"data": [{"embedding": [0.1]}]}) == 0
    assert estimate_completion_tokens(TranscriptionResult(b'{"text": "hi"}', "application/json")) == 4
    assert estimate_completion_tokens(7) == 7


def test_the_record_prefers_vendor_counts_and_flags_estimates() -> None:
    rows: list[UsageRow] = []
    rec = RequestRecord("req_1", "chat.completions", "llm", rows.append, tenant_id="tn_1", token_id="tok_1")
    rec.request = ChatRequest.parse({"model": "m", "messages": [{"role": "user", "content": "x" * 40}]})
    rec.finish(200, Usage(5, 6, 11))
    assert rows[-1].prompt_tokens == 5 and rows[-1].total_tokens == 11 and not rows[-1].estimated
    assert rec.request is None  # the body does not outlive the request

    rec = RequestRecord("req_2", "chat.completions", "llm", rows.append, tenant_id="tn_1", stream=True)
    rec.request = ChatRequest.parse({"model": "m", "messages": [{"role": "user", "content": "x" * 40}]})
    rec.first_token()
    rec.finish(200, None, 9)
    last = rows[-1]
    assert (last.prompt_tokens, last.completion_tokens, last.total_tokens, last.estimated) == (10, 9, 19, True)
    assert last.stream and last.ttft_ms is not None and last.ttft_ms <= last.latency_ms

    rec = RequestRecord("req_3", "chat.completions", "llm", rows.append, tenant_id="tn_1")
    rec.finish(502)
    assert (rows[-1].status, rows[-1].total_tokens, rows[-1].estimated) == (502, 0, False)

    before = len(rows)
    RequestRecord("req_4", "chat.completions", "llm", rows.append).finish(401)  # no tenant: nothing to record
    assert len(rows) == before


# -- the writer -------------------------------------------------------------------------------


async def test_writer_batches_and_flushes_on_close(store: Store) -> None:
    writer = UsageWriter(store, retention_days=0, batch=4, interval=60)
    writer.start()
    for i in range(10):
        writer.submit(row(created=1000 + i, request_id=f"r{i}"))
    await writer.close()
    assert writer.pending == 0
    summary = await store.usage_summary("tn_1", 0, 10_000, "model")
    assert summary[0].requests == 10 and summary[0].total_tokens == 70


async def test_a_full_queue_drops_the_oldest_and_says_so(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    writer = UsageWriter(store, retention_days=0, capacity=3, interval=60)
    for i in range(5):
        writer.submit(row(created=1000 + i, request_id=f"r{i}"))
    assert writer.pending == 3
    with caplog.at_level(logging.WARNING, logger="modelport"):
        assert await writer.flush()
    assert "dropped 2 records" in caplog.text
    kept = await store._all("SELECT request_id FROM usage ORDER BY created_at")
    assert [r[0] for r in kept] == ["r2", "r3", "r4"]


async def test_a_failed_write_keeps_the_rows_for_the_next_try(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    writer = UsageWriter(store, retention_days=0, interval=60)
    writer.submit(row())
    real = store.insert_usage

    async def locked(rows: list[UsageRow]) -> None:
        raise RuntimeError("database is locked")

    monkeypatch.setattr(store, "insert_usage", locked)
    monkeypatch.setattr(store, "insert_usage_each", locked)  # the row-by-row retry fails as well
    assert not await writer.flush()
    assert writer.pending == 1
    monkeypatch.setattr(store, "insert_usage", real)
    assert await writer.flush() and writer.pending == 0


async def test_retention_deletes_old_rows_in_batches(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(usage_writer, "PRUNE_BATCH", 2)
    now = time.time()
    await store.insert_usage([row(created=now - 10 * 86_400 - i, request_id=f"old{i}") for i in range(5)]
                             + [row(created=now, request_id="new")])
    writer = UsageWriter(store, retention_days=7)
    writer.start()  # prunes as it starts
    for _ in range(100):
        if len(await store._all("SELECT id FROM usage")) == 1:
            break
        await asyncio.sleep(0.01)
    await writer.close()
    assert [r[0] for r in await store._all("SELECT request_id FROM usage")] == ["new"]


# -- summaries ----------------------------------------------------------------------------------


def test_window_bounds_accept_seconds_dates_and_date_times() -> None:
    assert parse_time("1700000000", "start") == 1_700_000_000
    assert parse_time("2024-05-01", "start") == datetime(2024, 5, 1, tzinfo=UTC).timestamp()
    assert parse_time("2024-05-01", "end", end=True) == datetime(2024, 5, 2, tzinfo=UTC).timestamp()
    assert parse_time("2024-05-01T12:00:00Z", "start") == datetime(2024, 5, 1, 12, tzinfo=UTC).timestamp()
    assert parse_time("2024-05-01T14:00:00+02:00", "start") == datetime(2024, 5, 1, 12, tzinfo=UTC).timestamp()
    assert parse_time("2024-05-01T12:00:00", "start") == datetime(2024, 5, 1, 12, tzinfo=UTC).timestamp()
    assert parse_time(None, "start") is None and parse_time(" ", "start") is None
    with pytest.raises(ApiError) as exc:
        parse_time("last week", "start")
    assert exc.value.status == 400 and exc.value.param == "start"


async def test_summaries_group_and_total(store: Store) -> None:
    day = datetime(2024, 5, 1, tzinfo=UTC).timestamp()
    await store.insert_usage([
        row(day + 10, model="gpt-a", tokens=(1, 2), cost=1_500),
        row(day + 20, model="gpt-a", billing="hosted", tokens=(3, 4), estimated=True),  # unpriced then
        row(day + 86_400, provider="other", model="b", status=500, tokens=(0, 0)),
        row(day + 30, provider="", model="nope", status=404, tokens=(0, 0), cost=0),  # never routed: free
        row(day + 40, tenant="tn_2", model="gpt-a", tokens=(100, 100)),
    ])
    s = await summarize(store, "tn_1", "2024-05-01", "2024-05-02", "model")
    groups = {g["key"]: g for g in s["data"]}
    assert set(groups) == {"openai/gpt-a", "other/b", "nope"} and "tenant" not in groups["nope"]
    assert groups["openai/gpt-a"] | {"avg_latency_ms": 0} == {
        "key": "openai/gpt-a", "requests": 2, "errors": 0, "hosted": 1, "prompt_tokens": 4,
        "completion_tokens": 6, "total_tokens": 10, "estimated": 1, "avg_latency_ms": 0, "avg_ttft_ms": None,
        "cost": 0.0000015, "unpriced_requests": 1}
    assert (groups["other/b"]["cost"], groups["other/b"]["unpriced_requests"]) == (None, 1)  # null, never 0
    assert (groups["nope"]["cost"], groups["nope"]["unpriced_requests"]) == (0.0, 0)
    assert s["total"]["requests"] == 4 and s["total"]["errors"] == 2 and s["total"]["total_tokens"] == 10
    assert (s["total"]["cost"], s["total"]["unpriced_requests"]) == (0.0000015, 2)
    by_day = await summarize(store, "tn_1", "2024-05-01", "2024-05-02", "day")
    assert [(g["key"], g["requests"]) for g in by_day["data"]] == [("2024-05-01", 3), ("2024-05-02", 1)]
    only_first = await summarize(store, "tn_1", "2024-05-01", "2024-05-01", "provider")
    assert {g["key"]: g["requests"] for g in only_first["data"]} == {"(unrouted)": 1, "openai": 2}
    everyone = await summarize(store, None, "2024-05-01", "2024-05-03", "model", per_tenant=True,
                               allowed=("model", "tenant"))
    assert {(g["tenant"], g["key"]) for g in everyone["data"]} >= {("acme", "openai/gpt-a"), ("beta", "openai/gpt-a")}
    per_tenant = await summarize(store, None, "2024-05-01", "2024-05-03", "tenant", per_tenant=True,
                                 allowed=("tenant",))
    assert {g["key"]: g["requests"] for g in per_tenant["data"]} == {"acme": 4, "beta": 1}
    with pytest.raises(ApiError):
        await summarize(store, "tn_1", None, None, "tenant")  # tenants cannot group by tenant

    text = table(s)
    lines = text.splitlines()
    assert lines[0].split()[:2] == ["MODEL", "REQUESTS"]
    assert any(line.split()[:2] == ["openai/gpt-a", "2"] and "~" in line and "$0.0000015+" in line for line in lines)
    assert any(line.split()[:2] == ["other/b", "1"] and "unpriced" in line for line in lines)
    # an end date includes its whole day
    assert lines[-1] == ("window 2024-05-01T00:00:00Z .. 2024-05-03T00:00:00Z; ~ = includes estimated token counts; "
                         "+ = without 2 unpriced request(s) (no price configured)")
    assert math.isclose(datetime.fromisoformat(s["end"]).timestamp(), day + 2 * 86_400)
