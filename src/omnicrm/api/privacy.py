"""Data subjects' rights: export a person's data (GDPR Art. 15, 20) and erase it (Art. 17) under
four eyes - one compliance user asks, another (compliance or admin) approves."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends

from omnicrm.api.deps import ContainerDep, require
from omnicrm.api.responses import FastJSON
from omnicrm.domain.permissions import Permission
from omnicrm.services.access.auth import Principal
from omnicrm.services.profiles import privacy

# Registered before the customers router: its `/{customer_id}` would otherwise take `{id}:export`.
router = APIRouter(tags=["data subjects' rights"], default_response_class=FastJSON)
Exporter = Annotated[Principal, Depends(require(Permission.EXPORT_PERSONAL_DATA))]
Eraser = Annotated[Principal, Depends(require(Permission.ERASE_PERSONAL_DATA))]


@router.get(
    "/v1/customers/{customer_id}:export",
    summary="Every piece of personal data held on a person, as JSON by table (audited)",
)
def export_customer(customer_id: str, container: ContainerDep, who: Exporter) -> FastJSON:
    with container.uow() as uow:
        result = privacy.export(uow.conn, customer_id, actor=who.username, now=datetime.now(UTC))
        uow.commit()
    return FastJSON(result)


@router.post(
    "/v1/customers/{customer_id}:erase",
    status_code=202,
    summary="Ask for a person's data to be erased; another user approves (audited)",
)
def request_erasure(customer_id: str, container: ContainerDep, who: Eraser) -> FastJSON:
    with container.uow() as uow:
        result = privacy.request_erasure(uow.conn, customer_id, actor=who.username, now=datetime.now(UTC))
        uow.commit()
    return FastJSON(result, status_code=202)


@router.post(
    "/v1/erasure-requests/{request_id}:approve",
    summary="Approve someone else's erasure request: the person's data is erased at once (audited)",
)
def approve_erasure(request_id: str, container: ContainerDep, who: Eraser) -> FastJSON:
    with container.uow() as uow:
        result = privacy.approve_erasure(uow.conn, request_id, actor=who.username, now=datetime.now(UTC))
        uow.commit()
    result["log_flushed"] = privacy.flush_sqlite_log(container.engine)
    return FastJSON(result)
