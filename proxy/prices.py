"""Prices and the cost of a request (issue 16).

The operator's price table (`prices:` in the settings): per provider and model (the
vendor's model id, as usage rows name it), US dollars per million input and output
tokens, and where a vendor bills so, per call or per minute of audio. A model missing
from the table is *unpriced*: its requests cost `None`, never a silent 0.

Costs are integers of nano-dollars (10^-9 USD), not floats of dollars: a token of the
cheapest models costs a few nano-dollars, so no request's cost is lost to rounding, and
sums are exact (the daily rollup adds batches in another order than a GROUP BY over the
raw rows would, and must still give the same answer). The API shows dollars.

`cost_nanos` runs once per request, in `RequestRecord.finish`: two dict lookups for the
price and a few multiplications. Rules:
- token prices (`input`, `output`) apply to the request's token counts (the vendor's, or
  the gateway's estimate, which the usage row flags); tokens of a kind the entry has no
  price for make the request unpriced (a chat model priced only for `input` is a
  configuration mistake to show, not to bill as free);
- `per_audio_minute` applies to the audio's duration: the vendor's billed seconds
  (`usage.seconds`), else `duration` of a `verbose_json` answer, else the length of a WAV
  upload; when none is known the request is unpriced;
- `per_call` is added for a request that succeeded (status < 400);
- a request that never reached a provider (no route) costs 0: nothing was sent.
"""

from __future__ import annotations

import io
import wave
from collections.abc import Mapping
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, model_validator

NANOS_PER_USD = 10**9
_PER_TOKEN = NANOS_PER_USD / 1_000_000  # nano-dollars per token, per dollar per million tokens
MAX_PRICE = 1_000_000.0  # dollars per million tokens (or per call, per minute): far above any vendor's


class Price(BaseModel):
    """One model's price; every amount in US dollars, tokens per million."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: float | None = Field(default=None, ge=0, le=MAX_PRICE)            # per 1M prompt tokens
    output: float | None = Field(default=None, ge=0, le=MAX_PRICE)           # per 1M completion tokens
    per_call: float | None = Field(default=None, ge=0, le=MAX_PRICE)         # per successful request
    per_audio_minute: float | None = Field(default=None, ge=0, le=MAX_PRICE)  # per minute of audio

    @model_validator(mode="after")
    def _something(self) -> Price:
        if self.input is None and self.output is None and self.per_call is None and self.per_audio_minute is None:
            raise ValueError("give at least one of input, output, per_call, per_audio_minute")
        return self


PriceTable = Mapping[str, Mapping[str, Price]]  # provider -> model -> price


def price_of(prices: PriceTable, provider: str, model: str) -> Price | None:
    models = prices.get(provider)
    return None if models is None else models.get(model)


def cost_nanos(price: Price, prompt_tokens: int, completion_tokens: int, ok: bool,
               audio_seconds: float | None = None) -> int | None:
    """The request's cost in nano-dollars, None when the price does not cover it."""
    total = 0.0
    if price.input is not None or price.output is not None:
        if (prompt_tokens and price.input is None) or (completion_tokens and price.output is None):
            return None
        total += prompt_tokens * (price.input or 0.0) * _PER_TOKEN
        total += completion_tokens * (price.output or 0.0) * _PER_TOKEN
    if price.per_audio_minute is not None and ok:
        if audio_seconds is None:
            return None
        total += audio_seconds / 60 * price.per_audio_minute * NANOS_PER_USD
    if price.per_call is not None and ok:
        total += price.per_call * NANOS_PER_USD
    return round(total)


def estimate_nanos(price: Price | None, prompt_tokens: int, audio_seconds: float | None = None) -> int:
    """What a request will cost at least, before it is sent (a budget's reservation): its
    prompt's estimate, its audio when the upload says how long it is, and its call price."""
    if price is None:
        return 0
    total = prompt_tokens * (price.input or 0.0) * _PER_TOKEN + (price.per_call or 0.0) * NANOS_PER_USD
    if price.per_audio_minute is not None and audio_seconds is not None:
        total += audio_seconds / 60 * price.per_audio_minute * NANOS_PER_USD
    return round(total)


def usd(nanos: int | None) -> float | None:
    """Nano-dollars as dollars for the API (None stays None: unpriced)."""
    return None if nanos is None else round(nanos / NANOS_PER_USD, 9)


def format_usd(nanos: int) -> str:
    """For messages and tables: cents when there are any, else every digit that counts."""
    if abs(nanos) >= NANOS_PER_USD // 100:
        return f"${nanos / NANOS_PER_USD:,.2f}"
    return "$" + f"{nanos / NANOS_PER_USD:.9f}".rstrip("0").rstrip(".")


def wav_seconds(audio: bytes) -> float | None:
    try:
        with wave.open(io.BytesIO(audio), "rb") as wav:
            rate = wav.getframerate()
            return wav.getnframes() / rate if rate else None
    except (wave.Error, EOFError):
        return None


def audio_seconds(answer: Any, upload: bytes | None) -> float | None:
    """How long the transcribed audio was: from the vendor's JSON answer (its billed
    `usage.seconds`, else `verbose_json`'s `duration`), else from a WAV upload's header."""
    content = getattr(answer, "content", None)
    if isinstance(content, bytes) and content[:1] == b"{" and (b'"seconds"' in content or b'"duration"' in content):
        try:
            body = orjson.loads(content)
        except orjson.JSONDecodeError:
            body = None
        if isinstance(body, dict):
            usage = body.get("usage")
            if isinstance(usage, dict) and usage.get("type") == "duration" and _seconds(usage.get("seconds")):
                return float(usage["seconds"])
            if _seconds(body.get("duration")):
                return float(body["duration"])
    return wav_seconds(upload) if upload else None


def _seconds(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < 10**7


def listing(prices: PriceTable) -> list[dict[str, Any]]:
    """The table as `GET /v1/prices` shows it, one entry per model."""
    return [{"id": f"{provider}/{model}", "object": "model.price", "provider": provider, "model": model,
             **price.model_dump()}
            for provider, models in sorted(prices.items()) for model, price in sorted(models.items())]
