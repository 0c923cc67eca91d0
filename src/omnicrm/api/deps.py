"""Request dependencies: the container, the caller (from a Bearer token) and role checks."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from fastapi.routing import APIRoute
from fastapi.security import HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param
from sqlalchemy.exc import DBAPIError
from starlette.requests import HTTPConnection

from omnicrm.bootstrap import Container
from omnicrm.domain.errors import Forbidden, InvalidInput, ItemError, Unauthenticated
from omnicrm.domain.permissions import Permission, allowed
from omnicrm.services.access import auth
from omnicrm.services.access.auth import Principal

_SCHEME_HELP = "An API token: `Authorization: Bearer ocrm_...`"


# Dependencies are `async def` on purpose: FastAPI runs a plain `def` dependency in the threadpool,
# which cost a third of a cheap request's time.
async def get_container(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


ContainerDep = Annotated[Container, Depends(get_container)]


class TokenCache:
    """Remembers valid tokens for a few seconds, so a hot endpoint does not query users per call."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._entries: dict[str, tuple[float, Principal]] = {}

    def get(self, token: str) -> Principal | None:
        entry = self._entries.get(token)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def put(self, token: str, principal: Principal) -> None:
        if len(self._entries) > 10_000:
            self._entries.clear()
        self._entries[token] = (time.monotonic() + self.ttl, principal)

    def clear(self) -> None:
        self._entries.clear()


class SignedRequest:
    """Marks a route that takes no token because its caller (a provider, Kannel) proves itself by a
    signature the route checks; the route table shows `how`."""

    def __init__(self, how: str) -> None:
        self.how = how

    async def __call__(self) -> None:
        return None


class Caller(HTTPBearer):
    """The caller, from `Authorization: Bearer <token>`, let through only if its role holds
    `permission` (any role when None).

    A security scheme itself - OpenAPI shows every route that uses it as needing the token - so a
    route solves one dependency instead of a chain (principal <- container, bearer), which FastAPI
    walks on every request: the chain cost about a tenth of a single-event request's time."""

    def __init__(self, permission: Permission | None = None) -> None:
        super().__init__(scheme_name="HTTPBearer", description=_SCHEME_HELP, auto_error=False)
        self.permission = permission

    async def __call__(self, request: HTTPConnection) -> Principal:  # type: ignore[override]
        credentials = await super().__call__(request)
        token = credentials.credentials if credentials is not None else None
        return authorise(request.app.state, token, self.permission)


def authorise(state: Any, token: str | None, permission: Permission | None) -> Principal:
    """The caller holding `token` (the app's `state` keeps the container and the token cache), if
    its role holds `permission` (any role when None); else Unauthenticated or Forbidden."""
    if not token:
        raise Unauthenticated("send an API token as `Authorization: Bearer <token>`")
    cache: TokenCache = state.token_cache
    principal = cache.get(token)
    if principal is None:  # one indexed look-up, then cached for a few seconds
        container: Container = state.container
        with container.reader() as conn:
            principal = auth.authenticate(conn, token, datetime.now(UTC))
        if principal is None:
            raise Unauthenticated("the token is unknown, expired or revoked")
        cache.put(token, principal)
    if permission is not None and not allowed(principal.role, permission):
        raise Forbidden(f"role {principal.role!r} may not {permission.value}")
    return principal


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, as FastAPI's HTTPBearer reads it."""
    scheme, token = get_authorization_scheme_param(authorization)
    return token if scheme.lower() == "bearer" and token else None


def scope_token(scope: Any) -> str | None:
    """The Bearer token of a raw ASGI request scope (the middlewares that check the caller before
    FastAPI runs: `api/front_door.py`, `api/intake.py`)."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            return bearer_token(value.decode("latin-1"))
    return None


current_principal = Caller()


def require(permission: Permission) -> Caller:
    """A dependency that lets the call through only for roles holding `permission`."""
    return Caller(permission)


_T = TypeVar("_T")
_TRANSIENT = ("40P01", "40001")  # PostgreSQL undid the transaction: deadlock, serialisation failure
_TRIES = 5


def retried(work: Callable[[], _T]) -> _T:
    """`work` (one whole unit of work), run again when the database undid it for a lock cycle: merges
    lock in one order, but a writer elsewhere may take the same rows in another (an insert holds the
    key of the profile it refers to from the moment it is written)."""
    for attempt in range(1, _TRIES + 1):
        try:
            return work()
        except DBAPIError as exc:
            if attempt == _TRIES or getattr(exc.orig, "sqlstate", None) not in _TRANSIENT:
                raise
    raise AssertionError("unreachable")


# Paths whose query strings come from elsewhere: providers' callbacks (Kannel adds what its
# configuration says) are checked by their signatures, not by their parameter lists.
_OPEN_QUERY_PREFIXES = ("/v1/webhooks/",)
_QUERY_NAMES: dict[int, frozenset[str]] = {}


def _query_names(route: APIRoute) -> frozenset[str]:
    names = _QUERY_NAMES.get(id(route))
    if names is None:
        found: set[str] = set()
        pending = [route.dependant]
        while pending:  # the route's own parameters and those of its dependencies
            dependant = pending.pop()
            found.update(p.alias for p in dependant.query_params)
            pending.extend(dependant.dependencies)
        names = _QUERY_NAMES[id(route)] = frozenset(found)
    return names


async def known_query(request: Request) -> None:
    """A query parameter the route does not take is refused with the ones it takes: a misspelt
    filter (`types=` for `type=`) would otherwise be ignored, and the caller would get everything."""
    if not request.url.query:
        return
    route = request.scope.get("route")
    path = request.url.path
    if (
        not isinstance(route, APIRoute)
        or not path.startswith("/v1/")
        or path.startswith(_OPEN_QUERY_PREFIXES)
    ):
        return
    names = _query_names(route)
    unknown = sorted(set(request.query_params) - names)
    if unknown:
        takes = ", ".join(sorted(names)) or "none"
        raise InvalidInput(
            "the query names a parameter this route does not take; nothing was done",
            [
                ItemError(None, name[:64], f"not a parameter of this route (it takes: {takes})")
                for name in unknown
            ],
        )
