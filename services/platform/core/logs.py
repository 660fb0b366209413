"""JSON logs: one object per line (for Filebeat/Logstash), with the service and the ids in hand."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from services.platform.core import scope as requestctx

# Attributes every LogRecord has; anything else on a record came from `extra=` and is logged.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}
_CONTEXT_FIELDS = ("service", "request_id", "correlation_id")


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
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in _CONTEXT_FIELDS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(service: str, level: str = "INFO") -> None:
    """Every logger of the process → one JSON line per record on stdout (idempotent).

    uvicorn's own loggers propagate to it; its access log is off (AccessLogMiddleware logs
    requests with the route template and the request id). Run uvicorn with `log_config=None`.
    """
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service))
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
