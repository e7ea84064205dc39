"""The pieces of a DashScope (Qwen) body, from an OpenAI request (pure): the messages, the
parameters, what is refused. `codec.to_vendor_request` puts them together.

Chat:
- always `parameters.result_format: "message"` (DashScope's default is the legacy text
  format); streams are asked for with the `X-DashScope-SSE: enable` header (not a body
  field) and `incremental_output: true` (DashScope's default repeats the whole text in
  every event; the stream state handles both);
- `system`/`developer` messages -> one system message, first (joined by a blank line,
  wherever they stood: DashScope accepts a system message only at the start); assistant `tool_calls` and `tool` results
  (`tool_call_id`, `name`) as OpenAI has them; text parts are joined into one string for
  text models; `image_url` parts only for vision models (URLs and data: URLs as given), whose
  every message's content is a list of `{"text": ...}` / `{"image": url}` items;
- `max_completion_tokens`/`max_tokens` -> `max_tokens`; `temperature` clamped below 2
  (DashScope: [0, 2)); `top_p` clamped into the open interval (0, 1) that DashScope accepts
  (1.0 -> 0.9999); `seed`, `stop`, `presence_penalty`, `tools`, `tool_choice`,
  `parallel_tool_calls`, `response_format` pass; DashScope's own knobs sent as extra fields
  (`top_k`, `repetition_penalty`, `enable_search`, `enable_thinking`, `search_options`) pass.

A client's own `result_format` or `incremental_output` is not passed on (the translator
needs the message format, and streams are always asked for incrementally).
Rejected with a 400 naming the field: `n` > 1, `logprobs`/`top_logprobs`, `audio`,
`functions`/`function_call` (use tools), image parts for a model that is not a vision model.
Dropped: `frequency_penalty` (DashScope's repetition_penalty is multiplicative, not the same
knob), `logit_bias`, `user`, `store`, `metadata`, `service_tier`, a message's `name` (kept on
tool results), an image's `detail`, any other field DashScope does not know.

Embeddings (`codec.to_vendor_embeddings_request`): `dimensions` -> `parameters.dimension`
(v3/v4 only); DashScope's `text_type` (query|document) may be sent as an extra field.
"""

from __future__ import annotations

from typing import Any

from translators._refusals import (
    refuse_choices_and_logprobs,
    refuse_deprecated_functions,
)
from translators.errors import bad_request, unsupported
from translators.types import (
    ChatRequest,
    ContentPart,
    JSONObject,
    Message,
)

__all__ = ["PROVIDER", "embedding_batch_size", "is_vision", "messages", "parameters", "refuse_unsupported"]

PROVIDER = "qwen"
VISION_PREFIXES = ("qwen-vl", "qwen2-vl", "qwen2.5-vl", "qwen3-vl", "qvq")
TOP_P_MIN, TOP_P_MAX = 0.0001, 0.9999
TEMPERATURE_MAX = 1.99
PASSED = ("seed", "stop", "presence_penalty", "tool_choice", "parallel_tool_calls", "response_format", "top_k",
          "repetition_penalty", "enable_search", "search_options", "enable_thinking", "thinking_budget")


def is_vision(model: str) -> bool:
    return model.startswith(VISION_PREFIXES)


def embedding_batch_size(model: str) -> int:
    return 25 if model in ("text-embedding-v1", "text-embedding-v2") else 10


def refuse_unsupported(req: ChatRequest) -> None:
    refuse_choices_and_logprobs(req, PROVIDER)
    if req.raw.get("audio"):
        raise unsupported(PROVIDER, "audio", "audio")
    refuse_deprecated_functions(req, PROVIDER)


def _content(content: str | list[ContentPart] | None, where: str, vision: bool) -> Any:
    if vision:
        if content is None:
            return [{"text": ""}]
        if isinstance(content, str):
            return [{"text": content}]
        items: list[JSONObject] = []
        for j, part in enumerate(content):
            if part.type == "text":
                items.append({"text": part.text or ""})
            elif part.type == "image_url" and part.image_url is not None:
                items.append({"image": part.image_url.url})
            else:
                raise unsupported(PROVIDER, f"'{part.type}' content parts", f"{where}.content[{j}].type")
        return items
    if content is None or isinstance(content, str):
        return content or ""
    texts = []
    for j, part in enumerate(content):
        if part.type != "text":
            what = "images with a model that is not a vision model (qwen-vl-*)" if part.type == "image_url" \
                else f"'{part.type}' content parts"
            raise unsupported(PROVIDER, what, f"{where}.content[{j}].type")
        texts.append(part.text or "")
    return "\n".join(texts)


def _message(message: Message, where: str, vision: bool) -> JSONObject:
    role = message.role
    if role == "function":
        raise unsupported(PROVIDER, "'function' messages (use tools)", f"{where}.role")
    out: JSONObject = {"role": role, "content": _content(message.content, where, vision)}
    if role == "assistant" and message.tool_calls:
        out["tool_calls"] = [{"id": c.id, "type": "function",
                              "function": {"name": c.function.name, "arguments": c.function.arguments}}
                             for c in message.tool_calls]
    if role == "tool":
        if not message.tool_call_id:
            raise bad_request("a tool message needs the tool_call_id it answers", f"{where}.tool_call_id")
        out["tool_call_id"] = message.tool_call_id
        if message.name:
            out["name"] = message.name
    return out


def messages(messages: list[Message], vision: bool) -> list[JSONObject]:
    """The conversation, its system/developer messages joined into one system message, first."""
    system: list[str] = []
    out = []
    for i, message in enumerate(messages):
        if message.role in ("system", "developer"):  # DashScope takes one system message, first
            system.append(_content(message.content, f"messages[{i}]", vision=False))
        else:
            out.append(_message(message, f"messages[{i}]", vision))
    if system:
        text = "\n\n".join(system)
        out.insert(0, {"role": "system", "content": [{"text": text}] if vision else text})
    return out


def parameters(req: ChatRequest) -> JSONObject:
    out: JSONObject = {"result_format": "message"}
    if req.stream:
        out["incremental_output"] = True
    if req.token_limit:
        out["max_tokens"] = req.token_limit
    if req.temperature is not None:
        out["temperature"] = min(req.temperature, TEMPERATURE_MAX)
    if req.top_p is not None:
        out["top_p"] = min(max(req.top_p, TOP_P_MIN), TOP_P_MAX)
    for key in PASSED:
        if req.raw.get(key) is not None:
            out[key] = req.raw[key]
    if req.tools:
        out["tools"] = [{"type": t.type, "function": t.function.model_dump(exclude_none=True)} for t in req.tools]
    return out
