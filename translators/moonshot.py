"""Moonshot AI (Kimi): OpenAI's wire format at api.moonshot.ai/v1 (api.moonshot.cn/v1 for
the China platform: set it as `base_url`); chat completions only.

Credential: `api_key` (a bearer token), optional `base_url`. What is absorbed:
- a stream's usage comes inside its finishing choice (`choices[0].usage`), unasked: it is
  lifted to the chunk, where the pass-through codec turns it into OpenAI's last,
  usage-only chunk; streams are therefore not sent `stream_options`.
- errors carry a `type` and no `code`: `exceeded_current_quota_error` (429, a spent
  balance) becomes OpenAI's `insufficient_quota`, `engine_overloaded_error` (429, Moonshot's
  capacity, not the key's rate) a 503, `content_filter` (400) keeps that name as the code.
"""

from __future__ import annotations

from typing import Any

from keystore.models import CredentialField
from translators._compatible import (
    CompatibleSpec,
    PassState,
    compatible_codec,
    openai_error_fields,
)
from translators._http import Headers
from translators._shapes import vendor_error
from translators.errors import (
    ApiError,
    parse_retry_after,
)
from translators.types import JSONObject, ModelType

PROVIDER = "moonshot"


def error_from_response(status: int, body: Any, headers: Headers | None) -> ApiError:
    message, code, param = openai_error_fields(body, f"HTTP {status} from {PROVIDER}")
    err = body.get("error") if isinstance(body, dict) else None
    kind = err.get("type") if isinstance(err, dict) else None
    if kind == "exceeded_current_quota_error":  # the balance is spent
        code = "insufficient_quota"
    elif kind == "engine_overloaded_error" and status == 429:
        status = 503
    elif kind == "content_filter":
        code = code or kind
    return vendor_error(PROVIDER, status, message, code, parse_retry_after(headers), param)


def lift_usage(chunk: JSONObject, state: PassState) -> JSONObject:
    """Moves the usage Moonshot puts in a choice to where OpenAI puts it (the chunk's own
    wins when both are there: the same totals, never counted twice)."""
    for choice in chunk.get("choices") or ():
        if isinstance(choice, dict) and "usage" in choice:
            usage = choice.pop("usage")
            if chunk.get("usage") is None:
                chunk["usage"] = usage
    return chunk


SPEC = CompatibleSpec(
    name=PROVIDER,
    display_name="Moonshot AI (Kimi)",
    key_url="https://platform.moonshot.ai/console/api-keys",
    credential_fields=(CredentialField("api_key", description="Moonshot (Kimi) API key"),),
    default_base_url="https://api.moonshot.ai/v1",
    catalog={ModelType.LLM: ("kimi-k2.5", "kimi-k2-0905-preview", "kimi-k2-turbo-preview", "kimi-k2-thinking",
                             "moonshot-v1-8k", "moonshot-v1-32k", "moonshot-v1-128k")},
    model_prefixes={ModelType.LLM: ("kimi-", "moonshot-v1-")},
    stream_usage_option=False,
    codec=compatible_codec(PROVIDER, error_from_response=error_from_response, fixup=lift_usage,
                           fixup_when=lambda data: b'"usage"' in data),
)
