"""Structured logs: the event name as ``message``, snake_case keys for everything else.

Two formats (``log.format``): ``json``, one JSON object per line (what a log pipeline reads),
and ``text``, for a terminal: time, level, logger and event, then ``key=value`` for every
structured field, in the order the code gave them (values with spaces or quotes are quoted,
as logfmt does). Both carry the same fields.
"""

from __future__ import annotations

import json
import logging
import sys

from pythonjsonlogger.json import JsonFormatter

# What every LogRecord carries: anything else on a record is a structured field (``extra=``).
_STANDARD_ATTRIBUTES = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


class _MalformedHttpFilter(logging.Filter):
    """aiohttp logs a request it cannot even parse at ERROR with a traceback: anyone could flood
    the log that way. Such a request is the client's fault, answered with 400: log it briefly."""

    def filter(self, record: logging.LogRecord) -> bool:
        from aiohttp.http_exceptions import BadHttpMessage

        if record.exc_info and isinstance(record.exc_info[1], BadHttpMessage):
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg = f"malformed_http_request: {record.exc_info[1]}"
            record.args = ()
            record.exc_info = None
            record.exc_text = None
        return True


def _logfmt_value(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, separators=(",", ":"))
    if not text or any(char in text for char in ' "=\\') or not text.isprintable():
        return json.dumps(text)
    return text


class TextFormatter(logging.Formatter):
    """``time LEVEL logger event key=value ...``: the JSON format's fields, for a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = [f"{key}={_logfmt_value(value)}" for key, value in record.__dict__.items()
                  if key not in _STANDARD_ATTRIBUTES and not key.startswith("_")]
        if not fields:
            return line
        head, newline, rest = line.partition("\n")  # a traceback stays below the fields
        return f"{head} {' '.join(fields)}{newline}{rest}"


def configure_logging(*, level: str = "info", fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger", "message": "event"},
        ))
    else:
        handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.server").addFilter(_MalformedHttpFilter())
