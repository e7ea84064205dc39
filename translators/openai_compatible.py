"""Any server that speaks OpenAI's API (vLLM, Ollama, LM Studio, llama.cpp's server, TGI's
OpenAI route): models are added one by one, each with its type and its server::

    modelport models add TENANT openai_compatible MODEL --type llm|text-embedding|speech2text \\
        base_url=http://gpu-box:8000/v1 [api_key=...]

Credential: `base_url` (required: the server's OpenAI root, usually ending in /v1), `api_key`
(optional: sent as a bearer token when given; a server started without one gets no
`Authorization` header at all). Chat, legacy completions, embeddings and transcriptions go
to the usual paths; a server that lacks one answers its own 404. Their frameworks answer
some errors in plain text (FastAPI's "Internal Server Error"): shown as one short line.
"""

from __future__ import annotations

import dataclasses

from keystore.models import CredentialField
from translators._compatible import OPENAI_PATHS, CompatibleSpec, compatible_codec
from translators.base import CallContext
from translators.types import ModelType

PROVIDER = "openai_compatible"


def headers(ctx: CallContext) -> dict[str, str]:
    key = ctx.credential.get("api_key")
    return {"Authorization": f"Bearer {key}"} if key else {}


SPEC = CompatibleSpec(
    name=PROVIDER,
    display_name="OpenAI-compatible server",
    # Self-hosted: no vendor issues keys; where a server's key is set (vLLM's --api-key).
    key_url="https://docs.vllm.ai/en/latest/serving/openai_compatible_server.html",
    credential_fields=(
        CredentialField("base_url", secret=False, label="Server URL",
                        description="The server's OpenAI API root, e.g. http://gpu-box:8000/v1"),
        CredentialField("api_key", required=False, description="The server's API key, if it has one"),
    ),
    default_base_url="http://127.0.0.1:8000/v1",  # never used: base_url is required
    model_types=frozenset(ModelType),
    per_model=True,
    paths=OPENAI_PATHS,
    headers=headers,
    request_id_header="X-Request-Id",  # vLLM and most OpenAI-compatible servers take it as their own id
    codec=dataclasses.replace(compatible_codec(PROVIDER), plain_text_errors=True),
)
