"""Published scenario versions and library generations (what every process runs on)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, insert, inspect, select, update
from sqlalchemy.engine import Connection

from omnicrm.store import offsets
from omnicrm.store.tables import instances, library_generations, scenario_versions

PUBLISH_LOCK = 4_242_002


def lock_publishing(conn: Connection) -> None:
    """One publication at a time: on PostgreSQL a transaction-scoped advisory lock (SQLite writers
    already serialise on BEGIN IMMEDIATE)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({PUBLISH_LOCK})")


def has_registry(conn: Connection) -> bool:
    """False on a database whose schema predates the registry (not migrated yet)."""
    return inspect(conn).has_table(library_generations.name)


def latest_generation(conn: Connection) -> dict[str, Any] | None:
    query = select(library_generations).order_by(library_generations.c.generation.desc()).limit(1)
    row = conn.execute(query).first()
    return dict(row._mapping) if row else None


def generation_number(conn: Connection) -> int | None:
    """The newest generation's number: one indexed read, cheap enough to poll."""
    value = conn.execute(select(func.max(library_generations.c.generation))).scalar()
    return int(value) if value is not None else None


def generations(conn: Connection, limit: int) -> list[dict[str, Any]]:
    columns = [c for c in library_generations.c if c.key not in ("policy", "messages")]
    query = select(*columns).order_by(library_generations.c.generation.desc()).limit(limit)
    return [dict(r._mapping) for r in conn.execute(query)]


def checksums(conn: Connection) -> dict[tuple[str, int], str]:
    """(scenario id, version) -> checksum of every published version."""
    query = select(scenario_versions.c.scenario_id, scenario_versions.c.version, scenario_versions.c.checksum)
    return {(r.scenario_id, r.version): r.checksum for r in conn.execute(query)}


def versions(conn: Connection) -> list[dict[str, Any]]:
    query = select(scenario_versions).order_by(scenario_versions.c.scenario_id, scenario_versions.c.version)
    return [dict(r._mapping) for r in conn.execute(query)]


def insert_versions(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        conn.execute(insert(scenario_versions), rows)


def insert_generation(conn: Connection, row: dict[str, Any]) -> None:
    conn.execute(insert(library_generations).values(**row))


def active_counts(conn: Connection) -> dict[tuple[str, int], int]:
    """Running conversations per (scenario id, version)."""
    query = (
        select(instances.c.scenario_id, instances.c.scenario_version, func.count())
        .where(instances.c.status == "active")
        .group_by(instances.c.scenario_id, instances.c.scenario_version)
    )
    return {(sid, version): int(n) for sid, version, n in conn.execute(query)}


def migrate_instances(
    conn: Connection, scenario_id: str, from_versions: list[int], to_version: int, steps: list[str]
) -> int:
    """Move running conversations to a new version when their current step exists there."""
    offsets.touch_conversations(conn, None)
    result = conn.execute(
        update(instances)
        .where(
            instances.c.status == "active",
            instances.c.scenario_id == scenario_id,
            instances.c.scenario_version.in_(from_versions),
            instances.c.step.in_(steps),
        )
        .values(scenario_version=to_version)
    )
    return int(result.rowcount)
