"""Pure cryptography for the keystore: no I/O, no database, no HTTP.

Two layers protect a provider credential:

* each tenant has its own RSA key pair; a secret is sealed with a fresh AES-256-GCM
  key that is wrapped by the tenant's public key (RSA-OAEP, SHA-256), so secrets of
  any length fit and the ciphertext names its own format;
* the tenant's private key is itself sealed with the operator's 32-byte master key
  (AES-256-GCM, bound to the tenant id), so a database dump alone reveals nothing.

Exception tree::

    KeystoreError
    ├── DecryptionError      a secret blob cannot be opened (wrong key, tampered, malformed)
    └── MasterKeyMismatch    a wrapped private key does not open with this master key
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
import struct
from dataclasses import dataclass, field

from Crypto.Cipher import AES, PKCS1_OAEP
from Crypto.Hash import SHA256
from Crypto.IO import PKCS8
from Crypto.PublicKey import RSA
from Crypto.PublicKey.RSA import RsaKey
from Crypto.Random import get_random_bytes
from Crypto.Util.asn1 import DerSequence

__all__ = [
    "DecryptionError", "KeyPair", "KeystoreError", "MasterKeyMismatch", "decrypt_secret",
    "encode_master_key", "encrypt_secret", "generate_key_pair", "load_private_key",
    "load_public_key", "load_unwrapped_private_key", "master_key_check", "master_key_id", "new_master_key",
    "parse_master_key", "unwrap_private_key", "verify_master_key", "wrap_private_key",
]

RSA_BITS = 2048
MASTER_KEY_BYTES = 32

_KEY_BYTES = 32
_NONCE_BYTES = 12
_TAG_BYTES = 16

# Secret blob: version (1 byte), wrapped-key length (2 bytes, big endian), wrapped key,
# nonce, tag, ciphertext. The length is stored rather than implied by the RSA size so a
# future larger tenant key does not need a new format.
_SECRET_V1 = 1
_SECRET_HEADER = struct.Struct(">BH")

# Sealed blob (wrapped private key, master-key check): version, nonce, tag, ciphertext.
_SEALED_V1 = 1
_SEALED_MIN = 1 + _NONCE_BYTES + _TAG_BYTES

# Purpose labels go into the AAD so a blob made for one use never opens as another
# (e.g. the master-key check can never be unwrapped as some tenant's private key).
_PRIVATE_KEY_PURPOSE = b"modelport/private-key\x00"
_CHECK_PURPOSE = b"modelport/master-key-check\x00"
_CHECK_PLAINTEXT = b"modelport master key check v1"
_KEY_ID_LABEL = b"modelport/master-key-id\x00"

_MASTER_KEY_RE = re.compile(r"[A-Za-z0-9_-]{43}=?")


class KeystoreError(Exception):
    """Base of every keystore failure; messages never contain key material or secrets."""


class DecryptionError(KeystoreError):
    """A secret blob could not be decrypted: wrong tenant key, tampering or a malformed blob."""


class MasterKeyMismatch(KeystoreError):
    """A wrapped private key does not open with this master key (or belongs to another tenant)."""


@dataclass(frozen=True)
class KeyPair:
    public_pem: bytes
    private_der: bytes = field(repr=False)  # keeps the private key out of logs and tracebacks


def generate_key_pair() -> KeyPair:
    key = RSA.generate(RSA_BITS)
    return KeyPair(
        public_pem=key.public_key().export_key(format="PEM"),
        private_der=key.export_key(format="DER", pkcs=8),
    )


def load_public_key(pem: bytes) -> RsaKey:
    key = _import_rsa(pem, "public")
    if key.has_private():
        # A private key where a public one belongs means it is stored unwrapped somewhere.
        raise KeystoreError("expected an RSA public key but got a private key")
    return key


def load_private_key(der: bytes) -> RsaKey:
    key = _import_rsa(der, "private")
    if not key.has_private():
        raise KeystoreError("expected an RSA private key but got a public key")
    return key


def load_unwrapped_private_key(der: bytes) -> RsaKey:
    """A private key that `unwrap_private_key` has just opened, ~20x faster than
    `load_private_key` (about 1 ms instead of 20+).

    `RSA.import_key` runs a consistency check whose probabilistic primality tests of p
    and q are nearly all of its cost. Those tests guard against a forged or corrupted
    key; this one is PKCS#8 DER that `generate_key_pair` made and `wrap_private_key`
    sealed with AES-GCM under the master key, bound to the tenant id, and it opened
    with a valid tag: nobody without the master key could have chosen or altered it.
    Only ever pass such keys here; anything else goes through `load_private_key`.
    """
    try:
        oid, pkcs1, _ = PKCS8.unwrap(der)
        if oid != RSA.oid:
            raise ValueError
        # RSAPrivateKey (RFC 8017): version, n, e, d, p, q, d mod (p-1), d mod (q-1), q^-1 mod p
        fields = DerSequence().decode(pkcs1, nr_elements=9, only_ints_expected=True)
        version, n, e, d, p, q = (int(fields[i]) for i in range(6))
        # The one check kept costs a multiplication: it catches a wrong or truncated DER
        # (a bug of ours), which would otherwise surface as garbled decryptions.
        if version != 0 or p * q != n:
            raise ValueError
        return RSA.construct((n, e, d, p, q), consistency_check=False)
    except (ValueError, IndexError, TypeError, EOFError):
        raise KeystoreError("not a valid RSA private key") from None


def _import_rsa(data: bytes, kind: str) -> RsaKey:
    try:
        return RSA.import_key(data)
    except (ValueError, IndexError, TypeError):
        raise KeystoreError(f"not a valid RSA {kind} key") from None


def _oaep(key: RsaKey) -> PKCS1_OAEP.PKCS1OAEP_Cipher:
    return PKCS1_OAEP.new(key, hashAlgo=SHA256)


def encrypt_secret(public_key: RsaKey, plaintext: bytes) -> bytes:
    # One data key per secret means a random 96-bit nonce is never reused under a key.
    data_key = get_random_bytes(_KEY_BYTES)
    wrapped = _oaep(public_key).encrypt(data_key)
    header = _SECRET_HEADER.pack(_SECRET_V1, len(wrapped)) + wrapped
    nonce = get_random_bytes(_NONCE_BYTES)
    cipher = AES.new(data_key, AES.MODE_GCM, nonce=nonce, mac_len=_TAG_BYTES)
    cipher.update(header)  # authenticate the version and wrapped key along with the data
    ciphertext, tag = cipher.encrypt_and_digest(plaintext)
    return header + nonce + tag + ciphertext


def decrypt_secret(private_key: RsaKey, blob: bytes) -> bytes:
    if not private_key.has_private():
        raise KeystoreError("decrypt_secret needs a private key")
    blob = bytes(blob)
    if len(blob) < _SECRET_HEADER.size:
        raise DecryptionError("encrypted secret is truncated")
    version, wrapped_len = _SECRET_HEADER.unpack_from(blob)
    if version != _SECRET_V1:
        raise DecryptionError(f"encrypted secret has unknown format version {version}")
    header_end = _SECRET_HEADER.size + wrapped_len
    if len(blob) < header_end + _NONCE_BYTES + _TAG_BYTES:
        raise DecryptionError("encrypted secret is truncated")
    nonce_end = header_end + _NONCE_BYTES
    tag_end = nonce_end + _TAG_BYTES
    try:
        data_key = _oaep(private_key).decrypt(blob[_SECRET_HEADER.size : header_end])
    except ValueError:
        raise DecryptionError("encrypted secret does not open with this tenant's key") from None
    if len(data_key) != _KEY_BYTES:
        raise DecryptionError("encrypted secret carries a data key of the wrong size")
    cipher = AES.new(data_key, AES.MODE_GCM, nonce=blob[header_end:nonce_end], mac_len=_TAG_BYTES)
    cipher.update(blob[:header_end])
    try:
        return cipher.decrypt_and_verify(blob[tag_end:], blob[nonce_end:tag_end])
    except ValueError:
        raise DecryptionError("encrypted secret failed its integrity check (tampered or corrupted)") from None


def new_master_key() -> bytes:
    return get_random_bytes(MASTER_KEY_BYTES)


def encode_master_key(key: bytes) -> str:
    _require_master(key)
    return base64.urlsafe_b64encode(key).decode("ascii")


def parse_master_key(text: str) -> bytes:
    # The value is a secret: errors describe the expected shape, never what was given.
    expected = f"master key must be {MASTER_KEY_BYTES} bytes encoded as URL-safe base64 (44 characters)"
    if not isinstance(text, str) or not _MASTER_KEY_RE.fullmatch(text):
        got = f"; got {len(text)} characters" if isinstance(text, str) else ""
        raise KeystoreError(expected + got)
    try:
        key = base64.urlsafe_b64decode(text.rstrip("=") + "=")
    except (binascii.Error, ValueError):
        raise KeystoreError(expected) from None
    # Reject non-canonical spellings, so one key has exactly one text form.
    if len(key) != MASTER_KEY_BYTES or encode_master_key(key).rstrip("=") != text.rstrip("="):
        raise KeystoreError(expected)
    return key


def wrap_private_key(master: bytes, private_der: bytes, aad: bytes) -> bytes:
    return _seal(master, private_der, _PRIVATE_KEY_PURPOSE + aad)


def unwrap_private_key(master: bytes, blob: bytes, aad: bytes) -> bytes:
    """Open a wrapped private key.

    Raises MasterKeyMismatch when authentication fails (wrong master key, another
    tenant's id, tampering: GCM cannot tell these apart) and plain KeystoreError when
    the blob is structurally broken, which is storage corruption rather than a mismatch.
    """
    plaintext = _open(master, blob, _PRIVATE_KEY_PURPOSE + aad)
    if plaintext is None:
        raise MasterKeyMismatch(
            "the tenant's private key does not open with this master key "
            "(wrong master key, or the key was wrapped for another tenant)"
        )
    return plaintext


def master_key_check(master: bytes) -> bytes:
    return _seal(master, _CHECK_PLAINTEXT, _CHECK_PURPOSE)


def master_key_id(master: bytes) -> str:
    """A short public name for a master key (16 hex characters), stored beside every
    wrapped private key. Deterministic, so any process can tell from its own key alone
    whether it holds the key the database is on; an HMAC, so it reveals nothing of the key."""
    _require_master(master)
    return hmac.new(bytes(master), _KEY_ID_LABEL, "sha256").hexdigest()[:16]


def verify_master_key(master: bytes, check: bytes) -> bool:
    try:
        plaintext = _open(master, check, _CHECK_PURPOSE)
    except KeystoreError:
        return False
    return plaintext is not None and hmac.compare_digest(plaintext, _CHECK_PLAINTEXT)


def _require_master(master: bytes) -> None:
    # AES would quietly accept a 16- or 24-byte key; insist on the one size we promise.
    if not isinstance(master, (bytes, bytearray)) or len(master) != MASTER_KEY_BYTES:
        raise KeystoreError(f"master key must be exactly {MASTER_KEY_BYTES} bytes")


def _seal(master: bytes, plaintext: bytes, aad: bytes) -> bytes:
    _require_master(master)
    # Random nonces are safe here: a master key seals one blob per tenant plus one check,
    # far below the ~2**32 messages where 96-bit random nonces start to risk collision.
    nonce = get_random_bytes(_NONCE_BYTES)
    cipher = AES.new(bytes(master), AES.MODE_GCM, nonce=nonce, mac_len=_TAG_BYTES)
    cipher.update(bytes([_SEALED_V1]) + aad)
    ciphertext, tag = cipher.encrypt_and_digest(plaintext)
    return bytes([_SEALED_V1]) + nonce + tag + ciphertext


def _open(master: bytes, blob: bytes, aad: bytes) -> bytes | None:
    """Plaintext, or None when authentication fails; KeystoreError when malformed."""
    _require_master(master)
    blob = bytes(blob)
    if len(blob) < _SEALED_MIN:
        raise KeystoreError("wrapped key blob is truncated")
    if blob[0] != _SEALED_V1:
        raise KeystoreError(f"wrapped key blob has unknown format version {blob[0]}")
    nonce, tag = blob[1 : 1 + _NONCE_BYTES], blob[1 + _NONCE_BYTES : _SEALED_MIN]
    cipher = AES.new(bytes(master), AES.MODE_GCM, nonce=nonce, mac_len=_TAG_BYTES)
    cipher.update(blob[:1] + aad)
    try:
        return cipher.decrypt_and_verify(blob[_SEALED_MIN:], tag)
    except ValueError:
        return None
