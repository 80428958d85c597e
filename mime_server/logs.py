"""Structured logs: one JSON object per line on stdout, for access logs and stdlib/uvicorn records."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

LEVELS = {"DEBUG": "debug", "INFO": "info", "WARNING": "warn", "ERROR": "error", "CRITICAL": "error"}


def now_iso() -> str:
    """Current time, ISO 8601 with milliseconds and an explicit UTC offset."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class JsonLogger:
    """Writes log records as JSON lines with the fields every record of this service carries."""

    def __init__(self, service: str, stream: TextIO | None = None) -> None:
        self.service = service
        self._stream = stream

    @property
    def stream(self) -> TextIO:
        # Resolved late so pytest's capture (which swaps sys.stdout) sees the lines.
        return self._stream if self._stream is not None else sys.stdout

    def log(self, level: str, msg: str, **fields: Any) -> None:
        record = {"ts": now_iso(), "level": level, "service": self.service, "msg": msg, **fields}
        stream = self.stream
        stream.write(json.dumps(record, default=str, separators=(",", ":")) + "\n")
        stream.flush()


class JsonFormatter(logging.Formatter):
    """stdlib logging formatter producing the same JSON shape (used for uvicorn's own messages)."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        level = LEVELS.get(record.levelname, record.levelname.lower())
        data: dict[str, Any] = {"ts": datetime.fromtimestamp(record.created, UTC).isoformat(
            timespec="milliseconds"), "level": level, "service": self.service, "msg": record.getMessage(),
            "logger": record.name}
        if level == "error":
            data["status"] = "error"
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str, separators=(",", ":"))


def uvicorn_log_config(service: str) -> dict[str, Any]:
    """A logging dictConfig that sends uvicorn's records to stdout as JSON lines."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter, "service": service}},
        "handlers": {"stdout": {"class": "logging.StreamHandler", "formatter": "json",
                                "stream": "ext://sys.stdout"}},
        "loggers": {
            "uvicorn": {"handlers": ["stdout"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"handlers": ["stdout"], "level": "INFO", "propagate": False},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        },
        "root": {"handlers": ["stdout"], "level": "WARNING"},
    }
