"""Many rows in and out on hot paths, without SQLAlchemy's per-value processing: `fetch` reads a
Core select's rows as plain sequences, `bulk_insert` writes rows in their stored form."""

from __future__ import annotations

import operator
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import JSON, Column, ColumnDefault, Select, Table, insert
from sqlalchemy.engine import Connection

from omnicrm.store.types import UtcDateTime


def _utc_from_sqlite(text: str | None) -> datetime | None:
    """What UtcDateTime reads back from SQLite's text: SQLAlchemy's fromisoformat, then UTC. The text
    it stores ("2026-08-01 00:01:26.000000") is parsed with its zone in one step (replace() costs 6x)."""
    if text is None:
        return None
    if len(text) == 26 and text[19] == "." and text[20:].isdigit():
        return datetime.fromisoformat(text + "+00:00")
    moment = datetime.fromisoformat(text)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def fetch(conn: Connection, query: Select[Any], params: dict[str, Any] | None = None) -> list[Any]:
    """All rows of a Core select, as sequences to unpack (hot paths read thousands per batch).

    On SQLite the driver's rows are converted here with SQLAlchemy's own result processor of each
    column (UtcDateTime's with the faster equivalent above), without building a Row per row: the
    same values at half the cost."""
    result = conn.execute(query, params)
    if conn.dialect.name != "sqlite":
        return list(result.all())
    dialect = conn.dialect
    convert: list[tuple[int, Callable[[Any], Any]]] = []
    for at, column in enumerate(query.selected_columns):
        if isinstance(column.type, UtcDateTime):
            convert.append((at, _utc_from_sqlite))
        elif (process := column.type.dialect_impl(dialect).result_processor(dialect, None)) is not None:
            convert.append((at, process))
    try:
        rows = result.cursor.fetchall()
    finally:
        result.close()
    if not convert:
        return list(rows)
    found: list[Any] = []
    for row in rows:
        values = list(row)
        for at, reader in convert:
            values[at] = reader(values[at])
        found.append(values)
    return found


def sqlite_time(moment: datetime | None) -> str | None:
    """What UtcDateTime and SQLAlchemy's SQLite DATETIME store: naive UTC text with microseconds."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        raise ValueError("naive datetime: omnicrm stores only timezone-aware times")
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _json_text(value: Any) -> str:
    """What the engine's JSON serializer writes (store/db.py); None is stored as JSON null, as JSON does."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def _pg_time(moment: datetime | None) -> datetime | None:
    """What UtcDateTime binds on PostgreSQL: the moment in UTC (naive values are refused)."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        raise ValueError("naive datetime: omnicrm stores only timezone-aware times")
    return moment.astimezone(UTC)


def bulk_insert(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert many rows on the hot path, as timeline.insert_events does: on SQLite one driver
    executemany of tuples in stored form (times as text, JSON serialised once), on PostgreSQL one
    COPY; no per-value bind processing, which cost more than the insert itself. Elsewhere a Core
    executemany.

    Every row has the keys of the first. A column left out gets its Python-side default (as a Core
    insert would give it); other typed values (dates, times, booleans) take the dialect's own bind
    conversion, so what is stored is what a Core insert stores."""
    if not rows:
        return
    dialect = conn.dialect.name
    if dialect not in ("sqlite", "postgresql"):
        conn.execute(insert(table), rows)
        return
    columns = [c for c in table.c if c.key in rows[0]]
    defaults = [(c, d) for c in table.c if c.key not in rows[0] and (d := _python_default(c)) is not None]
    times: dict[datetime, Any] = {}  # the rows of a batch share a few moments
    to_time = sqlite_time if dialect == "sqlite" else _pg_time

    def stored_time(moment: datetime | None) -> Any:
        if moment is None:
            return None
        if (value := times.get(moment)) is None:
            value = times[moment] = to_time(moment)
        return value

    def stored(column: Any) -> Callable[[Any], Any] | None:
        if isinstance(column.type, UtcDateTime):
            return stored_time
        if isinstance(column.type, JSON):
            return _json_text
        if dialect != "sqlite":  # COPY adapts dates, times and booleans itself
            return None
        processor: Callable[[Any], Any] | None = column.type.dialect_impl(conn.dialect).bind_processor(
            conn.dialect
        )
        return processor

    read = operator.itemgetter(*(column.key for column in columns))
    forms = [(at, form) for at, column in enumerate(columns) if (form := stored(column)) is not None]
    filled = tuple(_stored_default(d, stored(c)) for c, d in defaults)
    values: list[tuple[Any, ...]] = []
    for row in rows:
        value = list(read(row)) if len(columns) > 1 else [read(row)]
        for at, form in forms:
            value[at] = form(value[at])
        values.append((*value, *filled))
    names = ", ".join(c.name for c in (*columns, *(c for c, _ in defaults)))
    if dialect == "sqlite":
        marks = ", ".join("?" * (len(columns) + len(defaults)))
        conn.exec_driver_sql(f"INSERT INTO {table.name} ({names}) VALUES ({marks})", values)  # noqa: S608
        return
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    with cursor.copy(f"COPY {table.name} ({names}) FROM STDIN") as copy:
        for stored_row in values:
            copy.write_row(stored_row)


def _python_default(column: Column[Any]) -> ColumnDefault | None:
    """The column's Python-side default (a value, or a function of nothing), if it has one."""
    default = column.default
    if isinstance(default, ColumnDefault) and (default.is_scalar or default.is_callable):
        return default
    return None


def _stored_default(default: ColumnDefault, form: Callable[[Any], Any] | None) -> Any:
    """The default in stored form: computed once, the same for every row of the statement."""
    value = default.arg if default.is_scalar else default.arg(None)
    return form(value) if form is not None else value
