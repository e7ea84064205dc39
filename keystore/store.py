"""The keystore as the rest of the gateway uses it: tenant key pairs, encrypting a
credential for storage, and decrypting it back (the only place that does).

It holds the operator's master key and caches each tenant's unwrapped private key,
so RSA runs once per tenant per cache generation, never on every request. It does no
I/O: the caller passes in the rows it read, which keeps storage in one module.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from Crypto.PublicKey.RSA import RsaKey

from keystore import crypto
from keystore.models import Credential, CredentialField, deserialize_credential, serialize_credential

MASTER_CHECK_META = "master_key_check"


class Keystore:
    def __init__(self, master_key: bytes, reload_master: Callable[[], bytes] | None = None) -> None:
        crypto.encode_master_key(master_key)  # checks the length once, here
        self._master = master_key
        self._reload_master = reload_master
        self._private: dict[str, RsaKey] = {}
        self._public: dict[bytes, RsaKey] = {}
        self._lock = threading.Lock()

    # -- the master key -------------------------------------------------------------

    def master_check(self) -> str:
        return crypto.master_key_check(self._master).hex()

    def matches(self, check_hex: str) -> bool:
        return crypto.verify_master_key(self._master, bytes.fromhex(check_hex))

    def rewrap_all(self, wrapped: list[tuple[str, bytes]], new_master: bytes) -> list[tuple[str, bytes]]:
        """Every tenant's private key unwrapped with the current master key and wrapped with `new_master`."""
        return [(tenant_id, crypto.wrap_private_key(new_master, self._unwrap(tenant_id, blob), tenant_id.encode()))
                for tenant_id, blob in wrapped]

    # -- tenants' key pairs ---------------------------------------------------------

    def new_tenant_keys(self, tenant_id: str) -> tuple[bytes, bytes]:
        """(public key PEM, private key wrapped by the master key) for a new tenant."""
        pair = crypto.generate_key_pair()
        return pair.public_pem, crypto.wrap_private_key(self._master, pair.private_der, tenant_id.encode())

    def _unwrap(self, tenant_id: str, wrapped: bytes) -> bytes:
        try:
            return crypto.unwrap_private_key(self._master, wrapped, tenant_id.encode())
        except crypto.MasterKeyMismatch:
            # The master key may have been rotated by the CLI while we run: read it again once.
            if self._reload_master is None:
                raise
            self._master = self._reload_master()
            return crypto.unwrap_private_key(self._master, wrapped, tenant_id.encode())

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
