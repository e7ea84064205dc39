"""Azure OpenAI: OpenAI's wire format behind per-deployment URLs, an `api-key` header
and content-safety annotations. Reference: ../shared/vendors/azure-openai.md.

Models are added one by one (a deployment each, with its own credential)::

    modelport models add TENANT azure_openai DEPLOYMENT --type llm|text-embedding|speech2text \\
        endpoint=https://RESOURCE.openai.azure.com api_key=... [api_version=2024-10-21] [base_model=gpt-4o]

Credential fields and the decisions behind them:

- `endpoint` (required): the resource's URL. https, or http to a loopback host only
  (a local fake or proxy): the key must not cross a network in clear text. Checked
  when a call is made (the credential schema has no per-field validator yet).
- `api_key` (secret): sent as `api-key`; no `Authorization` header is ever sent.
- `api_version` (optional, default `2024-10-21`, the newest GA version we know):
  `YYYY-MM-DD` or `YYYY-MM-DD-preview`. Stored as given, so a deployment added without
  it follows the default of the running release; pass it to pin it.
- `base_model` (optional, informational): the model behind the deployment; it fills
  the response's `model` where Azure leaves it out (otherwise the deployment name).
- `base_url` (the generic override of every provider): if set, it replaces `endpoint`
  as the URL root (API Management or another proxy in front of the resource, a test
  fake), under the same https rule; `endpoint` is still required as the record of the
  resource.

URL: `{root}/openai/deployments/{deployment}/{chat/completions|completions|embeddings|
audio/transcriptions}?api-version=...`. The deployment name goes into the path, so it
is checked at `models add` (`check_model`) and again before every dispatch.

What is absorbed (the rest passes through untouched, tools and images included):

- streams: chunks with empty `choices` and no usage (the first, `prompt_filter_results`
  / `prompt_annotations` one, with `id: ""`) are dropped; choices without `delta`/`text`
  (asynchronous-filter annotations) are dropped, or given an empty delta when they carry
  a `finish_reason`. `content_filter_results` and `finish_reason: content_filter` pass.
- `stream_options` exists only from api-version 2024-08-01(-preview) on (⚠ per Microsoft
  SDK changelogs and public issues; older versions answer 400 "Unrecognized request
  argument"). On older versions it is removed, even if the client asked for usage:
  the stream then carries no usage chunk and none is invented.
- responses missing `object`/`model` (Azure's documented examples) get them filled in.
- errors: string codes ("401", "429") and `type: null` are normalised by status; 404
  `DeploymentNotFound` -> 404 `model_not_found` naming the deployment; 400
  `content_filter` (prompt filtered) -> 400 `content_filter` with the filtered categories
  from `innererror` in the message, also mid-stream; `retry-after-ms` is honoured.

Not supported: Entra ID bearer tokens and the `/openai/v1/` URL style.
"""

from __future__ import annotations

import functools
import re
from typing import Any
from urllib.parse import urlsplit

from keystore.models import Credential, CredentialField
from translators._compatible import (
    OPENAI_PATHS,
    CompatibleSpec,
    PassState,
    compatible_codec,
    openai_error_fields,
    openai_stream_error,
)
from translators._http import Headers
from translators.base import CallContext, check_model_id
from translators.errors import (
    ApiError,
    UpstreamError,
    bad_request,
    parse_retry_after,
    upstream_status_error,
)
from translators.types import JSONObject, ModelType

PROVIDER = "azure_openai"
DEFAULT_API_VERSION = "2024-10-21"
STREAM_OPTIONS_SINCE = "2024-08-01"   # first api-version that accepts `stream_options`
_API_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}(-preview)?$")
# Azure's deployment names: letters, digits, '_', '-', '.'; at most 64 characters.
_DEPLOYMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})
_PLACEHOLDER = "https://{resource}.openai.azure.com"   # never called: the endpoint is per deployment


# -- pure functions ---------------------------------------------------------------------------


def api_version(credential: Any) -> str:
    version = credential.get("api_version") or DEFAULT_API_VERSION
    if not _API_VERSION.match(version):
        raise bad_request("the azure_openai credential's api_version must look like 2024-10-21 or "
                          "2025-01-01-preview", None, "invalid_credential")
    return version


def supports_stream_options(version: str) -> bool:
    return version[:10] >= STREAM_OPTIONS_SINCE


@functools.lru_cache(maxsize=1024)
def endpoint_root(endpoint: str, field: str = "endpoint") -> str:
    """The checked endpoint (or `base_url` override) without a trailing slash; the message
    never echoes the URL. The override is held to the same rule: it receives the key too."""
    problem = None
    try:
        parts = urlsplit(endpoint)
        host = (parts.hostname or "").lower()
    except ValueError:
        parts, host = None, ""
    if parts is None or not host or any(ch.isspace() for ch in endpoint):
        problem = "is not a URL"
    elif parts.scheme != "https" and not (parts.scheme == "http" and host in _LOOPBACK):
        problem = "must be an https URL (http only to a loopback host)"
    elif "@" in parts.netloc or parts.query or parts.fragment:
        problem = "must not contain user info, a query or a fragment"
    if problem:
        raise bad_request(f"the azure_openai credential's {field} {problem}", None, "invalid_credential")
    return endpoint.rstrip("/")


def check_deployment(model: str) -> None:
    check_model_id(model)
    if not _DEPLOYMENT.match(model):
        raise bad_request(f"Azure deployment name {model!r} is not allowed: use 1-64 letters, digits, "
                          "'_', '-' or '.', starting with a letter or digit", "model", "invalid_model_id")


def _has_content(choice: Any) -> bool:
    return isinstance(choice, dict) and ("delta" in choice or "text" in choice)


def needs_cleaning(data: bytes) -> bool:
    """Whether an event's bytes may hold what `fixup_event` removes: the others (nearly all
    content chunks) pass as the bytes they came as, unparsed."""
    return ((b'"delta"' not in data and b'"text"' not in data) or b"content_filter_offsets" in data
            or b"prompt_filter_results" in data or b"prompt_annotations" in data)


def fixup_event(chunk: JSONObject, state: PassState) -> JSONObject | None:
    """One parsed Azure chunk -> the OpenAI chunk to forward, or None to drop it.

    Drops the prompt-filter chunk and delta-less annotation choices (see the module
    docstring); the original object is returned when nothing had to change.
    """
    choices = chunk.get("choices") or []
    kept = []
    for choice in choices:
        if _has_content(choice):
            kept.append(choice)
        elif isinstance(choice, dict) and choice.get("finish_reason") is not None:
            empty: JSONObject = {"text": ""} if chunk.get("object") == "text_completion" else {"delta": {}}
            kept.append({**choice, **empty})
    if not kept and chunk.get("usage") is None and chunk.get("error") is None:
        return None
    if len(kept) == len(choices) and all(a is b for a, b in zip(kept, choices)):
        return chunk
    return {**chunk, "choices": kept}


def _object_of(body: JSONObject) -> str | None:
    if "data" in body:
        return "list"
    choices = body.get("choices")
    first = choices[0] if isinstance(choices, list) and choices else None
    if not isinstance(first, dict):
        return None
    return "text_completion" if "text" in first else "chat.completion"


def from_vendor_response(body: Any, model: str) -> JSONObject:
    """Fill what Azure's answers may leave out (`object`, by the answer's shape, and `model`);
    nothing else changes."""
    answer: JSONObject = body
    if not answer.get("object"):
        obj = _object_of(answer)
        if obj is not None:
            answer["object"] = obj
    if not answer.get("model"):
        answer["model"] = model
    if answer.get("object") == "list":
        for item in answer.get("data") or ():
            if isinstance(item, dict):
                item.setdefault("object", "embedding")
    return answer


def _filtered(err: Any) -> str:
    inner = err.get("innererror") if isinstance(err, dict) else None
    result = inner.get("content_filter_result") if isinstance(inner, dict) else None
    if not isinstance(result, dict):
        return ""
    hits = [f"{name}" + (f" ({v['severity']})" if isinstance(v.get("severity"), str) else "")
            for name, v in result.items() if isinstance(v, dict) and v.get("filtered")]
    return f" [filtered: {', '.join(hits)}]" if hits else ""


def error_from_response(status: int, body: Any, headers: Headers | None) -> ApiError:
    message, code, param = openai_error_fields(body, f"HTTP {status} from azure_openai")
    if code is not None and code.isdigit():
        code = None   # Azure repeats the status as the code ("401", "429"): let the status decide
    retry_after = parse_retry_after(headers)
    if retry_after is None and headers is not None and headers.get("retry-after-ms"):
        try:
            retry_after = max(0.0, float(headers["retry-after-ms"]) / 1000)
        except ValueError:
            retry_after = None
    if code == "content_filter" and status < 500:
        err = body.get("error") if isinstance(body, dict) else None
        return UpstreamError(400, message + _filtered(err), "invalid_request_error", "content_filter", param)
    if status == 404:
        if code == "DeploymentNotFound":
            return UpstreamError(404, message, "invalid_request_error", "model_not_found", "model")
        return UpstreamError(404, message, "invalid_request_error", "upstream_not_found", None)
    return upstream_status_error("azure_openai", status, message, code, param, retry_after)


_MID_STREAM = openai_stream_error(PROVIDER)


def stream_error(err: Any) -> ApiError:
    """An error event after the 200: a filtered completion is the client's 400, as before it."""
    if isinstance(err, dict) and err.get("code") == "content_filter":
        return error_from_response(400, {"error": err}, None)
    return _MID_STREAM(err)


def for_deployment(err: ApiError, deployment: str) -> ApiError:
    """Name the deployment in a 404, which only the call (not the error body) knows."""
    if err.status != 404 or err.code not in ("model_not_found", "upstream_not_found"):
        return err
    if err.code == "model_not_found":
        message = f"The Azure OpenAI deployment '{deployment}' does not exist: {err.message}"
    else:
        message = (f"Azure OpenAI answered 404 for deployment '{deployment}' ({err.message}): "
                   "check the endpoint and api_version configured for it")
    return UpstreamError(404, message, err.type, err.code, err.param)


CODEC = compatible_codec(PROVIDER, error_from_response=error_from_response, stream_error=stream_error,
                         fixup=fixup_event, fixup_when=needs_cleaning)


# -- the call's hooks -----------------------------------------------------------------------------


def headers(ctx: CallContext) -> dict[str, str]:
    return {"api-key": ctx.credential["api_key"]}


def url(ctx: CallContext, path: str) -> str:
    check_deployment(ctx.model)  # again before every dispatch: the name is a path segment
    root = (endpoint_root(ctx.base_url, "base_url") if ctx.base_url != _PLACEHOLDER
            else endpoint_root(ctx.credential.get("endpoint", "")))
    return f"{root}/openai/deployments/{ctx.model}/{path}?api-version={api_version(ctx.credential)}"


def check_credential(credential: Credential) -> None:
    endpoint_root(credential["endpoint"])
    if credential.base_url:
        endpoint_root(credential.base_url, "base_url")
    api_version(credential)


def prepare(body: JSONObject, ctx: CallContext) -> JSONObject:
    if "stream_options" in body and not supports_stream_options(api_version(ctx.credential)):
        del body["stream_options"]
    return body


SPEC = CompatibleSpec(
    name=PROVIDER,
    display_name="Azure OpenAI",
    key_url="https://portal.azure.com/",
    model_types=frozenset(ModelType),
    per_model=True,
    default_base_url=_PLACEHOLDER,
    credential_fields=(
        CredentialField("endpoint", secret=False,
                        description="The resource's URL, e.g. https://RESOURCE.openai.azure.com"),
        CredentialField("api_key", description="The resource's API key (sent as the api-key header)"),
        CredentialField("api_version", required=False, secret=False,
                        description=f"API version, e.g. 2024-10-21 (default {DEFAULT_API_VERSION})"),
        CredentialField("base_model", required=False, secret=False,
                        description="The model behind the deployment, e.g. gpt-4o (informational)"),
    ),
    paths=OPENAI_PATHS,
    headers=headers,
    url=url,
    codec=CODEC,
    check_credential=check_credential,
    check_model=check_deployment,
    prepare=prepare,
    from_vendor_response=lambda body, ctx: from_vendor_response(body, ctx.credential.get("base_model") or ctx.model),
    call_error=lambda err, ctx: for_deployment(err, ctx.model),
)
