"""Users, roles, API tokens and logins; every change here is audited (a failed login only when it
locks a name or an address out, see services/access/login_throttle.py)."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import VerificationError
from sqlalchemy.engine import Connection

from omnicrm.domain.errors import Conflict, InvalidInput, ItemError, NotFound
from omnicrm.domain.login_throttle import Policy
from omnicrm.domain.vocabulary import ROLES
from omnicrm.services.access import login_throttle
from omnicrm.store import accounts, audit
from omnicrm.store.uow import UnitOfWork

_HASHER = PasswordHasher()
_DUMMY_HASH = _HASHER.hash("omnicrm-timing-equaliser")
TOKEN_PREFIX = "ocrm_"  # noqa: S105 - a prefix, not a secret
TOKEN_DAYS_DEFAULT = 90
TOKEN_DAYS_MAX = 365


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the user behind a valid token."""

    user_id: int
    username: str
    role: str
    branch: str | None


def token_hash(raw: str) -> str:
    """Tokens are 256-bit random strings, so a plain SHA-256 is a safe, fast digest to store."""
    return hashlib.sha256(raw.encode()).hexdigest()


PASSWORD_MIN_LENGTH = 12  # stated in the OpenAPI too (api/admin.py UserIn)


def create_user(
    conn: Connection,
    *,
    username: str,
    role: str,
    password: str | None,
    branch: str | None,
    actor: str,
    now: datetime,
) -> int:
    """Create a user with a role; a password is optional (integrations use tokens only)."""
    if role not in ROLES:
        raise InvalidInput("unknown role", [ItemError(None, "role", f"choose one of {', '.join(ROLES)}")])
    if password is not None and len(password) < PASSWORD_MIN_LENGTH:
        reason = f"use at least {PASSWORD_MIN_LENGTH} characters"
        raise InvalidInput("weak password", [ItemError(None, "password", reason)])
    if accounts.user_by_name(conn, username) is not None:
        raise Conflict(f"user {username!r} exists")
    user_id = accounts.insert_user(
        conn,
        {
            "username": username,
            "role": role,
            "branch": branch,
            "active": True,
            "created_at": now,
            "password_hash": _HASHER.hash(password) if password else None,
        },
    )
    audit.append(conn, at=now, actor=actor, action="user.created", target=username, details={"role": role})
    return user_id


def issue_token(
    conn: Connection, *, username: str, name: str, ttl: timedelta | None, actor: str, now: datetime
) -> str:
    """Issue a new API token for a user; the raw token is returned once and never stored."""
    if ttl is not None and ttl <= timedelta(0):
        raise InvalidInput("bad token lifetime", [ItemError(None, "ttl", "must be positive")])
    user = _user(conn, username)
    if not user["active"]:
        raise Conflict(f"user {username!r} is deactivated: no token is issued to them")
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    accounts.insert_token(
        conn,
        {
            "token_hash": token_hash(raw),
            "user_id": user["id"],
            "name": name,
            "created_at": now,
            "expires_at": now + ttl if ttl else None,
        },
    )
    audit.append(conn, at=now, actor=actor, action="token.issued", target=username, details={"name": name})
    return raw


def _user(conn: Connection, username: str) -> dict[str, Any]:
    user = accounts.user_by_name(conn, username)
    if user is None:
        raise NotFound(f"user {username!r} does not exist")
    return user


def list_tokens(conn: Connection, username: str) -> list[dict[str, Any]]:
    """A user's API tokens (id, name, created, expires, revoked), oldest first; never the hash."""
    return accounts.tokens_of_user(conn, _user(conn, username)["id"])


def revoke_token(conn: Connection, *, username: str, token_id: int, actor: str, now: datetime) -> None:
    """Revoke one of a user's tokens; revoking it again changes nothing and is not audited again."""
    user = _user(conn, username)
    tokens = {t["id"]: t for t in accounts.tokens_of_user(conn, user["id"])}
    if token_id not in tokens:
        raise NotFound(f"user {username!r} has no token {token_id}")
    if accounts.revoke_token(conn, user["id"], token_id, now):
        details = {"token_id": token_id, "name": tokens[token_id]["name"]}
        audit.append(conn, at=now, actor=actor, action="token.revoked", target=username, details=details)


def deactivate_user(conn: Connection, *, username: str, actor: str, now: datetime) -> bool:
    """Deactivate a user: their login is refused like a wrong password, every token of theirs is
    revoked (and refused anyway, as authenticate checks the user is active). Deactivating them again
    changes nothing and is not audited again; returns whether anything changed."""
    user = _user(conn, username)
    changed = accounts.deactivate_user(conn, user["id"])
    revoked = accounts.revoke_tokens(conn, user["id"], now)
    if changed:
        details = {"tokens_revoked": revoked}
        audit.append(conn, at=now, actor=actor, action="user.deactivated", target=username, details=details)
    return changed


def authenticate(conn: Connection, raw: str, now: datetime) -> Principal | None:
    """The principal behind a token, or None when it is unknown, revoked or expired."""
    if not raw.startswith(TOKEN_PREFIX):
        return None
    row = accounts.principal_by_token_hash(conn, token_hash(raw), now)
    if row is None:
        return None
    return Principal(row["id"], row["username"], row["role"], row["branch"])


def login(
    uows: Callable[[], UnitOfWork],
    *,
    username: str,
    password: str,
    address: str,
    limits: Policy,
    now: datetime,
    ttl: timedelta,
) -> str | None:
    """Exchange a password for a short-lived token (None: wrong name or password).

    The attempt is claimed by the login throttle first, in its own transaction, so a locked name or
    address (LoginThrottled) costs no Argon2 work and a failure stays counted; the hash is checked
    outside any transaction, holding no lock. An unknown or deactivated user costs the same hash as
    a wrong password and is answered alike."""
    with uows() as uow:
        attempt = login_throttle.claim(uow.conn, username=username, address=address, limits=limits, now=now)
        user = accounts.user_by_name(uow.conn, username)
        uow.commit()
    if not _password_matches(user, password):
        if attempt.locked:
            with uows() as uow:
                login_throttle.failed(uow.conn, attempt, now=now)
                uow.commit()
        return None
    with uows() as uow:
        login_throttle.succeeded(uow.conn, attempt, limits=limits, now=now)
        audit.append(uow.conn, at=now, actor=username, action="login.succeeded", target=username, details={})
        token = issue_token(uow.conn, username=username, name="login", ttl=ttl, actor=username, now=now)
        uow.commit()
    return token


def _password_matches(user: dict[str, Any] | None, password: str) -> bool:
    """Always one Argon2 verification: against a dummy hash when there is no usable one, so that
    neither the time nor the answer tells an unknown or deactivated user from a wrong password."""
    stored = user["password_hash"] if user and user["active"] and user["password_hash"] else None
    try:
        _HASHER.verify(stored or _DUMMY_HASH, password)
    except VerificationError:
        return False
    return stored is not None
