"""The two hottest routes, `POST /v1/events` and `POST /v1/interactions`, answered beneath FastAPI.

A single event is the most frequent request the service gets, and FastAPI's routing, dependency
solving and exception layers were about a third of its CPU (py-spy). This ASGI middleware sits
inside the front door (`api/front_door.py`: caller, size and card numbers are checked before it)
and answers these two routes itself with the very pieces their FastAPI routes use:
`deps.authorise` (token and role), `events.take_one` (validate, group-commit write, answer) and
`responses.domain_problem` (errors), so the answers are the same
(tests/integration/api/test_intake_fast_path.py sends the same requests both ways and compares).
The routes stay in FastAPI for the OpenAPI contract, and answer themselves when the fast path is off
(`OMNICRM_INTAKE_FAST_PATH=false`, or `OMNICRM_OPENTELEMETRY=true` so that FastAPI's spans see
every request).
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from omnicrm.api.deps import authorise, scope_token
from omnicrm.api.events import take_one
from omnicrm.api.front_door import read_body
from omnicrm.api.responses import domain_problem
from omnicrm.domain.errors import DomainError
from omnicrm.domain.permissions import Permission
from omnicrm.services.intake.ingest import EVENT_KINDS, INTERACTION_KINDS

_ROUTES: dict[str, tuple[frozenset[str], Permission]] = {
    "/v1/events": (EVENT_KINDS, Permission.WRITE_EVENTS),
    "/v1/interactions": (INTERACTION_KINDS, Permission.WRITE_INTERACTIONS),
}


class IntakeFastPath:
    """Answers POST /v1/events and /v1/interactions; everything else goes on to FastAPI."""

    def __init__(self, app: ASGIApp, state: Any) -> None:
        self.app, self.state = app, state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = None
        # A query string (these routes take none) goes the long way, to be refused by the route.
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            route = None if scope.get("query_string") else _ROUTES.get(scope["path"])
        if route is None:
            await self.app(scope, receive, send)
            return
        kinds, permission = route
        response: Response
        try:
            # As in the route: the caller first, then the body.
            who = authorise(self.state, scope_token(scope), permission)
            body = await read_body(receive)
            if body is None:
                return
            response = await take_one(self.state, body, kinds, who)
        except DomainError as exc:
            response = domain_problem(exc)
        await response(scope, receive, send)
