"""Hugging Face wire payloads for the fake (emulators/huggingface.py): TGI's Messages API in
its current and 1.4.x shapes, `/generate` answers and `/generate_stream` token events,
feature-extraction arrays and speech-recognition answers. Shapes follow
../shared/vendors/huggingface.md and the recordings in ../shared/vendors/recordings/huggingface/.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson

from emulators._openai_payloads import embedding_vector
from emulators._openai_wire import argument_pieces, text_pieces, word_count

CURRENT, OLD = "current", "1.4.3"   # Messages API flavours of the fake TGI
FINGERPRINTS = {CURRENT: "3.0.1-sha-0f2daad", OLD: "1.4.3-sha-e6bb3ff"}
EOS = {"id": 2, "text": "</s>", "logprob": -0.01, "special": True}


def sse(obj: Any, space: bool = False) -> bytes:
    """One event as TGI writes it: `data:{json}` without a space after the colon."""
    return (b"data: " if space else b"data:") + orjson.dumps(obj) + b"\n\n"


DONE = b"data: [DONE]\n\n"


@dataclass
class Generation:
    """What the fake model generates for one request: pieces, finish reason, counts."""

    pieces: list[str]
    finish: str            # TGI's enum: length | eos_token | stop_sequence
    prompt_tokens: int

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def tokens(self) -> int:
        return len(self.pieces)


def generate(reply: str, prompt: str, limit: int | None, stop: list[str]) -> Generation:
    pieces, truncated = text_pieces(reply, limit)
    finish = "length" if truncated else "eos_token"
    for s in stop:
        text, cut = "", None
        for i, piece in enumerate(pieces):
            text += piece
            if s in text:
                cut = i + 1
                break
        if cut is not None:
            pieces, finish = pieces[:cut], "stop_sequence"
            break
    return Generation(pieces, finish, max(1, word_count(prompt)))


# -- Messages API ------------------------------------------------------------------------------------


def _chat_finish(flavour: str, finish: str) -> str:
    if flavour == OLD:
        return finish  # 1.4.x leaks TGI's own enum (eos_token)
    return "stop" if finish in ("eos_token", "stop_sequence") else finish


def usage(gen: Generation) -> dict[str, int]:
    return {"prompt_tokens": gen.prompt_tokens, "completion_tokens": gen.tokens,
            "total_tokens": gen.prompt_tokens + gen.tokens}


def chat_response(flavour: str, model: str, gen: Generation, tool: tuple[str, dict[str, Any]] | None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant"}
    finish = _chat_finish(flavour, gen.finish)
    if tool is not None:
        name, arguments = tool
        if flavour == OLD:  # recorded TGI 1.4.5: numeric id, arguments an object, no content
            call = {"id": 0, "type": "function", "function": {"description": None, "name": name,
                                                              "arguments": arguments}}
        else:
            call = {"id": "0", "type": "function", "function": {"description": None, "name": name,
                                                                "arguments": orjson.dumps(arguments).decode()}}
        message["tool_calls"] = [call]
    else:
        message["content"] = gen.text
    return {"id": "", "object": "text_completion" if flavour == OLD else "chat.completion",
            "created": int(time.time()), "model": model, "system_fingerprint": FINGERPRINTS[flavour],
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
            "usage": usage(gen)}


def chat_events(flavour: str, model: str, gen: Generation, tool: tuple[str, dict[str, Any]] | None,
                include_usage: bool) -> list[bytes]:
    """The stream's events; TGI 1.4.x repeats the role, says text_completion, sends no [DONE]."""
    head = {"id": "", "object": "text_completion" if flavour == OLD else "chat.completion.chunk",
            "created": int(time.time()), "model": model, "system_fingerprint": FINGERPRINTS[flavour]}

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        if flavour == OLD:
            delta = {"role": "assistant", **delta}
        return sse({**head, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
                    **extra})

    events = []
    if tool is not None:
        name, arguments = tool
        pieces = argument_pieces(orjson.dumps(arguments).decode())
        if flavour == OLD:  # tool_calls as one object, id empty, arguments in text pieces
            events += [chunk({"tool_calls": {"index": 0, "id": "", "type": "function",
                                             "function": {"description": None, "name": name, "arguments": p}}})
                       for p in pieces]
        else:
            events.append(chunk({"role": "assistant", "tool_calls": [
                {"index": 0, "id": "0", "type": "function", "function": {"name": name, "arguments": ""}}]}))
            events += [chunk({"tool_calls": [{"index": 0, "id": "", "type": "function",
                                              "function": {"name": None, "arguments": p}}]}) for p in pieces]
    else:
        for i, piece in enumerate(gen.pieces):
            delta = {"role": "assistant", "content": piece} if i == 0 else {"content": piece}
            events.append(chunk(delta))
    final: dict[str, Any] = {"usage": usage(gen)} if include_usage and flavour == CURRENT else {}
    events.append(chunk({}, _chat_finish(flavour, gen.finish), **final))
    if flavour == CURRENT:
        events.append(DONE)
    return events


# -- text generation ----------------------------------------------------------------------------------


def details(gen: Generation, with_input_length: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"finish_reason": gen.finish, "generated_tokens": gen.tokens + (gen.finish == "eos_token"),
                           "seed": None}
    if with_input_length:
        out["input_length"] = gen.prompt_tokens
    return out


def generate_response(gen: Generation, prompt: str, full_text: bool, with_details: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"generated_text": (prompt if full_text else "") + gen.text}
    if with_details:
        out["details"] = {**details(gen, False), "prefill": [],
                          "tokens": [{"id": 100 + i, "text": p, "logprob": -0.5, "special": False}
                                     for i, p in enumerate(gen.pieces)]}
    return out


def generate_events(gen: Generation, prompt: str, full_text: bool, with_details: bool,
                    with_input_length: bool) -> list[bytes]:
    tokens = [{"id": 100 + i, "text": p, "logprob": -0.5, "special": False} for i, p in enumerate(gen.pieces)]
    if gen.finish == "eos_token":
        tokens.append(EOS)
    events = []
    for i, token in enumerate(tokens, 1):
        last = i == len(tokens)
        events.append(sse({
            "index": i, "token": token, "top_tokens": None,
            "generated_text": ((prompt if full_text else "") + gen.text) if last else None,
            "details": details(gen, with_input_length) if last and with_details else None}))
    return events


# -- feature extraction ----------------------------------------------------------------------------------


def token_vectors(text: str, dim: int) -> list[list[float]]:
    """A plain transformers model's answer for one text: one vector per token, [CLS] and [SEP] included."""
    return [embedding_vector(t, dim) for t in ["[CLS]", *text.split(), "[SEP]"]]


def features(inputs: str | list[str], pooling: str, dim: int) -> Any:
    texts = [inputs] if isinstance(inputs, str) else inputs
    if pooling == "tokens":    # plain transformers: [input][token][dim], also for one string
        return [token_vectors(t, dim) for t in texts]
    vectors = [embedding_vector(t, dim) for t in texts]
    if pooling == "batch2d" or not isinstance(inputs, str):   # TEI: always [input][dim]
        return vectors
    return vectors[0]  # sentence-transformers, one string: 1-D


# -- speech recognition ------------------------------------------------------------------------------------


def asr_chunks(transcript: str, seconds_per_word: float = 0.4) -> list[dict[str, Any]]:
    words = transcript.split()
    chunks, t = [], 0.0
    for i in range(0, len(words), 3):
        group = words[i:i + 3]
        end = round(t + seconds_per_word * len(group), 2)
        chunks.append({"text": " " + " ".join(group), "timestamp": [round(t, 2), end]})
        t = end
    return chunks
