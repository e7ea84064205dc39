"""Keystore: hybrid secret encryption, master-key wrapping, key file handling, typed credentials."""

from __future__ import annotations

import base64
import os
import stat

import pytest

from keystore import (
    MASTER_KEY_ENV,
    Credential,
    CredentialError,
    CredentialField,
    DecryptionError,
    KeystoreError,
    MasterKeyMismatch,
    decrypt_secret,
    deserialize_credential,
    encode_master_key,
    encrypt_secret,
    generate_key_pair,
    load_master_key,
    load_private_key,
    load_public_key,
    mask,
    master_key_check,
    new_master_key,
    parse_master_key,
    serialize_credential,
    unwrap_private_key,
    validate_credential,
    verify_master_key,
    wrap_private_key,
    write_master_key,
)

FAKE_KEY = "sk-test-not-a-real-key-0001"
OPENAI_SPEC = (CredentialField("api_key"),)
SPARK_SPEC = (
    CredentialField("app_id", secret=False),
    CredentialField("api_key"),
    CredentialField("api_secret"),
)


@pytest.fixture(scope="module")
def tenant_a():
    pair = generate_key_pair()
    return pair, load_public_key(pair.public_pem), load_private_key(pair.private_der)


@pytest.fixture(scope="module")
def tenant_b():
    pair = generate_key_pair()
    return pair, load_public_key(pair.public_pem), load_private_key(pair.private_der)


# --- secrets under a tenant's RSA key ---------------------------------------------------


@pytest.mark.parametrize("secret", [b"", FAKE_KEY.encode(), os.urandom(100 * 1024)], ids=["empty", "short", "100KB"])
def test_secret_round_trip(tenant_a, secret):
    _, pub, priv = tenant_a
    assert decrypt_secret(priv, encrypt_secret(pub, secret)) == secret


def test_same_secret_encrypts_differently_each_time(tenant_a):
    _, pub, _ = tenant_a
    assert encrypt_secret(pub, FAKE_KEY.encode()) != encrypt_secret(pub, FAKE_KEY.encode())


def test_other_tenant_cannot_decrypt(tenant_a, tenant_b):
    blob = encrypt_secret(tenant_a[1], FAKE_KEY.encode())
    with pytest.raises(DecryptionError) as exc:
        decrypt_secret(tenant_b[2], blob)
    assert FAKE_KEY not in str(exc.value)


@pytest.mark.parametrize("where", ["length", "wrapped_key", "nonce", "tag", "ciphertext"])
def test_tampered_blob_fails(tenant_a, where):
    _, pub, priv = tenant_a
    blob = bytearray(encrypt_secret(pub, FAKE_KEY.encode()))
    offset = {"length": 2, "wrapped_key": 10, "nonce": 3 + 256, "tag": 3 + 256 + 12, "ciphertext": -1}[where]
    blob[offset] ^= 0x01
    with pytest.raises(DecryptionError) as exc:
        decrypt_secret(priv, bytes(blob))
    assert FAKE_KEY not in str(exc.value)


@pytest.mark.parametrize("blob", [b"", b"\x01\x01", b"\x02" + bytes(400), b"\x01\x01\x00" + bytes(100)])
def test_malformed_blob_fails(tenant_a, blob):
    with pytest.raises(DecryptionError):
        decrypt_secret(tenant_a[2], blob)


def test_key_loading_rejects_wrong_kind(tenant_a):
    pair, _, _ = tenant_a
    assert "private_der" not in repr(pair)
    with pytest.raises(KeystoreError):
        load_private_key(pair.public_pem)
    with pytest.raises(KeystoreError):
        load_public_key(pair.private_der)
    with pytest.raises(KeystoreError):
        load_private_key(b"not a key")


# --- the master key -------------------------------------------------------------------


def test_wrap_round_trip_and_failures(tenant_a):
    pair, _, _ = tenant_a
    master = new_master_key()
    wrapped = wrap_private_key(master, pair.private_der, b"tenant-a")
    assert pair.private_der not in wrapped
    assert unwrap_private_key(master, wrapped, b"tenant-a") == pair.private_der
    with pytest.raises(MasterKeyMismatch):
        unwrap_private_key(new_master_key(), wrapped, b"tenant-a")
    with pytest.raises(MasterKeyMismatch):
        unwrap_private_key(master, wrapped, b"tenant-b")
    tampered = wrapped[:-1] + bytes([wrapped[-1] ^ 1])
    with pytest.raises(MasterKeyMismatch):
        unwrap_private_key(master, tampered, b"tenant-a")


def test_verify_master_key():
    master = new_master_key()
    check = master_key_check(master)
    assert verify_master_key(master, check) is True
    assert verify_master_key(new_master_key(), check) is False
    assert verify_master_key(master, b"garbage") is False
    # The check blob is for one purpose only: it must never open as a wrapped key.
    with pytest.raises(MasterKeyMismatch):
        unwrap_private_key(master, check, b"")


def test_master_key_encoding_round_trip():
    master = new_master_key()
    text = encode_master_key(master)
    assert len(text) == 44
    assert parse_master_key(text) == master
    assert parse_master_key(text.rstrip("=")) == master


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "c2VjcmV0LXRvby1zaG9ydA==",  # 14 bytes
        base64.urlsafe_b64encode(b"k" * 33).decode(),
        base64.b64encode(b"\xfb" * 32).decode(),  # standard alphabet: + and /
        "!" * 44,
        base64.urlsafe_b64encode(b"k" * 32).decode()[:42] + "l=",  # non-canonical last char
    ],
)
def test_parse_master_key_rejects_without_echo(bad):
    with pytest.raises(KeystoreError) as exc:
        parse_master_key(bad)
    assert "32 bytes" in str(exc.value)
    if bad:
        assert bad not in str(exc.value)


def test_load_master_key_creates_private_file(tmp_path, monkeypatch):
    monkeypatch.delenv(MASTER_KEY_ENV, raising=False)
    key_file = tmp_path / "data" / "nested" / "master.key"
    old_umask = os.umask(0)  # prove 0600 comes from the code, not a friendly umask
    try:
        key = load_master_key(key_file, create=True)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_text() == encode_master_key(key) + "\n"
    assert load_master_key(key_file, create=True) == key
    assert load_master_key(key_file, create=False) == key
    assert [p.name for p in key_file.parent.iterdir()] == ["master.key"]  # no temp files left


def test_load_master_key_prefers_env(tmp_path, monkeypatch):
    key_file = tmp_path / "master.key"
    write_master_key(key_file, new_master_key())
    env_key = new_master_key()
    monkeypatch.setenv(MASTER_KEY_ENV, f"  {encode_master_key(env_key)}\n")
    assert load_master_key(key_file, create=True) == env_key
    monkeypatch.setenv(MASTER_KEY_ENV, "not-a-key")
    with pytest.raises(KeystoreError, match=MASTER_KEY_ENV) as exc:
        load_master_key(key_file, create=True)
    assert "not-a-key" not in str(exc.value)


def test_load_master_key_missing_without_create(tmp_path, monkeypatch):
    monkeypatch.delenv(MASTER_KEY_ENV, raising=False)
    key_file = tmp_path / "absent.key"
    with pytest.raises(KeystoreError) as exc:
        load_master_key(key_file, create=False)
    assert str(key_file) in str(exc.value) and MASTER_KEY_ENV in str(exc.value)
    assert not key_file.exists()


def test_write_master_key_replaces_atomically(tmp_path, monkeypatch):
    monkeypatch.delenv(MASTER_KEY_ENV, raising=False)
    key_file = tmp_path / "master.key"
    load_master_key(key_file, create=True)
    new = new_master_key()
    write_master_key(key_file, new)
    assert load_master_key(key_file, create=False) == new
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["master.key"]


# --- typed credentials ----------------------------------------------------------------


def test_credential_never_shows_secret():
    cred = validate_credential("spark", SPARK_SPEC, {"app_id": "app-test-0001", "api_key": FAKE_KEY, "api_secret": "s3cret-test-only-xyz9"})
    for text in (repr(cred), str(cred), f"{cred}", repr([cred])):
        assert FAKE_KEY not in text and "s3cret-test-only-xyz9" not in text
    assert "sk-...0001" in repr(cred) and "app-test-0001" in repr(cred)
    assert cred.masked() == {"app_id": "app-test-0001", "api_key": "sk-...0001", "api_secret": "...xyz9"}
    assert set(cred.secret_values()) == {FAKE_KEY, "s3cret-test-only-xyz9"}
    assert cred["api_key"] == FAKE_KEY and cred.get("missing", "d") == "d" and cred.base_url is None
    with pytest.raises(AttributeError):
        cred._values = {}  # type: ignore[misc]


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("sk-abcdef123456a1b2", "sk-...a1b2"),
        ("hf_testtokenonly9876", "hf_...9876"),
        ("abcdefghijklmnop", "...mnop"),
        ("short-key", "***"),
        ("", "***"),
    ],
)
def test_mask(value, masked):
    assert mask(value) == masked


def test_validate_credential_base_url():
    cred = validate_credential("openai", OPENAI_SPEC, {"api_key": f" {FAKE_KEY}\n", "base_url": "https://llm.example.test/v1/"})
    assert cred["api_key"] == FAKE_KEY
    assert cred.base_url == "https://llm.example.test/v1"
    assert FAKE_KEY not in cred.masked().values()
    assert validate_credential("openai", OPENAI_SPEC, {"api_key": FAKE_KEY, "base_url": ""}).base_url is None


@pytest.mark.parametrize(
    ("values", "field", "needle"),
    [
        ({}, "api_key", "provider 'openai' needs field 'api_key'"),
        ({"api_key": "  "}, "api_key", "must not be empty"),
        ({"api_key": 123}, "api_key", "must be a string"),
        ({"api_key": FAKE_KEY, "org": "x"}, "org", "accepted: api_key, base_url"),
        ({"api_key": FAKE_KEY, "base_url": "ftp://files.example.test"}, "base_url", "http"),
        ({"api_key": FAKE_KEY, "base_url": "not a url"}, "base_url", "whitespace"),
        ({"api_key": FAKE_KEY, "base_url": "https://"}, "base_url", "with a host"),
        ({"api_key": FAKE_KEY, "base_url": "https://h.example.test/?k=v"}, "base_url", "query"),
    ],
)
def test_validate_credential_errors(values, field, needle):
    with pytest.raises(CredentialError) as exc:
        validate_credential("openai", OPENAI_SPEC, values)
    assert exc.value.field == field
    assert needle in str(exc.value)


def test_base_url_with_userinfo_rejected_without_echo():
    with pytest.raises(CredentialError) as exc:
        validate_credential("openai", OPENAI_SPEC, {"api_key": FAKE_KEY, "base_url": "https://user:pw-test-only@h.example.test"})
    assert exc.value.field == "base_url" and "user info" in str(exc.value)
    assert "pw-test-only" not in str(exc.value)


def test_credential_serialization_round_trip(tenant_a):
    _, pub, priv = tenant_a
    cred = validate_credential("openai", OPENAI_SPEC, {"api_key": FAKE_KEY, "base_url": "wss://ws.example.test"})
    restored = deserialize_credential(decrypt_secret(priv, encrypt_secret(pub, serialize_credential(cred))), OPENAI_SPEC)
    assert restored == cred and isinstance(restored, Credential)
    assert FAKE_KEY not in repr(restored)
    with pytest.raises(CredentialError, match="needs field 'api_key'"):
        deserialize_credential(b"{}", OPENAI_SPEC)
    with pytest.raises(CredentialError) as exc:
        deserialize_credential(FAKE_KEY.encode(), OPENAI_SPEC)
    assert FAKE_KEY not in str(exc.value)
