"""Logs: one JSON object per line for a collector, plain text for a terminal.

`LOG_FORMAT=json` or `text`; `auto` (the default) writes text to a terminal and JSON
elsewhere. Every line carries `time`, `level`, `logger`, `pid` and `message`, and, written while a
request is handled, its `request_id` (the client's `X-Request-ID`, or one made for it). The
lines of events (`log_event`) carry their fields as keys of their own: a request's
`interface`, `operation`, `status`, `duration_ms`; a worker batch's `events`, `commit_ms`,
`lag_ms`. In text those fields follow the message as `key=value`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from pythonjsonlogger.orjson import OrjsonFormatter

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
# What the handlers tell of the request at hand (its GraphQL operation, its outcome), for
# its log line and its metrics.
_notes: ContextVar[dict[str, str] | None] = ContextVar("request_notes", default=None)


def begin_notes() -> dict[str, str]:
    notes: dict[str, str] = {}
    _notes.set(notes)
    return notes


def note(key: str, value: str) -> None:
    """Tell the request's observer `key` (`operation`, `outcome`), if a request is observed;
    the first word on a key stands."""
    notes = _notes.get()
    if notes is not None:
        notes.setdefault(key, value)


# The attributes every `LogRecord` has: anything else on a record is an event's field.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def _with_request_id(factory: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    """Records made while a request is handled carry its id, whichever handler gets them."""

    def make(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        rid = request_id.get()
        if rid is not None:
            record.request_id = rid
        return record

    return make


logging.setLogRecordFactory(_with_request_id(logging.getLogRecordFactory()))


class _Quiet(logging.Filter):
    """Drops uvicorn's `color_message` (the same message with terminal colours)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.__dict__.pop("color_message", None)
        return True


class _Text(logging.Formatter):
    """`LEVEL logger message key=value ...`, the request id first among the fields."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = {k: v for k, v in record.__dict__.items() if k not in _STANDARD}
        if not fields:
            return line
        head, newline, rest = line.partition("\n")  # a traceback stays below the fields
        pairs = " ".join(f"{key}={value}" for key, value in fields.items())
        return f"{head} {pairs}{newline}{rest}"


def configure(level: str, form: str) -> None:
    """Send every logger's lines (the server's and the libraries', uvicorn's included) to
    standard error, in `form` (`json`, `text`, or `auto`)."""
    # Neither is on any line; each costs every record a lookup.
    logging.logThreads = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    if form == "json" or (form == "auto" and not sys.stderr.isatty()):
        handler.setFormatter(
            OrjsonFormatter(
                "%(levelname)s %(name)s %(process)d %(message)s",
                rename_fields={"levelname": "level", "name": "logger", "process": "pid"},
                timestamp="time",  # RFC 3339, UTC, to the microsecond
            )
        )
    else:
        handler.setFormatter(_Text("%(levelname)s %(name)s %(message)s"))
    handler.addFilter(_Quiet())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []  # theirs would print the same line again
        logging.getLogger(name).propagate = True
    # Our line per request replaces uvicorn's access log.
    access = logging.getLogger("uvicorn.access")
    access.handlers[:], access.propagate = [], False
    # Clients that log every call they make at INFO: only their warnings, unless debugging.
    for name in _CHATTY:
        logging.getLogger(name).setLevel(
            logging.NOTSET if root.level <= logging.DEBUG else max(logging.WARNING, root.level)
        )


_CHATTY = ("elastic_transport", "aio_pika", "aiormq")


def log_event(logger: logging.Logger, message: str, **fields: Any) -> None:
    """One line at INFO whose `fields` are keys of their own (in JSON) or `key=value` (in
    text). Written on every request: made without looking up the caller's file and line,
    which nobody reads on these lines and which costs a third of the line."""
    if logger.isEnabledFor(logging.INFO):
        logger.handle(
            logger.makeRecord(logger.name, logging.INFO, "", 0, message, (), None, extra=fields)
        )
