"""Checking a provider credential by using it: the smallest real call through its translator.

A credential that fits its field schema can still be wrong (a revoked key, a typo in the
endpoint, a workspace the key does not belong to); only the vendor can say. The settings
console asks before saving: one non-streamed request, as cheap as the vendor allows (a
1-token chat, else embedding one word, else transcribing 0.1 s of silence), made exactly as
a tenant's call would be (`CallContext` as in `proxy/gateway.py`, the app's
`UpstreamClient`, so the operator's destination policy and limits apply).

Every failure is one shape: a 400 `credential_validation_failed` whose message is
"Validation failed: " and the reason, the vendor's own words where there are any (a vendor
401/403 reads "... was rejected by ...", distinguishable from a bad model or an outage),
scrubbed of the credential's secrets. A 400 and never the vendor's status: the gateway
works; the credential (or the destination it names) is what the caller must fix. `param`
names the input at fault: a credential field, `model`, `model_type`, or "credentials".
"""

from __future__ import annotations

import asyncio
import io
import secrets
import wave
from collections.abc import Awaitable, Callable
from typing import Any

from keystore.models import BASE_URL_FIELD, Credential
from translators._http import UpstreamClient
from translators.base import CallContext, Translator
from translators.errors import ApiError, UpstreamError
from translators.types import (
    ChatRequest,
    EmbeddingRequest,
    ModelType,
    TranscriptionRequest,
)

__all__ = ["CODE", "validate_live"]

CODE = "credential_validation_failed"
PING = "ping"
# Cheapest first: one generated token, then one embedded word, then a transcription.
_PREFERENCE = (ModelType.LLM, ModelType.TEXT_EMBEDDING, ModelType.SPEECH2TEXT)
# Failures about where the credential points rather than what it holds.
_DESTINATION_CODES = frozenset({"upstream_destination_refused", "upstream_unreachable", "upstream_redirect"})


def _silence_wav(seconds: float = 0.1, rate: int = 16_000) -> bytes:
    """A valid WAV of silence (16-bit mono PCM): the smallest audio every vendor accepts."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"\0\0" * int(rate * seconds))
    return buf.getvalue()


_SILENCE = _silence_wav()


async def _chat(translator: Translator, ctx: CallContext) -> Any:
    req = ChatRequest.parse({"model": ctx.model, "messages": [{"role": "user", "content": PING}], "max_tokens": 1})
    return await translator.chat(req, ctx)


async def _embed(translator: Translator, ctx: CallContext) -> Any:
    return await translator.embed(EmbeddingRequest.parse({"model": ctx.model, "input": PING}), ctx)


async def _transcribe(translator: Translator, ctx: CallContext) -> Any:
    req = TranscriptionRequest.parse({"model": ctx.model, "file": _SILENCE, "filename": "ping.wav",
                                      "content_type": "audio/wav"})
    return await translator.transcribe(req, ctx)


_PROBES: dict[ModelType, Callable[[Translator, CallContext], Awaitable[Any]]] = {
    ModelType.LLM: _chat,
    ModelType.TEXT_EMBEDDING: _embed,
    ModelType.SPEECH2TEXT: _transcribe,
}


def _failed(reason: str, param: str) -> ApiError:
    return ApiError(400, f"Validation failed: {reason}", "invalid_request_error", CODE, param)


def _target(translator: Translator, model_type: ModelType | None, model: str | None) -> tuple[ModelType, str]:
    """The (type, model) to call: the caller's for a provider whose models are added one by
    one; otherwise the caller's model if given, else the first of the catalog, cheapest type first."""
    if model_type is not None and model_type not in translator.model_types:
        raise _failed(f"provider '{translator.name}' does not serve {model_type.value} models", "model_type")
    if translator.per_model:
        if not model:
            raise _failed(f"provider '{translator.name}' adds its models one by one: give the model to validate "
                          "the credential with", "model")
        if model_type is None:
            raise _failed(f"give the type of model '{model}' (llm, text-embedding or speech2text)", "model_type")
        return model_type, model
    types = [model_type] if model_type is not None else [t for t in _PREFERENCE if t in translator.model_types]
    if model:
        chosen = next((t for t in types if translator.serves(model, t)), types[0] if types else None)
        if chosen is not None:
            return chosen, model
    for kind in types:
        if catalog := translator.catalog.get(kind):
            return kind, catalog[0]
    raise _failed(f"provider '{translator.name}' lists no model to validate with: give one", "model")


def _param(err: ApiError, translator: Translator, credential: Credential) -> str:
    """The input at fault: the error's own `param` when it names one of ours (a vendor's
    `param` names its request's fields, which the caller did not write)."""
    param = err.param or ""
    if param in ("model", "model_type") or param in {f.name for f in translator.credential_fields}:
        return param
    if param == BASE_URL_FIELD.name or (err.code in _DESTINATION_CODES and credential.base_url):
        return BASE_URL_FIELD.name
    return "credentials"


def _reason(err: ApiError, translator: Translator) -> str:
    """The error's message, worded for a credential not saved yet: the request path's
    "the credential configured for this tenant was rejected" is not what happened here."""
    if err.code == "upstream_credential_rejected" and isinstance(err, UpstreamError) and err.vendor_message:
        return f"{translator.display_name} rejected this credential: {err.vendor_message}"
    return err.message


async def validate_live(translator: Translator, credential: Credential, http: UpstreamClient, *,
                        model_type: ModelType | None = None, model: str | None = None,
                        timeout: float = 15.0) -> dict[str, Any]:
    """Make one small real call with `credential` (already checked against the provider's
    fields, e.g. by `validate_credential`); `{"valid": True, "model": ..., "type": ...}`
    when the vendor answered, else the 400 described in the module docstring. Nothing is
    stored and no usage is recorded."""
    scrub = credential.secret_values()
    try:
        translator.check_credential(credential)
        kind, chosen = _target(translator, model_type, model)
        translator.check_model(chosen)
        ctx = CallContext(http, credential, chosen, translator.base_url_for(credential),
                          f"val-{secrets.token_hex(8)}")
        async with asyncio.timeout(timeout):
            await _PROBES[kind](translator, ctx)
    except TimeoutError:
        # Ours: `UpstreamClient` turns its own timeouts into ApiError (504) before they get here.
        raise _failed(f"the vendor did not answer within {timeout:g} s", "credentials") from None
    except ApiError as err:
        if err.code == CODE:
            raise
        clean = err.scrubbed(scrub)
        raise _failed(_reason(clean, translator), _param(clean, translator, credential)).scrubbed(scrub) from None
    return {"valid": True, "model": chosen, "type": kind.value}
