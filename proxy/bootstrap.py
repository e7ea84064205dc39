"""Opening the data directory: the database (migrated), the master key (created on a
fresh machine, checked against the database otherwise) and the admin token.

`serve` and every CLI command go through here, so a fresh machine works whichever
runs first, and a wrong master key is a clear start-up error, not garbage later.
"""

from __future__ import annotations

import secrets

from keystore import KeystoreError, load_master_key
from keystore.store import MASTER_CHECK_META, Keystore
from proxy.auth import ADMIN_TOKEN_PREFIX, hash_admin_token
from proxy.settings import Settings
from proxy.store import Store

ADMIN_HASH_META = "admin_token_hash"


class StartupError(Exception):
    pass


async def open_store_and_keystore(settings: Settings) -> tuple[Store, Keystore]:
    store = Store(settings.database_path)
    await store.open()
    try:
        check = await store.get_meta(MASTER_CHECK_META)
        key_path = settings.master_key_path
        try:
            # Only a database that has never held a key may get a new one; otherwise a
            # missing key file would silently orphan every stored credential.
            master = load_master_key(key_path, create=check is None)
        except KeystoreError as exc:
            raise StartupError(f"cannot load the master key: {exc}") from None
        keystore = Keystore(master, reload_master=lambda: load_master_key(key_path, create=False))
        if check is None:
            await store.set_meta_if_absent(MASTER_CHECK_META, keystore.master_check())
            check = await store.get_meta(MASTER_CHECK_META)
        if check is None or not keystore.matches(check):
            raise StartupError(
                f"the master key (from MODELPORT_MASTER_KEY or {key_path}) does not match the database "
                f"{settings.database_path}: it was encrypted under another master key. Use the original key "
                "or restore the key file; credentials cannot be read without it.")
    except BaseException:
        await store.close()
        raise
    return store, keystore


async def ensure_admin_token(store: Store, settings: Settings) -> tuple[str, str | None]:
    """(hash of the admin token, the token itself if it was just created and must be shown once)."""
    if settings.admin_token:
        return hash_admin_token(settings.admin_token), None
    token = ADMIN_TOKEN_PREFIX + secrets.token_urlsafe(32)
    created = await store.set_meta_if_absent(ADMIN_HASH_META, hash_admin_token(token))
    stored = await store.get_meta(ADMIN_HASH_META)
    assert stored is not None
    return stored, token if created else None


async def reset_admin_token(store: Store) -> str:
    token = ADMIN_TOKEN_PREFIX + secrets.token_urlsafe(32)
    await store.set_meta(ADMIN_HASH_META, hash_admin_token(token))
    return token
