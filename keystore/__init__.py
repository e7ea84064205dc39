"""modelport's keystore: per-tenant RSA key pairs, encrypted provider credentials, the master key.

``crypto`` is the pure cryptography, ``master`` finds the operator's master key,
``models`` holds the typed credentials. Nothing here knows about HTTP.
"""

from .crypto import (
    DecryptionError,
    KeyPair,
    KeystoreError,
    MasterKeyMismatch,
    decrypt_secret,
    encode_master_key,
    encrypt_secret,
    generate_key_pair,
    load_private_key,
    load_public_key,
    master_key_check,
    new_master_key,
    parse_master_key,
    unwrap_private_key,
    verify_master_key,
    wrap_private_key,
)
from .master import MASTER_KEY_ENV, load_master_key, write_master_key
from .models import (
    BASE_URL_FIELD,
    Credential,
    CredentialError,
    CredentialField,
    deserialize_credential,
    mask,
    serialize_credential,
    validate_credential,
)

__all__ = [
    "BASE_URL_FIELD",
    "MASTER_KEY_ENV",
    "Credential",
    "CredentialError",
    "CredentialField",
    "DecryptionError",
    "KeyPair",
    "KeystoreError",
    "MasterKeyMismatch",
    "decrypt_secret",
    "deserialize_credential",
    "encode_master_key",
    "encrypt_secret",
    "generate_key_pair",
    "load_master_key",
    "load_private_key",
    "load_public_key",
    "mask",
    "master_key_check",
    "new_master_key",
    "parse_master_key",
    "serialize_credential",
    "unwrap_private_key",
    "validate_credential",
    "verify_master_key",
    "wrap_private_key",
    "write_master_key",
]
