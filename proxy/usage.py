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
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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
    started: float = field(default_factory=time.perf_counter)
    created: float = field(default_factory=time.time)

    def overhead_ms(self) -> float:
        """Time spent in the gateway so far: everything but upstream waits and retry backoff."""
        return max(0.0, (time.perf_counter() - self.started) * 1000 - self.upstream_ms)

    def first_token(self) -> None:
        self.ttft_ms = (time.perf_counter() - self.started) * 1000

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
        self.request = None  # the body (an upload, perhaps) must not outlive the request
        u = self.usage
        if log.isEnabledFor(logging.INFO):
            log.info("request %s %s tenant=%s token=%s route=%s/%s billing=%s stream=%s status=%d tokens=%s%s "
                     "attempts=%d ms=%.1f", self.request_id, self.endpoint, self.tenant_id, self.token_id,
                     self.provider, self.model, self.billing, self.stream, self.status,
                     f"{u.prompt_tokens}+{u.completion_tokens}" if u else "-", "~" if self.estimated else "",
                     self.attempts, latency_ms)
        if self.sink is not None and self.tenant_id:  # no tenant, nobody to account to (a 401)
            self.sink(UsageRow(self.created, self.request_id, self.tenant_id, self.token_id, self.endpoint,
                               self.provider, self.model, self.model_type, self.billing, self.stream,
                               self.status, u.prompt_tokens if u else 0, u.completion_tokens if u else 0,
                               u.total_tokens if u else 0, self.estimated, round(latency_ms, 2),
                               None if self.ttft_ms is None else round(self.ttft_ms, 2), self.attempts,
                               self.credential))
