"""Small helpers to turn rows into JSON-ready dicts and back."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Row, Table


def to_jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    return value


def row_dict(row: Row[Any]) -> dict[str, Any]:
    return dict(row._mapping)


def json_row(row: Row[Any]) -> dict[str, Any]:
    return {k: to_jsonable(v) for k, v in row._mapping.items()}


def from_json_row(table: Table, data: dict[str, Any]) -> dict[str, Any]:
    """Inverse of json_row for one table: parse dates and times back by column type."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        column = table.c[key]
        python_type: Any
        try:
            python_type = column.type.python_type
        except NotImplementedError:
            python_type = object
        if isinstance(value, str) and python_type is dt.datetime:
            out[key] = dt.datetime.fromisoformat(value)
        elif isinstance(value, str) and python_type is dt.date:
            out[key] = dt.date.fromisoformat(value)
        elif isinstance(value, str) and python_type is dt.time:
            out[key] = dt.time.fromisoformat(value)
        else:
            out[key] = value
    return out
