"""Intake routes for events and CRM interactions: one at a time (group-committed) or in batches."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool

from omnicrm.api.deps import ContainerDep, require
from omnicrm.api.responses import FastJSON
from omnicrm.domain.errors import InvalidInput, ItemError
from omnicrm.domain.permissions import Permission
from omnicrm.services.access.auth import Principal
from omnicrm.services.contracts import EventIn
from omnicrm.services.intake import ingest
from omnicrm.services.intake.group_commit import GroupCommitWriter

router = APIRouter(tags=["events"], default_response_class=FastJSON)
EventWriter = Annotated[Principal, Depends(require(Permission.WRITE_EVENTS))]
InteractionWriter = Annotated[Principal, Depends(require(Permission.WRITE_INTERACTIONS))]
_EVENT_SCHEMA = {"$ref": "#/components/schemas/EventIn"}
_ONE = {
    "requestBody": {"required": True, "content": {"application/json": {"schema": _EVENT_SCHEMA}}},
    "responses": {"200": {"description": "A replay of a stored event_id: acknowledged, nothing changed"}},
}
_MANY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["items"],
                    "additionalProperties": False,
                    "properties": {
                        "items": {"type": "array", "minItems": 1, "maxItems": 1000, "items": _EVENT_SCHEMA}
                    },
                }
            }
        },
    }
}


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput("the body is not JSON", [ItemError(None, "(body)", str(exc))]) from None


async def take_one(state: Any, body: bytes, kinds: frozenset[str], who: Principal) -> FastJSON:
    """One event or interaction from a request body, stored by the group-commit writer: 201 when
    accepted, 200 for a replay. `state` is the app's (container, writer). Both the route below and
    the intake fast path (`api/intake.py`) answer with this."""
    raw = _json(body)
    if not isinstance(raw, dict):
        raise InvalidInput("send one JSON object", [ItemError(None, "(body)", "expected an object")])
    # The front door (api/front_door.py) refused any card number in the body already: no second scan here.
    prepared = ingest.prepare([raw], state.container.catalogue, kinds, pan_scanned=True)[0]
    writer: GroupCommitWriter = state.writer
    event_id, status, customer_id = await writer.write(prepared, who.username)
    code = 201 if status == "accepted" else 200
    return FastJSON({"event_id": event_id, "status": status, "customer_id": customer_id}, status_code=code)


async def _many(request: Request, container: ContainerDep, kinds: frozenset[str], who: Principal) -> FastJSON:
    raw = _json(await request.body())
    if not isinstance(raw, dict) or set(raw) != {"items"} or not isinstance(raw["items"], list):
        raise InvalidInput(
            'send {"items": [...]}', [ItemError(None, "items", "expected an object with `items`")]
        )
    limit = container.settings.max_batch_items
    if not 1 <= len(raw["items"]) <= limit:
        raise InvalidInput("batch size", [ItemError(None, "items", f"send between 1 and {limit} items")])

    def work() -> dict[str, Any]:
        prepared = ingest.prepare(raw["items"], container.catalogue, kinds, pan_scanned=True)
        # A concurrent batch (or single event) that stored one of these event ids first makes it a
        # duplicate here, not a 500: see ingest.store.
        (result,) = ingest.store(container.uow, [(who.username, prepared)], now=datetime.now(UTC))
        request.app.state.decider.nudge()
        return {
            "accepted": result.accepted,
            "duplicates": result.duplicates,
            "customers_created": result.customers_created,
            "merges": result.merges,
            "items": [{"event_id": e, "status": s, "customer_id": c} for e, s, c in result.outcomes],
        }

    return FastJSON(await run_in_threadpool(work))


@router.post(
    "/v1/events", status_code=201, openapi_extra=_ONE, summary="Take in one event (idempotent by event_id)"
)
async def post_event(request: Request, who: EventWriter) -> FastJSON:
    return await take_one(request.app.state, await request.body(), ingest.EVENT_KINDS, who)


@router.post("/v1/events:batch", openapi_extra=_MANY, summary="Take in up to 1,000 events, all or nothing")
async def post_events(request: Request, container: ContainerDep, who: EventWriter) -> FastJSON:
    return await _many(request, container, ingest.EVENT_KINDS, who)


@router.post("/v1/interactions", status_code=201, openapi_extra=_ONE, summary="Record one CRM interaction")
async def post_interaction(request: Request, who: InteractionWriter) -> FastJSON:
    return await take_one(request.app.state, await request.body(), ingest.INTERACTION_KINDS, who)


@router.post(
    "/v1/interactions:batch", openapi_extra=_MANY, summary="Record up to 1,000 interactions, all or nothing"
)
async def post_interactions(request: Request, container: ContainerDep, who: InteractionWriter) -> FastJSON:
    return await _many(request, container, ingest.INTERACTION_KINDS, who)


def event_schema() -> dict[str, Any]:
    """The JSON Schema of one event, for the OpenAPI components."""
    return EventIn.model_json_schema(ref_template="#/components/schemas/{model}")
