"""Recognising a full disk in a database error, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import sqlite3

_DISK_FULL_SQLSTATE = "53100"  # PostgreSQL's disk_full (psycopg.errors.DiskFull)


def is_disk_full(exc: BaseException) -> bool:
    """Whether `exc` (a driver error, or SQLAlchemy's wrapper of one) says the database could not
    grow: SQLite's SQLITE_FULL ("database or disk is full", also at `max_page_count`) or PostgreSQL's
    SQLSTATE 53100. psycopg's errors arrive unwrapped from a COPY, wrapped from other statements."""
    for error in (exc, getattr(exc, "orig", None)):
        if (
            isinstance(error, sqlite3.Error)
            and (getattr(error, "sqlite_errorcode", 0) & 0xFF) == sqlite3.SQLITE_FULL
        ):
            return True
        if getattr(error, "sqlstate", None) == _DISK_FULL_SQLSTATE:
            return True
    return False
