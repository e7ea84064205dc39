"""Every emulator, as data: how to build it, where a client points, which credential it
takes, how the gateway's provider is configured against it, and the models the demo
tenant gets. `modelport emulate` and `serve --demo` read this table and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.types import ASGIApp

from emulators import (
    anthropic,
    azure_openai,
    chatglm,
    compatibles,
    ernie,
    huggingface,
    minimax,
    openai,
    qwen,
    replicate,
    spark,
    zhipu,
)
from emulators._faults_anthropic import anthropic_faults
from emulators._faults_azure import azure_faults
from emulators._faults_huggingface import huggingface_faults
from emulators._faults_openai import openai_faults
from emulators._faults_replicate import replicate_faults
from emulators._faults_spark import spark_faults, spark_socket_faults
from emulators.inject import FaultAnswer, WebSocketFaultAnswer

__all__ = ["DEMO_DEFAULTS", "EMULATORS", "DemoModel", "Emulator"]

LLM, EMBEDDING, SPEECH = "llm", "text-embedding", "speech2text"


@dataclass(frozen=True)
class DemoModel:
    model: str
    type: str
    fields: dict[str, str] = field(default_factory=dict)  # per-model credential fields (hosted providers)


@dataclass(frozen=True)
class Emulator:
    name: str                          # `modelport emulate NAME`, and the path prefix under `all`
    provider: str                      # the gateway provider it plays
    title: str
    make: Callable[[], tuple[Any, ASGIApp]]   # a fresh (state, app)
    client_path: str                   # appended to the served root: the SDK's base_url
    credential: dict[str, str]         # what a client (and the gateway) authenticates with
    # The gateway credential's fields for a root URL (`base_url` and the like), beside `credential`.
    gateway_fields: Callable[[str], dict[str, str]]
    default_model: str                 # what a magic `fault-...` model becomes for reset and slow
    demo: tuple[DemoModel, ...]        # the demo tenant's models of this provider
    per_model: bool = False            # hosted models: `models add` one by one, credential on each
    faults: FaultAnswer = openai_faults
    websocket_faults: WebSocketFaultAnswer | None = None
    note: str = ""                     # what else a client needs to know, printed by `emulate`
    gateway_omit: frozenset[str] = frozenset()  # credential fields the gateway is not given

    def gateway_credential(self, root: str) -> dict[str, str]:
        """The gateway provider's credential for the emulator served at `root`."""
        fields = {**self.credential, **self.gateway_fields(root)}
        return {k: v for k, v in fields.items() if k not in self.gateway_omit}


def _pair(state: Any, build: Callable[[Any], ASGIApp]) -> tuple[Any, ASGIApp]:
    return state, build(state)


def _openai_like(name: str, provider: str, title: str, state: Callable[[], Any], key: str,
                 models: tuple[DemoModel, ...], default_model: str,
                 faults: FaultAnswer = openai_faults) -> Emulator:
    return Emulator(name, provider, title, lambda: _pair(state(), openai.create_app), "/v1", {"api_key": key},
                    lambda root: {"base_url": root + "/v1"}, default_model, models, faults=faults)


_AZURE_FIELDS = {"api_key": azure_openai.DEFAULT_API_KEY, "api_version": azure_openai.API_VERSION}

EMULATORS: dict[str, Emulator] = {e.name: e for e in (
    _openai_like("openai", "openai", "OpenAI", openai.FakeOpenAIState, openai.DEFAULT_API_KEY,
                 (DemoModel("gpt-4o-mini", LLM), DemoModel("text-embedding-3-small", EMBEDDING),
                  DemoModel("whisper-1", SPEECH)), "gpt-4o-mini"),
    Emulator("azure_openai", "azure_openai", "Azure OpenAI", lambda: _pair(azure_openai.FakeAzureState(),
                                                                          azure_openai.create_app),
             "", {"api_key": azure_openai.DEFAULT_API_KEY}, lambda root: {"endpoint": root}, "prod-chat",
             (DemoModel("prod-chat", LLM, _AZURE_FIELDS), DemoModel("prod-embed", EMBEDDING, _AZURE_FIELDS),
              DemoModel("prod-whisper", SPEECH, _AZURE_FIELDS)), per_model=True, faults=azure_faults,
             note=f"deployments: {', '.join(azure_openai.DEFAULT_DEPLOYMENTS)}; api-version {azure_openai.API_VERSION}"),
    # any_dated_version: each SDK release sends its own anthropic-version.
    Emulator("anthropic", "anthropic", "Anthropic",
             lambda: _pair(anthropic.FakeAnthropicState(any_dated_version=True), anthropic.create_app),
             "", {"api_key": anthropic.DEFAULT_API_KEY}, lambda root: {"base_url": root}, "claude-sonnet-4-5",
             (DemoModel("claude-sonnet-4-5", LLM),), faults=anthropic_faults),
    Emulator("huggingface", "huggingface", "Hugging Face", lambda: _pair(huggingface.FakeHFState(),
                                                                        huggingface.create_app),
             "", {"api_token": huggingface.DEFAULT_TOKEN}, lambda root: {"base_url": root},
             "meta-llama/Meta-Llama-3-8B-Instruct",
             (DemoModel("meta-llama/Meta-Llama-3-8B-Instruct", LLM, {"api_token": huggingface.DEFAULT_TOKEN}),
              DemoModel("sentence-transformers/all-MiniLM-L6-v2", EMBEDDING, {"api_token": huggingface.DEFAULT_TOKEN}),
              DemoModel("openai/whisper-large-v3", SPEECH, {"api_token": huggingface.DEFAULT_TOKEN})),
             per_model=True, faults=huggingface_faults, note=f"models: {', '.join(huggingface.DEFAULT_MODELS)}"),
    Emulator("replicate", "replicate", "Replicate", lambda: _pair(replicate.FakeReplicateState(), replicate.create_app),
             "", {"api_token": replicate.DEFAULT_TOKEN}, lambda root: {"base_url": root + "/v1"},
             "meta/meta-llama-3-8b-instruct",
             (DemoModel("meta/meta-llama-3-8b-instruct", LLM, {"api_token": replicate.DEFAULT_TOKEN}),
              DemoModel("openai/whisper", SPEECH, {"api_token": replicate.DEFAULT_TOKEN})),
             per_model=True, faults=replicate_faults, note=f"models: {', '.join(replicate.DEFAULT_MODELS)}"),
    Emulator("spark", "spark", "iFlytek Spark", lambda: _pair(spark.FakeSparkState(), spark.create_app),
             "/v1", {"app_id": spark.APP_ID, "api_key": spark.API_KEY, "api_secret": spark.API_SECRET,
                     "api_password": spark.API_PASSWORD},
             # generalv3.5: a model the HTTP API knows, the only one with the model in the body
             lambda root: {"base_url": root.replace("http://", "ws://", 1)}, "generalv3.5",
             (DemoModel("spark-max", LLM),), gateway_omit=frozenset({"api_password"}),  # the websocket API
             faults=spark_faults, websocket_faults=spark_socket_faults,
             note="websocket API at ws://ROOT/v3.5/chat (signed with app_id, api_key, api_secret); "
                  "HTTP API at ROOT/v1 with api_password as the bearer"),
    Emulator("ernie", "ernie", "Baidu ERNIE", lambda: _pair(ernie.FakeErnieState(), ernie.create_app),
             "", {"api_key": ernie.API_KEY, "secret_key": ernie.SECRET_KEY}, lambda root: {"base_url": root},
             "ernie-4.0", (DemoModel("ernie-4.0", LLM), DemoModel("embedding-v1", EMBEDDING)),
             faults=ernie.ernie_faults,
             note="an access token from ROOT/oauth/2.0/token, then ROOT" + ernie.WORKSHOP + "/chat/..."),
    Emulator("qwen", "qwen", "Alibaba Qwen (DashScope)", lambda: _pair(qwen.FakeQwenState(), qwen.create_app),
             "/api/v1", {"api_key": qwen.DEFAULT_API_KEY}, lambda root: {"base_url": root + "/api/v1"}, "qwen-turbo",
             (DemoModel("qwen-turbo", LLM), DemoModel("text-embedding-v3", EMBEDDING)),
             faults=qwen.qwen_faults, note="dashscope SDK: dashscope.base_http_api_url = the base_url"),
    Emulator("minimax", "minimax", "MiniMax", lambda: _pair(minimax.FakeMinimaxState(), minimax.create_app),
             "/v1", {"api_key": minimax.DEFAULT_API_KEY, "group_id": minimax.DEFAULT_GROUP_ID},
             lambda root: {"base_url": root + "/v1"}, "abab6.5s-chat",
             (DemoModel("abab6.5s-chat", LLM), DemoModel("embo-01", EMBEDDING)),
             faults=minimax.minimax_faults, note="GroupId goes in the query string"),
    Emulator("chatglm", "chatglm", "ChatGLM (self-hosted openai_api.py)",
             lambda: _pair(chatglm.FakeChatGLMState(), lambda s: chatglm.create_app(s, "openai")),
             "/v1", {}, lambda root: {"base_url": root, "api": "openai"}, "chatglm3-6b",
             (DemoModel("chatglm3-6b", LLM),), faults=chatglm.chatglm_faults, note="no key: a self-hosted server"),
    Emulator("zhipu", "zhipu", "Zhipu AI", lambda: _pair(zhipu.FakeZhipuState(accept_raw_key=True), zhipu.create_app),
             "/api/paas/v4", {"api_key": zhipu.DEFAULT_API_KEY}, lambda root: {"base_url": root + "/api/paas/v4"},
             "glm-4-flash", (DemoModel("glm-4-flash", LLM), DemoModel("embedding-3", EMBEDDING)),
             faults=zhipu.zhipu_faults,
             note="the api_key is ID.SECRET: a client signs a short-lived JWT with it, or sends it as it is"),
    _openai_like("deepseek", "deepseek", "DeepSeek", compatibles.FakeDeepSeekState, compatibles.DEEPSEEK_KEY,
                 (DemoModel("deepseek-chat", LLM),), "deepseek-chat", compatibles.deepseek_faults),
    Emulator("openai_compatible", "openai_compatible", "An OpenAI-compatible server (vLLM, Ollama...)",
             lambda: _pair(openai.FakeOpenAIState(), openai.create_app), "/v1", {"api_key": openai.DEFAULT_API_KEY},
             lambda root: {"base_url": root + "/v1"}, "gpt-4o-mini",
             tuple(DemoModel(m, t, {"api_key": openai.DEFAULT_API_KEY}) for m, t in (
                 ("gpt-4o-mini", LLM), ("text-embedding-3-small", EMBEDDING), ("whisper-1", SPEECH))),
             per_model=True),
    _openai_like("moonshot", "moonshot", "Moonshot (Kimi)", compatibles.FakeMoonshotState, compatibles.MOONSHOT_KEY,
                 (DemoModel("kimi-k2-turbo-preview", LLM),), "kimi-k2-turbo-preview", compatibles.moonshot_faults),
)}

# The demo tenant's default model of each type (`model: "default"`).
DEMO_DEFAULTS = {LLM: "openai/gpt-4o-mini", EMBEDDING: "openai/text-embedding-3-small", SPEECH: "openai/whisper-1"}
