"""The dispatch worker's claim on SQLite: it runs every few hundred milliseconds inside a write
transaction, so it must find its messages through an index on the channels it serves. Queued
messages of channels without an adapter (an e-mail queue with no SMTP configured, as on a fresh
`make demo`) used to be walked one by one on each poll while the writers waited behind it:
the REST intake lost ~20 % of its throughput and its p99 tripled with the dispatch worker beside it."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy.dialects import sqlite

from omnicrm.bootstrap import Container
from omnicrm.store import dispatch


def test_the_claim_seeks_the_served_channels_in_an_index(container: Container, now: datetime) -> None:
    if container.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's plan (PostgreSQL's depends on its statistics)")
    query = dispatch.claim_query(["callcentre", "inapp"], now, 1)
    sql = str(query.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}))

    with container.reader() as conn:
        plan = " | ".join(str(row[3]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))

    assert "channel=?" in plan, plan
