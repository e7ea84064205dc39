"""Numbered schema migrations, applied in order at start-up (`meta.schema_version`)."""

from __future__ import annotations

MIGRATIONS: tuple[str, ...] = (
    # 1: tenants, their wrapped private keys (apart from the ciphertexts), tokens,
    # provider credentials, per-model entries, defaults.
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    INSERT INTO meta (key, value) VALUES ('changes', '0');
    CREATE TABLE tenants (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        public_key BLOB NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE tenant_private_keys (
        tenant_id TEXT PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
        wrapped_key BLOB NOT NULL
    );
    CREATE TABLE tokens (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        name TEXT,
        token_hash TEXT NOT NULL UNIQUE,
        hint TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        revoked_at INTEGER
    );
    CREATE INDEX tokens_tenant ON tokens(tenant_id);
    CREATE TABLE provider_credentials (
        tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        provider TEXT NOT NULL,
        secret BLOB NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (tenant_id, provider)
    );
    CREATE TABLE tenant_models (
        tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        provider TEXT NOT NULL,
        model TEXT NOT NULL,
        model_type TEXT NOT NULL CHECK (model_type IN ('llm', 'text-embedding', 'speech2text')),
        secret BLOB NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (tenant_id, provider, model)
    );
    CREATE TABLE default_models (
        tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        model_type TEXT NOT NULL CHECK (model_type IN ('llm', 'text-embedding', 'speech2text')),
        provider TEXT NOT NULL,
        model TEXT NOT NULL,
        PRIMARY KEY (tenant_id, model_type)
    );
    """,
)
