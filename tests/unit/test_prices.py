"""Prices and costs without a server (issue 16): the price table's validation, the O(1)
lookup, cost = tokens x price (input and output apart), per call, per audio minute (the
duration from the vendor's answer or the WAV upload, else unpriced), and the cost the
request record puts into its usage row: a number for a priced model, None (never 0) for
an unpriced one, 0 for a request that never reached a provider."""

from __future__ import annotations

import io
import wave
from pathlib import Path

import orjson
import pytest
from pydantic import ValidationError

from proxy.prices import (
    Price,
    audio_seconds,
    cost_nanos,
    estimate_nanos,
    format_usd,
    listing,
    price_of,
    usd,
    wav_seconds,
)
from proxy.settings import SettingsError, load_settings
from proxy.store import UsageRow
from proxy.usage import RequestRecord
from translators.types import ChatRequest, TranscriptionRequest, TranscriptionResult, Usage

MILLION = 1_000_000
TABLE = {"openai": {"gpt-4o-mini": Price(input=0.15, output=0.60), "whisper-1": Price(per_audio_minute=0.006),
                    "text-embedding-3-small": Price(input=0.02), "dall-e": Price(per_call=0.04)}}


def wav(seconds: float, rate: int = 8000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\x00\x00" * int(seconds * rate))
    return buf.getvalue()


@pytest.mark.parametrize("bad", [{}, {"input": -0.1}, {"output": float("nan")}, {"per_call": float("inf")},
                                 {"input": 1, "cached": 0.5}, {"input": "cheap"}])
def test_a_price_must_say_something_sensible(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Price.model_validate(bad)


def test_the_settings_validate_the_table_against_the_registry(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("prices:\n  openai:\n    gpt-4o-mini: {input: 0.15, output: 0.60}\n"
                   "    whisper-1: {per_audio_minute: 0.006}\nbudgets: {allow_unpriced: true}\n")
    settings = load_settings(cfg)
    assert settings.prices["openai"]["gpt-4o-mini"] == Price(input=0.15, output=0.6)
    assert settings.budgets.allow_unpriced and not load_settings(None).budgets.allow_unpriced
    assert load_settings(None).prices == {}
    # Round trip through the workers' handoff (settings as JSON, validated again).
    assert type(settings).model_validate(orjson.loads(orjson.dumps(settings.model_dump(mode="json")))) == settings
    cfg.write_text("prices:\n  opneai:\n    gpt-4o-mini: {input: 0.15}\n")
    with pytest.raises(SettingsError, match="unknown provider.*opneai"):
        load_settings(cfg)
    cfg.write_text("prices:\n  openai:\n    gpt-4o-mini: {input: 0.15, ouput: 0.6}\n")
    with pytest.raises(SettingsError, match="ouput"):
        load_settings(cfg)


def test_lookup_by_provider_and_model() -> None:
    assert price_of(TABLE, "openai", "gpt-4o-mini") == Price(input=0.15, output=0.6)
    assert price_of(TABLE, "openai", "gpt-4o") is None
    assert price_of(TABLE, "anthropic", "gpt-4o-mini") is None
    assert price_of({}, "openai", "gpt-4o-mini") is None


def test_cost_is_tokens_times_price_input_and_output_apart() -> None:
    mini = TABLE["openai"]["gpt-4o-mini"]
    assert cost_nanos(mini, MILLION, 0, True) == 150_000_000          # $0.15
    assert cost_nanos(mini, 0, MILLION, True) == 600_000_000          # $0.60
    assert cost_nanos(mini, 10, 5, True) == 10 * 150 + 5 * 600       # 4,500 nano-dollars
    assert cost_nanos(mini, 0, 0, False) == 0                         # a failure that used nothing
    assert cost_nanos(Price(input=3, output=15), 1234, 567, True) == 1234 * 3000 + 567 * 15000
    # Tokens of a kind the entry does not price: unpriced, not free.
    embedding = TABLE["openai"]["text-embedding-3-small"]
    assert cost_nanos(embedding, 1000, 0, True) == 20_000
    assert cost_nanos(embedding, 1000, 3, True) is None
    assert cost_nanos(Price(output=1.0), 7, 0, True) is None


def test_per_call_and_per_audio_minute() -> None:
    per_call = TABLE["openai"]["dall-e"]
    assert cost_nanos(per_call, 50, 0, True) == 40_000_000            # tokens not priced: the call is
    assert cost_nanos(per_call, 50, 0, False) == 0                    # a failed call is not billed
    whisper = TABLE["openai"]["whisper-1"]
    assert cost_nanos(whisper, 0, 40, True, 90.0) == 9_000_000        # 1.5 min x $0.006
    assert cost_nanos(whisper, 0, 40, True, None) is None             # duration unknown: unpriced
    assert cost_nanos(whisper, 0, 0, False, None) == 0
    both = Price(input=1.0, per_call=0.5)
    assert cost_nanos(both, 1000, 0, True) == 1_000_000 + 500_000_000
    assert estimate_nanos(both, 1000) == 501_000_000 and estimate_nanos(None, 1000) == 0
    assert estimate_nanos(whisper, 0, 30.0) == 3_000_000 and estimate_nanos(whisper, 0) == 0


def test_the_audio_duration_comes_from_the_answer_else_the_upload() -> None:
    billed = TranscriptionResult(orjson.dumps({"text": "hi", "usage": {"type": "duration", "seconds": 4}}),
                                 "application/json")
    verbose = TranscriptionResult(orjson.dumps({"text": "hi", "duration": 2.5, "segments": []}), "application/json")
    text = TranscriptionResult(b"hi\n", "text/plain")
    tokens = TranscriptionResult(orjson.dumps({"text": "hi", "usage": {"type": "tokens", "input_tokens": 3}}),
                                 "application/json")
    assert audio_seconds(billed, wav(1.0)) == 4.0      # what the vendor billed wins
    assert audio_seconds(verbose, None) == 2.5
    assert audio_seconds(text, wav(1.5)) == pytest.approx(1.5)
    assert audio_seconds(tokens, b"not audio") is None
    assert audio_seconds(text, None) is None and audio_seconds(7, None) is None  # a stream's chunk count
    assert wav_seconds(wav(0.25)) == pytest.approx(0.25) and wav_seconds(b"RIFF") is None


def test_the_record_puts_the_cost_into_the_usage_row() -> None:
    rows: list[UsageRow] = []

    def record(model: str, provider: str = "openai", **kw: object) -> RequestRecord:
        return RequestRecord("req", "chat.completions", "llm", rows.append, tenant_id="tn_1", provider=provider,
                             model=model, billing="own", prices=TABLE, **kw)  # type: ignore[arg-type]

    rec = record("gpt-4o-mini")
    rec.finish(200, Usage(10, 5, 15))
    assert rec.cost_nanos == rows[-1].cost_nanos == 4_500
    record("gpt-4o").finish(200, Usage(10, 5, 15))
    assert rows[-1].cost_nanos is None                                      # unpriced: None, never 0
    record("gpt-4o", provider="").finish(404)
    assert rows[-1].cost_nanos == 0                                         # never routed: nothing sent
    hosted = record("gpt-4o-mini")
    hosted.billing = "hosted"
    hosted.finish(200, Usage(1000, 0, 1000))
    assert rows[-1].cost_nanos == 150_000 and rows[-1].billing == "hosted"  # a trial call is priced too
    estimated = record("gpt-4o-mini", request=ChatRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "x" * 40}]}))
    estimated.finish(200, None, {"choices": [{"message": {"content": "y" * 20}}]})
    assert (rows[-1].estimated, rows[-1].cost_nanos) == (True, 10 * 150 + 5 * 600)
    upload = TranscriptionRequest.model_validate({"model": "whisper-1", "file": wav(30.0), "response_format": "text"})
    audio = record("whisper-1", request=upload)
    audio.finish(200, None, TranscriptionResult(b"the words\n", "text/plain"))
    assert rows[-1].cost_nanos == 3_000_000                                 # half a minute at $0.006
    RequestRecord("req", "chat.completions", "llm", rows.append, tenant_id="tn_1", provider="openai",
                  model="gpt-4o-mini").finish(200, Usage(1, 1, 2))
    assert rows[-1].cost_nanos is None                                      # no table at all: unpriced


def test_dollars_for_people_and_the_api() -> None:
    assert usd(4_500) == 0.0000045 and usd(None) is None and usd(150_000_000) == 0.15
    assert format_usd(4_500) == "$0.0000045" and format_usd(50 * 10**9) == "$50.00"
    assert format_usd(12_345_678_900) == "$12.35" and format_usd(0) == "$0"
    shown = listing(TABLE)
    assert [p["id"] for p in shown] == ["openai/dall-e", "openai/gpt-4o-mini", "openai/text-embedding-3-small",
                                        "openai/whisper-1"]
    assert shown[1] == {"id": "openai/gpt-4o-mini", "object": "model.price", "provider": "openai",
                        "model": "gpt-4o-mini", "input": 0.15, "output": 0.6, "per_call": None,
                        "per_audio_minute": None}
