"""Logging set up once per process: one JSON object per line on stderr.

The service's own events go through structlog (orjson-rendered, written as bytes); the
standard-library loggers (uvicorn, asyncpg, alembic) through a structlog formatter, so every
line of the stream is JSON. A request's `request_id`, bound in structlog's context variables by
the request middleware, appears on every line logged while the request runs.
"""

from __future__ import annotations

import logging
import logging.config
import os
import sys
from typing import Any

import orjson
import structlog
from structlog.typing import EventDict

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


_process_id = os.getpid()


def _remember_process_id() -> None:
    global _process_id
    _process_id = os.getpid()


# Kept, not asked for on each line: a system call per line costs more than the rest of the line.
os.register_at_fork(after_in_child=_remember_process_id)


def add_process_id(logger: Any, method_name: str, event_dict: EventDict) -> EventDict:
    """`pid`: which worker process wrote the line (`wallet serve --workers N`)."""
    event_dict["pid"] = _process_id
    return event_dict


def configure(level_name: str) -> None:
    level = LEVELS[level_name]
    logging.config.dictConfig(standard_library_config(level_name))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            add_process_id,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=orjson.dumps),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.BytesLoggerFactory(file=sys.stderr.buffer),
        cache_logger_on_first_use=True,
    )


def json_formatter() -> structlog.stdlib.ProcessorFormatter:
    """The formatter of standard-library records (named by `standard_library_config`)."""
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            add_process_id,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
    )


def standard_library_config(level_name: str) -> dict[str, Any]:
    """A logging.config.dictConfig document, plain data (uvicorn hands it to its worker
    processes): everything to stderr as JSON; alembic only from warnings up."""
    level = level_name.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "wallet.logs.json_formatter"}},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
        },
        "root": {"handlers": ["stderr"], "level": level},
        "loggers": {
            "uvicorn": {"handlers": [], "level": level, "propagate": True},
            "uvicorn.error": {"handlers": [], "level": level, "propagate": True},
            # The request middleware writes the access log; uvicorn's own stays off.
            "uvicorn.access": {"handlers": [], "propagate": False},
            "alembic": {"level": logging.getLevelName(max(LEVELS[level_name], logging.WARNING))},
        },
    }
