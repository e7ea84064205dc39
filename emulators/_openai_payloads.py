"""Embeddings and audio-transcription payloads of the fake OpenAI vendor.

Shapes follow ../shared/vendors/openai.md §5-6 and the recordings
(embeddings_response*.json, transcription_*.json).
"""

from __future__ import annotations

import base64
import hashlib
import io
import math
import struct
import wave
from typing import Any

from starlette.responses import PlainTextResponse, Response

from emulators._openai_wire import (
    OpenAIHTTPError,
    invalid_type,
    invalid_value,
    word_count,
)
from emulators._vendor_common import json_response

# -- embeddings -------------------------------------------------------------------------

DEFAULT_DIMENSIONS = 8
MAX_INPUTS = 2048
ENCODING_FORMATS = ("float", "base64")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def embedding_inputs(value: Any) -> list[str | list[int]]:
    """Normalise `input` (str | str[] | int[] | int[][]) to one item per embedding."""
    if value is None:
        raise OpenAIHTTPError(400, "Missing required parameter: 'input'.", param="input",
                              code="missing_required_parameter")
    if isinstance(value, str):
        items: list[Any] = [value]
    elif isinstance(value, list):
        if not value:
            raise OpenAIHTTPError(400, "'$.input' is invalid: empty array.", param="input",
                                  code="empty_array")
        if len(value) > MAX_INPUTS:
            raise OpenAIHTTPError(
                400, f"'$.input' is invalid: at most {MAX_INPUTS} inputs are allowed.",
                param="input")
        if all(_is_int(v) for v in value):
            items = [value]
        elif all(isinstance(v, str) for v in value):
            items = value
        elif all(isinstance(v, list) and v and all(_is_int(t) for t in v) for v in value):
            items = value
        else:
            raise invalid_type("input", "a string, an array of strings, an array of integers "
                               "or an array of integer arrays", value)
    else:
        raise invalid_type("input", "a string or an array", value)
    if any(isinstance(item, str) and not item for item in items):
        raise OpenAIHTTPError(400, "'$.input' is invalid: empty string.", param="input",
                              code="empty_string")
    return items


def input_tokens(item: str | list[int]) -> int:
    return word_count(item) if isinstance(item, str) else len(item)


def embedding_vector(item: str | list[int], dimensions: int) -> list[float]:
    """A deterministic unit vector derived from a hash of the input, float32-exact.

    Rounding through float32 makes the `float` answer and the decoded `base64` answer
    (numpy float32 -> Python float) compare equal bit for bit.
    """
    key = item.encode() if isinstance(item, str) else b"tokens:" + ",".join(map(str, item)).encode()
    raw: list[float] = []
    block = 0
    while len(raw) < dimensions:
        digest = hashlib.sha256(key + block.to_bytes(4, "little")).digest()
        raw.extend(int.from_bytes(digest[j:j + 4], "little") / 2**31 - 1.0 for j in range(0, 32, 4))
        block += 1
    raw = raw[:dimensions]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    packed = struct.pack(f"<{dimensions}f", *(x / norm for x in raw))
    return list(struct.unpack(f"<{dimensions}f", packed))


def encode_base64(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def embeddings_response(body: dict[str, Any]) -> dict[str, Any]:
    model = body.get("model")
    if model is None:
        raise OpenAIHTTPError(400, "Missing required parameter: 'model'.", param="model",
                              code="missing_required_parameter")
    if not isinstance(model, str):
        raise invalid_type("model", "a string", model)
    items = embedding_inputs(body.get("input"))
    encoding = body.get("encoding_format", "float")
    if encoding not in ENCODING_FORMATS:
        raise invalid_value("encoding_format", encoding, ENCODING_FORMATS)
    dimensions = body.get("dimensions")
    if dimensions is None:
        dimensions = DEFAULT_DIMENSIONS
    elif not _is_int(dimensions) or dimensions < 1:
        raise OpenAIHTTPError(400, f"Invalid value for 'dimensions' = {dimensions}. "
                              "Must be an integer greater than or equal to 1.",
                              param="dimensions", code="invalid_value")
    elif "ada-002" in model:
        raise OpenAIHTTPError(400, "This model does not support specifying dimensions.",
                              param="dimensions")
    data = []
    for index, item in enumerate(items):
        vector = embedding_vector(item, dimensions)
        data.append({
            "object": "embedding",
            "index": index,
            "embedding": encode_base64(vector) if encoding == "base64" else vector,
        })
    tokens = sum(input_tokens(item) for item in items)
    return {"object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


# -- transcriptions ---------------------------------------------------------------------

AUDIO_EXTENSIONS = ("flac", "m4a", "mp3", "mp4", "mpeg", "mpga", "oga", "ogg", "wav", "webm")
RESPONSE_FORMATS = ("json", "text", "srt", "verbose_json", "vtt")
GRANULARITIES = ("word", "segment")
LANGUAGE_NAMES = {
    "en": "english", "de": "german", "fr": "french", "es": "spanish", "it": "italian",
    "pt": "portuguese", "nl": "dutch", "ru": "russian", "zh": "chinese", "ja": "japanese",
    "ko": "korean",
}


def wav_duration(data: bytes) -> float | None:
    try:
        with wave.open(io.BytesIO(data), "rb") as wav:
            return wav.getnframes() / float(wav.getframerate())
    except (wave.Error, EOFError, ZeroDivisionError):
        return None


def _timestamp(seconds: float, sep: str) -> str:
    millis = int(round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{sep}{millis:03d}"


def check_transcription_request(
    *, filename: str | None, model: str | None, response_format: str,
    granularities: list[str], temperature: str | None,
) -> None:
    if not model:
        raise OpenAIHTTPError(400, "Missing required parameter: 'model'.", param="model",
                              code="missing_required_parameter")
    extension = (filename or "").rsplit(".", 1)[-1].lower() if "." in (filename or "") else ""
    if extension not in AUDIO_EXTENSIONS:
        raise OpenAIHTTPError(
            400, f"Invalid file format. Supported formats: {list(AUDIO_EXTENSIONS)}",
            param="file", code="invalid_value")
    if response_format not in RESPONSE_FORMATS:
        raise invalid_value("response_format", response_format, RESPONSE_FORMATS)
    if "gpt-4o" in model and response_format != "json":
        raise OpenAIHTTPError(
            400, f"response_format '{response_format}' is not compatible with model "
            f"'{model}'. Use 'json' instead.", param="response_format",
            code="unsupported_value")
    for granularity in granularities:
        if granularity not in GRANULARITIES:
            raise invalid_value("timestamp_granularities", granularity, GRANULARITIES)
    if granularities and response_format != "verbose_json":
        raise OpenAIHTTPError(
            400, "timestamp_granularities requires response_format=verbose_json.",
            param="timestamp_granularities")
    if temperature is not None:
        try:
            value = float(temperature)
        except ValueError:
            raise invalid_type("temperature", "a decimal", temperature) from None
        if not 0.0 <= value <= 1.0:
            raise OpenAIHTTPError(400, f"Invalid 'temperature': {value}. Expected a value "
                                  "between 0 and 1.", param="temperature",
                                  code="invalid_value")


def transcription_response(
    *, text: str, model: str, audio: bytes, language: str | None,
    response_format: str, granularities: list[str],
) -> Response:
    """Render the transcript `text` in `response_format` (already validated)."""
    duration = wav_duration(audio) or max(1.0, 0.4 * word_count(text))
    if response_format == "text":
        return PlainTextResponse(text + "\n")
    if response_format == "srt":
        return PlainTextResponse(f"1\n{_timestamp(0, ',')} --> {_timestamp(duration, ',')}\n"
                                 f"{text}\n\n")
    if response_format == "vtt":
        return PlainTextResponse(f"WEBVTT\n\n{_timestamp(0, '.')} --> "
                                 f"{_timestamp(duration, '.')}\n{text}\n\n")
    if response_format == "json":
        if "gpt-4o" in model:
            audio_tokens = max(1, int(duration * 10))
            out = word_count(text)
            usage: dict[str, Any] = {
                "type": "tokens", "input_tokens": audio_tokens,
                "input_token_details": {"text_tokens": 0, "audio_tokens": audio_tokens},
                "output_tokens": out, "total_tokens": audio_tokens + out}
        else:
            usage = {"type": "duration", "seconds": math.ceil(duration)}
        return json_response({"text": text, "usage": usage})
    body: dict[str, Any] = {
        "task": "transcribe",
        "language": LANGUAGE_NAMES.get((language or "en").lower(), language or "english"),
        "duration": duration,
        "text": text,
    }
    words = text.split()
    if "segment" in granularities or not granularities:
        body["segments"] = [{
            "id": 0, "seek": 0, "start": 0.0, "end": round(duration, 2), "text": " " + text,
            "tokens": [50364, *(1000 + i for i in range(len(words))), 50364 + int(duration * 50)],
            "temperature": 0.0, "avg_logprob": -0.25, "compression_ratio": 1.0,
            "no_speech_prob": 0.01,
        }]
    if "word" in granularities:
        step = duration / max(1, len(words))
        body["words"] = [{"word": w.strip(".,!?;:"), "start": round(i * step, 2),
                          "end": round((i + 1) * step, 2)} for i, w in enumerate(words)]
    body["usage"] = {"type": "duration", "seconds": math.ceil(duration)}
    return json_response(body)
