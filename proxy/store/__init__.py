"""Persistence. Every query lives behind the `Store` class (`sqlite.py`; accounting
queries in `accounting.py`, the connection and write paths in `base.py`), and a second
backend (PostgreSQL: `postgres.py`, imported only when configured) runs the same
queries: `StoreApi` is the interface, `Store` the SQLite store."""

from proxy.store.accounting import GROUP_KEYS, UsageGroup, UsageRow
from proxy.store.base import StoreBusy, StoreUnavailable
from proxy.store.sqlite import ModelRow, Store, StoreApi, TenantRow, TokenRow

__all__ = ["GROUP_KEYS", "ModelRow", "Store", "StoreApi", "StoreBusy", "StoreUnavailable",
           "TenantRow", "TokenRow", "UsageGroup", "UsageRow"]
