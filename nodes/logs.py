"""Structured logs: an event name with bound fields, on plain ``logging``.

    log = get_logger("gpumarket.relay", relay="a1b2")
    log.info("order_accepted", hash=h, signer=addr)
    # 2026-01-01T00:00:00Z info gpumarket.relay order_accepted relay=a1b2 hash=0x.. signer=0x..

Each record carries ``record.event`` and ``record.fields``, so tests assert on events, not prose.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping
from typing import TextIO


class EventLogger:
    """A logger that takes an event name and key=value fields; :meth:`bind` adds fixed fields."""

    def __init__(self, logger: logging.Logger, bound: Mapping[str, object] | None = None) -> None:
        self.logger = logger
        self.bound = dict(bound or {})

    def bind(self, **fields: object) -> EventLogger:
        return EventLogger(self.logger, {**self.bound, **fields})

    def debug(self, event: str, **fields: object) -> None:
        self._log(logging.DEBUG, event, fields)

    def info(self, event: str, **fields: object) -> None:
        self._log(logging.INFO, event, fields)

    def warning(self, event: str, **fields: object) -> None:
        self._log(logging.WARNING, event, fields)

    def error(self, event: str, *, exc_info: bool = False, **fields: object) -> None:
        self._log(logging.ERROR, event, fields, exc_info=exc_info)

    def _log(
        self, level: int, event: str, fields: Mapping[str, object], exc_info: bool = False
    ) -> None:
        if not self.logger.isEnabledFor(level):
            return
        merged = {**self.bound, **fields}
        self.logger.log(
            level,
            "%s %s",
            event,
            render_fields(merged),
            extra={"event": event, "fields": merged},
            exc_info=exc_info,
        )


def render_value(value: object) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    text = str(value)
    if not text or any(c.isspace() or c in "=\"'" for c in text):
        return repr(text)
    return text


def render_fields(fields: Mapping[str, object]) -> str:
    return " ".join(f"{k}={render_value(v)}" for k, v in fields.items())


class KeyValueFormatter(logging.Formatter):
    """``<UTC time> <level> <logger> <event> k=v ...``, one line per record."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created))
        line = f"{stamp} {record.levelname.lower()} {record.name} {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def get_logger(name: str, **bound: object) -> EventLogger:
    return EventLogger(logging.getLogger(name), bound)


def configure(level: int = logging.INFO, stream: TextIO | None = None) -> None:
    """Send ``gpumarket.*`` logs to ``stream`` (stderr) as key=value lines."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(KeyValueFormatter())
    root = logging.getLogger("gpumarket")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


__all__ = ["EventLogger", "KeyValueFormatter", "configure", "get_logger", "render_fields"]
