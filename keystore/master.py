"""Where the operator's master key comes from.

The environment variable wins, so containers and secret managers never need a file;
otherwise the key lives in a small file beside the data, created on first start.
Rotation stages the new key in ``<key file>.new`` (see ``staged_key_path``) before the
database depends on it.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from .crypto import KeystoreError, encode_master_key, new_master_key, parse_master_key

__all__ = [
    "MASTER_KEY_ENV", "create_master_key_file", "load_master_key", "master_key_from_env", "master_key_source",
    "read_master_key_file", "staged_key_path", "write_master_key", "write_private_temp",
]

MASTER_KEY_ENV = "MODELPORT_MASTER_KEY"
log = logging.getLogger("modelport")
_warned_empty = False


def master_key_from_env() -> str | None:
    """The value of $MODELPORT_MASTER_KEY, stripped; None when unset (set-but-empty counts as unset)."""
    env = os.environ.get(MASTER_KEY_ENV)
    if env is not None and not env.strip():
        # `export MODELPORT_MASTER_KEY=` or a compose file passing through an unset
        # variable: stopping every command over it helps nobody, and the key file (or,
        # for a database that has a key, a clear mismatch error) still protects the data.
        global _warned_empty
        if not _warned_empty:  # once per process: workers re-read the key while following a rotation
            _warned_empty = True
            log.warning("$%s is set but empty; ignoring it and using the master key file", MASTER_KEY_ENV)
        return None
    return None if env is None else env.strip()


def master_key_source(key_file: Path) -> str:
    """Where load_master_key reads the key from, for error messages (never the key)."""
    return f"${MASTER_KEY_ENV}" if master_key_from_env() else f"key file {key_file}"


def staged_key_path(key_file: Path) -> Path:
    """Where rotation puts the new key before the database depends on it."""
    key_file = Path(key_file)
    return key_file.with_name(key_file.name + ".new")


def load_master_key(key_file: Path, *, create: bool) -> bytes:
    """Return the master key from $MODELPORT_MASTER_KEY, else from key_file.

    With create=True a missing key file is generated (mode 0600). Several workers
    starting at once on a fresh install all end up with the same key.
    """
    env = master_key_from_env()
    if env is not None:
        return _parse(env, f"${MASTER_KEY_ENV}")
    key_file = Path(key_file)
    try:
        return read_master_key_file(key_file)
    except FileNotFoundError:
        if not create:
            raise KeystoreError(
                f"no master key: {key_file} does not exist and ${MASTER_KEY_ENV} is not set; "
                f"set ${MASTER_KEY_ENV} or restore the key file"
            ) from None
    return _create_key_file(key_file)


def create_master_key_file(key_file: Path, key: bytes) -> None:
    """Write key to a new 0600 file; KeystoreError if the file already exists.

    Exclusive, so two rotations can never stage over each other's key.
    """
    if not _publish_new(Path(key_file), key, "write"):
        raise KeystoreError(f"{key_file} already exists (another rotation running, or one interrupted); "
                            "nothing was changed")


def write_master_key(key_file: Path, key: bytes) -> None:
    """Atomically replace key_file with key (used by master-key rotation).

    Readers see the old key or the new one, never a half-written file.
    """
    key_file = Path(key_file)
    data = _encoded(key)
    try:
        key_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = write_private_temp(key_file, data)
        try:
            os.replace(tmp, key_file)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise KeystoreError(f"cannot write master key file {key_file}: {exc.strerror}") from None
    _fsync_dir(key_file.parent)


def _parse(text: str, source: str) -> bytes:
    try:
        return parse_master_key(text)
    except KeystoreError as exc:
        raise KeystoreError(f"{source}: {exc}") from None


def read_master_key_file(key_file: Path) -> bytes:
    """The key in key_file; FileNotFoundError if there is none, KeystoreError if unreadable."""
    try:
        raw = key_file.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise KeystoreError(f"cannot read master key file {key_file}: {exc.strerror}") from None
    return _parse(raw.decode("ascii", errors="replace").strip(), f"master key file {key_file}")


def _create_key_file(key_file: Path) -> bytes:
    key = new_master_key()
    if not _publish_new(key_file, key, "create"):
        return read_master_key_file(key_file)  # a racing worker won: its key is the key
    return key


def _publish_new(key_file: Path, key: bytes, verb: str) -> bool:
    """Create key_file holding key (0600), only if it does not exist; False if it did.

    link() publishes the fully written file or fails if it exists, so a racing reader
    never sees a half-written key and nobody overwrites a key already published.
    """
    try:
        key_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = write_private_temp(key_file, _encoded(key))
    except OSError as exc:
        raise KeystoreError(f"cannot {verb} master key file {key_file}: {exc.strerror}") from None
    try:
        os.link(tmp, key_file)
    except FileExistsError:
        return False
    except OSError as exc:
        raise KeystoreError(f"cannot {verb} master key file {key_file}: {exc.strerror}") from None
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(key_file.parent)
    return True


def _encoded(key: bytes) -> bytes:
    return (encode_master_key(key) + "\n").encode("ascii")


def write_private_temp(target: Path, data: bytes) -> Path:
    """`data` in a new temporary file beside `target`, fsynced, for the caller to rename
    or link into place (secrets: master keys, the admin token)."""
    # mkstemp opens with O_CREAT | O_EXCL and mode 0600, so the file is never readable
    # by anyone else, not even between creation and a later chmod.
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        os.unlink(name)
        raise
    return Path(name)


def _fsync_dir(directory: Path) -> None:
    # Makes the new directory entry survive a crash; not every platform allows it.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
