"""Which caller each route lets in, read from the routes themselves.

A route's guard is the `Caller` dependency it declares (`api/deps.py`): the permission it needs, or
any valid token when it names none; a route without one is open. The front door
(`api/front_door.py`) checks that guard before a body is read, `omnicrm roles` prints the route
table the README shows, and tests compare both with `domain/permissions.py`, the one role table."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.routing import BaseRoute

from omnicrm.api.deps import Caller, SignedRequest
from omnicrm.domain.permissions import ROLE_PERMISSIONS, Permission

ANY_ROLE = "any"  # the permission column of a route that takes any valid token


@dataclass(frozen=True, slots=True)
class Guard:
    """Who may call a route: `open` (no token), else a token whose role holds `permission`
    (any role when None)."""

    open: bool
    permission: Permission | None = None
    signed: str | None = None  # an open route that checks a signature instead of a token: how

    @property
    def roles(self) -> tuple[str, ...]:
        """The roles let through, in the role table's order (none for an open route: no token)."""
        if self.open:
            return ()
        return tuple(
            role
            for role, held in ROLE_PERMISSIONS.items()
            if self.permission is None or self.permission in held
        )


OPEN = Guard(open=True)


def _signatures(dependant: Dependant) -> Iterator[SignedRequest]:
    for sub in dependant.dependencies:
        if isinstance(sub.call, SignedRequest):
            yield sub.call
        yield from _signatures(sub)


def _callers(dependant: Dependant) -> Iterator[Caller]:
    for sub in dependant.dependencies:
        if isinstance(sub.call, Caller):
            yield sub.call
        yield from _callers(sub)


def guard_of(route: APIRoute) -> Guard:
    """The route's guard, from the `Caller` dependencies it declares (the strictest one wins: a
    route declaring a permission needs it even if it also asks for the caller in general)."""
    callers = list(_callers(route.dependant))
    if not callers:
        signed = next(_signatures(route.dependant), None)
        return Guard(open=True, signed=signed.how) if signed is not None else OPEN
    permissions = {c.permission for c in callers if c.permission is not None}
    if len(permissions) > 1:
        raise ValueError(f"{route.path} asks for several permissions: {sorted(permissions)}")
    return Guard(open=False, permission=next(iter(permissions), None))


def api_routes(routes: Iterable[BaseRoute]) -> list[APIRoute]:
    """The app's API routes, with those of included routers (FastAPI keeps them nested)."""
    return [
        ctx.original_route
        for ctx in iter_route_contexts(list(routes))
        if isinstance(ctx.original_route, APIRoute)
    ]


@dataclass(frozen=True, slots=True)
class RouteGuard:
    method: str
    path: str
    summary: str
    guard: Guard


def route_guards(routes: Iterable[BaseRoute]) -> list[RouteGuard]:
    """Every API operation (method and path) of the OpenAPI document with its guard, in the app's
    order (the Swagger UI page and its script are not operations)."""
    return [
        RouteGuard(method, route.path, route.summary or route.name, guard_of(route))
        for route in api_routes(routes)
        if route.include_in_schema
        for method in sorted(route.methods or ())
    ]


def markdown_table(routes: Iterable[BaseRoute]) -> str:
    """The README's route table: every operation, the permission it needs and the roles holding it."""
    lines = ["| route | permission | roles |", "|---|---|---|"]
    for item in route_guards(routes):
        if item.guard.signed:
            permission, roles = "—", f"signed: {item.guard.signed}"
        elif item.guard.open:
            permission, roles = "—", "open (no token)"
        else:
            permission = item.guard.permission.value if item.guard.permission else ANY_ROLE
            roles = ", ".join(item.guard.roles)
        summary = item.summary.replace("|", "\\|")
        lines.append(f"| `{item.method} {item.path}` — {summary} | {permission} | {roles} |")
    return "\n".join(lines) + "\n"
