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
    # 2: hosted-trial counters and usage records. Both are accounting, written without
    # bumping the change counter. A counter row appears on a tenant's first hosted call;
    # limit_override (NULL: the configured quota) is set by `modelport quota set`.
    # usage has no foreign key: a batch written just after its tenant was deleted must
    # not fail (delete_tenant removes the tenant's rows itself).
    """
    CREATE TABLE hosted_quota (
        tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        provider TEXT NOT NULL,
        used INTEGER NOT NULL DEFAULT 0 CHECK (used >= 0),
        limit_override INTEGER CHECK (limit_override IS NULL OR limit_override >= -1),
        PRIMARY KEY (tenant_id, provider)
    );
    CREATE TABLE usage (
        id INTEGER PRIMARY KEY,
        created_at REAL NOT NULL,
        request_id TEXT NOT NULL,
        tenant_id TEXT NOT NULL,
        token_id TEXT NOT NULL,
        endpoint TEXT NOT NULL,
        provider TEXT NOT NULL,
        model TEXT NOT NULL,
        model_type TEXT NOT NULL,
        billing TEXT NOT NULL,
        stream INTEGER NOT NULL,
        status INTEGER NOT NULL,
        prompt_tokens INTEGER NOT NULL,
        completion_tokens INTEGER NOT NULL,
        total_tokens INTEGER NOT NULL,
        estimated INTEGER NOT NULL,
        latency_ms REAL NOT NULL,
        ttft_ms REAL
    );
    CREATE INDEX usage_tenant_time ON usage(tenant_id, created_at);
    CREATE INDEX usage_time ON usage(created_at);
    """,
    # 3: master-key rotation. Every wrapped private key names the master key that wrapped
    # it (keystore.crypto.master_key_id; NULL on rows from before, filled in at the next
    # start once the key check has verified the key). A rotation keeps each tenant's
    # previous wrapped key until the new master key is confirmed (the first open with it
    # from its configured source), so servers still holding the old key keep serving.
    """
    ALTER TABLE tenant_private_keys ADD COLUMN master_key_id TEXT;
    CREATE TABLE previous_private_keys (
        tenant_id TEXT PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
        master_key_id TEXT NOT NULL,
        wrapped_key BLOB NOT NULL
    );
    """,
    # 4: the change log. Every configuration write adds one row in its own transaction,
    # numbered by `meta.changes` (bumped first: the counter's row lock orders writers, so
    # numbers follow commit order with no gaps, in SQLite and in PostgreSQL alike). Workers
    # read the rows after the last number they saw and drop only what each names; a gap
    # (rows pruned before a slow worker read them) means "drop everything".
    # `detail` names the token hash for token changes (already stored in `tokens`).
    """
    CREATE TABLE change_log (
        seq INTEGER PRIMARY KEY,
        tenant_id TEXT,
        kind TEXT NOT NULL,
        detail TEXT,
        created_at REAL NOT NULL
    );
    CREATE INDEX change_log_time ON change_log(created_at);
    """,
    # 5: daily usage rollups (see proxy/store/usage_rollup.py): per tenant, UTC day
    # (days since the epoch), provider and model, the counts and sums a usage summary
    # needs, so that a month costs a few hundred rows however busy the tenant was.
    # Clustered by day (WITHOUT ROWID: the key is the table's order): a batch's upserts
    # all land in today's few pages, the all-tenants summary reads one contiguous range
    # and retention deletes from the front; one tenant's days come through the
    # (tenant_id, day) index (measured: both orders answer a tenant's month in about a
    # millisecond, but clustered by tenant the all-tenants month took twice as long).
    # Filled from the rows already there, so an upgraded install answers the same. The
    # day expression is usage_rollup.DAY_OF spelled out (the day whose [midnight,
    # midnight) holds created_at, also before 1970).
    """
    CREATE TABLE usage_daily (
        tenant_id TEXT NOT NULL,
        day INTEGER NOT NULL,
        provider TEXT NOT NULL,
        model TEXT NOT NULL,
        requests INTEGER NOT NULL,
        errors INTEGER NOT NULL,
        hosted INTEGER NOT NULL,
        prompt_tokens INTEGER NOT NULL,
        completion_tokens INTEGER NOT NULL,
        total_tokens INTEGER NOT NULL,
        estimated INTEGER NOT NULL,
        latency_sum REAL NOT NULL,
        ttft_sum REAL NOT NULL,
        ttft_count INTEGER NOT NULL,
        PRIMARY KEY (day, tenant_id, provider, model)
    ) WITHOUT ROWID;
    CREATE INDEX usage_daily_tenant ON usage_daily(tenant_id, day);
    INSERT INTO usage_daily (tenant_id, day, provider, model, requests, errors, hosted, prompt_tokens,
                             completion_tokens, total_tokens, estimated, latency_sum, ttft_sum, ttft_count)
    SELECT tenant_id,
           (CAST(created_at / 86400 AS INTEGER) - (CAST(created_at / 86400 AS INTEGER) * 86400 > created_at)),
           provider, model, COUNT(*), SUM(status >= 400), SUM(billing = 'hosted'), SUM(prompt_tokens),
           SUM(completion_tokens), SUM(total_tokens), SUM(estimated), TOTAL(latency_ms), TOTAL(ttft_ms),
           COUNT(ttft_ms)
    FROM usage GROUP BY 1, 2, 3, 4;
    """,
    # 6: the console (issue 12). A token is an API token or a console token (a tenant
    # administrator's sign-in to the settings page; never accepted by /v1). last_used_at
    # is touched by the usage batches (API tokens) and by sign-in (console tokens).
    # Console sessions live here, not in a worker's memory, so every worker of the server
    # knows them; only the SHA-256 of the session id is stored. A tenant session names its
    # token (revoking the token ends the session at once); an operator session names the
    # admin token's hash at sign-in (a new admin token ends it).
    """
    ALTER TABLE tokens ADD COLUMN kind TEXT NOT NULL DEFAULT 'api' CHECK (kind IN ('api', 'console'));
    ALTER TABLE tokens ADD COLUMN last_used_at INTEGER;
    CREATE TABLE console_sessions (
        id_hash TEXT PRIMARY KEY,
        tenant_id TEXT REFERENCES tenants(id) ON DELETE CASCADE,
        token_id TEXT REFERENCES tokens(id) ON DELETE CASCADE,
        admin_hash TEXT,
        csrf TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
    );
    CREATE INDEX console_sessions_expiry ON console_sessions(expires_at);
    """,
    # 7: staying up and limits (issue 13). rate_limits: requests and tokens per minute, per
    # tenant ('' token) or per API token, for all models ('') or one. rate_windows: the
    # counters, one row per limit, kind and minute (accounting: quiet writes). fallbacks:
    # per tenant, a model (as provider/model) and the models to try, in order, when its
    # provider fails retryably. usage gets the attempts a request took and the name of
    # the credential that served it.
    """
    CREATE TABLE rate_limits (
        tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        token_id TEXT NOT NULL DEFAULT '',
        model TEXT NOT NULL DEFAULT '',
        rpm INTEGER CHECK (rpm IS NULL OR rpm >= 0),
        tpm INTEGER CHECK (tpm IS NULL OR tpm >= 0),
        PRIMARY KEY (tenant_id, token_id, model)
    );
    CREATE TABLE rate_windows (
        scope TEXT NOT NULL,
        minute INTEGER NOT NULL,
        used INTEGER NOT NULL,
        PRIMARY KEY (scope, minute)
    ) WITHOUT ROWID;
    CREATE TABLE fallbacks (
        tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        model TEXT NOT NULL,
        fallbacks TEXT NOT NULL,
        PRIMARY KEY (tenant_id, model)
    );
    ALTER TABLE usage ADD COLUMN attempts INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE usage ADD COLUMN credential TEXT;
    """,
    # 8: several named credentials per provider (issue 13): weighted, and marked invalid
    # (invalid_at) when the vendor rejects them, until they are changed. The table is
    # rebuilt for its new key; existing credentials become "default". Cooldowns (a 429's
    # Retry-After, repeated failures) are rows every worker reads on its change poll.
    """
    CREATE TABLE provider_credentials_8 (
        tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        provider TEXT NOT NULL,
        name TEXT NOT NULL DEFAULT 'default',
        weight INTEGER NOT NULL DEFAULT 1 CHECK (weight BETWEEN 1 AND 1000),
        secret BLOB NOT NULL,
        updated_at INTEGER NOT NULL,
        invalid_at INTEGER,
        PRIMARY KEY (tenant_id, provider, name)
    );
    INSERT INTO provider_credentials_8 (tenant_id, provider, secret, updated_at)
        SELECT tenant_id, provider, secret, updated_at FROM provider_credentials;
    DROP TABLE provider_credentials;
    ALTER TABLE provider_credentials_8 RENAME TO provider_credentials;
    CREATE TABLE credential_cooldowns (
        tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        provider TEXT NOT NULL,
        name TEXT NOT NULL,
        until REAL NOT NULL,
        reason TEXT NOT NULL,
        PRIMARY KEY (tenant_id, provider, name)
    );
    CREATE INDEX credential_cooldowns_until ON credential_cooldowns(until);
    """,
    # 9: several named credentials per per-model entry (issue 13), as migration 8 did for
    # providers: the entry's rows share its model type; existing ones become "default".
    """
    CREATE TABLE tenant_models_9 (
        tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        provider TEXT NOT NULL,
        model TEXT NOT NULL,
        name TEXT NOT NULL DEFAULT 'default',
        model_type TEXT NOT NULL CHECK (model_type IN ('llm', 'text-embedding', 'speech2text')),
        weight INTEGER NOT NULL DEFAULT 1 CHECK (weight BETWEEN 1 AND 1000),
        secret BLOB NOT NULL,
        updated_at INTEGER NOT NULL,
        invalid_at INTEGER,
        PRIMARY KEY (tenant_id, provider, model, name)
    );
    INSERT INTO tenant_models_9 (tenant_id, provider, model, model_type, secret, updated_at)
        SELECT tenant_id, provider, model, model_type, secret, updated_at FROM tenant_models;
    DROP TABLE tenant_models;
    ALTER TABLE tenant_models_9 RENAME TO tenant_models;
    """,
    # 10: usage batches written (issue 15). A batch's id is written in its transaction, so
    # a batch retried after its COMMIT's answer was lost (the connection dropped) is known
    # to be in already and is not written twice. Kept a day (UsageWriter prunes them).
    """
    CREATE TABLE usage_batches (
        id TEXT PRIMARY KEY,
        created_at REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX usage_batches_time ON usage_batches(created_at);
    """,
    # 11: cost and budgets (issue 16). usage.cost_nanos: the request's cost in nano-dollars
    # (proxy/prices.py), NULL when its model has no price ("unpriced", never a silent 0).
    # usage_daily sums the priced rows' costs and counts them (priced), so a summary tells
    # "cost 0" from "no price known". Rows from before have no cost: unpriced.
    # budgets: spending limits per tenant ('' token) or API token, per UTC day and month,
    # in nano-dollars (configuration: logged writes, cached with the tenant).
    # budget_spend: what each budget's scope spent (and holds for requests in flight) per
    # period, "YYYY-MM-DD" or "YYYY-MM" (accounting: quiet writes; proxy/store/budgets.py).
    """
    ALTER TABLE usage ADD COLUMN cost_nanos INTEGER;
    ALTER TABLE usage_daily ADD COLUMN cost_nanos INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE usage_daily ADD COLUMN priced INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE budgets (
        tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        token_id TEXT NOT NULL DEFAULT '',
        daily_nanos INTEGER CHECK (daily_nanos IS NULL OR daily_nanos >= 0),
        monthly_nanos INTEGER CHECK (monthly_nanos IS NULL OR monthly_nanos >= 0),
        allow_unpriced INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (tenant_id, token_id)
    );
    CREATE TABLE budget_spend (
        tenant_id TEXT NOT NULL,
        scope TEXT NOT NULL,
        period TEXT NOT NULL,
        spent INTEGER NOT NULL,
        PRIMARY KEY (tenant_id, scope, period)
    ) WITHOUT ROWID;
    """,
    # 12: answers kept for later requests (issue 17: the Responses API's `store`,
    # `previous_response_id`, GET/DELETE /v1/responses/{id}), per tenant and API, until
    # expires_at (`responses_retention_days`; pruned as new ones are kept). They hold what
    # the tenant's users sent and got (proxy/store/kept.py): never logged.
    """
    CREATE TABLE kept_answers (
        tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        api TEXT NOT NULL,
        id TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        answer TEXT NOT NULL,
        items TEXT NOT NULL,
        context TEXT NOT NULL,
        PRIMARY KEY (tenant_id, api, id)
    );
    CREATE INDEX kept_answers_expiry ON kept_answers(expires_at);
    """,
)
