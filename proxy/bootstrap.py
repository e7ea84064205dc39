"""Opening the data directory: the database (migrated), the master key (created on a
fresh machine, checked against the database otherwise) and the admin token; and, with
`redis_url`, Redis for the rate-limit counters and cooldowns (`proxy/counters.py`).

`serve` and every CLI command go through here, so a fresh machine works whichever
runs first, and a wrong master key is a clear start-up error, not garbage later.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path

from keystore import KeystoreError, write_private_temp
from keystore.store import Keystore
from proxy.auth import ADMIN_TOKEN_PREFIX, hash_admin_token
from proxy.rotation import open_keystore
from proxy.settings import Settings
from proxy.store import Store, StoreApi
from translators.errors import ApiError

ADMIN_HASH_META = "admin_token_hash"


class StartupError(Exception):
    pass


def make_store(settings: Settings) -> StoreApi:
    """The configured backend, not opened: PostgreSQL when `database` (or
    MODELPORT_DATABASE_URL) is a postgresql:// URL, else SQLite."""
    if settings.database_url:
        from proxy.store.postgres import (
            PostgresStore,  # asyncpg only when PostgreSQL is configured
        )

        return PostgresStore(settings.database_url, pool_size=settings.database_pool)
    return Store(settings.database_path, busy_timeout=settings.database_busy_timeout)


async def open_store_and_keystore(settings: Settings, *, serving: bool = False) -> tuple[StoreApi, Keystore]:
    """`serving`: the server's keystore (RSA in helper processes, pre-generated key pairs),
    which the caller must `start()` and `await close()`; otherwise RSA runs inline."""
    store = make_store(settings)
    try:
        await store.open()
    except (ApiError, StartupError):
        raise
    except Exception as exc:  # a migration that failed (rolled back): one line, no traceback
        from proxy.dbschema import scrub

        raise StartupError(scrub(f"opening the database {settings.database_label} failed, pending migrations "
                                 f"were rolled back: {type(exc).__name__}: {exc}", settings.database_url)) from None
    try:
        await _share_counters(store, settings)
        # The master key's checks, an interrupted rotation's recovery and the
        # confirmation of a rotated key live in proxy/rotation.py.
        keystore = await open_keystore(store, settings, serving=serving)
    except KeystoreError as exc:
        await store.close()
        raise StartupError(str(exc)) from None
    except BaseException:
        await store.close()
        raise
    return store, keystore


async def _share_counters(store: StoreApi, settings: Settings) -> None:
    """Redis for the counters and cooldowns when configured, once it answered (unreachable:
    `CountersUnavailable`, one line naming host:port/db, as an unreachable database)."""
    if not settings.redis_url:
        return
    from proxy.store.redis_counters import (
        RedisCounters,  # redis only when configured
    )

    counters = RedisCounters(settings.redis_url)
    try:
        await counters.open()
    except BaseException:
        await counters.close()
        raise
    store.share_counters(counters)


ADMIN_TOKEN_FILE = "admin-token"


async def _new_admin_token(settings: Settings, commit: Callable[[str], Awaitable[bool]]) -> Path | None:
    """Make a token, commit its hash, and on success put the token in the admin-token file.
    The file is written before the commit, so a token the database accepts is never one
    that was only ever in memory (and so in nobody's hands)."""
    token = ADMIN_TOKEN_PREFIX + secrets.token_urlsafe(32)
    path = settings.data_dir / ADMIN_TOKEN_FILE
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = write_private_temp(path, (token + "\n").encode())  # 0600 from creation, renamed below
    try:
        if not await commit(hash_admin_token(token)):
            return None
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


async def ensure_admin_token(store: StoreApi, settings: Settings) -> tuple[str, Path | None]:
    """(hash of the admin token, the path of the file holding it if it was just created).

    The token itself is never printed or logged: a log is kept, shipped and shared far
    longer than anyone means to keep a credential."""
    if settings.admin_token:
        return hash_admin_token(settings.admin_token), None
    created: Path | None = None
    if await store.get_meta(ADMIN_HASH_META) is None:
        created = await _new_admin_token(settings, lambda digest: store.set_meta_if_absent(ADMIN_HASH_META, digest))
    stored = await store.get_meta(ADMIN_HASH_META)
    assert stored is not None
    return stored, created


async def reset_admin_token(store: StoreApi, settings: Settings) -> str:
    """A new admin token (the old one stops working within a poll interval), also written
    to the admin-token file so that it never holds a dead token."""
    async def commit(digest: str) -> bool:
        await store.set_meta(ADMIN_HASH_META, digest)
        return True

    path = await _new_admin_token(settings, commit)
    assert path is not None
    return path.read_text().strip()
