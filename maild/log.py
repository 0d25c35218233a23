"""structlog set-up: JSON lines for journald, a readable console on a TTY."""

from __future__ import annotations

import logging
import sys

import structlog


def configure_logging(level: str = "info", fmt: str = "auto") -> None:
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    renderer = (
        structlog.dev.ConsoleRenderer()
        if fmt == "console"
        else structlog.processors.JSONRenderer(ensure_ascii=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            getattr(logging, level.upper(), logging.INFO)
        ),
        # one write() per line: the sender process logs to the same stderr, and a line
        # written in two calls could be split by the other process's
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str = "maild") -> structlog.typing.FilteringBoundLogger:
    return structlog.get_logger(name)


# Until the daemon configures logging, log lines go to stderr: stdout is for command
# output (JSON of `maild ticket list --json` must stay parseable).
if not structlog.is_configured():
    configure_logging("info", "console" if sys.stderr.isatty() else "json")
