"""Legacy `/v1/completions` for vendors that only have a chat API.

The prompt becomes one user message; `echo` and `suffix` are applied here, the way
OpenAI's own adapters for chat-only models do. Vendors with a native completions
endpoint (OpenAI and compatibles) override `complete`/`complete_stream` instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from translators._json import loads as bounded_json
from translators.errors import bad_request
from translators.types import ChatRequest, CompletionRequest, JSONObject, StreamChunk

if TYPE_CHECKING:
    from translators.base import CallContext, Translator

_FINISH = {"stop": "stop", "length": "length", "content_filter": "content_filter", "tool_calls": "stop",
           "function_call": "stop"}


def _prompt_text(req: CompletionRequest, provider: str) -> str:
    prompt: Any = req.prompt
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise bad_request(f"provider '{provider}' accepts one text prompt per request "
                          "(not token arrays or a list of prompts)", "prompt")
    return prompt


def _as_chat(req: CompletionRequest, provider: str) -> tuple[ChatRequest, str]:
    prompt = _prompt_text(req, provider)
    body: JSONObject = {"model": req.model, "messages": [{"role": "user", "content": prompt}],
                        "stream": req.stream}
    for key in ("max_tokens", "temperature", "top_p", "n", "stop", "user", "stream_options"):
        value = req.raw.get(key)
        if value is not None:
            body[key] = value
    try:
        return ChatRequest.parse(body), prompt
    except ValidationError as exc:  # e.g. max_tokens=0, which completions allow and chat does not
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"][:1])
        raise bad_request(f"Invalid value for '{param}' with provider '{provider}': {first['msg']}.", param) from None


async def complete_via_chat(translator: Translator, req: CompletionRequest, ctx: CallContext) -> JSONObject:
    chat_req, prompt = _as_chat(req, translator.name)
    result = await translator.chat(chat_req, ctx)
    prefix = prompt if req.echo else ""
    suffix = req.suffix or ""
    choices = [{"text": prefix + (c.get("message", {}).get("content") or "") + suffix, "index": c.get("index", i),
                "logprobs": None, "finish_reason": _FINISH.get(c.get("finish_reason") or "stop", "stop")}
               for i, c in enumerate(result.get("choices", []))]
    out: JSONObject = {"id": str(result.get("id", "")).replace("chatcmpl", "cmpl", 1), "object": "text_completion",
                       "created": result.get("created", 0), "model": result.get("model", ctx.model),
                       "choices": choices}
    if result.get("usage") is not None:
        out["usage"] = result["usage"]
    return out


async def complete_stream_via_chat(translator: Translator, req: CompletionRequest,
                                   ctx: CallContext) -> AsyncIterator[StreamChunk]:
    chat_req, prompt = _as_chat(req, translator.name)
    echoed = not req.echo
    stream = translator.chat_stream(chat_req, ctx)
    try:
        async for chunk in stream:
            data = bounded_json(chunk.data)
            base = {"id": str(data.get("id", "")).replace("chatcmpl", "cmpl", 1), "object": "text_completion",
                    "created": data.get("created", 0), "model": data.get("model", ctx.model)}
            if chunk.usage is not None:
                yield StreamChunk.of({**base, "choices": [], "usage": chunk.usage.as_dict()}, chunk.usage)
                continue
            for choice in data.get("choices", []):
                text = (choice.get("delta") or {}).get("content") or ""
                if not echoed:
                    text, echoed = prompt + text, True
                finish = choice.get("finish_reason")
                if finish is not None:
                    text += req.suffix or ""
                    finish = _FINISH.get(finish, "stop")
                if text or finish is not None:
                    yield StreamChunk.of({**base, "choices": [{"text": text, "index": choice.get("index", 0),
                                                               "logprobs": None, "finish_reason": finish}]})
    finally:
        await stream.aclose()  # type: ignore[attr-defined]
