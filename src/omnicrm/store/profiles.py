"""Customer profiles and their child rows: identifiers, segments, consents, products, relationships."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from datetime import datetime
from typing import Any, TypeVar, cast

import orjson
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Select,
    String,
    and_,
    any_,
    bindparam,
    delete,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.types import TypeEngine

from omnicrm.store.bulk import bulk_insert, bulk_insert_shapes
from omnicrm.store.tables import consents, customers, identifiers, products, relationships, segments

Pair = tuple[str, str]
_S = TypeVar("_S")
_CHUNK = 400


_LISTING = ("sqlite", "postgresql")  # the dialects that take a whole list as one parameter


def _listed_type(dialect: str, integer: bool) -> TypeEngine[Any]:
    return String() if dialect == "sqlite" else ARRAY(BigInteger if integer else String)


def _in_listed(column: ColumnElement[Any], dialect: str, listed: BindParameter[Any]) -> ColumnElement[bool]:
    """`column IN` the list in `listed` (a JSON array read by json_each on SQLite, an array on PostgreSQL)."""
    if dialect == "sqlite":
        return column.in_(select(func.json_each(listed).table_valued("value").c.value))
    return column == any_(listed)


def _listed_value(dialect: str, wanted: list[Any]) -> Any:
    return orjson.dumps(wanted).decode() if dialect == "sqlite" else wanted


def among(
    conn: Connection, column: ColumnElement[Any], values: Iterable[str] | Iterable[int]
) -> ColumnElement[bool]:
    """`column IN values` (text, or integer keys) with the values in one bound parameter: compiled
    once and cached, instead of a placeholder rendered per value on every execution, which cost more
    than the look-ups themselves for batches."""
    wanted: list[Any] = sorted(set(values))
    dialect = conn.dialect.name
    if dialect not in _LISTING:
        return column.in_(wanted)
    integer = bool(wanted) and isinstance(wanted[0], int)
    listed = bindparam(None, _listed_value(dialect, wanted), type_=_listed_type(dialect, integer))
    return _in_listed(column, dialect, listed)


def among_bound(
    column: ColumnElement[Any], name: str, *, integer: bool = False
) -> dict[str, ColumnElement[bool]]:
    """`among` for a statement built once, per dialect: the values come at execution, as the
    parameter `name` given by `bound_values`. A statement built and keyed per call costs several
    times the look-up itself on the single-event intake path."""
    return {
        dialect: _in_listed(column, dialect, bindparam(name, type_=_listed_type(dialect, integer)))
        for dialect in _LISTING
    }


_SHAPES: dict[tuple[Hashable, ...], Any] = {}


def shaped(shape: tuple[Hashable, ...], build: Callable[[], _S]) -> _S:
    """The statement of this `shape` (its call site, the dialect, which optional filters it has),
    built once: its values come as named parameters at execution. Building a select and keying it
    for SQLAlchemy's compiled cache cost about a fifth of a live decision batch."""
    statement = _SHAPES.get(shape)
    if statement is None:
        statement = _SHAPES[shape] = build()
    return cast("_S", statement)


def bound_values(conn: Connection, values: Iterable[str] | Iterable[int]) -> Any:
    """The distinct values for an `among_bound` parameter on this connection's database."""
    return _listed_value(conn.dialect.name, sorted(set(values)))


def chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# Every (kind, value) pair of a batch in one bound parameter, joined to the primary key: one
# statement per batch, whatever the mix of identifier kinds (SQLite: the pairs drive the join).
_OWNERS = {
    "sqlite": text(
        "SELECT i.kind, i.value, i.customer_id, i.origin_id FROM json_each(:pairs) AS p "
        "CROSS JOIN identifiers AS i "
        "ON i.kind = json_extract(p.value, '$[0]') AND i.value = json_extract(p.value, '$[1]')"
    ),
    "postgresql": text(
        "SELECT i.kind, i.value, i.customer_id, i.origin_id "
        "FROM unnest(CAST(:kinds AS varchar[]), CAST(:values AS varchar[])) AS p(kind, value) "
        "JOIN identifiers AS i ON i.kind = p.kind AND i.value = p.value"
    ),
}


def owners_of(conn: Connection, pairs: Iterable[Pair]) -> dict[Pair, tuple[str, str]]:
    """(kind, value) -> (customer_id, origin_id) for every pair that is known."""
    wanted = list(dict.fromkeys(pairs))
    if not wanted:
        return {}
    if conn.dialect.name == "sqlite":
        rows = conn.execute(_OWNERS["sqlite"], {"pairs": orjson.dumps(wanted).decode()})
    else:
        kinds, values = zip(*wanted, strict=True)
        rows = conn.execute(_OWNERS["postgresql"], {"kinds": list(kinds), "values": list(values)})
    return {(kind, value): (cid, origin) for kind, value, cid, origin in rows}


def root_of(conn: Connection, customer_ids: Iterable[str]) -> dict[str, str]:
    """Map each id to the live profile it ends in after following `merged_into`; unknown ids are left out."""
    result: dict[str, str] = {}
    pending = {cid: cid for cid in customer_ids}
    for _ in range(32):  # merge chains are short; the bound guards against a corrupt cycle
        if not pending:
            break
        rows = conn.execute(
            select(customers.c.id, customers.c.merged_into).where(customers.c.id.in_(set(pending.values())))
        ).all()
        step = {r.id: r.merged_into for r in rows}
        nxt: dict[str, str] = {}
        for start, current in pending.items():
            if current not in step:
                continue
            target = step[current]
            if target is None:
                result[start] = current
            else:
                nxt[start] = target
        pending = nxt
    return result


def get_customer(conn: Connection, customer_id: str) -> dict[str, Any] | None:
    row = conn.execute(select(customers).where(customers.c.id == customer_id)).first()
    return dict(row._mapping) if row else None


def insert_customers(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """New profiles; a row may leave out columns (NULL, or the column's default)."""
    bulk_insert_shapes(conn, customers, rows)


def update_customer(conn: Connection, customer_id: str, values: dict[str, Any], now: datetime) -> None:
    if values:
        conn.execute(
            update(customers)
            .where(customers.c.id == customer_id)
            .values(**values, updated_at=now, version=customers.c.version + 1)
        )


def insert_identifiers(conn: Connection, rows: list[dict[str, Any]]) -> None:
    bulk_insert(conn, identifiers, rows)


def identifiers_of(conn: Connection, customer_id: str) -> list[dict[str, Any]]:
    query = select(identifiers).where(identifiers.c.customer_id == customer_id).order_by(identifiers.c.kind)
    return [dict(r._mapping) for r in conn.execute(query)]


def segments_of(conn: Connection, customer_id: str) -> list[str]:
    query = (
        select(segments.c.segment).where(segments.c.customer_id == customer_id).order_by(segments.c.segment)
    )
    return list(conn.execute(query).scalars())


def set_segments(conn: Connection, customer_id: str, wanted: Iterable[str]) -> None:
    conn.execute(delete(segments).where(segments.c.customer_id == customer_id))
    rows = [{"customer_id": customer_id, "segment": s} for s in sorted(set(wanted))]
    if rows:
        conn.execute(insert(segments), rows)


def add_segments(conn: Connection, customer_id: str, new: Iterable[str]) -> None:
    have = set(segments_of(conn, customer_id))
    rows = [{"customer_id": customer_id, "segment": s} for s in sorted(set(new) - have)]
    if rows:
        conn.execute(insert(segments), rows)


def consent_ledger(conn: Connection, customer_id: str) -> list[dict[str, Any]]:
    query = (
        select(consents)
        .where(consents.c.customer_id == customer_id)
        .order_by(consents.c.effective_at, consents.c.id)
    )
    return [dict(r._mapping) for r in conn.execute(query)]


def append_consents(conn: Connection, rows: list[dict[str, Any]]) -> None:
    bulk_insert(conn, consents, rows)


def products_of(conn: Connection, customer_id: str) -> list[dict[str, Any]]:
    query = (
        select(products)
        .where(products.c.customer_id == customer_id)
        .order_by(products.c.product_class, products.c.contract_number)
    )
    return [dict(r._mapping) for r in conn.execute(query)]


def _products_by_contract() -> dict[str, Select[Any]]:
    pairs = func.json_each(bindparam("pairs", type_=String)).table_valued("value").alias("p")
    wanted = (
        func.unnest(bindparam("classes", type_=ARRAY(String)), bindparam("numbers", type_=ARRAY(String)))
        .table_valued("product_class", "contract_number")
        .render_derived(name="w")
    )
    return {
        "sqlite": select(products).select_from(
            pairs.join(
                products,
                and_(
                    products.c.product_class == func.json_extract(pairs.c.value, "$[0]"),
                    products.c.contract_number == func.json_extract(pairs.c.value, "$[1]"),
                ),
            )
        ),
        "postgresql": select(products).select_from(
            wanted.join(
                products,
                and_(
                    products.c.product_class == wanted.c.product_class,
                    products.c.contract_number == wanted.c.contract_number,
                ),
            )
        ),
    }


_PRODUCTS_BY_CONTRACT = _products_by_contract()


def products_by_contract(
    conn: Connection, keys: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], dict[str, Any]]:
    """(product class, contract number) -> product row, for the keys that exist; one statement."""
    wanted = list(dict.fromkeys(keys))
    if not wanted:
        return {}
    if conn.dialect.name == "sqlite":
        params: dict[str, Any] = {"pairs": orjson.dumps(wanted).decode()}
    else:
        classes, numbers = zip(*wanted, strict=True)
        params = {"classes": list(classes), "numbers": list(numbers)}
    rows = conn.execute(_PRODUCTS_BY_CONTRACT[conn.dialect.name], params)
    return {(r.product_class, r.contract_number): dict(r._mapping) for r in rows}


def insert_products(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Insert products and register each contract number as a `contract` identifier of its owner."""
    if not rows:
        return
    bulk_insert(conn, products, rows)
    pairs = [("contract", str(r["contract_number"])) for r in rows]
    known = owners_of(conn, pairs)
    insert_identifiers(
        conn,
        [
            {
                "kind": "contract",
                "value": r["contract_number"],
                "customer_id": r["customer_id"],
                "origin_id": r["origin_id"],
                "created_at": r["state_changed_at"],
            }
            for r in {r["contract_number"]: r for r in rows}.values()
            if ("contract", r["contract_number"]) not in known
        ],
    )


def update_product(conn: Connection, product_id: int, values: dict[str, Any]) -> None:
    conn.execute(update(products).where(products.c.id == product_id).values(**values))


def move_products(conn: Connection, moves: list[tuple[int, str, datetime]]) -> None:
    """Set (state, state_changed_at) of many products in one executemany."""
    if moves:
        statement = (
            update(products)
            .where(products.c.id == bindparam("pid"))
            .values(state=bindparam("new_state"), state_changed_at=bindparam("changed_at"))
        )
        conn.execute(statement, [{"pid": p, "new_state": s, "changed_at": at} for p, s, at in moves])


def relationships_of(conn: Connection, customer_id: str) -> list[dict[str, Any]]:
    query = (
        select(relationships).where(relationships.c.customer_id == customer_id).order_by(relationships.c.id)
    )
    return [dict(r._mapping) for r in conn.execute(query)]


def insert_relationships(conn: Connection, rows: list[dict[str, Any]]) -> None:
    bulk_insert(conn, relationships, rows)


def count_customers(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(customers)).scalar_one())


def insert_segments(conn: Connection, rows: list[dict[str, Any]]) -> None:
    bulk_insert(conn, segments, rows)


def lock_customers(
    conn: Connection, customer_ids: Iterable[str], *, exclusive: bool
) -> dict[str, str | None]:
    """Lock these profiles until the transaction ends and read, after the lock, whom each is merged
    into (None: live); unknown ids are left out. The rows are locked in id order, so writers that
    lock several never wait for one another in a circle. `exclusive` (FOR UPDATE) is a merge's lock:
    it waits for every writer still attaching rows to these profiles (an insert that refers to a
    profile holds its key) and holds off the next; otherwise (FOR KEY SHARE) the lock only keeps
    merges away, and other writers of the same profile go on. SQLite has no row locks: there a
    writer's transaction is the only one (BEGIN IMMEDIATE behind the write gate)."""
    wanted = sorted(set(customer_ids))
    if not wanted:
        return {}
    query = (
        select(customers.c.id, customers.c.merged_into)
        .where(customers.c.id.in_(wanted))
        .order_by(customers.c.id)
    )
    query = query.with_for_update() if exclusive else query.with_for_update(read=True, key_share=True)
    return {cid: merged_into for cid, merged_into in conn.execute(query)}
