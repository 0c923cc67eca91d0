"""`bulk_insert` stores exactly what a Core insert stores, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any

from sqlalchemy import insert, select

from omnicrm.bootstrap import Container
from omnicrm.store.bulk import bulk_insert, bulk_insert_shapes
from omnicrm.store.tables import customers, products


def _customer(cid: str, **values: Any) -> dict[str, Any]:
    at = datetime(2026, 11, 20, 12, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))
    return {
        "id": cid,
        "status": "client",
        "first_name": "Олена",
        "date_of_birth": date(1990, 2, 28),
        "contact_window_start": time(9, 0),
        "contact_window_end": time(20, 30, 15),
        "do_not_contact": True,
        "created_at": at,
        "updated_at": at,
        **values,
    }


def _stored(container: Container, table: Any, key: Any, ids: list[Any]) -> list[dict[str, Any]]:
    with container.reader() as conn:
        rows = conn.execute(select(table).where(key.in_(ids)).order_by(key))
        return [dict(r._mapping) for r in rows]


def test_customers_read_back_as_a_core_insert_stores_them(container: Container) -> None:
    """Dates, times, booleans and timezone-aware times convert alike; left-out columns get their
    Python-side defaults (False, 0, [], 1), given ones are kept."""
    given: dict[int, dict[str, Any]] = {1: {}, 2: {"channel_blacklist": ["sms"], "version": 7}}
    with container.uow() as uow:
        for n, values in given.items():  # one statement per shape: a statement's rows share their keys
            uow.conn.execute(insert(customers), [_customer(f"C-core-{n}", **values)])
            bulk_insert(uow.conn, customers, [_customer(f"C-bulk-{n}", **values)])
        uow.commit()

    core = _stored(container, customers, customers.c.id, ["C-core-1", "C-core-2"])
    bulk = _stored(container, customers, customers.c.id, ["C-bulk-1", "C-bulk-2"])

    assert [{**r, "id": None} for r in bulk] == [{**r, "id": None} for r in core]
    first = bulk[0]
    assert first["contact_window_end"] == time(20, 30, 15)
    assert first["date_of_birth"] == date(1990, 2, 28)
    assert first["created_at"] == datetime(2026, 11, 20, 10, 30, 15, 123456, tzinfo=UTC)
    assert (first["vulnerable"], first["open_complaints"], first["channel_blacklist"], first["version"]) == (
        False,
        0,
        [],
        1,
    )
    assert (bulk[1]["channel_blacklist"], bulk[1]["version"]) == (["sms"], 7)


def test_a_left_out_json_default_is_stored_for_every_row(container: Container) -> None:
    at = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    with container.uow() as uow:
        bulk_insert(uow.conn, customers, [_customer("C-1")])
        rows = [
            {
                "customer_id": "C-1",
                "origin_id": "C-1",
                "product_class": "deposit",
                "contract_number": f"DEP-{n}",
                "state": "active",
                "maturity_date": date(2027, 1, n + 1),
                "state_changed_at": at,
            }
            for n in range(3)
        ]
        bulk_insert(uow.conn, products, rows)
        uow.commit()

    stored = _stored(container, products, products.c.contract_number, ["DEP-0", "DEP-1", "DEP-2"])
    assert [(p["terms"], p["maturity_date"], p["state_changed_at"]) for p in stored] == [
        ({}, date(2027, 1, n + 1), at) for n in range(3)
    ]


def test_rows_of_different_shapes_read_back_as_core_inserts_store_them(container: Container) -> None:
    """`bulk_insert_shapes`: each row's left-out columns get their defaults (or NULL), whatever the
    other rows give."""
    shapes: list[dict[str, Any]] = [
        {},
        {"first_name": "Ірина", "value_tier": "premium"},
        {"channel_blacklist": ["sms"], "date_of_birth": None},
        {"first_name": "Олег"},
    ]

    def row(name: str, n: int) -> dict[str, Any]:
        at = datetime(2026, 11, 20, 12, n, tzinfo=UTC)
        return {"id": f"{name}-{n}", "status": "prospect", "created_at": at, "updated_at": at, **shapes[n]}

    with container.uow() as uow:
        for n in range(len(shapes)):
            uow.conn.execute(insert(customers), [row("C-core", n)])
        bulk_insert_shapes(uow.conn, customers, [row("C-bulk", n) for n in range(len(shapes))])
        uow.commit()

    core = _stored(container, customers, customers.c.id, [f"C-core-{n}" for n in range(len(shapes))])
    bulk = _stored(container, customers, customers.c.id, [f"C-bulk-{n}" for n in range(len(shapes))])

    assert [{**r, "id": None} for r in bulk] == [{**r, "id": None} for r in core]
    assert [(r["first_name"], r["channel_blacklist"], r["version"]) for r in bulk] == [
        (None, [], 1),
        ("Ірина", [], 1),
        (None, ["sms"], 1),
        ("Олег", [], 1),
    ]
