"""Accounts, tokens, audit trail, event catalogue and health."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import Field, StringConstraints

from omnicrm.api.deps import ContainerDep, current_principal, require
from omnicrm.api.responses import FastJSON, Problem, problem
from omnicrm.bootstrap import Container
from omnicrm.domain.errors import Conflict, Unauthenticated
from omnicrm.domain.login_throttle import Policy
from omnicrm.domain.permissions import Permission
from omnicrm.domain.vocabulary import Role
from omnicrm.services.access import auth, login_throttle
from omnicrm.services.access.auth import Principal
from omnicrm.services.contracts import Label, Strict
from omnicrm.settings import Settings
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


_THROTTLED = "too many failed logins for this user name or address: retry after Retry-After seconds"


@router.post(
    "/v1/auth/login",
    summary="Exchange a username and password for a 12-hour token (throttled: 429 after repeated failures)",
    response_model=dict[str, Any],
    responses={429: {"description": "Too many failed logins; wait `Retry-After` seconds"}},
)
def login(body: LoginIn, request: Request, container: ContainerDep) -> dict[str, Any] | Problem:
    settings = container.settings
    peer = request.client.host if request.client else None
    address = login_throttle.client_address(
        peer, request.headers.get("x-forwarded-for"), settings.trusted_proxies
    )
    try:
        token = auth.login(
            container.uow,
            username=body.username,
            password=body.password,
            address=address,
            limits=_throttle_policy(settings),
            now=datetime.now(UTC),
            ttl=timedelta(hours=12),
        )
    except login_throttle.LoginThrottled as refused:
        answer = problem(429, "too_many_requests", "Too many failed logins", _THROTTLED)
        answer.headers["Retry-After"] = str(refused.retry_after)
        return answer
    if token is None:
        raise Unauthenticated("wrong username or password")
    return {"token": token, "token_type": "bearer", "expires_in": 12 * 3600}


def _throttle_policy(settings: Settings) -> Policy:
    """The login throttle's limits, read per request so a changed setting applies at once."""
    return Policy(
        per_name=settings.login_max_failures_per_name,
        per_address=settings.login_max_failures_per_address,
        lock=timedelta(seconds=settings.login_lock_seconds),
        lock_max=timedelta(seconds=settings.login_lock_max_seconds),
        forget=timedelta(seconds=settings.login_forget_seconds),
    )


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


Auditor = Annotated[Principal, Depends(require(Permission.READ_AUDIT))]


def _checked(container: Container, *, full: bool) -> audit.Verdict:
    """Verify (from the checkpoint unless `full`), then move the checkpoint in its own short write."""
    with container.reader() as conn:
        verdict = audit.verify(conn, full=full)
    if verdict.through is not None:
        with container.uow() as uow:
            audit.save_checkpoint(uow.conn, verdict, datetime.now(UTC))
            uow.commit()
    return verdict


@router.get(
    "/v1/audit",
    summary="The audit trail, newest first; the chain is checked since the last verified point and "
    "every entry shown is checked against its own hash",
)
def audit_trail(
    container: ContainerDep,
    who: Auditor,
    action: str | None = None,
    target: str | None = None,
    before_id: int | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    with container.reader() as conn:
        items = audit.entries(conn, action=action, target=target, before_id=before_id, limit=limit)
        altered = audit.first_altered(conn, items)
    verdict = _checked(container, full=False)
    found = [i for i in (altered, verdict.first_bad_id) if i is not None]
    return {
        "items": items,
        "chain_intact": verdict.intact and altered is None,
        "entries_checked": verdict.entries_checked,
        "first_bad_id": min(found, default=None),
        "reason": "an entry shown was altered" if altered is not None else verdict.reason,
    }


@router.get(
    "/v1/audit/verify",
    summary="Verify the audit chain: from the last verified point, or from the start with full=true; "
    "where it breaks, the first bad entry",
)
def audit_verify(container: ContainerDep, who: Auditor, full: bool = False) -> dict[str, Any]:
    return _checked(container, full=full).as_dict()


@router.get(
    "/v1/audit/head",
    summary="Where the audit chain ends (last id, count, hash, time): keep it outside the database "
    "and check later that it is still a prefix (omnicrm audit verify --anchor)",
)
def audit_head(container: ContainerDep, who: Auditor) -> dict[str, Any]:
    with container.reader() as conn:
        return audit.head(conn)


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
