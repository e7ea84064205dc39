"""The provider registry: one explicit table from provider name to its translator.

Routing, the admin API and the CLI look providers up here; nothing else in the
code base branches on a provider's name. Adding a vendor = one module + one line.

`INBOUND` is the same for the APIs clients speak besides OpenAI's (translators/_inbound.py):
`proxy/inbound/` serves each at its path, without naming whose API it is.
"""

from __future__ import annotations

from types import MappingProxyType

from translators._compatible import CompatibleTranslator
from translators._inbound import InboundApi
from translators.anthropic import MESSAGES, AnthropicTranslator
from translators.azure_openai import SPEC as AZURE_OPENAI
from translators.base import CallContext, Translator
from translators.chatglm import ChatGLMTranslator
from translators.deepseek import SPEC as DEEPSEEK
from translators.ernie import ErnieTranslator
from translators.huggingface import HuggingFaceTranslator
from translators.minimax import SPEC as MINIMAX
from translators.moonshot import SPEC as MOONSHOT
from translators.openai import SPEC as OPENAI
from translators.openai_compatible import SPEC as OPENAI_COMPATIBLE
from translators.qwen import QwenTranslator
from translators.replicate import ReplicateTranslator
from translators.responses import RESPONSES
from translators.spark import SparkTranslator
from translators.zhipu import SPEC as ZHIPU

REGISTRY: MappingProxyType[str, Translator] = MappingProxyType({
    t.name: t for t in (
        CompatibleTranslator(OPENAI),
        AnthropicTranslator(),
        CompatibleTranslator(AZURE_OPENAI),
        HuggingFaceTranslator(),
        ReplicateTranslator(),
        SparkTranslator(),
        ErnieTranslator(),
        QwenTranslator(),
        CompatibleTranslator(MINIMAX),
        ChatGLMTranslator(),
        CompatibleTranslator(ZHIPU),
        CompatibleTranslator(DEEPSEEK),
        CompatibleTranslator(MOONSHOT),
        CompatibleTranslator(OPENAI_COMPATIBLE),
    )
})


INBOUND: MappingProxyType[str, InboundApi] = MappingProxyType({api.name: api for api in (MESSAGES, RESPONSES)})


def get_translator(provider: str) -> Translator | None:
    return REGISTRY.get(provider)


__all__ = ["INBOUND", "REGISTRY", "CallContext", "Translator", "get_translator"]
