"""Log output that a client cannot forge, as text (uvicorn's look) or JSON lines.

Log lines carry client-controlled text (model names, tenant references, upstream
messages inside exceptions). A newline in such a value would start what looks like a
new log line, an ANSI escape could rewrite the operator's terminal. Every handler we
install (ours and uvicorn's, in each worker) formats through `SafeFormatter`: the
message (after `%` interpolation, so every argument is covered wherever the call is)
becomes one line with control characters escaped, and every line of an attached
traceback is indented, so no continuation line can pass for a record of its own.

With `log_format: json` every record, ours and uvicorn's, is one JSON object on one line
(`JsonFormatter`, orjson: control characters inside strings are escaped by JSON itself):
`time` (UTC, ISO 8601), `level`, `logger`, `message`, `exception` when there is one, and
the fields a record carries in `extra={"fields": {...}}` (the request line's: see
`RequestRecord.log_fields`).
"""

from __future__ import annotations

import copy
import logging
import re
import time
from typing import Any

import orjson
from uvicorn.logging import DefaultFormatter

# Set by `configure_logging`: the request line is built as fields instead of text.
structured = False

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


# Characters JSON may leave raw that a terminal or a log viewer would act on: DEL, the C1
# controls (an 8-bit CSI starts an escape sequence) and the Unicode line separators.
_JSON_RAW = re.compile("[\x7f-\x9f\u2028\u2029]")


def _json_escaped(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def _utc(created: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(created % 1 * 1000):03d}Z"


def json_line(message: str, *, level: str = "info", logger: str = "modelport", created: float | None = None,
              **fields: Any) -> str:
    """One JSON log line (also for what `modelport serve` prints before logging is set up)."""
    entry = {"time": _utc(time.time() if created is None else created), "level": level, "logger": logger,
             "message": message, **fields}
    return _JSON_RAW.sub(_json_escaped, orjson.dumps(entry, default=str).decode())


class JsonFormatter(logging.Formatter):
    """One JSON object per record. Accepts (and ignores) the `fmt`/`use_colors` arguments
    uvicorn's logging configuration passes to its formatters."""

    def __init__(self, fmt: str | None = None, datefmt: str | None = None, style: Any = "%",
                 use_colors: bool | None = None, **kwargs: Any) -> None:
        super().__init__(fmt, datefmt)

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = dict(getattr(record, "fields", None) or {})
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            fields["exception"] = record.exc_text
        if record.stack_info:
            fields["stack"] = self.formatStack(record.stack_info)
        return json_line(record.getMessage(), level=record.levelname.lower(), logger=record.name,
                         created=record.created, **fields)


def formatter(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else SafeFormatter("%(levelprefix)s %(message)s")


def configure_logging(level: str, log_format: str = "text") -> None:
    """Our logger in uvicorn's format (or JSON lines), set up in each worker (the app is
    built there)."""
    global structured
    structured = log_format == "json"
    logger = logging.getLogger("modelport")
    logger.setLevel(level.upper())
    if not logger.handlers:
        logger.addHandler(logging.StreamHandler())
        logger.propagate = False
    for handler in logger.handlers:
        handler.setFormatter(formatter(log_format))


def uvicorn_log_config(log_format: str = "text") -> dict[str, Any]:
    """uvicorn's logging configuration with `SafeFormatter` for its error log (its access
    log is off): "Exception in ASGI application" tracebacks can quote client input. In
    JSON, `JsonFormatter` for both."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["formatters"]["default"]["()"] = f"{__name__}.SafeFormatter"
    if log_format == "json":
        for name in ("default", "access"):
            config["formatters"][name]["()"] = f"{__name__}.JsonFormatter"
    return config
