"""Logs with the service and the ids in hand: JSON lines (for Filebeat/Logstash) or, for a
person at a terminal, one readable line per record.

The format is `ERP_LOG_FORMAT` (json | console) when set; otherwise console when standard output
is a terminal and JSON when it is not (a container, a pipe, a file), so production never gets
the console format by accident.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

from services.platform.core import scope as requestctx

# Attributes every LogRecord has; anything else on a record came from `extra=` and is logged.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}
_CONTEXT_FIELDS = ("service", "request_id", "correlation_id")

LogFormat = Literal["json", "console"]


def choose_format(configured: str | None, stream: TextIO) -> LogFormat:
    """`configured` (ERP_LOG_FORMAT) when set, else console on a terminal and JSON elsewhere."""
    if configured == "json":
        return "json"
    if configured == "console":
        return "console"
    if configured is not None:
        raise ValueError(f"unknown log format {configured!r}; expected json or console")
    return "console" if stream.isatty() else "json"


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    """What came from `extra=`: the record's attributes beyond the standard ones."""
    return {
        key: value
        for key, value in record.__dict__.items()
        if key not in _STANDARD and key not in _CONTEXT_FIELDS and not key.startswith("_")
    }


class JsonFormatter(logging.Formatter):
    """timestamp, level, logger, message, service, request_id, correlation_id, then extras."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            # A record's own value wins (e.g. extra={"service": ...}); else the request's.
            "service": getattr(record, "service", None) or requestctx.service.get() or self.service,
            "request_id": getattr(record, "request_id", None) or requestctx.request_id.get(),
            "correlation_id": getattr(record, "correlation_id", None)
            or requestctx.correlation_id.get(),
        }
        entry.update(_extras(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class ConsoleFormatter(logging.Formatter):
    """`12:04:05.123 INFO  inventory erp.access GET /api/v1/stock 200 3.10ms route=… req=…`:
    local time, level, service, logger, message, then the extras the message does not already
    say, the request id, and any traceback below."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        said = set(message.split())
        service = getattr(record, "service", None) or requestctx.service.get() or self.service
        parts = [
            datetime.fromtimestamp(record.created).strftime("%H:%M:%S.%f")[:-3],
            f"{record.levelname:<5}",
            service,
            record.name,
            message,
        ]
        parts += [
            f"{key}={value}"
            for key, value in _extras(record).items()
            if value is not None and not _already_said(value, said)
        ]
        request_id = getattr(record, "request_id", None) or requestctx.request_id.get()
        if request_id:
            parts.append(f"req={request_id}")
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


def _already_said(value: object, words: set[str]) -> bool:
    """Whether the message shows `value` already (a number also with its unit: 3.10ms)."""
    if str(value) in words:
        return True
    if isinstance(value, int | float) and not isinstance(value, bool):
        numbers = (word.rstrip("abcdefghijklmnopqrstuvwxyz%") for word in words)
        return any(_as_float(number) == value for number in numbers)
    return False


def _as_float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def configure_logging(
    service: str,
    level: str = "INFO",
    log_format: str | None = None,
    stream: TextIO | None = None,
) -> LogFormat:
    """Every logger of the process → one line per record on `stream` (stdout), in the format
    `choose_format` picks; returns it. Idempotent.

    uvicorn's own loggers propagate to it; its access log is off (AccessLogMiddleware logs
    requests with the route template and the request id). Run uvicorn with `log_config=None`.
    """
    out = stream or sys.stdout
    chosen = choose_format(log_format, out)
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        ConsoleFormatter(service) if chosen == "console" else JsonFormatter(service)
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    return chosen
