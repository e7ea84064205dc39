"""Seed N tenants into a gateway's data directory in seconds, for the `tenants` scenario.

    python -m bench.tenant_seed --config modelport.yaml --tenants 1000 \
        --base-url http://127.0.0.1:PORT/v1 --api-key sk-... --tokens-out tokens.txt

Run before `modelport serve` starts on that data directory (nothing is running that
caches what is written here, so no change counter bump and no change-log rows). The data
directory is opened the way the product opens it (`open_store_and_keystore`: migrations,
master key, key check), then every tenant gets what `proxy/service.py` `Management`
would write: a tenant row with its public key, its private key wrapped under the current
master key and bound to its id, one token (only its hash stored), an OpenAI credential
(api_key + base_url) encrypted with its public key, and a default llm model.

The one shortcut: every tenant shares ONE RSA key pair. Creating tenants through the
CLI or the admin API costs an RSA-2048 key generation each (~0.25 s of CPU), so 10,000
tenants would take ~40 min to seed. Sharing the pair changes nothing the gateway does
per tenant: each tenant still has its own wrapped private key (sealed with its own
nonce and its tenant id as associated data), its own encrypted credential (a fresh AES
key, RSA-OAEP-wrapped), its own cache entries, and the gateway still unwraps and RSA-
decrypts once per tenant (caches are keyed by tenant id, never by key material).

Writes go through the store's writer connection in a few big transactions (1,000
tenants each) rather than one transaction per row through the store's methods.
Prints one JSON object: the probe tenant's token (a tenant outside the cycled set, for
start-up probes), timings, and the tenant name pattern (`<prefix>-<index:05d>`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import time
from pathlib import Path

from Crypto.PublicKey.RSA import RsaKey

from keystore import crypto, load_master_key, serialize_credential, validate_credential
from proxy.auth import TOKEN_PREFIX
from proxy.bootstrap import open_store_and_keystore
from proxy.settings import load_settings
from proxy.tenants import hash_token
from translators import REGISTRY

BATCH = 1000
PROVIDER = "openai"
DEFAULT_MODEL = "gpt-4o-mini"


def tenant_name(prefix: str, index: int) -> str:
    return f"{prefix}-{index:05d}"


def _rows(names: list[str], pair: crypto.KeyPair, public: RsaKey, master: bytes, key_id: str,
          plaintext: bytes, now: int) -> tuple[dict[str, list[tuple[object, ...]]], list[str]]:
    """The rows of these tenants, table by table, and their tokens (in the same order)."""
    rows: dict[str, list[tuple[object, ...]]] = {t: [] for t in ("tenants", "keys", "tokens", "creds", "defaults")}
    tokens = []
    for name in names:
        tenant_id = "tn_" + secrets.token_hex(8)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        tokens.append(token)
        rows["tenants"].append((tenant_id, name, pair.public_pem, now))
        # As Keystore.create_tenant_keys does: sealed under the master key, bound to the tenant id.
        rows["keys"].append((tenant_id, crypto.wrap_private_key(master, pair.private_der, tenant_id.encode()),
                             key_id))
        rows["tokens"].append(("tok_" + secrets.token_hex(8), tenant_id, "bench", hash_token(token),
                               f"{token[:5]}...{token[-4:]}", now))
        # A fresh data key per tenant, as Keystore.encrypt does for every saved credential.
        rows["creds"].append((tenant_id, PROVIDER, crypto.encrypt_secret(public, plaintext), now))
        rows["defaults"].append((tenant_id, "llm", PROVIDER, DEFAULT_MODEL))
    return rows, tokens


async def seed(config: Path, count: int, prefix: str, base_url: str, api_key: str, tokens_out: Path,
               probe: bool) -> dict[str, object]:
    settings = load_settings(config)
    t0 = time.perf_counter()
    store, keystore = await open_store_and_keystore(settings)
    try:
        # The key the keystore wraps with: loaded from the same source, checked by its id.
        master = load_master_key(settings.master_key_path, create=False)
        if crypto.master_key_id(master) != keystore.key_id:
            raise SystemExit("tenant_seed: the master key file is not the database's current key")
        translator = REGISTRY[PROVIDER]
        credential = validate_credential(PROVIDER, translator.credential_fields,
                                         {"api_key": api_key, "base_url": base_url})
        translator.check_credential(credential)
        translator.check_model(DEFAULT_MODEL)
        plaintext = serialize_credential(credential)
        t_key = time.perf_counter()
        pair = crypto.generate_key_pair()
        keygen_s = time.perf_counter() - t_key
        public = crypto.load_public_key(pair.public_pem)
        names = [tenant_name(prefix, i) for i in range(count)] + ([f"{prefix}-probe"] if probe else [])
        db = store.writer
        all_tokens: list[str] = []
        now = int(time.time())
        for start in range(0, len(names), BATCH):
            rows, tokens = _rows(names[start:start + BATCH], pair, public, master, keystore.key_id, plaintext, now)
            await db.execute("BEGIN IMMEDIATE")
            try:
                await db.executemany("INSERT INTO tenants (id, name, public_key, created_at) VALUES (?, ?, ?, ?)",
                                     rows["tenants"])
                # master_key_id: the schema's invariant (a rotation re-wraps by it).
                await db.executemany("INSERT INTO tenant_private_keys (tenant_id, wrapped_key, master_key_id) "
                                     "VALUES (?, ?, ?)", rows["keys"])
                await db.executemany("INSERT INTO tokens (id, tenant_id, name, token_hash, hint, created_at) "
                                     "VALUES (?, ?, ?, ?, ?, ?)", rows["tokens"])
                await db.executemany("INSERT INTO provider_credentials (tenant_id, provider, secret, updated_at) "
                                     "VALUES (?, ?, ?, ?)", rows["creds"])
                await db.executemany("INSERT INTO default_models (tenant_id, model_type, provider, model) "
                                     "VALUES (?, ?, ?, ?)", rows["defaults"])
                await db.execute("COMMIT")
            except BaseException:
                await db.execute("ROLLBACK")
                raise
            all_tokens += tokens
    finally:
        close = getattr(keystore, "close", None)  # a keystore with a crypto runner to stop
        if close is not None:
            await close()
        await store.close()
    probe_token = all_tokens.pop() if probe else None
    tokens_out.write_text("\n".join(all_tokens) + "\n")
    tokens_out.chmod(0o600)
    return {"tenants": count, "prefix": prefix, "probe_token": probe_token, "seconds": time.perf_counter() - t0,
            "keygen_s": keygen_s, "tokens_file": str(tokens_out)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, required=True)
    p.add_argument("--tenants", type=int, required=True)
    p.add_argument("--prefix", default="bench")
    p.add_argument("--base-url", required=True)
    p.add_argument("--api-key", required=True)
    p.add_argument("--tokens-out", type=Path, required=True, help="one token per line, tenant order")
    p.add_argument("--no-probe", action="store_true", help="no extra `<prefix>-probe` tenant")
    a = p.parse_args()
    out = asyncio.run(seed(a.config, a.tenants, a.prefix, a.base_url, a.api_key, a.tokens_out, not a.no_probe))
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
