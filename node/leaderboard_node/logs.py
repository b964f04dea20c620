"""Structured logs: one JSON object per line, the event name as ``message``, snake_case keys."""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter


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


def configure_logging(*, level: str = "info", fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger", "message": "event"},
        ))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.server").addFilter(_MalformedHttpFilter())
