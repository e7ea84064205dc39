"""The translator interface every vendor module implements.

A translator is stateless and shared by all tenants: everything tenant-specific
arrives in the `CallContext` of one call. Endpoints a vendor lacks keep the default
implementations below, which refuse with a 400 naming the provider; legacy
completions default to the chat path (see `translators/completions.py`).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from keystore.models import Credential, CredentialField
from translators._http import UpstreamClient
from translators.errors import bad_request, unsupported
from translators.types import (
    ChatRequest,
    CompletionRequest,
    EmbeddingRequest,
    JSONObject,
    ModelType,
    StreamChunk,
    TranscriptionRequest,
    TranscriptionResult,
    Usage,
)


@dataclass(frozen=True, slots=True)
class CallContext:
    http: UpstreamClient
    credential: Credential   # decrypted for this tenant and provider, this call only
    model: str               # the vendor's model id after routing
    base_url: str            # the credential's base_url or the provider's default
    request_id: str


@dataclass(frozen=True, slots=True)
class NativeApi:
    """A vendor's own endpoint for one of the APIs clients speak besides chat completions
    (`translators/_inbound.py`): the client's body goes there as it came (the routed model
    in it), with the client's headers that the API forwards (`InboundApi.forward_headers`).

    `call` answers the API's JSON and its usage; `stream` yields the vendor's events as they
    came (`relay_sse`: `StreamChunk.event` set, the usage chunk last); `count` (where the
    vendor counts tokens) answers the API's token count.
    """

    call: Callable[[JSONObject, Mapping[str, str], CallContext], Awaitable[tuple[JSONObject, Usage | None]]]
    stream: Callable[[JSONObject, Mapping[str, str], CallContext], AsyncIterator[StreamChunk]]
    count: Callable[[JSONObject, Mapping[str, str], CallContext], Awaitable[JSONObject]] | None = None


# Model ids end up in URL paths (Azure deployments, Hugging Face repos, Replicate
# owner/name); anything that could climb out of the intended path is refused.
_SAFE_MODEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@+\-]*(/[A-Za-z0-9][A-Za-z0-9._:@+\-]*)*$")


def check_model_id(model: str) -> None:
    if not _SAFE_MODEL.match(model) or ".." in model or len(model) > 200:
        raise bad_request(f"model id {model!r} contains characters that are not allowed", "model",
                          "invalid_model_id")


class Translator:
    name: str
    # For people (the settings console, docs): the vendor's own spelling, and the page of the
    # vendor's console where a user creates the key that `credential_fields` ask for.
    display_name: str
    key_url: str
    model_types: frozenset[ModelType]
    credential_fields: tuple[CredentialField, ...]
    default_base_url: str
    # True for providers whose models are added one by one with their own credentials
    # (Azure deployments, Hugging Face, Replicate); False for one credential, all models.
    per_model: bool = False
    # Models listed by GET /v1/models for an own-model provider.
    catalog: Mapping[ModelType, tuple[str, ...]] = {}
    # Bare model names that route to this provider without a "provider/" prefix.
    model_prefixes: Mapping[ModelType, tuple[str, ...]] = {}
    # The vendor's own endpoints for other client APIs, by the API's name ("messages"): a
    # request in that API's shape goes there as it came instead of through `chat`.
    native: Mapping[str, NativeApi] = MappingProxyType({})
    # Request fields beyond OpenAI's that `chat` reads from the client's JSON (`top_k`): a
    # request converted from another API carries them only to translators that read them.
    chat_extras: frozenset[str] = frozenset()

    def base_url_for(self, credential: Credential) -> str:
        """Where calls made with `credential` go: its `base_url`, else the provider's default
        (one place, so that the hosted pin and the call agree on the destination)."""
        return credential.base_url or self.default_base_url

    def serves(self, model: str, model_type: ModelType) -> bool:
        if model in self.catalog.get(model_type, ()):
            return True
        return model.startswith(self.model_prefixes.get(model_type, ())) if self.model_prefixes else False

    def check_model(self, model: str) -> None:
        check_model_id(model)

    def check_credential(self, credential: Credential) -> None:
        """Vendor-specific checks beyond the field schema, run when a credential is saved
        (raise `ApiError` 400 naming the field); most vendors need none."""

    async def chat(self, req: ChatRequest, ctx: CallContext) -> JSONObject:
        raise unsupported(self.name, "chat completions")

    def chat_stream(self, req: ChatRequest, ctx: CallContext) -> AsyncIterator[StreamChunk]:
        raise unsupported(self.name, "streamed chat completions")

    async def complete(self, req: CompletionRequest, ctx: CallContext) -> JSONObject:
        from translators.completions import complete_via_chat
        return await complete_via_chat(self, req, ctx)

    def complete_stream(self, req: CompletionRequest, ctx: CallContext) -> AsyncIterator[StreamChunk]:
        from translators.completions import complete_stream_via_chat
        return complete_stream_via_chat(self, req, ctx)

    async def embed(self, req: EmbeddingRequest, ctx: CallContext) -> JSONObject:
        raise unsupported(self.name, "embeddings")

    async def transcribe(self, req: TranscriptionRequest, ctx: CallContext) -> TranscriptionResult:
        raise unsupported(self.name, "audio transcriptions")
