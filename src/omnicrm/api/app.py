"""The FastAPI application: routers, error mapping and the group-commit writer's lifecycle."""

from __future__ import annotations

import functools
import gc
import logging
import re
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import psycopg
import swagger_ui_bundle
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.telemetry import TelemetryConfig
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute

from omnicrm import __version__
from omnicrm.api import (
    admin,
    campaigns,
    conversations,
    customers,
    events,
    feedback,
    inbox,
    metrics,
    openapi,
    privacy,
    scenarios,
    tasks,
)
from omnicrm.api.deps import TokenCache, known_query
from omnicrm.api.front_door import FrontDoor
from omnicrm.api.intake import IntakeFastPath
from omnicrm.api.responses import Problem, domain_problem, problem
from omnicrm.bootstrap import Container
from omnicrm.domain.errors import DomainError, InvalidInput, ItemError, Unavailable
from omnicrm.services.campaigns.campaign_launch import CampaignScheduler
from omnicrm.services.conversations.decider import DecisionWorker
from omnicrm.services.intake.group_commit import GroupCommitWriter
from omnicrm.store.disk_full import is_disk_full

log = logging.getLogger(__name__)

# Routes are matched in order: the hot intake routes come first.
ROUTERS: tuple[APIRouter, ...] = (
    events.router,
    admin.router,
    privacy.router,  # before customers: its /{customer_id} would take `{id}:export`
    inbox.router,  # its paths are all deeper than customers' own; before them all the same
    customers.router,
    conversations.router,
    scenarios.router,
    campaigns.router,
    feedback.router,
    metrics.router,
    tasks.router,
)


def api_routes() -> list[BaseRoute]:
    """The API's routes without a running app or database (for `omnicrm roles`)."""
    app = FastAPI()
    for router in ROUTERS:
        app.include_router(router)
    return list(app.routes)


async def _domain_error(_: Request, exc: Exception) -> Problem:
    assert isinstance(exc, DomainError)
    return domain_problem(exc)


def _not_json(reason: str) -> Problem:
    """The answer to a body that is not JSON: the same 422 as `/v1/events` gives (api/events.py)."""
    return domain_problem(InvalidInput("the body is not JSON", [ItemError(None, "(body)", reason)]))


async def _validation_error(_: Request, exc: Exception) -> Problem:
    assert isinstance(exc, RequestValidationError)
    found = exc.errors()
    for e in found:
        if e.get("type") == "json_invalid":  # FastAPI's JSON decode error: loc is ("body", position)
            error = (e.get("ctx") or {}).get("error") or e["msg"]
            return _not_json(f"{error} (char {e['loc'][-1]})")
        if tuple(e["loc"]) == ("body",) and isinstance(e.get("input"), bytes | bytearray):
            # Raw bytes reach the model when the body is not declared JSON (no or another Content-Type).
            return _not_json("send the body as Content-Type: application/json")
    errors = [
        ItemError(None, ".".join(str(p) for p in e["loc"][1:]) or str(e["loc"][0]), e["msg"]) for e in found
    ]
    return problem(
        422, "invalid_input", "Invalid input", "the request does not match the API contract", errors
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's and FastAPI's own HTTP errors (unknown route, wrong method, a body it could not
    read) as problem+json rather than `{"detail": ...}`."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and exc.detail == _UNREADABLE_BODY:
        # FastAPI could not read the body at all: not UTF-8, or nested too deep for the JSON parser.
        cause = exc.__cause__
        reason = f"{type(cause).__name__}: {cause}" if cause is not None else _UNREADABLE_BODY
        return _not_json(reason)
    if exc.status_code < 400 or exc.status_code in (204, 304):
        return Response(status_code=exc.status_code, headers=exc.headers)
    try:
        phrase = HTTPStatus(exc.status_code).phrase
    except ValueError:
        phrase = "Error"
    code = phrase.lower().replace(" ", "_").replace("-", "_")
    detail = exc.detail if isinstance(exc.detail, str) else phrase
    answer = problem(exc.status_code, code, phrase, detail)
    answer.headers.update(exc.headers or {})
    allowed = _allowed(request) if exc.status_code == 405 else None
    if allowed:
        answer.headers["Allow"] = ", ".join(allowed)
    return answer


def _allowed(request: Request) -> list[str]:
    """Every method the OpenAPI lists for the path asked. Starlette names only the first route
    matching the path, though GET and POST /v1/campaigns are two routes; and a template with a
    parameter also matches a more specific one (`/v1/campaigns/{id}` matches
    `/v1/campaigns/X:approve`), so the template with the longest fixed text wins."""
    path = request.url.path
    best: tuple[int, list[str]] = (-1, [])
    for template, operations in request.app.openapi()["paths"].items():
        pattern = "".join(
            "[^/]+" if part.startswith("{") else re.escape(part) for part in _PARAMETER.split(template)
        )
        fixed = len(_PARAMETER.sub("", template))
        if fixed > best[0] and re.fullmatch(pattern, path):
            best = (fixed, sorted(method.upper() for method in operations))
    return best[1]


_PARAMETER = re.compile(r"(\{[^}]*\})")


async def _database_error(request: Request, exc: Exception) -> Response:
    """A full disk is the operator's to fix and the client's to retry: 503 with Retry-After and one
    log line without a traceback (with a full disk every request fails; a traceback each would bury
    the cause). Any other database error stays a 500."""
    if not is_disk_full(exc):
        raise exc
    log.warning("database full: %s %s answered 503", request.method, request.url.path)
    return domain_problem(Unavailable(_FULL))


_FULL = "the database cannot grow (its disk is full): nothing of this request was stored; try again later"
_UNREADABLE_BODY = "There was an error parsing the body"  # fastapi.routing's detail for it


_DOCS_ASSETS = "/docs-assets"
_NO_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}


@dataclass(frozen=True, slots=True)
class _Background:
    """The threads an API process runs beside its requests: the group-commit writer, and (unless a
    decision worker runs elsewhere) the decider and the campaign scheduler."""

    writer: GroupCommitWriter
    decider: DecisionWorker
    scheduler: CampaignScheduler
    deciding: bool

    @classmethod
    def of(cls, container: Container) -> _Background:
        settings = container.settings
        decider = DecisionWorker(
            container.uow, container.current_library, idle_s=settings.decider_idle_ms / 1000
        )
        scheduler = CampaignScheduler(
            container.uow,
            container.current_library,
            container.catalogue,
            interval_s=settings.campaign_poll_s,
            after_batch=decider.nudge,
        )
        writer = GroupCommitWriter(
            container.uow,
            linger_s=settings.ingest_linger_ms / 1000,
            max_batch=settings.ingest_max_batch,
            after_commit=decider.nudge,
        )
        return cls(writer, decider, scheduler, settings.decide_in_process)

    @asynccontextmanager
    async def lifespan(self, _: FastAPI) -> AsyncIterator[None]:
        # Everything built at start-up lives as long as the process: keep it out of GC scans,
        # and collect young objects less often, which trims latency spikes under load.
        gc.collect()
        gc.freeze()
        gc.set_threshold(20_000, 20, 20)
        self.writer.start()
        if self.deciding:
            self.decider.start()
            self.scheduler.start()
        try:
            yield
        finally:
            self.writer.stop()
            self.scheduler.stop()
            self.decider.stop()


def create_app(container: Container) -> FastAPI:
    """Build the API around an already wired container."""
    background = _Background.of(container)
    app = FastAPI(
        title="omnicrm",
        version=__version__,
        description="Unified client profile, event intake, CRM timeline, explainable decisions, scenario "
        "conversations and campaigns for a bank's communications.",
        lifespan=background.lifespan,
        # FastAPI's own OpenTelemetry looks up the global providers on every request even when
        # nothing is configured (~5 % of a single-event request): on only when asked for.
        telemetry=None if container.settings.opentelemetry else _NO_TELEMETRY,
        docs_url=None,  # served from local files below (_offline_docs)
        redoc_url=None,
        dependencies=[Depends(known_query)],  # an unknown query parameter is refused, not ignored
    )
    app.state.container = container
    app.state.writer = background.writer
    app.state.decider = background.decider
    app.state.token_cache = TokenCache(container.settings.token_cache_seconds)
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    for database_error in (DBAPIError, sqlite3.Error, psycopg.Error):
        app.add_exception_handler(database_error, _database_error)
    if container.settings.intake_fast_path and not container.settings.opentelemetry:
        app.add_middleware(IntakeFastPath, state=app.state)  # inside the front door: checked first
    settings = container.settings
    app.add_middleware(
        FrontDoor, api=app, max_body=settings.max_body_bytes, max_batch_body=settings.max_batch_body_bytes
    )
    metrics.install(app, container)  # last: its response counter goes outside the front door
    for router in ROUTERS:
        app.include_router(router)

    app.openapi = functools.partial(_openapi, app)  # type: ignore[method-assign]
    _offline_docs(app)
    return app


def _offline_docs(app: FastAPI) -> None:
    """Swagger UI at /docs from the files the `swagger-ui-bundle` package ships, not from a CDN:
    the API documentation works on a bank's closed network. Its start-up script is a file too, not
    inline, so the page's Content-Security-Policy allows scripts from this server only."""
    app.mount(_DOCS_ASSETS, StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="docs-assets")
    page = _DOCS_PAGE.format(title=f"{app.title} API", assets=_DOCS_ASSETS).encode()

    async def docs() -> HTMLResponse:
        return HTMLResponse(page)

    async def docs_start() -> Response:
        return Response(_DOCS_START, media_type="text/javascript")

    app.add_api_route("/docs", docs, include_in_schema=False)
    app.add_api_route("/docs/start.js", docs_start, include_in_schema=False)


_DOCS_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>{title}</title>
<link rel="stylesheet" href="{assets}/swagger-ui.css">
<link rel="icon" href="{assets}/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script src="/docs/start.js"></script>
</body>
</html>
"""
_DOCS_START = b"""window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  layout: "BaseLayout",
  deepLinking: true,
  showExtensions: true,
  showCommonExtensions: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
});
"""


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The contract (api/openapi.py), with the event envelope the intake routes read from the raw body."""
    if app.openapi_schema is None:
        event = events.event_schema()
        extra = {**event.pop("$defs", {}), "EventIn": event}
        app.openapi_schema = openapi.build(app, extra)
    return app.openapi_schema
