"""Logs as JSON lines, one per significant act, that carry ids and never a personal value.

A bank's log pipeline keeps lines far longer, and shows them to far more people, than the database
that holds the client's file: so a log line names the message, the idempotency key, the customer
and the provider by their ids, and nothing that identifies a person by itself (an address, a phone
number, a text). `act()` enforces that with an allow-list of field names and of value shapes; the
JSON formatter applies the same allow-list to the `extra` fields of every other record, so a
careless `log.info(..., extra={"phone": ...})` elsewhere cannot leak either.

`OMNICRM_LOG_FORMAT` picks the format (`json` or `text`; unset: JSON when stdout is not a terminal,
as under systemd, Kubernetes or a pipe) and `OMNICRM_LOG_LEVEL` the level (default INFO).
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Mapping
from typing import Any, Final, TextIO

from pythonjsonlogger.json import JsonFormatter

FORMAT_VARIABLE: Final = "OMNICRM_LOG_FORMAT"
LEVEL_VARIABLE: Final = "OMNICRM_LOG_LEVEL"

# Ids and counts only. A new field joins this list after someone checked it can never hold a
# personal value: names, addresses, phone numbers, message texts and free-text notes never do.
ALLOWED_FIELDS: Final = frozenset(
    {
        "message_id",
        "idempotency_key",
        "customer_id",
        "instance_id",
        "scenario_id",
        "campaign_id",
        "event_id",
        "task_id",
        "provider",
        "provider_id",
        "channel",
        "status",
        "source",
        "reason_code",
        "attempts",
        "count",
        "elapsed_ms",
    }
)
# What an id looks like: no `@` (an e-mail), no `+` or blank (a formatted phone number), no free
# text. A value of another shape is dropped even under an allowed name.
_ID_VALUE: Final = re.compile(r"[A-Za-z0-9_.:/#-]{1,200}")
_ACT_NAME: Final = re.compile(r"[a-z][a-z0-9_.-]{0,63}")
_TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Written by every record, so never taken for an `extra` field (those go through the allow-list).
_RECORD_FIELDS: Final = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


def _safe_value(value: object) -> bool:
    if value is None or isinstance(value, bool | int | float):
        return True
    return isinstance(value, str) and _ID_VALUE.fullmatch(value) is not None


def safe_fields(fields: Mapping[str, object]) -> tuple[dict[str, object], list[str]]:
    """The fields that may be logged, and the names of those dropped (a name not on the allow-list,
    or a value that is not an id or a number)."""
    kept: dict[str, object] = {}
    dropped: list[str] = []
    for name, value in fields.items():
        if name in ALLOWED_FIELDS and _safe_value(value):
            kept[name] = value
        else:
            dropped.append(name)
    return kept, sorted(dropped)


def act(logger: logging.Logger, name: str, /, *, level: int = logging.INFO, **fields: object) -> None:
    """Log one significant act (`outbox.sent`, `webhook.accepted`...) as one line with its ids.

    Fields outside the allow-list, or whose value is not id-shaped, are left out and only their
    names are logged (under `dropped`), so the mistake shows without the value."""
    if _ACT_NAME.fullmatch(name) is None:
        raise ValueError(f"an act's name is lower-case dotted words, not {name!r}")
    kept, dropped = safe_fields(fields)
    extra: dict[str, Any] = {**kept, "act": name}
    if dropped:
        extra["dropped"] = dropped
    logger.log(level, name, extra=extra)


class JsonLines(JsonFormatter):
    """One JSON object per line: time, level, logger, message, and the allow-listed extra fields."""

    def __init__(self) -> None:
        super().__init__(
            "%(levelname)s %(name)s %(message)s",
            rename_fields={"levelname": "level", "name": "logger"},
            timestamp="time",
        )

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        super().add_fields(log_data, record, message_dict)
        extras = {k: v for k, v in record.__dict__.items() if k not in _RECORD_FIELDS}
        for name in extras:
            log_data.pop(name, None)
        # `act` and `dropped` are written by act() itself; every other extra passes the allow-list.
        for name in ("act", "dropped"):
            if name in extras:
                log_data[name] = extras.pop(name)
        kept, dropped = safe_fields(extras)
        log_data.update(kept)
        if dropped:
            log_data["dropped"] = sorted({*log_data.get("dropped", ()), *dropped})


def json_wanted(stream: TextIO | None = None) -> bool:
    """True when logs should be JSON lines: `OMNICRM_LOG_FORMAT=json`, or unset and `stream`
    (stdout) is not a terminal."""
    chosen = os.environ.get(FORMAT_VARIABLE, "").strip().lower()
    if chosen in ("json", "text"):
        return chosen == "json"
    if chosen:
        raise ValueError(f"{FORMAT_VARIABLE} is `json` or `text`, not {chosen!r}")
    out = stream if stream is not None else sys.stdout
    return not out.isatty()


def level_from_env() -> str:
    """The level named by `OMNICRM_LOG_LEVEL` (default INFO)."""
    level = os.environ.get(LEVEL_VARIABLE, "INFO").strip().upper() or "INFO"
    if not isinstance(logging.getLevelNamesMapping().get(level), int):
        raise ValueError(f"{LEVEL_VARIABLE} is a logging level name, not {level!r}")
    return level


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is at the time, so a live display that redirects it (rich's,
    under the worker's status line) keeps the log lines above its own."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def configure(level: int | str, *, json: bool, stream: TextIO | None = None) -> logging.Handler:
    """Send every log record (the root logger's) to `stream` (default: stderr) as JSON lines or as
    text; replaces the root's handlers, so calling it twice leaves one. Returns the handler."""
    handler: logging.Handler = logging.StreamHandler(stream) if stream is not None else _Stderr()
    handler.setFormatter(JsonLines() if json else logging.Formatter(_TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("alembic").setLevel(_alembic_level(root.level))
    return handler


def _alembic_level(level: int | str) -> int:
    """Alembic says "Context impl SQLiteImpl" and lists its plugins at INFO at every start: only its
    warnings, unless debugging."""
    number = level if isinstance(level, int) else logging.getLevelNamesMapping()[level.upper()]
    return logging.DEBUG if number <= logging.DEBUG else logging.WARNING


def uvicorn_config(level: int | str, *, json: bool) -> dict[str, Any]:
    """A `logging.config.dictConfig` for `uvicorn.run(log_config=...)`: uvicorn applies it in each
    of its worker processes, where `configure()` of the parent does not reach."""
    formatter: dict[str, Any] = {"()": "omnicrm.logs.JsonLines"} if json else {"format": _TEXT_FORMAT}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"main": formatter},
        "handlers": {
            "main": {"class": "logging.StreamHandler", "formatter": "main", "stream": "ext://sys.stderr"}
        },
        "root": {"handlers": ["main"], "level": level},
        "loggers": {
            **{
                name: {"handlers": [], "propagate": True, "level": level}
                for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
            },
            "alembic": {"handlers": [], "propagate": True, "level": _alembic_level(level)},
        },
    }
