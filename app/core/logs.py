"""Log lines for people (`MLOPS_LOG_FORMAT=text`, the default) or for log search (`json`: one
JSON object a line), each carrying the request, run and pipeline it was written for.

The context travels in contextvars: the request-id middleware sets `request_id`, the run
executor sets `run_id` and `pipeline`; a filter on the one handler copies them onto every
record, uvicorn's access lines included (they go through the same handler).
"""

from __future__ import annotations

import logging
import logging.config
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Literal

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

LogFormat = Literal["text", "json"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s%(context)s"

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
run_id: ContextVar[int | None] = ContextVar("run_id", default=None)
pipeline: ContextVar[str | None] = ContextVar("pipeline", default=None)
CONTEXT: dict[str, ContextVar[Any]] = {
    "request_id": request_id,
    "run_id": run_id,
    "pipeline": pipeline,
}
# uvicorn's access line: `client - "METHOD path HTTP/x" status`, with these as its args.
ACCESS_FIELDS = ("client_addr", "method", "path", "http_version", "status_code")


@contextmanager
def bound(**values: Any) -> Iterator[None]:
    """Set context fields (request_id, run_id, pipeline) for the block, then restore them."""
    tokens = [(CONTEXT[name], CONTEXT[name].set(value)) for name, value in values.items()]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


class ContextFilter(logging.Filter):
    """Copy the known context fields onto the record (and a text suffix showing them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        known = {name: var.get() for name, var in CONTEXT.items() if var.get() is not None}
        for name, value in known.items():
            if not hasattr(record, name):
                setattr(record, name, value)
        args = record.args
        if record.name == "uvicorn.access" and isinstance(args, tuple) and len(args) == 5:
            for name, value in zip(ACCESS_FIELDS, args, strict=True):
                setattr(record, name, value)
        # uvicorn's coloured copy of the message: noise in a log file.
        record.__dict__.pop("color_message", None)
        suffix = " ".join(f"{name}={value}" for name, value in known.items())
        record.context = f" [{suffix}]" if suffix else ""
        return True


def _formatter(fmt: LogFormat) -> dict[str, Any]:
    if fmt == "text":
        return {"format": TEXT_FORMAT}
    return {
        "()": JsonFormatter,
        "fmt": "%(levelname)s %(name)s %(message)s",
        "rename_fields": {"levelname": "level", "name": "logger"},
        "timestamp": True,
        # The text suffix says again what the JSON fields say.
        "reserved_attrs": [*RESERVED_ATTRS, "context"],
    }


def config(fmt: LogFormat) -> dict[str, Any]:
    """A logging.config dict for `fmt`; uvicorn takes it as its log_config."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": ContextFilter}},
        "formatters": {"main": _formatter(fmt)},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "main",
                "filters": ["context"],
            }
        },
        "root": {"level": "INFO", "handlers": ["stderr"]},
        "loggers": {
            # uvicorn's own handlers would write a second, differently formatted copy.
            "uvicorn": {"level": "INFO", "handlers": [], "propagate": True},
            "uvicorn.error": {"level": "INFO", "handlers": [], "propagate": True},
            "uvicorn.access": {"level": "INFO", "handlers": [], "propagate": True},
            # APScheduler logs every job it runs at INFO; runs have their own records.
            "apscheduler": {"level": "WARNING"},
        },
    }


def configure(fmt: LogFormat) -> dict[str, Any]:
    """Route every log line to stderr in `fmt`; returns the config for uvicorn."""
    settings = config(fmt)
    logging.config.dictConfig(settings)
    # Python's warnings too, so that every line on stderr has the one format.
    logging.captureWarnings(True)
    return settings
