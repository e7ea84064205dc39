"""Persistence. Every query lives in `sqlite.py` behind the `Store` class, so a second
backend (PostgreSQL) is an addition, not a rewrite."""

from proxy.store.sqlite import ModelRow, Store, TenantRow, TokenRow

__all__ = ["ModelRow", "Store", "TenantRow", "TokenRow"]
