"""The provider registry: one explicit table from provider name to its translator.

Routing, the admin API and the CLI look providers up here; nothing else in the
code base branches on a provider's name. Adding a vendor = one module + one line.
"""

from __future__ import annotations

from types import MappingProxyType

from translators.anthropic import AnthropicTranslator
from translators.azure_openai import AzureOpenAITranslator
from translators.base import CallContext, Translator
from translators.chatglm import ChatGLMTranslator
from translators.ernie import ErnieTranslator
from translators.huggingface import HuggingFaceTranslator
from translators.minimax import MinimaxTranslator
from translators.openai import OpenAITranslator
from translators.qwen import QwenTranslator
from translators.replicate import ReplicateTranslator
from translators.spark import SparkTranslator
from translators.zhipu import ZhipuTranslator

REGISTRY: MappingProxyType[str, Translator] = MappingProxyType({
    t.name: t for t in (
        OpenAITranslator(),
        AnthropicTranslator(),
        AzureOpenAITranslator(),
        HuggingFaceTranslator(),
        ReplicateTranslator(),
        SparkTranslator(),
        ErnieTranslator(),
        QwenTranslator(),
        MinimaxTranslator(),
        ChatGLMTranslator(),
        ZhipuTranslator(),
    )
})


def get_translator(provider: str) -> Translator | None:
    return REGISTRY.get(provider)


__all__ = ["REGISTRY", "CallContext", "Translator", "get_translator"]
