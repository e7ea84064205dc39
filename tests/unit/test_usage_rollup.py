"""Daily usage rollups (issue 11): a summary read from `usage_daily` plus the raw rows of
partial edge days must be the raw table's GROUP BY, for any rows and any window; the
rollup must stay equal to a fresh aggregation of the raw rows through batched inserts,
the row-by-row fallback, retention, tenant deletion and an upgrade from schema 4.

Reproducible: hypothesis runs derandomized with no example database. Latencies are
multiples of 1/4 ms, so every sum is exact and averages can be compared for equality
(with arbitrary floats the order of additions differs by an ulp, hidden by rounding)."""

from __future__ import annotations

import asyncio
import itertools
import math
import sqlite3
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.store import Store, UsageGroup, UsageRow
from proxy.store.schema import MIGRATIONS
from proxy.store.usage_rollup import (
    DAY_OF,
    GROUP_KEYS,
    ROLLUP_SINCE,
    day_of,
    split_window,
    summary_query,
)

DAY = 86_400
D0 = 19_844 * DAY  # 2024-05-01T00:00:00Z
MAX_TS = 253_402_300_799.0

# The summary as it was before rollups: one GROUP BY over the raw rows. One deliberate
# difference: the day of a row is its exact UTC day (strftime rounds to the millisecond,
# and put 23:59:59.9996 on the next day while the window put it on this one).
_REF_KEYS = {**GROUP_KEYS, "day": "strftime('%Y-%m-%d', " + DAY_OF.replace("created_at", "u.created_at")
             + " * 86400, 'unixepoch')"}


def reference(db: sqlite3.Connection, tenant_id: str | None, start: float, end: float, group_by: str,
              per_tenant: bool) -> list[UsageGroup]:
    key = _REF_KEYS[group_by]
    who = "COALESCE(t.name, u.tenant_id)" if per_tenant and group_by != "tenant" else "''"
    where = "u.created_at >= ? AND u.created_at < ?" + (" AND u.tenant_id = ?" if tenant_id else "")
    params: tuple[object, ...] = (start, end, tenant_id) if tenant_id else (start, end)
    rows = db.execute(
        f"SELECT {who}, {key}, COUNT(*), SUM(u.status >= 400), SUM(u.billing = 'hosted'), "
        "SUM(u.prompt_tokens), SUM(u.completion_tokens), SUM(u.total_tokens), SUM(u.estimated), "
        "AVG(u.latency_ms), AVG(u.ttft_ms), SUM(u.cost_nanos), COUNT(*) - COUNT(u.cost_nanos) "
        f"FROM usage u LEFT JOIN tenants t ON t.id = u.tenant_id WHERE {where} GROUP BY 1, 2 ORDER BY 1, 2",
        params).fetchall()
    return [UsageGroup(str(r[0]), str(r[1] or ""), int(r[2]), int(r[3]), int(r[4]), int(r[5]), int(r[6]),
                       int(r[7]), int(r[8]), round(float(r[9]), 1),
                       None if r[10] is None else round(float(r[10]), 1),
                       None if r[11] is None else int(r[11]), int(r[12])) for r in rows]


# Migration 5's aggregation, with the cost columns migration 11 added (sum of the priced
# rows' costs, their number).
_FILL = MIGRATIONS[4][MIGRATIONS[4].index("SELECT tenant_id"):].strip().rstrip(";").replace(
    "COUNT(ttft_ms)\n    FROM usage", "COUNT(ttft_ms), COALESCE(SUM(cost_nanos), 0), COUNT(cost_nanos)\n    FROM usage")
assert "cost_nanos" in _FILL


def rollup_rows(db: sqlite3.Connection) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    """(the rollup table, the rollup a fresh aggregation of the raw rows gives)."""
    kept = db.execute("SELECT * FROM usage_daily ORDER BY 1, 2, 3, 4").fetchall()
    fresh = db.execute(f"SELECT * FROM ({_FILL}) ORDER BY 1, 2, 3, 4").fetchall()
    return kept, fresh


# -- strategies ---------------------------------------------------------------------------------

_near_midnight = st.builds(lambda k, side: {0: float(k * DAY), 1: math.nextafter(k * DAY, -math.inf),
                                            2: math.nextafter(k * DAY, math.inf), 3: k * DAY - 0.0004}[side],
                           st.integers(D0 // DAY - 1, D0 // DAY + 4), st.integers(0, 3))
_instant = st.one_of(_near_midnight, st.floats(D0 - DAY, D0 + 5 * DAY), st.integers(D0 - DAY, D0 + 5 * DAY))
_quarter_ms = st.integers(0, 4_000_000).map(lambda q: q / 4)

usage_rows = st.builds(
    lambda created, tenant, provider, model, billing, status, p, c, est, stream, lat, ttft, cost: UsageRow(
        float(created), "req", tenant, "tok", "chat.completions", provider, model, "llm", billing, stream,
        status, p, c, p + c, est, lat, ttft if stream else None, cost_nanos=cost),
    _instant, st.sampled_from(["tn_1", "tn_2", "tn_gone"]),
    # "q/x" + "m" and "q" + "x/m" are both the model key "q/x/m": the key's groups merge.
    st.sampled_from(["", "p", "q", "q/x"]), st.sampled_from(["m", "x/m", "n"]), st.sampled_from(["own", "hosted"]),
    st.sampled_from([200, 399, 400, 404, 500]), st.integers(0, 2**31 - 1), st.integers(0, 5000), st.booleans(),
    st.booleans(), _quarter_ms, _quarter_ms, st.one_of(st.none(), st.integers(0, 10**12)))

_bound = st.one_of(_instant, st.sampled_from([0.0, -62_135_596_800.0, MAX_TS + 1]))
windows = st.tuples(_bound, _bound, st.sampled_from([None, "tn_1", "tn_gone"]), st.sampled_from(sorted(GROUP_KEYS)),
                    st.booleans())

SETTINGS = settings(max_examples=120, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


async def _open(path: Path) -> Store:
    store = Store(path)
    await store.open()
    await store.create_tenant("tn_1", "acme", b"public", b"wrapped")
    await store.create_tenant("tn_2", "beta", b"public", b"wrapped")
    return store


async def _check(store: Store, db: sqlite3.Connection, checks: list[tuple[float, float, str | None, str, bool]]) -> None:
    kept, fresh = rollup_rows(db)
    assert kept == fresh
    for start, end, tenant, group, per_tenant in checks:
        got = await store.usage_summary(tenant, start, end, group, per_tenant)
        assert got == reference(db, tenant, start, end, group, per_tenant), (start, end, tenant, group, per_tenant)


@SETTINGS
@given(rows=st.lists(usage_rows, max_size=40), cuts=st.lists(st.integers(0, 40), max_size=4),
       each=st.lists(st.booleans(), min_size=5, max_size=5), checks=st.lists(windows, min_size=1, max_size=6),
       prune=st.one_of(st.none(), _instant))
def test_rollup_answers_equal_the_raw_group_by(rows: list[UsageRow], cuts: list[int], each: list[bool],
                                               checks: list[tuple[float, float, str | None, str, bool]],
                                               prune: float | None) -> None:
    async def run(path: Path) -> None:
        store = await _open(path)
        db = sqlite3.connect(path)
        try:
            bounds = [0, *sorted(cuts), len(rows)]
            for i, (lo, hi) in enumerate(itertools.pairwise(bounds)):
                batch = rows[lo:hi]
                if each[i]:  # the fallback, with a row it must refuse (and not roll up)
                    bad = batch[0]._replace(prompt_tokens=10**19) if batch else None
                    skipped = await store.insert_usage_each(batch + ([bad] if bad else []))
                    assert [r for r, _ in skipped] == ([bad] if bad else [])
                else:
                    await store.insert_usage(batch)
            await _check(store, db, checks)
            if prune is not None:
                while await store.prune_usage(prune, 3) >= 3:
                    pass
                assert db.execute("SELECT COUNT(*) FROM usage WHERE created_at < ?",
                                  (day_of(prune) * DAY,)).fetchone() == (0,)
                await _check(store, db, checks)
        finally:
            db.close()
            await store.close()

    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run(Path(tmp) / "modelport.db"))


# -- pieces -------------------------------------------------------------------------------------


_SQL = sqlite3.connect(":memory:")


@settings(SETTINGS, max_examples=2000)
@given(ts=st.one_of(st.floats(-1e12, 1e12), _near_midnight, st.integers(-10**6, 10**6).map(
    lambda k: math.nextafter(k * DAY, -math.inf)), st.sampled_from([-1.0, -DAY - 0.5, -5e-324, 0.0, MAX_TS])))
def test_day_of_agrees_with_sql_and_with_the_window_test(ts: float) -> None:
    day = day_of(ts)
    assert day * DAY <= ts < (day + 1) * DAY
    assert _SQL.execute(f"SELECT {DAY_OF} FROM (SELECT ? AS created_at)", (ts,)).fetchone() == (day,)


def test_windows_split_into_whole_days_and_edges() -> None:
    assert split_window(D0, D0 + 3 * DAY) == ((D0 // DAY, D0 // DAY + 3), [])
    assert split_window(D0 + 5, D0 + 2 * DAY + 7) == ((D0 // DAY + 1, D0 // DAY + 2),
                                                      [(D0 + 5, D0 + DAY), (D0 + 2 * DAY, D0 + 2 * DAY + 7)])
    assert split_window(D0 + 5, D0 + DAY + 7) == (None, [(D0 + 5, D0 + DAY + 7)])  # no whole day inside
    assert split_window(D0, D0) == (None, []) and split_window(D0 + 1, D0) == (None, [])
    assert summary_query("tn_1", D0, D0, "model", False) is None


def test_summaries_read_indexes_never_the_whole_table(tmp_path: Path) -> None:
    """A month with ragged bounds: the rollup by its key or tenant index, the edges by
    (tenant_id, created_at) or created_at, never a scan of either table."""
    async def plans() -> list[str]:
        store = Store(tmp_path / "modelport.db")
        await store.open()
        await store.close()
        db = sqlite3.connect(tmp_path / "modelport.db")
        found = []
        for tenant, group, per_tenant in (("tn_1", "model", False), ("tn_1", "day", False), (None, "tenant", False),
                                          (None, "model", True)):
            query = summary_query(tenant, D0 + 3600, D0 + 30 * DAY + 60, group, per_tenant)
            assert query is not None
            found += [r[3] for r in db.execute(f"EXPLAIN QUERY PLAN {query[0]}", query[1])]
        # The batch's rollup reads the batch by rowid, whatever index someone adds.
        db.execute("CREATE INDEX usage_cover ON usage(tenant_id, created_at, provider, model, status, billing, "
                   "prompt_tokens, completion_tokens, total_tokens, estimated, latency_ms, ttft_ms)")
        assert "INTEGER PRIMARY KEY" in db.execute(f"EXPLAIN QUERY PLAN {ROLLUP_SINCE}", (0,)).fetchone()[3]
        db.close()
        return found

    found = asyncio.run(plans())
    assert not [p for p in found if p.startswith("SCAN") and ("usage" in p.split()[1:2] or "usage_daily" in p)]
    assert any("usage_tenant_time" in p for p in found) and any("usage_daily_tenant" in p for p in found)


async def test_deleting_a_tenant_removes_its_rollup(tmp_path: Path) -> None:
    store = await _open(tmp_path / "modelport.db")
    try:
        row = UsageRow(float(D0), "req", "tn_1", "tok", "chat.completions", "p", "m", "llm", "own", False, 200,
                       1, 2, 3, False, 1.0, None)
        await store.insert_usage([row, row._replace(tenant_id="tn_2")])
        await store.delete_tenant("tn_1")
        assert [r[0] for r in await store._all("SELECT tenant_id FROM usage_daily")] == ["tn_2"]
    finally:
        await store.close()


async def test_retention_keeps_whole_days(tmp_path: Path) -> None:
    store = await _open(tmp_path / "modelport.db")
    try:
        await store.insert_usage([UsageRow(float(t), "req", "tn_1", "tok", "chat.completions", "p", "m", "llm", "own",
                                           False, 200, 1, 2, 3, False, 1.0, None)
                                  for t in (D0 - 10, D0 + 10, D0 + 50_000, D0 + DAY + 10)])
        assert await store.prune_usage(D0 + 40_000, 100) == 2  # one raw row, one rollup day
        assert [r[0] for r in await store._all("SELECT created_at FROM usage ORDER BY 1")] == [
            D0 + 10, D0 + 50_000, D0 + DAY + 10]  # the cutoff's day is kept whole
        assert [r[0] for r in await store._all("SELECT day FROM usage_daily ORDER BY 1")] == [D0 // DAY, D0 // DAY + 1]
    finally:
        await store.close()


def test_an_upgraded_install_answers_the_same(tmp_path: Path) -> None:
    """Rows written under schema 4 are rolled up by migration 5, with DAY_OF's days."""
    assert " ".join(DAY_OF.split()) in " ".join(MIGRATIONS[4].replace("\n", " ").split())
    path = tmp_path / "modelport.db"
    db = sqlite3.connect(path, isolation_level=None)
    for number, script in enumerate(MIGRATIONS[:4], start=1):
        db.executescript(script)
        db.execute(f"PRAGMA user_version = {number}")
    db.execute("INSERT INTO tenants VALUES ('tn_1', 'acme', x'00', 0)")
    old = [(D0 + i * 7919.5, "req", "tn_1" if i % 3 else "tn_x", "tok", "chat.completions", "pq"[i % 2], "m",
            "llm", "hosted" if i % 5 == 0 else "own", i % 2, 200 if i % 7 else 500, i, 2 * i, 3 * i, i % 2,
            i / 4, i / 8 if i % 2 else None) for i in range(200)]
    columns = UsageRow._fields[:17]  # the columns of schema 4 (later migrations add more)
    db.executemany(f"INSERT INTO usage ({', '.join(columns)}) VALUES ({', '.join('?' * 17)})", old)

    async def run() -> None:
        store = Store(path)
        await store.open()
        try:
            await _check(store, db, [(D0 + 3600, D0 + 12 * DAY, None, "tenant", False),
                                     (D0, D0 + 20 * DAY, "tn_1", "day", False),
                                     (0, MAX_TS, None, "model", True)])
        finally:
            await store.close()

    asyncio.run(run())
    assert db.execute("PRAGMA user_version").fetchone() == (len(MIGRATIONS),)
    assert db.execute("SELECT SUM(requests) FROM usage_daily").fetchone() == (200,)
    db.close()
