"""What per-token settings (rate limits, budgets) may name: an API token of the tenant,
not revoked. One check for every such setting, in the management service's mixins."""

from __future__ import annotations

from proxy.store import StoreApi, TenantRow
from translators.errors import ApiError, bad_request


async def require_api_token(store: StoreApi, tenant: TenantRow, token_id: str, setting: str) -> None:
    """`setting` names what is being set ("rate limits", "budgets") in the refusal."""
    found = await store.token(token_id)
    if found is None or found.tenant_id != tenant.id:
        raise ApiError(404, f"token '{token_id}' not found in tenant '{tenant.name}'", "invalid_request_error",
                       "not_found", "token_id")
    if found.kind != "api":
        raise bad_request(f"token '{token_id}' is a console token: {setting} apply to API tokens (the /v1 "
                          "endpoints)", "token_id", "invalid_value")
    if found.revoked_at is not None:
        raise bad_request(f"token '{token_id}' is revoked", "token_id", "invalid_value")
