"""Structured logs: an event name with bound fields, on ``structlog`` over plain ``logging``.

    log = get_logger("gpumarket.relay", relay="a1b2")
    log.info("order_accepted", hash=h, signer=addr)
    # key=value (the default): one line per event, parsed by nodes.localnet and nodes.demo
    # 2026-01-01T00:00:00Z info gpumarket.relay order_accepted relay=a1b2 hash=0x.. signer=0x..
    # json (GPUMARKET_LOG_FORMAT=json): one object per line, for log shippers
    # {"relay": "a1b2", "hash": "0x..", "signer": "0x..", "timestamp": "2026-...", "level": "info",
    #  "logger": "gpumarket.relay", "event": "order_accepted"}

:func:`get_logger` returns a structlog :class:`~structlog.stdlib.BoundLogger` (``bind`` adds fixed
fields) whose events end as standard ``logging`` records carrying ``record.event`` and
``record.fields``, so pytest's ``caplog`` sees them and tests assert on events, not prose.
:func:`configure` renders them: structlog's :class:`~structlog.dev.ConsoleRenderer` laid out on
one line without colours or padding (``<UTC time> <level> <logger> <event> k=v ...``, whether or not
stderr is a terminal: the daemons' logs are read by programs as often as by people), or structlog's
:class:`~structlog.processors.JSONRenderer` when ``GPUMARKET_LOG_FORMAT=json`` (or ``fmt="json"``).
Nothing is configured globally in structlog, so a host application keeps its own setup.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Mapping, MutableMapping
from typing import Any, Literal, TextIO, cast, get_args

import structlog
from structlog.dev import Column, ConsoleRenderer, KeyValueColumnFormatter
from structlog.processors import JSONRenderer, format_exc_info
from structlog.typing import EventDict, WrappedLogger

from nodes.errors import ConfigError

EventLogger = structlog.stdlib.BoundLogger
"""What :func:`get_logger` returns: ``log.info(event, **fields)``, ``log.bind(**fields)``."""
LogFormat = Literal["keyvalue", "json"]
FORMAT_ENV = "GPUMARKET_LOG_FORMAT"
"""The environment variable that picks the format :func:`configure` renders (``keyvalue``,
``json``) when its caller names none."""


def render_value(value: object) -> str:
    """A field's value on a key=value line: bytes as 0x-hex, text quoted only when it must be."""
    if isinstance(value, bytes):
        return "0x" + value.hex()
    text = str(value)
    if not text or any(c.isspace() or c in "=\"'" for c in text):
        return repr(text)
    return text


def render_fields(fields: Mapping[str, object]) -> str:
    """``k=v k=v``, in the order given."""
    return " ".join(f"{k}={render_value(v)}" for k, v in fields.items())


class _Message:
    """A record's ``msg``: ``event k=v ...``, rendered only if a handler reads it."""

    __slots__ = ("event", "fields")

    def __init__(self, event: str, fields: Mapping[str, object]) -> None:
        self.event = event
        self.fields = fields

    def __str__(self) -> str:
        return f"{self.event} {render_fields(self.fields)}".rstrip()


def _to_record(
    logger: WrappedLogger, method_name: str, event_dict: EventDict
) -> tuple[tuple[object, ...], dict[str, object]]:
    """The last processor: the arguments of the ``logging`` call, the event and its fields put
    on the record as ``record.event`` and ``record.fields``."""
    event = str(event_dict.pop("event", ""))
    exc_info = event_dict.pop("exc_info", False)
    fields = dict(event_dict)
    return (_Message(event, fields),), {
        "extra": {"event": event, "fields": fields},
        "exc_info": exc_info,
    }


_PROCESSORS: list[Any] = [structlog.stdlib.filter_by_level, _to_record]


def get_logger(name: str, **bound: object) -> EventLogger:
    """The event logger ``name`` (a ``logging`` name under ``gpumarket``), ``bound`` fields on
    every event it logs."""
    wrapped = structlog.wrap_logger(
        logging.getLogger(name),
        processors=_PROCESSORS,
        wrapper_class=structlog.stdlib.BoundLogger,
        context_class=dict,
    )
    return cast(EventLogger, wrapped.bind(**bound))


def _plain(key: str) -> Column:
    return Column(key, KeyValueColumnFormatter(None, "", "", str))


_CONSOLE = ConsoleRenderer(  # no colours: ``columns`` alone decide the layout
    sort_keys=False,
    columns=[
        _plain("timestamp"),
        _plain("level"),
        _plain("logger"),
        _plain("event"),
        Column("", KeyValueColumnFormatter("", "", "", render_value)),
    ],
)


def _json_value(value: object) -> object:
    return "0x" + value.hex() if isinstance(value, bytes) else str(value)


_JSON = JSONRenderer(default=_json_value)


class EventFormatter(logging.Formatter):
    """Renders a record with structlog: ``keyvalue`` (one console line) or ``json``."""

    def __init__(self, fmt: LogFormat = "keyvalue") -> None:
        super().__init__()
        self.fmt = fmt

    def format(self, record: logging.LogRecord) -> str:
        fields: Mapping[str, object] = getattr(record, "fields", {})
        event_dict: MutableMapping[str, Any] = {
            **fields,
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": getattr(record, "event", None) or record.getMessage(),
        }
        if record.exc_info:
            event_dict["exc_info"] = record.exc_info
        if self.fmt == "json":
            return str(_JSON(None, "", format_exc_info(None, "", event_dict)))
        return str(_CONSOLE(None, "", event_dict)).rstrip()


def log_format(env: Mapping[str, str] = os.environ) -> LogFormat:
    """The format :envvar:`GPUMARKET_LOG_FORMAT` names (``keyvalue`` when unset)."""
    value = env.get(FORMAT_ENV, "keyvalue").strip().lower() or "keyvalue"
    if value not in get_args(LogFormat):
        raise ConfigError(FORMAT_ENV, FORMAT_ENV, f"{value!r} is not one of keyvalue, json")
    return cast(LogFormat, value)


def configure(
    level: int = logging.INFO, stream: TextIO | None = None, fmt: LogFormat | None = None
) -> None:
    """Send ``gpumarket.*`` logs to ``stream`` (stderr), one line per event, in ``fmt``
    (:func:`log_format` when not given)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(EventFormatter(fmt or log_format()))
    root = logging.getLogger("gpumarket")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


__all__ = [
    "FORMAT_ENV",
    "EventFormatter",
    "EventLogger",
    "LogFormat",
    "configure",
    "get_logger",
    "log_format",
    "render_fields",
    "render_value",
]
