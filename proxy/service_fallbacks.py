"""Management of fallbacks (issue 13), mixed into `proxy.service.Management`: per tenant,
a model named as provider/model and the models to try, in order, when its provider fails
retryably after its retries (`proxy/attempts.py`)."""

from __future__ import annotations

from typing import Any

from proxy.store import StoreApi, TenantRow
from translators import REGISTRY
from translators.errors import ApiError, bad_request

MAX_FALLBACKS = 5


def provider_model(model: str, param: str) -> str:
    provider, sep, rest = model.partition("/")
    translator = REGISTRY.get(provider)
    if not sep or not rest or translator is None:
        raise bad_request(f"name models as PROVIDER/MODEL with a known provider (got {model!r})", param,
                          "invalid_model_id")
    translator.check_model(rest)
    return model


class FallbacksManagement:
    store: StoreApi

    async def tenant(self, ref: str) -> TenantRow:  # provided by Management
        raise NotImplementedError

    async def set_fallbacks(self, ref: str, model: str, fallbacks: list[str]) -> dict[str, Any]:
        tenant = await self.tenant(ref)
        provider_model(model, "model")
        chosen = list(dict.fromkeys(provider_model(f, "fallbacks") for f in fallbacks))  # in order, once each
        if not chosen or len(chosen) > MAX_FALLBACKS:
            raise bad_request(f"give 1 to {MAX_FALLBACKS} fallback models", "fallbacks", "invalid_value")
        if model in chosen:
            raise bad_request(f"{model} cannot be its own fallback", "fallbacks", "invalid_value")
        await self.store.set_fallbacks(tenant.id, model, chosen)
        return {"model": model, "fallbacks": chosen}

    async def show_fallbacks(self, ref: str) -> list[dict[str, Any]]:
        tenant = await self.tenant(ref)
        return [{"model": m, "fallbacks": list(f)} for m, f in (await self.store.fallbacks(tenant.id)).items()]

    async def clear_fallbacks(self, ref: str, model: str) -> dict[str, Any]:
        tenant = await self.tenant(ref)
        if not await self.store.clear_fallbacks(tenant.id, model):
            raise ApiError(404, f"no fallbacks set for '{model}' of tenant '{tenant.name}'", "invalid_request_error",
                           "not_found")
        return {"model": model, "fallbacks": []}
