"""Client file routes: create/update, read, look up by identifier, consent, merge, timeline, mass update."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import AwareDatetime

from omnicrm.api.deps import ContainerDep, require, retried
from omnicrm.api.responses import FastJSON
from omnicrm.domain.identifiers import IdentifierKind
from omnicrm.domain.permissions import Permission
from omnicrm.services.access.auth import Principal
from omnicrm.services.contracts import (
    ConsentIn,
    CustomerIn,
    CustomerPatch,
    IdentifierIn,
    MassUpdateIn,
    Strict,
)
from omnicrm.services.profiles import client_file, customers, identity, mass_update, timeline

router = APIRouter(prefix="/v1/customers", tags=["customers"], default_response_class=FastJSON)
Reader = Annotated[Principal, Depends(require(Permission.READ_PROFILE))]
Writer = Annotated[Principal, Depends(require(Permission.WRITE_PROFILE))]


class MergeIn(Strict):
    other_id: str
    reason: str = "manual merge"


_T = TypeVar("_T")
# PostgreSQL's answer to two transactions waiting for each other (deadlock_detected), or to one that
# cannot be serialised: nothing of it was written, so the whole transaction is run again.


def _now() -> datetime:
    return datetime.now(UTC)


@router.post(
    "",
    status_code=200,
    responses={201: {"description": "A new profile was created (200: an existing one was updated)"}},
    summary="Create a profile, or update the one its identifiers point to",
)
def upsert_customer(body: CustomerIn, container: ContainerDep, who: Writer) -> FastJSON:
    def work() -> tuple[dict[str, Any], bool]:
        with container.uow() as uow:
            customer_id, created = customers.upsert(uow.conn, body, actor=who.username, now=_now())
            result = client_file.profile(uow.conn, customer_id)
            uow.commit()
        return result, created

    result, created = retried(work)
    return FastJSON(result, status_code=201 if created else 200)


@router.get("/lookup", summary="Find the customer holding an identifier (phone, e-mail, account...)")
def lookup_customer(
    kind: IdentifierKind,
    value: Annotated[str, Query(min_length=1, max_length=160)],
    container: ContainerDep,
    who: Reader,
) -> dict[str, Any]:
    with container.reader() as conn:
        return client_file.profile(conn, client_file.lookup(conn, kind, value))


@router.post(":mass-update", summary="Set fields for every profile matching a filter (dry run first)")
def mass_update_customers(
    body: MassUpdateIn,
    container: ContainerDep,
    who: Annotated[Principal, Depends(require(Permission.MASS_UPDATE))],
) -> dict[str, Any]:
    with container.uow() as uow:
        result = mass_update.mass_update(uow.conn, body, actor=who.username, now=_now())
        uow.commit()
    return result


@router.get("/{customer_id}", summary="The whole client file")
def get_customer(customer_id: str, container: ContainerDep, who: Reader) -> dict[str, Any]:
    with container.reader() as conn:
        return client_file.profile(conn, customer_id)


@router.patch("/{customer_id}", summary="Update some fields, preferences or constraints")
def patch_customer(
    customer_id: str, body: CustomerPatch, container: ContainerDep, who: Writer
) -> dict[str, Any]:
    def work() -> dict[str, Any]:
        with container.uow() as uow:
            live = customers.patch(uow.conn, customer_id, body, actor=who.username, now=_now())
            result = client_file.profile(uow.conn, live)
            uow.commit()
        return result

    return retried(work)


@router.post(
    "/{customer_id}/identifiers", summary="Attach an identifier (merges if another profile holds it)"
)
def add_identifier(
    customer_id: str, body: IdentifierIn, container: ContainerDep, who: Writer
) -> dict[str, Any]:
    def work() -> dict[str, Any]:
        with container.uow() as uow:
            live = customers.add_identifier(uow.conn, customer_id, body, actor=who.username, now=_now())
            result = client_file.profile(uow.conn, live)
            uow.commit()
        return result

    return retried(work)


@router.get("/{customer_id}/consents", summary="Consent ledger and the state derived from it")
def get_consents(customer_id: str, container: ContainerDep, who: Reader) -> dict[str, Any]:
    with container.reader() as conn:
        return client_file.consents_view(conn, customer_id)


@router.post("/{customer_id}/consents", status_code=201, summary="Append a grant or withdrawal to the ledger")
def add_consent(
    customer_id: str,
    body: ConsentIn,
    container: ContainerDep,
    who: Annotated[Principal, Depends(require(Permission.WRITE_CONSENT))],
) -> dict[str, Any]:
    def work() -> dict[str, Any]:
        with container.uow() as uow:
            live = customers.held_id(uow.conn, customer_id)
            customers.record_consent(uow.conn, live, body, actor=who.username, now=_now())
            result = client_file.consents_view(uow.conn, live)
            uow.commit()
        return result

    return retried(work)


@router.post("/{customer_id}/merge", summary="Merge another profile of the same person into this one")
def merge_customer(
    customer_id: str,
    body: MergeIn,
    container: ContainerDep,
    who: Annotated[Principal, Depends(require(Permission.MERGE_PROFILES))],
) -> dict[str, Any]:
    """Both profiles must be live when the merge gets to them: one merged away meanwhile (by a merge
    that ran at the same time) is 409, as it would be had the two requests come one after the other."""

    def work() -> dict[str, Any]:
        with container.uow() as uow:
            survivor = identity.merge_pair(
                uow.conn,
                customer_id,
                body.other_id,
                reason=body.reason,
                actor=who.username,
                now=_now(),
                follow=False,
            )
            result = client_file.profile(uow.conn, survivor)
            uow.commit()
        return result

    return retried(work)


@router.post("/{customer_id}/unmerge", summary="Undo the merge that folded this profile into another")
def unmerge_customer(
    customer_id: str,
    container: ContainerDep,
    who: Annotated[Principal, Depends(require(Permission.MERGE_PROFILES))],
) -> dict[str, Any]:
    def work() -> dict[str, Any]:
        with container.uow() as uow:
            survivor = identity.unmerge(uow.conn, customer_id=customer_id, actor=who.username, now=_now())
            result = {
                "restored": client_file.profile(uow.conn, customer_id),
                "survivor": client_file.profile(uow.conn, survivor),
            }
            uow.commit()
        return result

    return retried(work)


@router.get("/{customer_id}/timeline", summary="Events and interactions, newest first, cursor-paged")
async def get_timeline(
    customer_id: str,
    container: ContainerDep,
    who: Annotated[Principal, Depends(require(Permission.READ_TIMELINE))],
    kind: Annotated[list[str], Query()] = [],  # noqa: B006 - FastAPI reads the default, never mutates it
    type: Annotated[list[str], Query()] = [],  # noqa: B006
    channel: Annotated[list[str], Query()] = [],  # noqa: B006
    since: AwareDatetime | None = None,
    until: AwareDatetime | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=timeline.MAX_PAGE)] = 50,
) -> FastJSON:
    def read() -> dict[str, Any]:
        with container.reader() as conn:
            return timeline.read(
                conn,
                customer_id,
                kinds=kind,
                types=type,
                channels=channel,
                since=since,
                until=until,
                cursor=cursor,
                limit=limit,
            )

    return FastJSON(await run_in_threadpool(read))
