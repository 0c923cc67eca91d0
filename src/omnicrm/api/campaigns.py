"""Campaign routes: create, list, read, submit, approve or reject (maker-checker), dry run, launch, cancel."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import StringConstraints

from omnicrm.api.deps import ContainerDep, require
from omnicrm.api.responses import FastJSON
from omnicrm.domain.campaigns import Status
from omnicrm.domain.permissions import Permission
from omnicrm.services.access.auth import Principal
from omnicrm.services.campaigns import campaign_launch as launching
from omnicrm.services.campaigns import campaigns
from omnicrm.services.campaigns.campaigns import CampaignIn, CampaignPatch
from omnicrm.services.contracts import Strict

router = APIRouter(prefix="/v1/campaigns", tags=["campaigns"], default_response_class=FastJSON)
# Reading is enough to reach cancel and dry run: the domain then asks for write or approve.
Reader = Annotated[Principal, Depends(require(Permission.READ_CAMPAIGNS))]
Writer = Annotated[Principal, Depends(require(Permission.WRITE_CAMPAIGNS))]
Approver = Annotated[Principal, Depends(require(Permission.APPROVE_CAMPAIGNS))]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=500)]


class ReasonIn(Strict):
    reason: Reason


def _now() -> datetime:
    return datetime.now(UTC)


@router.post("", status_code=201, summary="Create a draft: segment (CEL, like an audience) + scenario")
def create_campaign(body: CampaignIn, container: ContainerDep, who: Writer) -> FastJSON:
    with container.uow() as uow:
        row = campaigns.create(
            uow.conn, body, library=container.current_library(), actor=who.username, now=_now()
        )
        uow.commit()
    return FastJSON(row, status_code=201, headers={"Location": f"/v1/campaigns/{row['id']}"})


@router.get("", summary="Campaigns, newest first")
def list_campaigns(
    container: ContainerDep,
    who: Reader,
    status: Status | None = None,
    before: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, Any]:
    with container.reader() as conn:
        return campaigns.list_campaigns(conn, status=status, before=before, limit=limit)


@router.get("/{campaign_id}", summary="One campaign: status, dry run, launch progress and history")
def get_campaign(campaign_id: str, container: ContainerDep, who: Reader) -> dict[str, Any]:
    with container.reader() as conn:
        return campaigns.get(conn, campaign_id)


@router.patch("/{campaign_id}", summary="Change a draft (its dry run is dropped: run a new one)")
def edit_campaign(
    campaign_id: str, body: CampaignPatch, container: ContainerDep, who: Writer
) -> dict[str, Any]:
    with container.uow() as uow:
        row = campaigns.edit(
            uow.conn,
            campaign_id,
            body,
            library=container.current_library(),
            actor=who.username,
            role=who.role,
            now=_now(),
        )
        uow.commit()
    return row


@router.post("/{campaign_id}:submit", summary="Ask for approval (draft -> submitted)")
def submit_campaign(campaign_id: str, container: ContainerDep, who: Writer) -> dict[str, Any]:
    with container.uow() as uow:
        row = campaigns.submit(uow.conn, campaign_id, actor=who.username, role=who.role, now=_now())
        uow.commit()
    return row


@router.post("/{campaign_id}:approve", summary="Approve (by someone other than its maker; dry run first)")
def approve_campaign(campaign_id: str, container: ContainerDep, who: Approver) -> dict[str, Any]:
    with container.uow() as uow:
        row = campaigns.approve(uow.conn, campaign_id, actor=who.username, role=who.role, now=_now())
        uow.commit()
    return row


@router.post("/{campaign_id}:reject", summary="Send back to draft, with a reason")
def reject_campaign(
    campaign_id: str, body: ReasonIn, container: ContainerDep, who: Approver
) -> dict[str, Any]:
    with container.uow() as uow:
        row = campaigns.reject(
            uow.conn, campaign_id, reason=body.reason, actor=who.username, role=who.role, now=_now()
        )
        uow.commit()
    return row


@router.post("/{campaign_id}:cancel", summary="Stop for good (a running launch stops after its batch)")
def cancel_campaign(campaign_id: str, body: ReasonIn, container: ContainerDep, who: Writer) -> dict[str, Any]:
    with container.uow() as uow:
        row = campaigns.cancel(
            uow.conn, campaign_id, reason=body.reason, actor=who.username, role=who.role, now=_now()
        )
        uow.commit()
    return row


@router.post("/{campaign_id}:dry-run", summary="Audience, contacts and suppressions by reason; sends nothing")
def dry_run_campaign(campaign_id: str, container: ContainerDep, who: Writer) -> dict[str, Any]:
    return campaigns.dry_run(
        container.uow,
        campaign_id,
        library=container.current_library(),
        actor=who.username,
        role=who.role,
        now=_now(),
    )


@router.post(
    "/{campaign_id}:launch", status_code=202, summary="Start writing the audience; poll GET for progress"
)
def launch_campaign(campaign_id: str, request: Request, container: ContainerDep, who: Writer) -> FastJSON:
    with container.uow() as uow:
        row = launching.begin_launch(
            uow.conn,
            campaign_id,
            library=container.current_library(),
            actor=who.username,
            role=who.role,
            now=_now(),
        )
        uow.commit()
    launching.launch_in_background(
        container.uow,
        campaign_id,
        library=container.current_library(),
        catalogue=container.catalogue,
        after_batch=request.app.state.decider.nudge,
    )
    return FastJSON(row, status_code=202, headers={"Location": f"/v1/campaigns/{campaign_id}"})
