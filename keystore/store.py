"""The keystore as the rest of the gateway uses it: tenant key pairs, encrypting a
credential for storage, and decrypting it back (the only place that does).

It holds the operator's master key and caches each tenant's unwrapped private key,
so RSA runs once per tenant per cache generation, never on every request. It does no
I/O: the caller passes in the rows it read, which keeps storage in one module.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from Crypto.PublicKey.RSA import RsaKey

from keystore import crypto
from keystore.models import (
    Credential,
    CredentialField,
    deserialize_credential,
    serialize_credential,
)

MASTER_CHECK_META = "master_key_check"
MASTER_ID_META = "master_key_id"


class WrappedKey(bytes):
    """A wrapped private key that remembers which master key wrapped it, so the store can
    refuse it, in the transaction that would insert it, if that key is no longer current."""

    master_key_id: str

    def __new__(cls, blob: bytes, master_key_id: str) -> WrappedKey:
        self = super().__new__(cls, blob)
        self.master_key_id = master_key_id
        return self


class Keystore:
    """Holds the master key that wraps new tenants' keys, plus any other master key this
    process has proven (to open keys wrapped before a rotation it has not followed yet).

    `reload_master` returns the keys this process could switch to after a rotation
    elsewhere (its configured source read again, then a key staged by the rotation);
    one is used only once it proves itself, by its key id or by opening a wrapped key.
    Only `follow` changes the wrapping key, so it never flips back to an older one."""

    def __init__(self, master_key: bytes, reload_master: Callable[[], Iterable[bytes]] | None = None) -> None:
        crypto.encode_master_key(master_key)  # checks the length once, here
        self._master = master_key
        self._key_id = crypto.master_key_id(master_key)
        self._known: dict[str, bytes] = {self._key_id: master_key}
        self._reload_master = reload_master
        self._private: dict[str, RsaKey] = {}
        self._public: dict[bytes, RsaKey] = {}
        self._lock = threading.Lock()

    # -- the master key -------------------------------------------------------------

    @property
    def key_id(self) -> str:
        return self._key_id

    def master_check(self) -> str:
        return crypto.master_key_check(self._master).hex()

    def matches(self, check_hex: str) -> bool:
        return crypto.verify_master_key(self._master, bytes.fromhex(check_hex))

    def follow(self, current_id: str) -> bool:
        """Wrap with the master key whose id is `current_id` (the database's, after a
        rotation elsewhere) if this process can find it; True when it holds that key."""
        if current_id == self._key_id:
            return True
        key = self._known.get(current_id)
        if key is None:
            self._load_candidates()
            key = self._known.get(current_id)
        if key is None:
            return False
        with self._lock:
            self._master, self._key_id = key, current_id
        return True

    def _load_candidates(self) -> list[bytes]:
        """Keys newly found by `reload_master` (remembered in `_known`)."""
        if self._reload_master is None:
            return []
        try:
            found = list(self._reload_master())
        except crypto.KeystoreError:
            return []
        new = []
        for key in found:
            key_id = crypto.master_key_id(key)
            if key_id not in self._known:
                self._known[key_id] = key
                new.append(key)
        return new

    def rewrap_all(self, wrapped: list[tuple[str, bytes]], new_master: bytes) -> list[tuple[str, bytes]]:
        """Every tenant's private key unwrapped with the current master key and wrapped with `new_master`."""
        return [(tenant_id, crypto.wrap_private_key(new_master, self._unwrap(tenant_id, blob), tenant_id.encode()))
                for tenant_id, blob in wrapped]

    # -- tenants' key pairs ---------------------------------------------------------

    def new_tenant_keys(self, tenant_id: str) -> tuple[bytes, WrappedKey]:
        """(public key PEM, private key wrapped by the master key) for a new tenant.

        The wrapped key carries the master key's id: `Store.create_tenant` checks it
        against the database's current id in the same transaction that inserts it."""
        pair = crypto.generate_key_pair()
        master = self._master  # one read: the id below is that of the key that wrapped it
        wrapped = crypto.wrap_private_key(master, pair.private_der, tenant_id.encode())
        return pair.public_pem, WrappedKey(wrapped, crypto.master_key_id(master))

    def _unwrap(self, tenant_id: str, wrapped: bytes) -> bytes:
        aad = tenant_id.encode()
        try:
            return crypto.unwrap_private_key(self._master, wrapped, aad)
        except crypto.MasterKeyMismatch:
            # The master key may have been rotated elsewhere while we run: try the other
            # keys this process knows, then those it can find now (read again, staged).
            others = [k for k in self._known.values() if k != self._master]
            for key in [*others, *self._load_candidates()]:
                try:
                    return crypto.unwrap_private_key(key, wrapped, aad)
                except crypto.MasterKeyMismatch:
                    continue
            raise

    def _private_key(self, tenant_id: str, wrapped: bytes) -> RsaKey:
        key = self._private.get(tenant_id)
        if key is None:
            key = crypto.load_private_key(self._unwrap(tenant_id, wrapped))
            with self._lock:
                self._private[tenant_id] = key
        return key

    def forget(self) -> None:
        """Drop cached private keys (after any change elsewhere: rotation, deleted tenants)."""
        with self._lock:
            self._private.clear()

    # -- credentials ----------------------------------------------------------------

    def encrypt(self, public_pem: bytes, credential: Credential) -> bytes:
        public = self._public.get(public_pem)
        if public is None:
            public = self._public[public_pem] = crypto.load_public_key(public_pem)
        return crypto.encrypt_secret(public, serialize_credential(credential))

    def decrypt(self, tenant_id: str, wrapped_private: bytes, blob: bytes,
                spec: tuple[CredentialField, ...]) -> Credential:
        plaintext = crypto.decrypt_secret(self._private_key(tenant_id, wrapped_private), blob)
        return deserialize_credential(plaintext, spec)
