"""What a request may carry on a hosted trial, where it runs on the operator's account.

A tenant's own credential gets the whole API (unknown parameters even pass through to
OpenAI-compatible upstreams). On the operator's key, parameters are an allow-list,
because many of them steer the operator's account or bill rather than the answer:
`service_tier` (priority processing costs more), `store` and `metadata` (what the
operator's account keeps), `user` and `safety_identifier` (whom the vendor blames for
abuse on the operator's account), `n` and `best_of` (several answers for one counted
call), `logit_bias`, `prediction`, `modalities`/`audio`, `web_search_options`, built-in
tools, vendor `extra_body` fields, `base_url`-like fields, ...

Allowed, per endpoint (anything else is a 400 naming it, not silently dropped: OpenAI
itself answers an unknown parameter with a 400, and a dropped `n: 3` or `logit_bias`
would hand back a different answer than the client asked for without saying so):

- chat: model, messages, temperature, top_p, stream, stream_options (only
  include_usage), stop, max_tokens, max_completion_tokens, presence_penalty,
  frequency_penalty, tools (function tools only), tool_choice, parallel_tool_calls,
  response_format, seed, n (1 only).
- legacy completions: model, prompt, temperature, top_p, stream, stream_options (only
  include_usage), stop, max_tokens, presence_penalty, frequency_penalty, seed, n (1 only).
- embeddings: model, input, encoding_format, dimensions.
- transcriptions: model, file, language, prompt, response_format, temperature.

A request that came in another API's shape (the Messages API) is checked in its chat form,
and only that goes upstream: a provider's native endpoint for that API is not used on a
trial (the client's own body would carry what this list does not check).

A parameter sent as `null` means "not given" in OpenAI's API, so it is removed instead
of refused (some clients send every field they know).

Output tokens: a limit above the offer's `max_tokens` is a 400 naming the field and the
cap (as OpenAI answers a `max_tokens` above a model's limit), not clamped: a clamped
answer would be cut short with no error the client could read. A request without a limit
is sent with `max_tokens` set to the cap (the name every OpenAI-compatible server and
every translator reads), since the vendor's default is often the model's whole window.
"""

from __future__ import annotations

from typing import Any

from proxy.hosted import HostedOffer
from translators._inbound import InboundChatRequest
from translators.errors import ApiError, bad_request
from translators.types import (
    ChatRequest,
    CompletionRequest,
    EmbeddingRequest,
    TranscriptionRequest,
)

_SAMPLING = frozenset({"model", "temperature", "top_p", "stream", "stream_options", "stop", "max_tokens",
                       "presence_penalty", "frequency_penalty", "seed", "n"})
CHAT = _SAMPLING | {"messages", "max_completion_tokens", "tools", "tool_choice", "parallel_tool_calls",
                    "response_format"}
COMPLETIONS = _SAMPLING | {"prompt"}
EMBEDDINGS = frozenset({"model", "input", "encoding_format", "dimensions"})
# filename and content_type are the gateway's own fields, taken from the upload's part.
TRANSCRIPTIONS = frozenset({"model", "file", "filename", "content_type", "language", "prompt",
                            "response_format", "temperature"})

_ALLOWED: tuple[tuple[type[Any], frozenset[str]], ...] = (
    (ChatRequest, CHAT), (CompletionRequest, COMPLETIONS), (EmbeddingRequest, EMBEDDINGS),
    (TranscriptionRequest, TRANSCRIPTIONS),
)
_TOKEN_LIMITS = ("max_tokens", "max_completion_tokens")


def _refused(offer: HostedOffer, names: list[str], allowed: frozenset[str]) -> ApiError:
    listed = ", ".join(f"'{n}'" for n in names)
    shown = ", ".join(sorted(allowed - {"filename", "content_type"}))
    return bad_request(
        f"{'Parameter' if len(names) == 1 else 'Parameters'} {listed} {'is' if len(names) == 1 else 'are'} not "
        f"allowed on the hosted trial of provider '{offer.provider}'. Allowed parameters: {shown}. The whole "
        f"API needs this tenant's own {offer.provider} credential.", names[0], "hosted_parameter_not_allowed")


def _check_values(offer: HostedOffer, raw: dict[str, Any]) -> None:
    """The allowed parameters whose values still steer the account: `n`, nested options,
    built-in (vendor-billed) tools, and the output-token cap."""
    n = raw.get("n")
    if n is not None and n != 1:
        raise bad_request(f"'n' must be 1 on the hosted trial of provider '{offer.provider}' (one answer per "
                          "call).", "n", "hosted_parameter_not_allowed")
    options = raw.get("stream_options")
    if isinstance(options, dict):
        extra = [k for k in options if k != "include_usage"]
        if extra:
            raise bad_request(f"'stream_options.{extra[0]}' is not allowed on the hosted trial of provider "
                              f"'{offer.provider}'; only include_usage is.", f"stream_options.{extra[0]}",
                              "hosted_parameter_not_allowed")
    tools = raw.get("tools")
    for i, tool in enumerate(tools if isinstance(tools, list) else ()):
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            raise bad_request(f"Only function tools are allowed on the hosted trial of provider "
                              f"'{offer.provider}'.", f"tools[{i}].type", "hosted_parameter_not_allowed")
    for name in _TOKEN_LIMITS:
        value = raw.get(name)
        if isinstance(value, int) and value > offer.max_tokens:
            raise bad_request(f"'{name}' is too large for the hosted trial of provider '{offer.provider}': "
                              f"{value}; at most {offer.max_tokens} output tokens per call.", name,
                              "hosted_max_tokens_exceeded")


def restrict(offer: HostedOffer, req: Any) -> Any:
    """`req` as it may go upstream on the offer's credential (a new request when it had to
    change), or the 400 naming the first parameter the trial does not allow."""
    if isinstance(req, InboundChatRequest):
        # A request in another API's shape (proxy/inbound/): on a trial only its chat form,
        # checked here, goes upstream; never the client's own body to a native endpoint.
        req = req.chat_only()
    allowed = next((names for kind, names in _ALLOWED if isinstance(req, kind)), None)
    if allowed is None:  # an endpoint this module does not know: refuse rather than pass everything
        raise bad_request(f"This endpoint is not available on the hosted trial of provider '{offer.provider}'.",
                          None, "hosted_parameter_not_allowed")
    raw: dict[str, Any] = {k: v for k, v in req.raw.items() if v is not None}
    refused = [k for k in raw if k not in allowed]
    if refused:
        raise _refused(offer, refused, allowed)
    _check_values(offer, raw)
    if "max_tokens" in allowed and not any(raw.get(name) for name in _TOKEN_LIMITS):
        raw["max_tokens"] = offer.max_tokens
    if raw == req.raw:
        return req
    # Parsed again, not patched: the typed fields (which most translators read) and the
    # JSON that pass-through translators forward must say the same thing.
    return req.with_raw(raw) if isinstance(req, InboundChatRequest) else type(req).parse(raw)
