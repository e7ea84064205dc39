"""Helpers shared by the hosted-model providers (Hugging Face, Replicate), whose models take
one text prompt, report few or no token counts and answer speech with plain text.

- The request's deadline: `CallContext` carries none, so a call's deadline is its start
  plus the upstream client's `total` timeout (`upstream.total_timeout`, the limit of one
  whole non-streamed exchange). Every loop of these providers (Replicate's polling,
  Hugging Face's wait for a loading model) stops at it.
- The dialogue template (`dialogue_prompt`), for models that take a prompt instead of
  messages: every turn is one block `User: <text>` / `Assistant: <text>` (the system
  prompt, when the vendor has no field for it, a first block `System: <text>`), blocks are
  separated by a blank line, and the prompt ends with `Assistant:` for the model to go on::

      System: Be brief.

      User: Hi

      Assistant: Hello!

      User: Who are you?

      Assistant:

  Only text is accepted: image parts, tool calls and tool results are refused with a 400
  naming the field.
- Token estimates are `translators/_estimate.py`'s, used only where the vendor reported no count.
- Transcriptions in OpenAI's formats from timestamped segments: srt, vtt and verbose_json
  need timestamps; without them the answer is a 400 that names `response_format`.
"""

from __future__ import annotations

import mimetypes
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from translators._refusals import (
    refuse_choices_and_logprobs,
    refuse_deprecated_functions,
    refuse_response_format,
    text_only,
)
from translators.errors import ApiError, UpstreamError, bad_request, unsupported
from translators.types import (
    ChatRequest,
    Message,
    TranscriptionRequest,
    TranscriptionResult,
)

__all__ = ["Segment", "audio_content_type", "check_transcription", "deadline_of", "dialogue_prompt",
           "needs_timestamps", "refuse_chat_features", "remaining", "render_transcription", "split_system",
           "stop_list", "timed_out"]


# -- deadlines ---------------------------------------------------------------------------------------


def deadline_of(ctx: Any) -> float:
    """`time.monotonic()` value by which this call must be over (see the module docstring)."""
    return time.monotonic() + float(ctx.http.timeouts.total)


def remaining(deadline: float) -> float:
    return deadline - time.monotonic()


def timed_out(provider: str, what: str) -> ApiError:
    return UpstreamError(504, f"{provider} did not finish in time: {what}", "server_error", "upstream_timeout")


# -- prompts -----------------------------------------------------------------------------------------


def refuse_chat_features(req: ChatRequest, provider: str) -> None:
    """400 for what changes an answer's meaning and a prompt-only model cannot honour."""
    refuse_choices_and_logprobs(req, provider)
    if req.tools:
        raise unsupported(provider, "tools with this model", "tools")
    if req.tool_choice not in (None, "none", "auto"):
        raise unsupported(provider, "tools with this model", "tool_choice")
    refuse_response_format(req, provider, "response_format (JSON mode) with this model")
    refuse_deprecated_functions(req, provider, "'{key}' with this model", ("functions", "function_call", "audio"))


def split_system(messages: Sequence[Message], provider: str) -> tuple[str | None, list[tuple[str, str]]]:
    """(system text or None, [(role, text)] of the user/assistant turns), text only."""
    system: list[str] = []
    turns: list[tuple[str, str]] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if message.role in ("tool", "function") or message.tool_calls:
            raise unsupported(provider, "tool calls and tool results with this model", f"{where}.role")
        text = text_only(message.content, where, provider, "'{type}' content parts (text only)")
        if message.role in ("system", "developer"):
            if text:
                system.append(text)
        else:
            turns.append((message.role, text))
    if not turns:
        raise bad_request(f"provider '{provider}' needs at least one user message", "messages")
    return ("\n\n".join(system) or None), turns


_LABELS = {"user": "User", "assistant": "Assistant", "system": "System"}


def dialogue_prompt(turns: Sequence[tuple[str, str]], system: str | None = None) -> str:
    """The documented template: `Role: text` blocks, a blank line apart, ending in `Assistant:`."""
    blocks = [f"System: {system}"] if system else []
    blocks.extend(f"{_LABELS[role]}: {text}" for role, text in turns)
    blocks.append("Assistant:")
    return "\n\n".join(blocks)


def stop_list(stop: str | list[str] | None) -> list[str]:
    items = [stop] if isinstance(stop, str) else list(stop or ())
    return [s for s in items if s]


# -- transcriptions ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Segment:
    start: float
    end: float
    text: str


def _clock(seconds: float, sep: str) -> str:
    millis = max(0, int(round(seconds * 1000)))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{sep}{millis:03d}"


def _cues(segments: Sequence[Segment], sep: str) -> list[str]:
    return [f"{_clock(s.start, sep)} --> {_clock(s.end, sep)}\n{s.text.strip()}\n" for s in segments]


def audio_content_type(req: TranscriptionRequest) -> str:
    """The upload's type; when the client sent none, one guessed from the file name."""
    if req.content_type.startswith(("audio/", "video/")):
        return req.content_type
    guessed, _ = mimetypes.guess_type(req.filename)
    return guessed if guessed and guessed.startswith(("audio/", "video/")) else req.content_type


def needs_timestamps(response_format: str) -> bool:
    return response_format in ("srt", "vtt", "verbose_json")


def render_transcription(text: str, segments: Sequence[Segment] | None, response_format: str,
                         provider: str, language: str | None = None) -> TranscriptionResult:
    """`text` (and its segments, when the model gave timestamps) in OpenAI's `response_format`."""
    if response_format == "text":
        return TranscriptionResult((text + "\n").encode(), "text/plain; charset=utf-8")
    if response_format == "json":
        return TranscriptionResult(orjson.dumps({"text": text}), "application/json")
    if not segments:
        raise bad_request(f"this {provider} model returned no timestamps, so response_format "
                          f"'{response_format}' cannot be produced; use 'json' or 'text'", "response_format",
                          "unsupported_value")
    if response_format == "srt":
        body = "\n".join(f"{i}\n{cue}" for i, cue in enumerate(_cues(segments, ","), 1))
        return TranscriptionResult(body.encode(), "text/plain; charset=utf-8")
    if response_format == "vtt":
        body = "WEBVTT\n\n" + "\n".join(_cues(segments, "."))
        return TranscriptionResult(body.encode(), "text/plain; charset=utf-8")
    verbose = {
        "task": "transcribe", "language": language or "unknown", "duration": max(s.end for s in segments),
        "text": text,
        "segments": [{"id": i, "seek": 0, "start": s.start, "end": s.end, "text": s.text, "tokens": [],
                      "temperature": 0.0, "avg_logprob": 0.0, "compression_ratio": 0.0, "no_speech_prob": 0.0}
                     for i, s in enumerate(segments)],
    }
    return TranscriptionResult(orjson.dumps(verbose), "application/json")


def check_transcription(response_format: str, granularities: Sequence[str] | None, provider: str) -> None:
    if "word" in (granularities or ()):
        raise unsupported(provider, "word timestamps", "timestamp_granularities")
    if granularities and response_format != "verbose_json":
        raise bad_request("timestamp_granularities requires response_format=verbose_json",
                          "timestamp_granularities")
