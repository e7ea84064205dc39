"""The keystore as the rest of the gateway uses it: tenant key pairs, encrypting a
credential for storage, and decrypting it back (the only place that does).

It holds the operator's master key and an LRU cache of tenants' unwrapped private keys
(DER), so the AES-GCM unwrap runs once per tenant while it stays cached. RSA (key
generation, decryption) goes to a `CryptoRunner` (keystore/offload.py): a helper
process while serving, inline for the CLI and tests. It does no I/O: the caller passes
in the rows it read, which keeps storage in one module.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from cachetools import LRUCache
from Crypto.PublicKey.RSA import RsaKey

from keystore import crypto
from keystore.keypool import KeyPairPool
from keystore.models import (
    Credential,
    CredentialField,
    deserialize_credential,
    serialize_credential,
)
from keystore.offload import CryptoRunner, InlineCrypto

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


@dataclass(slots=True)
class KeystoreStats:
    """Plain counters, for tests and the benchmark (cheap enough to bump on every call)."""

    unwraps: int = 0          # private keys unwrapped with the master key: cache misses
    rsa_decryptions: int = 0  # credential blobs given to RSA (inline or in a helper process)
    keys_generated: int = 0   # tenant key pairs generated, including those made ahead by the pool


class _Counted:
    """The runner, counting into `stats`: the pool's refills count as generated keys too."""

    def __init__(self, runner: CryptoRunner, stats: KeystoreStats) -> None:
        self.inner = runner
        self._stats = stats

    async def generate_key_pair(self) -> crypto.KeyPair:
        pair = await self.inner.generate_key_pair()
        self._stats.keys_generated += 1
        return pair

    async def decrypt(self, private_der: bytes, blob: bytes) -> bytes:
        self._stats.rsa_decryptions += 1
        return await self.inner.decrypt(private_der, blob)

    async def close(self) -> None:
        await self.inner.close()


class Keystore:
    """Holds the master key that wraps new tenants' keys, plus any other master key this
    process has proven (to open keys wrapped before a rotation it has not followed yet).

    `reload_master` returns the keys this process could switch to after a rotation
    elsewhere (its configured source read again, then a key staged by the rotation);
    one is used only once it proves itself, by its key id or by opening a wrapped key.
    Only `follow` changes the wrapping key, so it never flips back to an older one.

    `private_keys` bounds the cache of unwrapped private keys (least recently used out);
    `runner` is where RSA decryption runs (None: inline), `key_runner` where key pairs are
    generated (None: `runner`): apart, a cold tenant's decryption never waits behind a
    key generation. `pregenerated_keys` pairs are kept ready once `start` is called or a
    pair was taken. `close` stops the pool and the runners."""

    def __init__(self, master_key: bytes, reload_master: Callable[[], Iterable[bytes]] | None = None, *,
                 private_keys: int = 10_000, runner: CryptoRunner | None = None,
                 key_runner: CryptoRunner | None = None, pregenerated_keys: int = 0) -> None:
        crypto.encode_master_key(master_key)  # checks the length once, here
        if private_keys < 1:
            raise ValueError("the private key cache needs room for at least one key")
        self._master = master_key
        self._key_id = crypto.master_key_id(master_key)
        self._known: dict[str, bytes] = {self._key_id: master_key}
        self._reload_master = reload_master
        self._private: LRUCache[str, bytes] = LRUCache(private_keys)  # tenant id -> PKCS#8 DER
        self._public: LRUCache[bytes, RsaKey] = LRUCache(1024)  # PEM -> key: admin writes, one tenant at a time
        self._lock = threading.Lock()
        self.stats = KeystoreStats()
        self._runner = _Counted(runner if runner is not None else InlineCrypto(), self.stats)
        self._key_runner = self._runner if key_runner is None else _Counted(key_runner, self.stats)
        self._pool = KeyPairPool(self._key_runner, pregenerated_keys)

    @property
    def runner(self) -> CryptoRunner:
        return self._runner.inner

    @property
    def pool(self) -> KeyPairPool:
        return self._pool

    @property
    def cached_private_keys(self) -> int:
        return len(self._private)

    def start(self) -> None:
        """Begin pre-generating key pairs (needs a running event loop; a no-op without a pool)."""
        self._pool.start()

    @property
    def key_runner(self) -> CryptoRunner:
        return self._key_runner.inner

    async def close(self) -> None:
        await self._pool.close()
        await self._runner.close()
        if self._key_runner is not self._runner:
            await self._key_runner.close()

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

    async def create_tenant_keys(self, tenant_id: str) -> tuple[bytes, WrappedKey]:
        """(public key PEM, private key wrapped by the master key) for a new tenant: a
        pre-generated pair if one is ready, else one generated by the key runner, wrapped
        here under the master key current now. The wrapped key carries that key's id:
        `Store.create_tenant` checks it against the database's in the transaction that
        inserts it."""
        return self._wrap_new(tenant_id, await self._pool.take())

    def _wrap_new(self, tenant_id: str, pair: crypto.KeyPair) -> tuple[bytes, WrappedKey]:
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

    def _private_der(self, tenant_id: str, wrapped: bytes) -> bytes:
        """The tenant's private key (PKCS#8 DER), from the cache or unwrapped (AES-GCM,
        authenticated: the only source `load_unwrapped_private_key` may be given)."""
        with self._lock:  # cachetools' caches are not thread-safe; `decrypt` may run in threads
            der = self._private.get(tenant_id)
        if der is not None:
            return der
        der = self._unwrap(tenant_id, wrapped)
        with self._lock:
            self.stats.unwraps += 1
            self._private[tenant_id] = der
        return der

    def forget(self, tenant_id: str | None = None) -> None:
        """Drop one tenant's cached private key, or all of them (None): after any change
        elsewhere (rotation, deleted tenants)."""
        with self._lock:
            if tenant_id is None:
                self._private.clear()
            else:
                self._private.pop(tenant_id, None)

    # -- credentials ----------------------------------------------------------------

    def encrypt(self, public_pem: bytes, credential: Credential) -> bytes:
        with self._lock:
            public = self._public.get(public_pem)
        if public is None:
            public = crypto.load_public_key(public_pem)
            with self._lock:
                self._public[public_pem] = public
        return crypto.encrypt_secret(public, serialize_credential(credential))

    def decrypt(self, tenant_id: str, wrapped_private: bytes, blob: bytes,
                spec: tuple[CredentialField, ...]) -> Credential:
        """A stored credential, decrypted in the calling thread (CLI, tests); see `open_credential`."""
        key = crypto.load_unwrapped_private_key(self._private_der(tenant_id, wrapped_private))
        self.stats.rsa_decryptions += 1
        return deserialize_credential(crypto.decrypt_secret(key, blob), spec)

    async def open_credential(self, tenant_id: str, wrapped_private: bytes, blob: bytes,
                              spec: tuple[CredentialField, ...]) -> Credential:
        """`decrypt` off the event loop: the private key is unwrapped here (microseconds),
        RSA runs in the runner."""
        der = self._private_der(tenant_id, wrapped_private)
        return deserialize_credential(await self._runner.decrypt(der, blob), spec)
