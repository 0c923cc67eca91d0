"""Why a client was (or was not) contacted: decisions with their explanation, and conversations."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from omnicrm.api.deps import ContainerDep, require
from omnicrm.api.responses import FastJSON
from omnicrm.domain.permissions import Permission
from omnicrm.services.access.auth import Principal
from omnicrm.services.conversations import explaining

router = APIRouter(prefix="/v1/customers", tags=["decisions"], default_response_class=FastJSON)
Reader = Annotated[Principal, Depends(require(Permission.READ_TIMELINE))]


@router.get("/{customer_id}/decisions", summary="Decisions about this client, newest first, each explained")
def get_decisions(
    customer_id: str, container: ContainerDep, who: Reader, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> dict[str, Any]:
    with container.reader() as conn:
        return explaining.decisions(conn, customer_id, limit=limit)


@router.get(
    "/{customer_id}/conversations", summary="Scenario instances and the messages and tasks they queued"
)
def get_conversations(customer_id: str, container: ContainerDep, who: Reader) -> dict[str, Any]:
    with container.reader() as conn:
        return explaining.conversations_view(conn, customer_id)
