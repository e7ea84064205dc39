"""The one record of a request's facts (tenant, token, provider, model, model type,
own or hosted billing, status, tokens, latency, time to first token) that the
request log line and usage accounting read; metrics will read it too.

`routes.py` and `sse.py` fill it while the request runs; `finish()` writes the log
line and hands one `UsageRow` (a small tuple, no reference to the request body) to
the background writer (`proxy/usage_writer.py`), so the hot path never waits on
the database.

Token counts are the vendor's whenever it reports them. When it does not, they are
estimated and the row is flagged `estimated`:
- prompt: the request's text at ~4 characters per token (messages' text, a prompt
  or embedding input; token arrays count as given);
- completion, non-stream: the reply's text at ~4 characters per token;
- completion, stream: one token per content chunk (vendors stream about one token
  per chunk, and counting avoids re-parsing chunks that pass through unchanged).
These are rough on purpose (no tokenizer per vendor): good for "how much did we
use", not for invoicing.

The cost (`cost_nanos`, nano-dollars) is computed once, in `finish`, from these counts
and the operator's price table (`proxy/prices.py`); None when the model has no price.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from proxy import logs, metrics, tracing
from proxy.prices import PriceTable, audio_seconds, cost_nanos, price_of, usd
from proxy.store import UsageRow
from translators.types import TranscriptionResult, Usage

log = logging.getLogger("modelport.requests")

CHARS_PER_TOKEN = 4


def _tokens(chars: int) -> int:
    return (chars + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


def _text_tokens(value: Any) -> int:
    if isinstance(value, str):
        return _tokens(len(value))
    if isinstance(value, list):
        if value and all(isinstance(v, int) for v in value):
            return len(value)  # a token array: already tokens
        return sum(_text_tokens(v) for v in value)
    return 0


def estimate_prompt_tokens(req: Any) -> int:
    messages = getattr(req, "messages", None)
    if messages is not None:
        chars = 0
        for message in messages:
            content = message.content
            if isinstance(content, str):
                chars += len(content)
            elif isinstance(content, list):
                chars += sum(len(part.text or "") for part in content)
        return _tokens(chars)
    for name in ("prompt", "input"):
        value = getattr(req, name, None)
        if value is not None:
            return _text_tokens(value)
    return 0


def estimate_completion_tokens(output: Any) -> int:
    """From what was sent back: a JSON answer, a transcript, or a stream's chunk count."""
    if isinstance(output, int):
        return output
    if isinstance(output, TranscriptionResult):
        return _tokens(len(output.content))
    chars = 0
    if isinstance(output, dict):
        for choice in output.get("choices") or ():
            message = choice.get("message") if isinstance(choice, dict) else None
            text = message.get("content") if isinstance(message, dict) else choice.get("text")
            if isinstance(text, str):
                chars += len(text)
    return _tokens(chars)


@dataclass(slots=True)
class RequestRecord:
    request_id: str
    endpoint: str
    model_type: str = ""
    sink: Callable[[UsageRow], None] | None = field(default=None, repr=False)
    tenant_id: str = ""
    token_id: str = ""
    provider: str = ""
    model: str = ""
    billing: str = ""
    stream: bool = False
    status: int = 200
    usage: Usage | None = None
    estimated: bool = False
    # The parsed request, kept only to estimate prompt tokens when the vendor reports none.
    request: Any = field(default=None, repr=False)
    ttft_ms: float | None = None
    attempts: int = 0               # upstream attempts made (retries and fallbacks included)
    credential: str | None = None   # the name of the credential of the last attempt
    upstream_ms: float = 0.0        # time spent waiting on upstreams (and between retries)
    overhead: float | None = None   # ms in the gateway until the answer started (set when served)
    error_code: str | None = None   # the error's code, when the request failed with one
    span: Any = field(default=None, repr=False)  # the request's trace span (proxy/tracing.py), when tracing
    prices: PriceTable | None = field(default=None, repr=False)  # the operator's (settings.prices)
    cost_nanos: int | None = None   # set by `finish` (proxy/prices.py); None: the model has no price
    started: float = field(default_factory=time.perf_counter)
    created: float = field(default_factory=time.time)

    def overhead_ms(self) -> float:
        """Time spent in the gateway so far: everything but upstream waits and retry backoff."""
        return max(0.0, (time.perf_counter() - self.started) * 1000 - self.upstream_ms)

    def first_token(self) -> None:
        self.ttft_ms = (time.perf_counter() - self.started) * 1000
        metrics.stream_opened(self)  # until `finish`

    def log_fields(self, latency_ms: float) -> dict[str, Any]:
        """The request's line in `log_format: json`: identifiers, route, outcome, timings and
        token counts; never the request's content or a credential (only its name)."""
        u = self.usage
        return {"request_id": self.request_id, "tenant_id": self.tenant_id or None, "token_id": self.token_id or None,
                "endpoint": self.endpoint, "provider": self.provider or None, "model": self.model or None,
                "billing": self.billing or None, "credential": self.credential, "stream": self.stream,
                "attempts": self.attempts, "status": self.status, "error": self.error_code,
                "latency_ms": round(latency_ms, 2),
                "overhead_ms": round(self.overhead if self.overhead is not None
                                     else max(0.0, latency_ms - self.upstream_ms), 2),
                "ttft_ms": None if self.ttft_ms is None else round(self.ttft_ms, 2),
                "prompt_tokens": u.prompt_tokens if u else None, "completion_tokens": u.completion_tokens if u else None,
                "tokens_estimated": self.estimated, "cost": usd(self.cost_nanos)}  # US dollars; null: unpriced

    def finish(self, status: int, usage: Usage | None = None, output: Any = None) -> None:
        """The request is over: `output` (a JSON answer, a transcript or a stream's chunk
        count) is read only to estimate tokens when `usage` is missing."""
        latency_ms = (time.perf_counter() - self.started) * 1000
        self.status = status
        if usage is not None:
            self.usage = usage
        elif self.usage is None and (status < 400 or (self.stream and output)):
            prompt, completion = estimate_prompt_tokens(self.request), estimate_completion_tokens(output)
            self.usage, self.estimated = Usage(prompt, completion, prompt + completion), True
        self.cost_nanos = self._cost(output)
        self.request = None  # the body (an upload, perhaps) must not outlive the request
        u = self.usage
        if log.isEnabledFor(logging.INFO):
            if logs.structured:
                log.info("request", extra={"fields": self.log_fields(latency_ms)})
            else:
                log.info("request %s %s tenant=%s token=%s route=%s/%s billing=%s stream=%s status=%d "
                         "tokens=%s%s attempts=%d ms=%.1f", self.request_id, self.endpoint, self.tenant_id,
                         self.token_id, self.provider, self.model, self.billing, self.stream, self.status,
                         f"{u.prompt_tokens}+{u.completion_tokens}" if u else "-", "~" if self.estimated else "",
                         self.attempts, latency_ms)
        metrics.observe(self, latency_ms)
        if self.span is not None:
            tracing.end_request(self, latency_ms)
        if self.sink is not None and self.tenant_id:  # no tenant, nobody to account to (a 401)
            self.sink(UsageRow(self.created, self.request_id, self.tenant_id, self.token_id, self.endpoint,
                               self.provider, self.model, self.model_type, self.billing, self.stream,
                               self.status, u.prompt_tokens if u else 0, u.completion_tokens if u else 0,
                               u.total_tokens if u else 0, self.estimated, round(latency_ms, 2),
                               None if self.ttft_ms is None else round(self.ttft_ms, 2), self.attempts,
                               self.credential, self.cost_nanos))

    def _cost(self, output: Any) -> int | None:
        """In nano-dollars, once per request: two dict lookups and a few multiplications
        (an audio price reads the transcript's or the upload's duration)."""
        if not self.provider:
            return 0  # never routed: nothing reached a vendor
        price = price_of(self.prices, self.provider, self.model) if self.prices else None
        if price is None:
            return None
        seconds = None
        if price.per_audio_minute is not None:
            upload = getattr(self.request, "file", None)
            seconds = audio_seconds(output, upload if isinstance(upload, bytes) else None)
        u = self.usage
        return cost_nanos(price, u.prompt_tokens if u else 0, u.completion_tokens if u else 0, self.status < 400,
                          seconds)
