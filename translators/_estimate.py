"""The one token estimator, for vendors that count nothing (or not everything).

OpenAI's rule of thumb, a token per four characters, holds for English and code but
counts Chinese and Japanese four times too low: there a character is about a token. So
CJK characters count one each, everything else a quarter. Vendors whose usage is built
from these numbers say so where their shape allows (`"estimated": true`).
"""

from __future__ import annotations

import re

from translators.types import Usage

__all__ = ["TokenTally", "estimate_tokens", "estimated_usage"]

_CJK = re.compile("[\u2e80-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af\uff00-\uffef]")


def _counts(text: str) -> tuple[int, int]:
    cjk = len(_CJK.findall(text)) if not text.isascii() else 0
    return cjk, len(text) - cjk


def estimate_tokens(text: str) -> int:
    cjk, other = _counts(text)
    return cjk + (other + 3) // 4


def estimated_usage(prompt: str | int, completion: str | int) -> Usage:
    """Either side may be a count already known (or estimated)."""
    p = prompt if isinstance(prompt, int) else estimate_tokens(prompt)
    c = completion if isinstance(completion, int) else estimate_tokens(completion)
    return Usage(p, c, p + c)


class TokenTally:
    """The estimate of a text that arrives in pieces (a stream), equal to the estimate of
    the whole text however it was cut."""

    __slots__ = ("_cjk", "_other")

    def __init__(self) -> None:
        self._cjk = 0
        self._other = 0

    def add(self, piece: str) -> None:
        cjk, other = _counts(piece)
        self._cjk += cjk
        self._other += other

    @property
    def tokens(self) -> int:
        return self._cjk + (self._other + 3) // 4

    @property
    def empty(self) -> bool:
        return not (self._cjk or self._other)
