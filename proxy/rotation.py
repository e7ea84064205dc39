"""The master key's life cycle on a data directory: opening it (`open_keystore`, run by
`serve`, every worker and every CLI command) and rotating it (`rotate_master`).

Invariant: the database never depends on a master key that exists nowhere durable.

Rotation, in one `BEGIN IMMEDIATE` transaction: read every wrapped private key, re-wrap
it under a new key, write the new key to `<key file>.new` (0600, exclusive), keep the
old wrapped keys as "previous", write the new ones and the new key check, print the
outcome; only then COMMIT. Anything failing before COMMIT (including a stdout that cannot
be written) rolls back and removes the staged file: nothing changed. After COMMIT the
staged file is renamed over the key file (file mode) or left for the operator to copy
into $MODELPORT_MASTER_KEY (env mode).

Opening: a staged key that matches the database while the configured key does not is
a rotation interrupted after COMMIT: the rename is finished (file mode) or the error
names the staged file (env mode). The first open whose configured key is the current
one confirms it: the previous wrapped keys (and, in env mode, the staged copy) go.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from keystore import (
    KeystoreError,
    create_master_key_file,
    load_master_key,
    master_key_from_env,
    master_key_id,
    master_key_source,
    new_master_key,
    read_master_key_file,
    staged_key_path,
    verify_master_key,
)
from keystore.crypto_helper import KEYGEN_NICENESS
from keystore.offload import ProcessCrypto
from keystore.store import MASTER_CHECK_META, MASTER_ID_META, Keystore
from proxy.settings import Settings
from proxy.store import StoreApi

log = logging.getLogger("modelport")


def _read_staged(staged: Path) -> bytes | None:
    try:
        return read_master_key_file(staged)
    except FileNotFoundError:
        return None
    except KeystoreError as exc:
        log.warning("ignoring the staged master key: %s", exc)
        return None


def _matches(key: bytes | None, check: str) -> bool:
    return key is not None and verify_master_key(key, bytes.fromhex(check))


def _candidates(key_path: Path, staged: Path) -> Callable[[], list[bytes]]:
    """Keys a running process may switch to after a rotation elsewhere: its configured
    source read again, then a staged key (present between COMMIT and the rename, or in
    env mode until confirmation). The Keystore only adopts one that proves itself."""
    def load() -> list[bytes]:
        keys: list[bytes] = []
        try:
            keys.append(load_master_key(key_path, create=False))
        except KeystoreError:
            pass
        staged_key = _read_staged(staged)
        if staged_key is not None:
            keys.append(staged_key)
        return keys
    return load


def finish_rename(staged: Path, key_path: Path, key: bytes) -> None:
    """Move the staged key (which must be `key`) over the key file; another process
    having done it already is fine."""
    if _read_staged(staged) == key:
        try:
            os.replace(staged, key_path)
            return
        except FileNotFoundError:
            pass  # renamed by a process that opened the database meanwhile
    try:
        if read_master_key_file(key_path) == key:
            return
    except FileNotFoundError:
        pass
    raise KeystoreError(f"the new master key is committed but neither {staged} nor {key_path} holds it")


def _keystore(master: bytes, reload: Callable[[], list[bytes]], settings: Settings, serving: bool) -> Keystore:
    """Only a serving worker gets helper processes and pre-generated key pairs: a one-shot
    CLI command would pay a process start-up (and wasted key pairs) for one operation.
    Without helper processes (`crypto.processes: 0`) nothing is pre-generated either: made
    inline, the pairs would block the event loop at start-up and after every tenant creation."""
    processes = settings.crypto.processes if serving else 0
    if processes == 0:
        return Keystore(master, reload_master=reload, private_keys=settings.cache.private_keys)
    # Two lanes: decryptions (a cold tenant's request waits) never queue behind a key
    # generation (an admin waits), which also runs at a lower priority.
    return Keystore(master, reload_master=reload, private_keys=settings.cache.private_keys,
                    runner=ProcessCrypto(processes), key_runner=ProcessCrypto(1, niceness=KEYGEN_NICENESS),
                    pregenerated_keys=settings.crypto.pregenerated_keys)


async def open_keystore(store: StoreApi, settings: Settings, *, serving: bool = False) -> Keystore:
    """The keystore for an open store; KeystoreError (a message naming the key's source
    and files, never a key) when no usable master key is found. `serving`: for the
    server, which must then `start()` it and `await close()` it (see `_keystore`)."""
    key_path = settings.master_key_path
    staged = staged_key_path(key_path)
    reload = _candidates(key_path, staged)
    check = await store.get_meta(MASTER_CHECK_META)
    if check is None:
        # Only a database that has never held a key may get a new one; otherwise a
        # missing key file would silently orphan every stored credential.
        try:
            master = load_master_key(key_path, create=True)
        except KeystoreError as exc:
            raise KeystoreError(f"cannot load the master key: {exc}") from None
        keystore = _keystore(master, reload, settings, serving)
        await store.set_meta_if_absent(MASTER_CHECK_META, keystore.master_check())
        check = await store.get_meta(MASTER_CHECK_META)
        if check is None or not keystore.matches(check):
            raise KeystoreError(_mismatch(settings, key_path))
    else:
        master, is_current = await _verified_key(store, settings, check, staged)
        keystore = _keystore(master, reload, settings, serving)
        if not is_current:
            # The previous key of an unconfirmed rotation: existing tenants are served
            # with the previous wrapped keys; new ones are wrapped with the staged key if
            # it is there, else refused (503). Nothing is confirmed by such an open.
            current_id = await store.get_meta(MASTER_ID_META)
            if current_id is not None:
                keystore.follow(current_id)
            return keystore
    await store.adopt_master_key_id(keystore.key_id)
    # Every way here loaded the key from its configured source (a recovered staged key
    # has just become the key file), so this open confirms the current key.
    await _confirm(store, keystore, staged)
    return keystore


async def _verified_key(store: StoreApi, settings: Settings, check: str, staged: Path) -> tuple[bytes, bool]:
    """(the configured master key, whether it is the database's current one). The previous
    key of a rotation not yet confirmed is accepted, with a warning: a worker restarting
    before the operator has switched keys must not take the whole server down."""
    key_path = settings.master_key_path
    try:
        master: bytes | None = load_master_key(key_path, create=False)
        load_error = ""
    except KeystoreError as exc:
        master, load_error = None, str(exc)
    if _matches(master, check):
        assert master is not None
        return master, True
    staged_key = _read_staged(staged)
    staged_matches = _matches(staged_key, check)
    if staged_matches and master_key_from_env() is None:
        assert staged_key is not None
        # COMMIT happened, the rename did not (a crash in between): finish it.
        finish_rename(staged, key_path, staged_key)
        log.warning("finished an interrupted master key rotation: the committed new key in %s is now %s",
                    staged, key_path)
        return staged_key, True
    source = master_key_source(key_path)
    if master is not None and master_key_id(master) in await store.previous_key_ids():
        where = (f"the new key is in {staged}: this process wraps new tenants' keys with it meanwhile"
                 if staged_matches else f"the new key is not in {staged} any more: creating tenants is refused")
        log.warning("the master key from %s is the previous one: the database was rotated to a new key that is "
                    "not confirmed yet. Set it (%s) and restart; until then existing tenants are served with "
                    "the previous wrapped keys, and %s.", source,
                    "MODELPORT_MASTER_KEY" if master_key_from_env() else f"in {key_path}", where)
        return master, False
    if staged_matches:
        raise KeystoreError(f"the master key from {source} does not match the database: it was rotated to the "
                            f"key saved in {staged}. Set MODELPORT_MASTER_KEY to that file's content and start again.")
    note = (f" ({staged} exists but does not match the database either; it is left in place)"
            if staged.exists() else "")
    if master is None:
        raise KeystoreError(f"cannot load the master key: {load_error}{note}")
    raise KeystoreError(_mismatch(settings, key_path) + note)


def _mismatch(settings: Settings, key_path: Path) -> str:
    return (f"the master key (from {master_key_source(key_path)}) does not match the database "
            f"{settings.database_label}: it was encrypted under another master key. Use the original key "
            "or restore the key file; credentials cannot be read without it.")


async def _confirm(store: StoreApi, keystore: Keystore, staged: Path) -> None:
    """The configured key is the database's current key: the rotation to it is confirmed."""
    dropped = await store.confirm_master_key(keystore.key_id)
    if dropped:
        log.info("master key %s confirmed; dropped %d previous wrapped key(s)", keystore.key_id, dropped)
    staged_key = _read_staged(staged)
    if staged_key is None:
        return
    if master_key_id(staged_key) == keystore.key_id:
        # env mode: the operator has put the new key in place; a copy beside the data
        # would defeat keeping it out of the data directory.
        staged.unlink(missing_ok=True)
        log.info("master key %s confirmed; deleted its staged copy %s", keystore.key_id, staged)
    else:
        log.warning("%s holds a master key that does not match the database (a rotation that did not "
                    "commit?); it is left in place: delete it once you are sure it is not needed", staged)


async def rotate_master(settings: Settings) -> None:
    """`modelport keys rotate-master`: prints the outcome before committing (see above)."""
    from proxy.bootstrap import make_store  # bootstrap imports this module

    store = make_store(settings)
    await store.open()
    try:
        keystore = await open_keystore(store, settings)
        key_path = settings.master_key_path
        staged = staged_key_path(key_path)
        from_env = master_key_from_env() is not None
        new_key = new_master_key()
        new_id = master_key_id(new_key)
        async with store.key_rotation() as txn:
            if await txn.current_key_id() not in (None, keystore.key_id):
                raise KeystoreError("the master key was rotated by another process meanwhile; nothing was changed")
            rewrapped = keystore.rewrap_all(await txn.wrapped_keys(), new_key)
            create_master_key_file(staged, new_key)  # durable before the database depends on it
            try:
                await txn.replace(rewrapped, keystore.key_id, new_id, Keystore(new_key).master_check())
                _emit(_report(len(rewrapped), from_env, key_path, staged))
            except BaseException:
                staged.unlink(missing_ok=True)  # rolled back below: the old key stays the only one
                raise
        # Committed. A failure from here on leaves the staged file, which the next open finishes.
        if not from_env:
            finish_rename(staged, key_path, new_key)
    finally:
        await store.close()


def _report(count: int, from_env: bool, key_path: Path, staged: Path) -> str:
    if not from_env:
        return f"master key rotated; {count} tenant key(s) re-wrapped; key file {key_path}"
    return (f"master key rotated; {count} tenant key(s) re-wrapped.\n"
            f"The new master key is in {staged} (mode 0600). Set MODELPORT_MASTER_KEY to its content and "
            "restart every server; running servers pick it up from that file meanwhile.\n"
            "The first start with the new key confirms it: that deletes the file and the previous wrapped keys.")


def _emit(text: str) -> None:
    """Print before COMMIT: an outcome nobody can read (stdout full, closed) must roll back."""
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "stdout is closed"
        raise KeystoreError(f"cannot write the rotation's output ({reason}); nothing was changed") from None
