"""Log output that a client cannot forge.

Log lines carry client-controlled text (model names, tenant references, upstream
messages inside exceptions). A newline in such a value would start what looks like a
new log line, an ANSI escape could rewrite the operator's terminal. Every handler we
install (ours and uvicorn's, in each worker) formats through `SafeFormatter`: the
message (after `%` interpolation, so every argument is covered wherever the call is)
becomes one line with control characters escaped, and every line of an attached
traceback is indented, so no continuation line can pass for a record of its own.
"""

from __future__ import annotations

import copy
import logging
import re
from typing import Any

from uvicorn.logging import DefaultFormatter

# C0 and C1 controls, DEL, and the Unicode line and paragraph separators (some log
# viewers break lines there too).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_CONTROL_BUT_NEWLINE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    return _NAMED.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")


def escape(text: str) -> str:
    """One line, printable: control characters as `\\n`, `\\x1b`, `\\u2028`."""
    return _CONTROL.sub(_escaped, text)


def escape_block(text: str) -> str:
    """A block that follows a record's message (a traceback, a stack): controls escaped
    except newlines, and every line starts with whitespace, as continuation lines do."""
    lines = _CONTROL_BUT_NEWLINE.sub(_escaped, text).split("\n")
    return "\n".join(line if line[:1].isspace() else "  " + line for line in lines)


class SafeFormatter(DefaultFormatter):
    """uvicorn's formatter (same look) over escaped messages and indented tracebacks."""

    def format(self, record: logging.LogRecord) -> str:
        safe = copy.copy(record)  # other handlers of the same record see it unchanged
        safe.msg, safe.args = escape(record.getMessage()), None
        safe.exc_text = None  # formatException below fills it for this copy
        return super().format(safe)

    def formatException(self, ei: Any) -> str:
        return escape_block(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return escape_block(super().formatStack(stack_info))


def configure_logging(level: str) -> None:
    """Our logger in uvicorn's format, set up in each worker (the app is built there)."""
    logger = logging.getLogger("modelport")
    logger.setLevel(level.upper())
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(SafeFormatter("%(levelprefix)s %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's logging configuration with `SafeFormatter` for its error log (its access
    log is off): "Exception in ASGI application" tracebacks can quote client input."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["formatters"]["default"]["()"] = f"{__name__}.SafeFormatter"
    return config
