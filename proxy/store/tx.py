"""What a query sees of the database inside a write transaction, whatever the backend
(`base.SQLiteTx`, `postgres.PgTx`). Query text is SQLite's dialect with `?` placeholders;
the PostgreSQL backend translates it (`pg_dialect.py`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol

__all__ = ["Row", "Tx"]


class Row(Protocol):
    """A result row, read by index (sqlite3.Row and asyncpg.Record both are)."""

    def __getitem__(self, index: int, /) -> Any: ...
    def __iter__(self) -> Iterator[Any]: ...
    def __len__(self) -> int: ...


class Tx(Protocol):
    """One open write transaction (the writer's lock held: nothing else writes meanwhile)."""

    async def execute(self, sql: str, params: Sequence[object] = ()) -> int:
        """Run one statement; the rows it changed."""
        ...

    async def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None: ...

    async def one(self, sql: str, params: Sequence[object] = ()) -> Row | None: ...

    async def all(self, sql: str, params: Sequence[object] = ()) -> Sequence[Row]: ...

    async def try_execute(self, sql: str, params: Sequence[object]) -> str | None:
        """Run one statement whose values the database may refuse: None when done, else
        the reason (and the transaction goes on without it). Raises when the database
        itself fails (locked, full, gone)."""
        ...
