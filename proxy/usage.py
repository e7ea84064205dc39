"""The one record of a request's facts (tenant, provider, model, status, tokens,
latency) that logs (and later usage accounting and metrics) read."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from translators.types import Usage

log = logging.getLogger("modelport.requests")


@dataclass(slots=True)
class RequestRecord:
    request_id: str
    endpoint: str
    tenant_id: str = ""
    token_id: str = ""
    provider: str = ""
    model: str = ""
    billing: str = ""
    stream: bool = False
    status: int = 200
    usage: Usage | None = None
    started: float = field(default_factory=time.perf_counter)

    def finish(self, status: int, usage: Usage | None = None) -> None:
        self.status = status
        if usage is not None:
            self.usage = usage
        if log.isEnabledFor(logging.INFO):
            u = self.usage
            log.info("request %s %s tenant=%s token=%s route=%s/%s billing=%s stream=%s status=%d tokens=%s ms=%.1f",
                     self.request_id, self.endpoint, self.tenant_id, self.token_id, self.provider, self.model,
                     self.billing, self.stream, self.status,
                     f"{u.prompt_tokens}+{u.completion_tokens}" if u else "-",
                     (time.perf_counter() - self.started) * 1000)
