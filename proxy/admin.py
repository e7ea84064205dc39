"""The admin API under /admin/v1: the management service over JSON. Secrets go in, never
out (responses carry masked values).

Callers (`proxy/principals.py`): the operator (admin token), a tenant's administrator
(console token, or the console's session cookie + CSRF header), each through the same
routes; a tenant's calls are scoped to its tenant by `Management`. The console uses
these routes and no others."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from keystore.models import with_base_url
from proxy.body import parse, read_json
from proxy.errors import JSONResponse, internal_errors, response_headers
from proxy.gateway import Gateway
from proxy.principals import resolve
from proxy.service import Management
from translators import REGISTRY


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> _Body:
        return cls.model_validate(raw)


class TenantIn(_Body):
    name: str


class TokenIn(_Body):
    name: str | None = None
    kind: str = "api"   # or "console"


class CredentialIn(_Body):
    credentials: dict[str, str]
    name: str = "default"   # one of the provider's named credentials
    weight: int = 1         # its share of the requests
    validate_: bool = Field(default=False, alias="validate")  # a real call first; nothing stored if it fails
    keep_secrets: bool = False  # a secret left out keeps its stored value (the console's edit form)


class ModelIn(CredentialIn):
    provider: str
    model: str
    type: str
    credentials: dict[str, str] = Field(default_factory=dict)


class DefaultIn(_Body):
    model: str


class FallbacksIn(_Body):
    fallbacks: list[str]


class LimitIn(_Body):
    token_id: str | None = None  # null: the whole tenant
    model: str | None = None     # null: every model; else provider/model
    rpm: int | None = None       # requests per minute; null: no request limit
    tpm: int | None = None       # tokens per minute; null: no token limit


class BudgetIn(_Body):
    token_id: str | None = None   # null: the whole tenant
    daily: float | None = None    # US dollars per UTC day; null: no daily limit
    monthly: float | None = None  # US dollars per UTC month; null: no monthly limit
    allow_unpriced: bool = False  # models without a price may be used under it


class QuotaIn(_Body):
    limit: int | None = Field(ge=-1)  # calls in total; -1 unlimited; null: the configured quota


Handler = Callable[[Management, Request], Awaitable[Any]]


def _admin(handler: Handler, status: int = 200) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        gateway: Gateway = request.app.state.gateway
        headers = response_headers(request)
        headers["Cache-Control"] = "no-store"  # masked keys and tokens: not for any cache
        with internal_errors("admin", "admin request failed"):
            principal = await resolve(request, gateway)
            management = Management(gateway.store, gateway.keystore, gateway.hosted, scope=principal.tenant_id,
                                    http=gateway.http)
            result = await handler(management, request)
            if isinstance(result, list):
                result = {"object": "list", "data": result}
            return JSONResponse(result, status_code=status, headers=headers)
    return endpoint


async def _body(request: Request, model: type[_Body]) -> Any:
    gateway: Gateway = request.app.state.gateway
    return parse(model, await read_json(request, gateway.settings.max_request_bytes))


def _p(request: Request, name: str) -> str:
    return str(request.path_params[name])


async def _create_tenant(m: Management, r: Request) -> Any:
    return await m.create_tenant((await _body(r, TenantIn)).name)


async def _create_token(m: Management, r: Request) -> Any:
    body = await _body(r, TokenIn)
    return await m.create_token(_p(r, "tenant"), body.name, body.kind)


async def _set_provider(m: Management, r: Request) -> Any:
    body = await _body(r, CredentialIn)
    return await m.set_provider(_p(r, "tenant"), _p(r, "provider"), body.credentials, validate=body.validate_,
                                keep_secrets=body.keep_secrets, name=body.name, weight=body.weight)


async def _validate_provider(m: Management, r: Request) -> Any:
    body = await _body(r, CredentialIn)
    return await m.validate_provider(_p(r, "tenant"), _p(r, "provider"), body.credentials, body.keep_secrets,
                                     body.name)


async def _add_model(m: Management, r: Request) -> Any:
    body = await _body(r, ModelIn)
    return await m.add_model(_p(r, "tenant"), body.provider, body.model, body.type, body.credentials,
                             validate=body.validate_, keep_secrets=body.keep_secrets, name=body.name,
                             weight=body.weight)


async def _validate_model(m: Management, r: Request) -> Any:
    body = await _body(r, ModelIn)
    return await m.validate_model(_p(r, "tenant"), body.provider, body.model, body.type, body.credentials,
                                  body.keep_secrets, body.name)


async def _set_default(m: Management, r: Request) -> Any:
    return await m.set_default(_p(r, "tenant"), _p(r, "type"), (await _body(r, DefaultIn)).model)


async def _set_quota(m: Management, r: Request) -> Any:
    return await m.set_quota(_p(r, "tenant"), _p(r, "provider"), (await _body(r, QuotaIn)).limit)


async def _set_fallbacks(m: Management, r: Request) -> Any:
    return await m.set_fallbacks(_p(r, "tenant"), _p(r, "model"), (await _body(r, FallbacksIn)).fallbacks)


async def _set_limit(m: Management, r: Request) -> Any:
    body = await _body(r, LimitIn)
    return await m.set_rate_limit(_p(r, "tenant"), body.token_id, body.model, body.rpm, body.tpm)


async def _clear_limit(m: Management, r: Request) -> Any:
    q = r.query_params
    return await m.clear_rate_limit(_p(r, "tenant"), q.get("token_id") or None, q.get("model") or None)


async def _set_budget(m: Management, r: Request) -> Any:
    body = await _body(r, BudgetIn)
    return await m.set_budget(_p(r, "tenant"), body.token_id, body.daily, body.monthly, body.allow_unpriced)


async def _usage(m: Management, r: Request) -> Any:
    q = r.query_params
    return await m.usage(q.get("tenant") or None, q.get("start"), q.get("end"), q.get("group_by"))


async def _providers(m: Management, r: Request) -> Any:
    """The registry with each provider's credential schema, for a settings page to render."""
    return [{"name": t.name, "display_name": t.display_name, "per_model": t.per_model, "key_url": t.key_url,
             "model_types": sorted(x.value for x in t.model_types),
             "catalog": {k.value: list(v) for k, v in t.catalog.items()},
             "credential_fields": [{"name": f.name, "label": f.display_label, "required": f.required,
                                    "secret": f.secret, "description": f.description}
                                   for f in with_base_url(t.credential_fields)]}
            for t in REGISTRY.values()]


T = "/admin/v1/tenants/{tenant}"
ADMIN_ROUTES = [
    Route("/admin/v1/providers", _admin(_providers), methods=["GET"]),
    Route("/admin/v1/tenants", _admin(lambda m, r: m.list_tenants()), methods=["GET"]),
    Route("/admin/v1/tenants", _admin(_create_tenant, 201), methods=["POST"]),
    Route(T, _admin(lambda m, r: m.delete_tenant(_p(r, "tenant"))), methods=["DELETE"]),
    Route(T + "/tokens", _admin(lambda m, r: m.list_tokens(_p(r, "tenant"))), methods=["GET"]),
    Route(T + "/tokens", _admin(_create_token, 201), methods=["POST"]),
    Route("/admin/v1/tokens/{token_id}", _admin(lambda m, r: m.revoke_token(_p(r, "token_id"))),
          methods=["DELETE"]),
    Route(T + "/providers", _admin(lambda m, r: m.list_providers(_p(r, "tenant"))), methods=["GET"]),
    Route(T + "/providers/{provider}", _admin(_set_provider), methods=["PUT"]),
    Route(T + "/providers/{provider}/validate", _admin(_validate_provider), methods=["POST"]),
    Route(T + "/providers/{provider}", _admin(lambda m, r: m.remove_provider(
        _p(r, "tenant"), _p(r, "provider"), r.query_params.get("name"))), methods=["DELETE"]),
    Route(T + "/models", _admin(lambda m, r: m.list_models(_p(r, "tenant"))), methods=["GET"]),
    Route(T + "/models", _admin(_add_model, 201), methods=["POST"]),
    Route(T + "/models/validate", _admin(_validate_model), methods=["POST"]),
    Route(T + "/models/{provider}/{model:path}",
          _admin(lambda m, r: m.remove_model(_p(r, "tenant"), _p(r, "provider"), _p(r, "model"),
                                             r.query_params.get("name"))),
          methods=["DELETE"]),
    Route(T + "/defaults", _admin(lambda m, r: m.show_defaults(_p(r, "tenant"))), methods=["GET"]),
    Route(T + "/defaults/choices", _admin(lambda m, r: m.default_choices(_p(r, "tenant"))), methods=["GET"]),
    Route(T + "/defaults/{type}", _admin(_set_default), methods=["PUT"]),
    Route(T + "/defaults/{type}", _admin(lambda m, r: m.clear_default(_p(r, "tenant"), _p(r, "type"))),
          methods=["DELETE"]),
    Route(T + "/quota", _admin(lambda m, r: m.show_quota(_p(r, "tenant"))), methods=["GET"]),
    Route(T + "/quota/{provider}", _admin(_set_quota), methods=["PUT"]),
    Route(T + "/fallbacks", _admin(lambda m, r: m.show_fallbacks(_p(r, "tenant"))), methods=["GET"]),
    Route(T + "/fallbacks/{model:path}", _admin(_set_fallbacks), methods=["PUT"]),
    Route(T + "/fallbacks/{model:path}", _admin(lambda m, r: m.clear_fallbacks(_p(r, "tenant"), _p(r, "model"))),
          methods=["DELETE"]),
    Route("/admin/v1/usage", _admin(_usage), methods=["GET"]),
    Route(T + "/limits", _admin(lambda m, r: m.show_rate_limits(_p(r, "tenant"))), methods=["GET"]),
    Route(T + "/limits", _admin(_set_limit), methods=["PUT"]),
    Route(T + "/limits", _admin(_clear_limit), methods=["DELETE"]),
    Route(T + "/budgets", _admin(lambda m, r: m.show_budgets(_p(r, "tenant"))), methods=["GET"]),
    Route(T + "/budgets", _admin(_set_budget), methods=["PUT"]),
    Route(T + "/budgets", _admin(lambda m, r: m.clear_budget(_p(r, "tenant"), r.query_params.get("token_id") or None)),
          methods=["DELETE"]),
]
