"""Persistence. Every query lives behind the `Store` class (`sqlite.py`; accounting
queries in `accounting.py`, the connection and write paths in `base.py`), so a second
backend (PostgreSQL) is an addition, not a rewrite."""

from proxy.store.accounting import GROUP_KEYS, UsageGroup, UsageRow
from proxy.store.base import StoreBusy
from proxy.store.sqlite import ModelRow, Store, TenantRow, TokenRow

__all__ = ["GROUP_KEYS", "ModelRow", "Store", "StoreBusy", "TenantRow", "TokenRow", "UsageGroup", "UsageRow"]
