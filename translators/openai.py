"""OpenAI itself: the format is ours, so this is the pass-through translator as data.

Credential: `api_key`, optional `organization` (sent as `OpenAI-Organization`),
optional `base_url` (regional endpoints, self-hosted compatibles, test fakes).

A Responses API client (translators/responses/) gets OpenAI's own `/v1/responses` here
(`native`): the body as it came, built-in tools and all, the answer or events as they came.
"""

from __future__ import annotations

from keystore.models import CredentialField
from translators._compatible import OPENAI_PATHS, CompatibleSpec, bearer
from translators.base import CallContext
from translators.responses.native import RESPONSES_ROUTE
from translators.types import ModelType


def _headers(ctx: CallContext) -> dict[str, str]:
    headers = bearer(ctx)
    organization = ctx.credential.get("organization")
    if organization:
        headers["OpenAI-Organization"] = organization
    return headers


SPEC = CompatibleSpec(
    name="openai",
    display_name="OpenAI",
    key_url="https://platform.openai.com/api-keys",
    model_types=frozenset(ModelType),
    credential_fields=(
        CredentialField("api_key", description="OpenAI API key"),
        CredentialField("organization", required=False, secret=False, description="OpenAI organization id",
                        label="Organization ID"),
    ),
    default_base_url="https://api.openai.com/v1",
    catalog={
        ModelType.LLM: ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "o3-mini", "gpt-3.5-turbo",
                        "gpt-3.5-turbo-16k", "gpt-3.5-turbo-instruct", "text-davinci-003"),
        ModelType.TEXT_EMBEDDING: ("text-embedding-3-small", "text-embedding-3-large", "text-embedding-ada-002"),
        ModelType.SPEECH2TEXT: ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe"),
    },
    model_prefixes={
        ModelType.LLM: ("gpt-", "o1", "o3", "o4", "chatgpt-", "text-davinci-", "davinci-", "babbage-"),
        ModelType.TEXT_EMBEDDING: ("text-embedding-",),
        ModelType.SPEECH2TEXT: ("whisper-", "gpt-4o-transcribe", "gpt-4o-mini-transcribe"),
    },
    paths={**OPENAI_PATHS, RESPONSES_ROUTE.endpoint: "responses"},
    native={"responses": RESPONSES_ROUTE},
    headers=_headers,
    request_id_header="X-Client-Request-Id",  # OpenAI keeps it with the request (support, logs)
)
