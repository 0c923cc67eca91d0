"""Many rows in and out on hot paths, without SQLAlchemy's per-value processing: `fetch` reads a
Core select's rows as plain sequences, `bulk_insert` writes rows in their stored form (`stored_rows`
builds that form apart, `insert_stored` writes it)."""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import JSON, Column, ColumnDefault, Select, Table, insert
from sqlalchemy.engine import Connection, Dialect

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


@dataclass(frozen=True, slots=True)
class StoredRows:
    """Rows of one table in the form they are stored in, ready for `insert_stored`. Building them is
    pure Python, so a writer can do it before it takes the database's write lock."""

    table: Table
    names: tuple[str, ...]
    values: list[tuple[Any, ...]]
    dialect: str
    rows: list[dict[str, Any]] = field(default_factory=list)  # a dialect without a fast path: as given


def bulk_insert(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert many rows on the hot path, as timeline.insert_events does: on SQLite one driver
    executemany of tuples in stored form (times as text, JSON serialised once), on PostgreSQL one
    COPY; no per-value bind processing, which cost more than the insert itself. Elsewhere a Core
    executemany. (`stored_rows` + `insert_stored`, in one go.)"""
    if rows:
        insert_stored(conn, stored_rows(conn.dialect, table, rows))


def bulk_insert_shapes(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """`bulk_insert` of rows that need not have the same keys: a column a row leaves out gets its
    default, as in a Core insert (the Python-side default, else the database's); rows with the same
    keys share one statement. Binding only the columns given is cheaper than binding every column:
    a new profile's `customers` row of 10 given columns is written in under half the time of all 25."""
    shapes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        shapes.setdefault(tuple(row), []).append(row)
    for shaped in shapes.values():
        bulk_insert(conn, table, shaped)


def stored_rows(dialect: Dialect, table: Table, rows: list[dict[str, Any]]) -> StoredRows:
    """`rows` (dicts, every one with the keys of the first) in stored form for `dialect`. A column
    left out gets its Python-side default (as a Core insert would give it); other typed values
    (dates, times, booleans) take the dialect's own bind conversion, so what is stored is what a
    Core insert stores."""
    name = dialect.name
    if not rows or name not in ("sqlite", "postgresql"):
        return StoredRows(table, (), [], name, rows=list(rows))
    columns = [c for c in table.c if c.key in rows[0]]
    defaults = [(c, d) for c in table.c if c.key not in rows[0] and (d := _python_default(c)) is not None]
    times: dict[datetime, Any] = {}  # the rows of a batch share a few moments
    to_time = sqlite_time if name == "sqlite" else _pg_time

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
        if name != "sqlite":  # COPY adapts dates, times and booleans itself
            return None
        processor: Callable[[Any], Any] | None = column.type.dialect_impl(dialect).bind_processor(dialect)
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
    names = tuple(c.name for c in (*columns, *(c for c, _ in defaults)))
    return StoredRows(table, names, values, name)


def insert_stored(conn: Connection, stored: StoredRows) -> None:
    """Write rows built by `stored_rows` for this connection's dialect."""
    if stored.dialect != conn.dialect.name:
        raise ValueError(f"rows stored for {stored.dialect}, written to {conn.dialect.name}")
    if stored.rows:
        conn.execute(insert(stored.table), stored.rows)
        return
    if not stored.values:
        return
    table, names = stored.table.name, ", ".join(stored.names)
    if stored.dialect == "sqlite":
        marks = ", ".join("?" * len(stored.names))
        conn.exec_driver_sql(f"INSERT INTO {table} ({names}) VALUES ({marks})", stored.values)  # noqa: S608
        return
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    with cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
        for stored_row in stored.values:
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
