"""Accounts, tokens, audit trail, event catalogue and health."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import Field, StringConstraints

from omnicrm.api.deps import ContainerDep, current_principal, require
from omnicrm.api.responses import FastJSON
from omnicrm.domain.errors import Conflict, Unauthenticated
from omnicrm.domain.permissions import Permission
from omnicrm.domain.vocabulary import Role
from omnicrm.services import auth
from omnicrm.services.auth import Principal
from omnicrm.services.contracts import Label, Strict
from omnicrm.store import audit

router = APIRouter(tags=["administration"], default_response_class=FastJSON)
Admin = Annotated[Principal, Depends(require(Permission.MANAGE_USERS))]


class LoginIn(Strict):
    username: str
    password: str


class UserIn(Strict):
    username: Label
    role: Role
    password: Annotated[str, StringConstraints(min_length=auth.PASSWORD_MIN_LENGTH)] | None = None
    branch: Label | None = None


class TokenIn(Strict):
    name: Label = "api"
    ttl_days: int = Field(
        default=auth.TOKEN_DAYS_DEFAULT,
        ge=1,
        le=auth.TOKEN_DAYS_MAX,
        strict=True,
        description=f"Days until the token expires: 1-{auth.TOKEN_DAYS_MAX}, "
        f"{auth.TOKEN_DAYS_DEFAULT} when left out. A token never lives forever.",
    )


@router.get(
    "/healthz", tags=["health"], summary="Liveness: the process answers and the database is reachable"
)
def health(container: ContainerDep) -> dict[str, str]:
    with container.reader() as conn:
        conn.exec_driver_sql("SELECT 1")
    return {"status": "ok"}


@router.post("/v1/auth/login", summary="Exchange a username and password for a 12-hour token")
def login(body: LoginIn, container: ContainerDep) -> dict[str, Any]:
    with container.uow() as uow:
        token = auth.login(
            uow.conn,
            username=body.username,
            password=body.password,
            now=datetime.now(UTC),
            ttl=timedelta(hours=12),
        )
        uow.commit()
    if token is None:
        raise Unauthenticated("wrong username or password")
    return {"token": token, "token_type": "bearer", "expires_in": 12 * 3600}


@router.get("/v1/me", summary="Who the token belongs to")
def me(who: Annotated[Principal, Depends(current_principal)]) -> dict[str, Any]:
    return {"username": who.username, "role": who.role, "branch": who.branch}


@router.post("/v1/users", status_code=201, summary="Create a user with a role")
def create_user(body: UserIn, container: ContainerDep, who: Admin) -> dict[str, Any]:
    with container.uow() as uow:
        user_id = auth.create_user(
            uow.conn,
            username=body.username,
            role=body.role,
            password=body.password,
            branch=body.branch,
            actor=who.username,
            now=datetime.now(UTC),
        )
        uow.commit()
    return {"id": user_id, "username": body.username, "role": body.role}


@router.post("/v1/users/{username}/tokens", status_code=201, summary="Issue an API token (shown once)")
def create_token(username: str, body: TokenIn, container: ContainerDep, who: Admin) -> dict[str, Any]:
    ttl = timedelta(days=body.ttl_days)
    with container.uow() as uow:
        token = auth.issue_token(
            uow.conn, username=username, name=body.name, ttl=ttl, actor=who.username, now=datetime.now(UTC)
        )
        uow.commit()
    return {"token": token, "username": username}


@router.get("/v1/users/{username}/tokens", summary="A user's API tokens (never the token or its hash)")
def list_tokens(username: str, container: ContainerDep, who: Admin) -> dict[str, Any]:
    with container.reader() as conn:
        items = auth.list_tokens(conn, username)
    return {"items": items}


@router.delete(
    "/v1/users/{username}/tokens/{token_id}",
    status_code=204,
    response_class=Response,
    summary="Revoke an API token: refused at once by this process, by every process within "
    "OMNICRM_TOKEN_CACHE_SECONDS",
)
def revoke_token(
    username: str,
    token_id: Annotated[int, Path(ge=1, le=2**63 - 1)],
    request: Request,
    container: ContainerDep,
    who: Admin,
) -> Response:
    with container.uow() as uow:
        auth.revoke_token(
            uow.conn, username=username, token_id=token_id, actor=who.username, now=datetime.now(UTC)
        )
        uow.commit()
    request.app.state.token_cache.clear()  # the cache is keyed by raw token: forget them all
    return Response(status_code=204)


@router.post(
    "/v1/users/{username}:deactivate",
    status_code=204,
    response_class=Response,
    summary="Deactivate a user: their tokens are revoked and their login refused, at once by this "
    "process, by every process within OMNICRM_TOKEN_CACHE_SECONDS; again is a no-op",
)
def deactivate_user(username: str, request: Request, container: ContainerDep, who: Admin) -> Response:
    if username == who.username:
        raise Conflict("an admin cannot deactivate themselves: ask another admin")
    with container.uow() as uow:
        auth.deactivate_user(uow.conn, username=username, actor=who.username, now=datetime.now(UTC))
        uow.commit()
    request.app.state.token_cache.clear()  # the cache is keyed by raw token: forget them all
    return Response(status_code=204)


@router.get("/v1/audit", summary="The audit trail, newest first")
def audit_trail(
    container: ContainerDep,
    who: Annotated[Principal, Depends(require(Permission.READ_AUDIT))],
    action: str | None = None,
    target: str | None = None,
    before_id: int | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    with container.reader() as conn:
        items = audit.entries(conn, action=action, target=target, before_id=before_id, limit=limit)
        intact, checked = audit.verify(conn)
    return {"items": items, "chain_intact": intact, "entries_checked": checked}


@router.get("/v1/catalogue/events", summary="The event catalogue: types, kinds and attribute schemas")
def event_catalogue(
    container: ContainerDep, who: Annotated[Principal, Depends(require(Permission.READ_CATALOGUE))]
) -> dict[str, Any]:
    cat = container.catalogue
    return {
        "version": cat.version,
        "types": {
            name: {"kind": t.kind, "description": t.description, "attributes": t.model.model_json_schema()}
            for name, t in cat.types.items()
        },
    }
