"""One bad usage record must never stop usage recording (issue 10): the writer retries a
refused batch row by row and drops only the row the database cannot store; counts from
vendors are clamped before they become a row; usage windows stay in datetime's range."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from proxy.store import Store, StoreUnavailable, UsageRow
from proxy.usage_report import parse_time
from proxy.usage_writer import UsageWriter
from translators.errors import ApiError
from translators.types import MAX_TOKEN_COUNT, Usage


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = Store(tmp_path / "modelport.db")
    await s.open()
    await s.create_tenant("tn_1", "acme", b"public", b"wrapped")
    yield s
    await s.close()


def row(request_id: str, prompt: int = 3) -> UsageRow:
    return UsageRow(1000.0, request_id, "tn_1", "tok", "chat.completions", "openai", "m", "llm", "own", False,
                    200, prompt, 4, prompt + 4, False, 12.5, None)


def written(store_path: Path) -> list[str]:
    db = sqlite3.connect(store_path)
    try:
        return [r[0] for r in db.execute("SELECT request_id FROM usage ORDER BY request_id")]
    finally:
        db.close()


async def test_one_row_the_database_cannot_store_costs_only_that_row(
        store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    writer = UsageWriter(store, retention_days=0)
    for rid in ("req_a", "req_b"):
        writer.submit(row(rid))
    writer.submit(row("req_bad", prompt=10**19))  # beyond SQLite's 64-bit integers
    writer.submit(row("req_c"))
    with caplog.at_level(logging.ERROR, logger="modelport"):
        assert await writer.flush()
    assert writer.pending == 0
    assert written(tmp_path / "modelport.db") == ["req_a", "req_b", "req_c"]
    dropped = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(dropped) == 1 and "req_bad" in dropped[0] and str(10**19) not in dropped[0]
    # And the writer goes on: later rows are written as usual.
    writer.submit(row("req_d"))
    assert await writer.flush()
    assert written(tmp_path / "modelport.db") == ["req_a", "req_b", "req_c", "req_d"]


async def test_a_failing_database_keeps_the_rows_for_a_retry(store: Store, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    writer = UsageWriter(store, retention_days=0)
    writer.submit(row("req_a"))

    async def broken(rows: Any, batch_id: Any = None) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(store, "insert_usage", broken)
    monkeypatch.setattr(store, "insert_usage_each", broken)
    assert not await writer.flush()
    assert writer.pending == 1  # nothing dropped: the database, not the row, failed
    monkeypatch.undo()
    assert await writer.flush()
    assert written(tmp_path / "modelport.db") == ["req_a"]


class Unreachable(StoreUnavailable):
    def __init__(self) -> None:
        super().__init__(503, "cannot use the PostgreSQL database at db:5432/x: Connection refused",
                         "server_error", "database_unavailable")


async def test_a_database_outage_keeps_every_row_in_order_and_backs_off(
        store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """PostgreSQL restarting: no row-by-row fallback, the rows wait in order, the pause
    doubles up to max_backoff, the outage is logged once (no traceback) and so is its end."""
    writer = UsageWriter(store, retention_days=0, batch=2, interval=0.5, max_backoff=4.0)
    calls: list[int] = []

    async def down(rows: Any, batch_id: Any = None) -> None:
        calls.append(len(rows))
        raise Unreachable()

    async def never(rows: Any, batch_id: Any = None) -> None:
        raise AssertionError("a database outage is not a bad row")

    for rid in ("req_a", "req_b", "req_c"):
        writer.submit(row(rid))
    monkeypatch.setattr(store, "insert_usage", down)
    monkeypatch.setattr(store, "insert_usage_each", never)
    delays = []
    with caplog.at_level(logging.WARNING, logger="modelport"):
        for _ in range(5):
            assert not await writer.flush()
            delays.append(writer.retry_delay())
        writer.submit(row("req_d"))
        assert writer.pending == 4
        monkeypatch.undo()
        assert await writer.flush()
    assert delays == [1.0, 2.0, 4.0, 4.0, 4.0]
    assert writer.retry_delay() == 0.5
    assert calls == [2] * 5  # the first batch each time, never split
    assert written(tmp_path / "modelport.db") == ["req_a", "req_b", "req_c", "req_d"]
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2 and not any(r.exc_info for r in caplog.records), messages
    assert "cannot use the PostgreSQL database" in messages[0] and "3 records queued" in messages[0]
    assert "back" in messages[1] and "5 failed attempts" in messages[1] and "4 queued records" in messages[1]


async def test_a_batch_whose_commit_answer_was_lost_is_not_written_twice(
        store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The connection drops as PostgreSQL commits: the batch is in, the writer saw an error.
    Its retry (the same rows under the same id, before newer ones) writes nothing again."""
    writer = UsageWriter(store, retention_days=0, batch=2)
    real = store.insert_usage
    ids: list[str | None] = []

    async def committed_then_lost(rows: Any, batch_id: Any = None) -> None:
        ids.append(batch_id)
        await real(rows, batch_id)
        raise Unreachable()

    for rid in ("req_a", "req_b", "req_c"):
        writer.submit(row(rid))
    monkeypatch.setattr(store, "insert_usage", committed_then_lost)
    assert not await writer.flush()
    writer.submit(row("req_d"))
    monkeypatch.undo()
    assert await writer.flush()
    assert written(tmp_path / "modelport.db") == ["req_a", "req_b", "req_c", "req_d"]
    assert ids[0] is not None and writer.pending == 0


async def test_an_outage_longer_than_the_queue_drops_the_oldest_and_says_how_many(
        store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    writer = UsageWriter(store, retention_days=0, capacity=3, batch=2)

    async def down(rows: Any, batch_id: Any = None) -> None:
        raise Unreachable()

    monkeypatch.setattr(store, "insert_usage", down)
    with caplog.at_level(logging.WARNING, logger="modelport"):
        for rid in ("req_a", "req_b", "req_c", "req_d", "req_e"):
            writer.submit(row(rid))
        assert not await writer.flush()
        monkeypatch.undo()
        assert await writer.flush()
    assert written(tmp_path / "modelport.db") == ["req_c", "req_d", "req_e"]
    assert any("dropped 2 records" in r.getMessage() for r in caplog.records)


async def test_shutdown_during_an_outage_counts_what_it_could_not_write(
        store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    writer = UsageWriter(store, retention_days=0, interval=0.05)

    async def down(rows: Any, batch_id: Any = None) -> None:
        raise Unreachable()

    monkeypatch.setattr(store, "insert_usage", down)
    writer.start()
    for rid in ("req_a", "req_b"):
        writer.submit(row(rid))
    with caplog.at_level(logging.WARNING, logger="modelport"):
        await writer.close()
    assert any("2 records could not be written at shutdown" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("raw, expected", [
    ({"prompt_tokens": 10**19, "completion_tokens": 5, "total_tokens": 10**19 + 5},
     (MAX_TOKEN_COUNT, 5, MAX_TOKEN_COUNT)),
    ({"prompt_tokens": "many", "completion_tokens": -4, "total_tokens": [1]}, (0, 0, 0)),
    ({"prompt_tokens": 7.9, "completion_tokens": True, "total_tokens": None}, (7, 0, 7)),
    ({"prompt_tokens": float("inf"), "completion_tokens": float("nan")}, (0, 0, 0)),
])
def test_vendor_counts_are_clamped_where_they_are_read(raw: dict[str, Any], expected: tuple[int, int, int]) -> None:
    usage = Usage.from_openai(raw)
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == expected
    direct = Usage(10**30, -1, "3")  # type: ignore[arg-type]  # what a translator might pass on
    assert (direct.prompt_tokens, direct.completion_tokens, direct.total_tokens) == (MAX_TOKEN_COUNT, 0, 0)


@pytest.mark.parametrize("value, end", [("9999-12-31", True), ("100000000000000000000000", False),
                                        ("9999-12-31T23:59:59-05:00", False), ("0001-01-01T00:00:00+14:00", False)])
def test_usage_window_bounds_out_of_range_are_a_400(value: str, end: bool) -> None:
    with pytest.raises(ApiError) as info:
        parse_time(value, "end" if end else "start", end=end)
    assert info.value.status == 400 and info.value.param == ("end" if end else "start")


def test_usage_window_bounds_at_the_edges_of_the_range() -> None:
    assert parse_time("9999-12-30", "end", end=True) == parse_time("9999-12-31", "start")
    assert parse_time("0001-01-01", "start") is not None
