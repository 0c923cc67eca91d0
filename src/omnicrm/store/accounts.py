"""Users and their API tokens (only the SHA-256 of a token is stored)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from omnicrm.store.tables import api_tokens, users


def user_by_name(conn: Connection, username: str) -> dict[str, Any] | None:
    row = conn.execute(select(users).where(users.c.username == username)).first()
    return dict(row._mapping) if row else None


def insert_user(conn: Connection, values: dict[str, Any]) -> int:
    return int(conn.execute(insert(users).values(**values)).inserted_primary_key[0])  # type: ignore[index]


def list_users(conn: Connection) -> list[dict[str, Any]]:
    query = select(
        users.c.id, users.c.username, users.c.role, users.c.branch, users.c.active, users.c.created_at
    )
    return [dict(r._mapping) for r in conn.execute(query.order_by(users.c.id))]


def insert_token(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(insert(api_tokens).values(**values))


def principal_by_token_hash(conn: Connection, token_hash: str, now: datetime) -> dict[str, Any] | None:
    query = (
        select(users.c.id, users.c.username, users.c.role, users.c.branch, api_tokens.c.expires_at)
        .join(api_tokens, api_tokens.c.user_id == users.c.id)
        .where(
            api_tokens.c.token_hash == token_hash, api_tokens.c.revoked_at.is_(None), users.c.active.is_(True)
        )
    )
    row = conn.execute(query).first()
    if row is None or (row.expires_at is not None and row.expires_at <= now):
        return None
    return dict(row._mapping)


def deactivate_user(conn: Connection, user_id: int) -> bool:
    """Mark a user inactive; False when they already were."""
    result = conn.execute(
        update(users).where(users.c.id == user_id, users.c.active.is_(True)).values(active=False)
    )
    return bool(result.rowcount)


def revoke_tokens(conn: Connection, user_id: int, now: datetime) -> int:
    result = conn.execute(
        update(api_tokens)
        .where(api_tokens.c.user_id == user_id, api_tokens.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return result.rowcount


def tokens_of_user(conn: Connection, user_id: int) -> list[dict[str, Any]]:
    """A user's tokens, oldest first: never the hash."""
    query = select(
        api_tokens.c.id,
        api_tokens.c.name,
        api_tokens.c.created_at,
        api_tokens.c.expires_at,
        api_tokens.c.revoked_at,
    ).where(api_tokens.c.user_id == user_id)
    return [dict(r._mapping) for r in conn.execute(query.order_by(api_tokens.c.id))]


def revoke_token(conn: Connection, user_id: int, token_id: int, now: datetime) -> bool:
    """Revoke one of a user's tokens; False when it was already revoked."""
    result = conn.execute(
        update(api_tokens)
        .where(
            api_tokens.c.id == token_id, api_tokens.c.user_id == user_id, api_tokens.c.revoked_at.is_(None)
        )
        .values(revoked_at=now)
    )
    return bool(result.rowcount)
