"""JSON the gateway can carry: a nesting check that runs on the bytes, before parsing.

orjson re-encodes at most 254 levels (a pass-through body deeper than that fails on its
way upstream) and its parser recurses without a limit, so a megabyte of `[` crashes the
worker with a stack overflow, whoever sent it: a client's body, a tool call's
`arguments` string, or a tenant's self-hosted upstream. `too_deep` is cheap enough for
the hot path: a body with fewer opening brackets than the limit costs two `count`s.
"""

from __future__ import annotations

import re
from itertools import accumulate
from typing import Any

import orjson

__all__ = ["MAX_DEPTH", "TooDeep", "loads", "too_deep"]

MAX_DEPTH = 128
_PEEL = 4  # rounds of removing innermost `[]` / `{}` pairs before measuring what is left
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'"[]{}')
_STRING = re.compile(rb'"[^"]*"')
_RUN = re.compile(rb"[\[{]{%d}" % (MAX_DEPTH + 1))
_STEP = [0] * 256
_STEP[ord("[")] = _STEP[ord("{")] = 1
_STEP[ord("]")] = _STEP[ord("}")] = -1


def _depth(skeleton: bytes) -> int:
    return max(accumulate(map(_STEP.__getitem__, skeleton)), default=0)


def too_deep(body: bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether the JSON text nests arrays/objects more than `limit` levels deep (brackets
    inside strings do not count). Exact for valid JSON; for invalid JSON it is exact up to
    the point where a parser stops, which is all that matters for the parser's stack."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False  # a body cannot be deeper than its number of opening brackets
    if b"\\" in body:  # escaped backslashes first, so that `\\"` ends a string and `\"` does not
        body = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    skeleton = _STRING.sub(b"", body.translate(None, _NOT_STRUCTURE))
    # Removing innermost pairs lowers the depth by one or two per round and never raises
    # it: what is left bounds the depth from below, and from above with 2 per round.
    rest = skeleton
    for _ in range(_PEEL):
        rest = rest.replace(b"[]", b"").replace(b"{}", b"")
    if rest.count(b"[") + rest.count(b"{") + 2 * _PEEL <= limit:
        return False
    if _RUN.search(rest):
        return True  # the usual attack, `[[[[...`, without walking a megabyte bracket by bracket
    return _depth(skeleton) > limit


class TooDeep(orjson.JSONDecodeError):
    """JSON nested more than MAX_DEPTH levels deep. A JSONDecodeError, so that every place
    that parses an upstream body already treats it as the malformed JSON it is to us."""


def loads(data: bytes | str) -> Any:
    """orjson.loads behind the nesting check (raises TooDeep, or orjson.JSONDecodeError)."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if too_deep(raw):
        raise TooDeep(f"JSON nested more than {MAX_DEPTH} levels deep", "", 0)
    return orjson.loads(raw)
