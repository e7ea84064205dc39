"""The change log: what each configuration write changed, for every worker's caches.

Every configuration write (`SQLiteBase._write`) bumps `meta.changes` and adds one row
numbered by the new counter, in the same transaction. The counter's row is the writers'
lock, so numbers follow commit order with no gaps; a worker that saw number N reads the
rows after N and drops only what they name (`proxy/tenants.py`). Rows are pruned after
`change_log_retention`; a worker that finds a gap (it slept through a prune) drops
everything, as does a master-key rotation.

The PostgreSQL backend carries the same table and numbering (its writers serialise on one
advisory lock), and each such commit also NOTIFYs every listening worker
(`proxy/store/pg_listen.py`), which then reads the log at once instead of at its next
poll; the counter stays the truth after a reconnect.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from proxy.store.tx import Row, Tx


class Kind(StrEnum):
    TENANT = "tenant"                    # created (nothing cached yet)
    TENANT_DELETED = "tenant_deleted"    # its tokens, state and private key go
    TOKEN = "token"                      # detail: the token's hash (created or revoked)
    CREDENTIAL = "credential"            # detail: the provider
    MODEL = "model"                      # detail: provider/model (per-model entry)
    DEFAULT = "default"                  # detail: the model type
    QUOTA = "quota"                      # detail: the provider (a hosted-trial limit)
    LIMIT = "limit"                      # detail: token id/model of a rate limit
    FALLBACK = "fallback"                # detail: the model whose fallbacks changed
    BUDGET = "budget"                    # detail: token id of a budget ("" = the tenant's)
    MASTER_KEY = "master_key"            # a rotation: every wrapped key changed
    META = "meta"                        # detail: the meta key (admin token, master key id, ...)


@dataclass(frozen=True, slots=True)
class Change:
    kind: Kind
    tenant_id: str | None = None
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class LoggedChange:
    seq: int
    change: Change


async def log_change(db: Tx, change: Change) -> None:
    """Bump the counter and record `change` under its new value (inside the caller's transaction)."""
    await db.execute("UPDATE meta SET value = CAST(value AS BIGINT) + 1 WHERE key = 'changes'")
    # VALUES with a subquery, not INSERT ... SELECT ?: PostgreSQL types a parameter by its
    # column only in VALUES (in a select list it would be text).
    await db.execute("INSERT INTO change_log (seq, tenant_id, kind, detail, created_at) VALUES "
                     "((SELECT CAST(value AS BIGINT) FROM meta WHERE key = 'changes'), ?, ?, ?, ?)",
                     (change.tenant_id, change.kind.value, change.detail, time.time()))


def parse_rows(rows: Sequence[Row]) -> list[LoggedChange]:
    out = []
    for seq, tenant_id, kind, detail in rows:
        try:
            parsed = Kind(kind)
        except ValueError:  # written by a newer version: treat as a change of everything
            parsed = Kind.MASTER_KEY
        out.append(LoggedChange(int(seq), Change(parsed, tenant_id, detail)))
    return out
