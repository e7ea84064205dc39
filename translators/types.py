"""OpenAI's shapes, the common language between the gateway and every translator.

Requests are pydantic models (they are the edge where client input is checked) with
`extra="allow"`, so parameters we do not model still reach OpenAI-compatible
upstreams. Each request keeps the client's original JSON object (`raw`): the
pass-through translators forward it with one key changed instead of re-serialising
the model. Responses are plain dicts in OpenAI's shape (they are built on the hot
path and validated against OpenAI's schemas in the tests).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal, Self

import orjson
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

JSONObject = dict[str, Any]


class ModelType(str, enum.Enum):
    LLM = "llm"
    TEXT_EMBEDDING = "text-embedding"
    SPEECH2TEXT = "speech2text"


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class _Request(_Open):
    model: Annotated[str, Field(min_length=1, max_length=256)]
    # A plain default, not default_factory: pydantic inspects a factory's signature on
    # every instance, which the benchmark measured at 8% of a request's CPU.
    _raw: JSONObject | None = PrivateAttr(default=None)
    # JSON bodies are checked strictly (no "yes" -> True, no "0.5" -> 0.5): pass-through
    # translators forward the client's own JSON, so a value the gateway would coerce must
    # be refused here, not read one way by us (e.g. as `stream: true`) and another upstream.
    strict_parse: ClassVar[bool] = True

    @classmethod
    def parse(cls, raw: JSONObject) -> Self:
        obj = cls.model_validate(raw, strict=cls.strict_parse)
        obj._raw = raw
        return obj

    @property
    def raw(self) -> JSONObject:
        return self._raw if self._raw is not None else {}

    def raw_with(self, **changes: Any) -> JSONObject:
        """The client's JSON with some keys replaced (a shallow copy: the original stays intact)."""
        body = dict(self.raw)
        body.update(changes)
        return body


class ImageURL(_Open):
    url: str
    detail: str | None = None


class ContentPart(_Open):
    type: str
    text: str | None = None
    image_url: ImageURL | None = None


class FunctionCall(_Open):
    name: str
    arguments: str = ""


class ToolCall(_Open):
    id: str
    type: str = "function"
    function: FunctionCall


class Message(_Open):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None


class StreamOptions(_Open):
    include_usage: bool = False


class FunctionDef(_Open):
    name: str
    description: str | None = None
    parameters: JSONObject | None = None


class Tool(_Open):
    type: str = "function"
    function: FunctionDef


class ChatRequest(_Request):
    messages: Annotated[list[Message], Field(min_length=1)]
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    n: Annotated[int, Field(ge=1, le=128)] | None = None
    stop: str | list[str] | None = None
    tools: list[Tool] | None = None
    tool_choice: str | JSONObject | None = None
    parallel_tool_calls: bool | None = None
    user: str | None = None
    # Read by some translators from `raw`; typed here so that a wrong type is a 400 naming
    # the field at the edge, not a TypeError inside a translator (`modalities: 1`).
    modalities: list[str] | None = None
    audio: JSONObject | None = None
    response_format: JSONObject | None = None
    logprobs: bool | None = None
    top_logprobs: Annotated[int, Field(ge=0)] | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    functions: list[JSONObject] | None = None
    function_call: str | JSONObject | None = None

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage

    @property
    def token_limit(self) -> int | None:
        """`max_completion_tokens` wins over the deprecated `max_tokens`, as OpenAI says."""
        return self.max_completion_tokens or self.max_tokens


TokenArray = list[int]
PromptInput = str | list[str] | TokenArray | list[TokenArray]


class CompletionRequest(_Request):
    prompt: PromptInput = "<|endoftext|>"
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: Annotated[int, Field(ge=0)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    n: Annotated[int, Field(ge=1, le=128)] | None = None
    stop: str | list[str] | None = None
    suffix: str | None = None
    echo: bool | None = None
    user: str | None = None
    logprobs: Annotated[int, Field(ge=0)] | None = None  # an int here, unlike chat's bool
    best_of: Annotated[int, Field(ge=0)] | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage


class EmbeddingRequest(_Request):
    input: Annotated[str | list[str] | TokenArray | list[TokenArray], Field(min_length=1)]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Annotated[int, Field(ge=1)] | None = None
    user: str | None = None


TranscriptionFormat = Literal["json", "text", "srt", "vtt", "verbose_json"]


class TranscriptionRequest(_Request):
    """Built from a multipart form; `file` holds the raw upload."""

    strict_parse: ClassVar[bool] = False  # form fields arrive as text ("0.2")

    file: bytes
    filename: str = "audio"
    content_type: str = "application/octet-stream"
    language: str | None = None
    prompt: str | None = None
    temperature: Annotated[float, Field(ge=0, le=1)] | None = None
    response_format: TranscriptionFormat = "json"
    timestamp_granularities: list[Literal["word", "segment"]] | None = None


# No single request uses more tokens than this; a vendor count above it is nonsense (and
# 10**19 does not even fit the database's 64-bit integers), so counts are clamped to it.
MAX_TOKEN_COUNT = 2**31 - 1


def token_count(value: Any) -> int:
    """A vendor's token count as a sane int: 0 for what is not a number (or is negative),
    whole numbers from floats, at most MAX_TOKEN_COUNT."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    if isinstance(value, float) and not math.isfinite(value):
        return 0
    return min(max(int(value), 0), MAX_TOKEN_COUNT)


@dataclass(slots=True)
class Usage:
    """Token counts. Built from vendor replies by every translator, so the counts are
    checked here, once, whoever built it: usage rows must never hold a value the
    database cannot store or a client cannot read."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    def __post_init__(self) -> None:
        self.prompt_tokens = token_count(self.prompt_tokens)
        self.completion_tokens = token_count(self.completion_tokens)
        self.total_tokens = token_count(self.total_tokens)

    @classmethod
    def from_openai(cls, data: Any) -> Usage | None:
        if not isinstance(data, dict):
            return None
        prompt = token_count(data.get("prompt_tokens"))
        completion = token_count(data.get("completion_tokens"))
        return cls(prompt, completion, token_count(data.get("total_tokens")) or prompt + completion)

    def as_dict(self) -> JSONObject:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.total_tokens}


@dataclass(slots=True)
class StreamChunk:
    """One OpenAI chunk, already JSON-encoded so the proxy only frames it.

    `usage` is set on the usage-only chunk (`choices: []`) a translator yields last
    when it knows the totals; the proxy forwards that chunk only if the client asked
    for `include_usage`, but reads the totals either way.

    `event` is set only by a native relay (`translators/_stream.py` `relay_sse`): `data` is
    then one event of the vendor's own stream, passed on as it came, and `event` its name.
    """

    data: bytes
    usage: Usage | None = None
    event: str | None = None

    @classmethod
    def of(cls, chunk: JSONObject, usage: Usage | None = None) -> StreamChunk:
        return cls(orjson.dumps(chunk), usage)


@dataclass(slots=True, frozen=True)
class TranscriptionResult:
    content: bytes
    media_type: str
