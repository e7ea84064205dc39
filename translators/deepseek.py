"""DeepSeek: OpenAI's wire format at api.deepseek.com; chat completions only (its FIM
completions under /beta are not offered).

Credential: `api_key` (a bearer token), optional `base_url`. `deepseek-reasoner` writes its
chain of thought to `reasoning_content`, a message field and a stream delta beside
`content`, in OpenAI's shape: it passes through untouched, as everything else does. Errors:
402 Insufficient Balance, a spent account, becomes OpenAI's own 429 `insufficient_quota`,
which clients know not to retry; the `code` DeepSeek puts on every error
("invalid_request_error", on 401s and 5xx too) says nothing, so the status decides.
"""

from __future__ import annotations

from typing import Any

from keystore.models import CredentialField
from translators._compatible import (
    CompatibleSpec,
    compatible_codec,
    openai_error_fields,
)
from translators._http import Headers
from translators._shapes import vendor_error
from translators.errors import (
    ApiError,
    parse_retry_after,
)
from translators.types import ModelType

PROVIDER = "deepseek"


def error_from_response(status: int, body: Any, headers: Headers | None) -> ApiError:
    message, code, param = openai_error_fields(body, f"HTTP {status} from {PROVIDER}")
    if status == 402:  # Insufficient Balance
        code = "insufficient_quota"
    elif code == "invalid_request_error":
        code = None
    return vendor_error(PROVIDER, status, message, code, parse_retry_after(headers), param)


SPEC = CompatibleSpec(
    name=PROVIDER,
    display_name="DeepSeek",
    key_url="https://platform.deepseek.com/api_keys",
    credential_fields=(CredentialField("api_key", description="DeepSeek API key"),),
    default_base_url="https://api.deepseek.com",
    catalog={ModelType.LLM: ("deepseek-chat", "deepseek-reasoner")},
    model_prefixes={ModelType.LLM: ("deepseek-",)},
    codec=compatible_codec(PROVIDER, error_from_response=error_from_response),
)
