"""Request dependencies: the container, the caller (from a Bearer token) and role checks."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from omnicrm.bootstrap import Container
from omnicrm.domain.errors import Forbidden, Unauthenticated
from omnicrm.domain.permissions import Permission, allowed
from omnicrm.services import auth
from omnicrm.services.auth import Principal

_bearer = HTTPBearer(auto_error=False, description="An API token: `Authorization: Bearer ocrm_...`")


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


def _authenticate(request: Request, credentials: HTTPAuthorizationCredentials | None) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthenticated("send an API token as `Authorization: Bearer <token>`")
    cache: TokenCache = request.app.state.token_cache
    principal = cache.get(credentials.credentials)
    if principal is None:  # one indexed look-up, then cached for a few seconds
        container: Container = request.app.state.container
        with container.reader() as conn:
            principal = auth.authenticate(conn, credentials.credentials, datetime.now(UTC))
        if principal is None:
            raise Unauthenticated("the token is unknown, expired or revoked")
        cache.put(credentials.credentials, principal)
    return principal


Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


async def current_principal(request: Request, credentials: Credentials) -> Principal:
    return _authenticate(request, credentials)


def require(permission: Permission) -> Callable[..., Awaitable[Principal]]:
    """A dependency that lets the call through only for roles holding `permission`.

    One level of dependencies, not a chain (principal <- container, bearer): FastAPI solves each
    level per request, which cost a tenth of a single-event request's time."""

    async def check(request: Request, credentials: Credentials) -> Principal:
        principal = _authenticate(request, credentials)
        if not allowed(principal.role, permission):
            raise Forbidden(f"role {principal.role!r} may not {permission.value}")
        return principal

    return check
