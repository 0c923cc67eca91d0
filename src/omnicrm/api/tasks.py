"""Call-centre task routes: the operators' queue, claim and close (the disposition becomes the
client's reaction to the task, bound to it as a reaction is bound to its message)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import Field

from omnicrm.api.deps import ContainerDep, require
from omnicrm.api.responses import FastJSON
from omnicrm.domain.callcentre import QueueBook
from omnicrm.domain.permissions import Permission, allowed
from omnicrm.services.access.auth import Principal
from omnicrm.services.callcentre import tasks
from omnicrm.services.callcentre.queues import QueueFile
from omnicrm.services.contracts import Strict

router = APIRouter(prefix="/v1/tasks", tags=["call centre"], default_response_class=FastJSON)
Reader = Annotated[Principal, Depends(require(Permission.READ_TASKS))]
Worker = Annotated[Principal, Depends(require(Permission.WORK_TASKS))]
TaskStatus = Literal["open", "claimed", "closed", "withdrawn"]
_QUEUE_FILES: dict[Path, QueueFile] = {}


async def get_queues(request: Request) -> QueueBook:
    """The queue book of the scenarios directory the app runs with (read again when it changes)."""
    directory: Path = request.app.state.container.settings.scenarios_dir
    found = _QUEUE_FILES.get(directory)
    if found is None:
        found = _QUEUE_FILES.setdefault(directory, QueueFile(directory))
    return found.current()


Queues = Annotated[QueueBook, Depends(get_queues)]


# The dispositions of domain/callcentre.py, spelled out so the OpenAPI lists them (a test keeps both equal).
DispositionName = Literal[
    "offer_accepted",
    "offer_declined",
    "callback_requested",
    "no_answer",
    "wrong_number",
    "resolved",
    "do_not_call",
]


class CloseIn(Strict):
    disposition: DispositionName = Field(description="What came of the call; becomes the task's reaction")
    note: str | None = Field(default=None, max_length=2000, description="Free text; never a card number")


def _now() -> datetime:
    return datetime.now(UTC)


@router.get("", summary="Call-centre tasks, most urgent first (priority, then due time), a page at a time")
def list_tasks(
    container: ContainerDep,
    who: Reader,
    queue: Annotated[str | None, Query(max_length=64)] = None,
    status: TaskStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=400)] = None,
) -> dict[str, Any]:
    with container.reader() as conn:
        return tasks.list_tasks(
            conn, queue=queue, status=status, limit=limit, cursor=cursor, branch=who.branch
        )


@router.get("/{task_id}", summary="One call-centre task")
def get_task(task_id: str, container: ContainerDep, who: Reader) -> dict[str, Any]:
    with container.reader() as conn:
        return tasks.get(conn, task_id, who.branch)


@router.post(
    "/{task_id}:claim",
    summary="Claim an open task (409: claimed by another, closed, withdrawn, or the operator is at capacity)",
)
def claim_task(task_id: str, container: ContainerDep, who: Worker, queues: Queues) -> dict[str, Any]:
    with container.uow() as uow:
        result = tasks.claim(uow.conn, task_id, who=who, queues=queues, now=_now())
        uow.commit()
    return result


@router.post(
    "/{task_id}:close",
    summary="Close a claimed task with a disposition: the claimer or a supervisor; the same closure again is "
    "answered as it was",
)
def close_task(
    task_id: str, body: CloseIn, request: Request, container: ContainerDep, who: Worker
) -> dict[str, Any]:
    supervisor = allowed(who.role, Permission.SUPERVISE_TASKS)
    with container.uow() as uow:
        result, _ = tasks.close(
            uow.conn,
            task_id,
            who=who,
            supervisor=supervisor,
            disposition=body.disposition,
            note=body.note,
            catalogue=container.catalogue,
            now=_now(),
        )
        uow.commit()
    request.app.state.decider.nudge()  # the reaction it stored may move a conversation
    return result
