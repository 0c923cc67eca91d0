"""The internet bank's and the app's routes: the client's inbox, marking a message read, and web push
subscriptions per device. The bank's backend calls them with an integration token; operators may
read the inbox (what the client was told), not act as the client."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from omnicrm.api.deps import ContainerDep, require
from omnicrm.api.responses import FastJSON
from omnicrm.domain.permissions import Permission
from omnicrm.services.access.auth import Principal
from omnicrm.services.conversations import inbox
from omnicrm.services.conversations.inbox import DeviceId, PushSubscriptionIn

router = APIRouter(prefix="/v1/customers", tags=["internet bank"], default_response_class=FastJSON)
Reader = Annotated[Principal, Depends(require(Permission.READ_INBOX))]
Writer = Annotated[Principal, Depends(require(Permission.WRITE_INBOX))]
Device = Annotated[DeviceId, Path(description="The app's own id of the device or browser")]


def _now() -> datetime:
    return datetime.now(UTC)


@router.get(
    "/{customer_id}/inbox", summary="The client's internet-bank messages, newest first, and unread count"
)
def get_inbox(
    customer_id: str,
    container: ContainerDep,
    who: Reader,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=400)] = None,
) -> dict[str, Any]:
    with container.reader() as conn:
        return inbox.inbox_of(conn, customer_id, limit=limit, cursor=cursor)


@router.post(
    "/{customer_id}/inbox/{message_key}:read",
    summary="Mark a message read (idempotent; the first read is the message's `opened` reaction)",
)
def read_message(
    customer_id: str, message_key: str, request: Request, container: ContainerDep, who: Writer
) -> dict[str, Any]:
    with container.uow() as uow:
        item, first = inbox.mark_read(
            uow.conn, customer_id, message_key, actor=who.username, catalogue=container.catalogue, now=_now()
        )
        uow.commit()
    if first:
        request.app.state.decider.nudge()
    return item


@router.put(
    "/{customer_id}/push-subscriptions/{device_id}",
    status_code=200,
    responses={201: {"description": "A new device was subscribed (200: its subscription was replaced)"}},
    summary="Store a device's web push subscription (the browser's PushSubscription JSON)",
)
def put_push_subscription(
    customer_id: str, device_id: Device, body: PushSubscriptionIn, container: ContainerDep, who: Writer
) -> FastJSON:
    with container.uow() as uow:
        result, created = inbox.put_subscription(uow.conn, customer_id, device_id, body, now=_now())
        uow.commit()
    return FastJSON(result, status_code=201 if created else 200)


@router.delete(
    "/{customer_id}/push-subscriptions/{device_id}",
    status_code=204,
    summary="Remove a device's web push subscription",
)
def delete_push_subscription(
    customer_id: str, device_id: Device, container: ContainerDep, who: Writer
) -> Response:
    with container.uow() as uow:
        inbox.delete_subscription(uow.conn, customer_id, device_id)
        uow.commit()
    return Response(status_code=204)
