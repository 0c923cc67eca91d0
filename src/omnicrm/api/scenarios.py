"""The scenario library over HTTP: what runs, its versions, publishing a reload, the JSON Schema."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends
from starlette.concurrency import run_in_threadpool

from omnicrm.api.deps import ContainerDep, require
from omnicrm.api.responses import FastJSON
from omnicrm.bootstrap import Container, publish_files
from omnicrm.domain.errors import InvalidInput, ItemError, NotFound
from omnicrm.domain.permissions import Permission
from omnicrm.domain.scenarios import Library, Scenario
from omnicrm.services.access.auth import Principal
from omnicrm.services.contracts import Strict
from omnicrm.services.conversations import journeys
from omnicrm.services.conversations.datafiles import DataFileError, check_scenario, load_messages
from omnicrm.services.conversations.registry import scenario_schema
from omnicrm.store import registry

router = APIRouter(prefix="/v1/scenarios", tags=["scenarios"], default_response_class=FastJSON)
Reader = Annotated[Principal, Depends(require(Permission.READ_SCENARIOS))]
Publisher = Annotated[Principal, Depends(require(Permission.PUBLISH_SCENARIOS))]


class ReloadIn(Strict):
    note: str = ""


class SimulateIn(Strict):
    """A journey to simulate; `scenario`: a template (as its file's JSON) added to the published
    library, published or not; `only`: run just this scenario id."""

    journey: journeys.JourneyIn
    scenario: dict[str, Any] | None = None
    only: str | None = None


def _listed(library: Library, running: dict[tuple[str, int], int]) -> list[tuple[str, Scenario]]:
    """Current scenarios, then retired ones that still have conversations running."""
    listed = list(library.current.items())
    for sid, version in sorted({k for k in running if k[0] not in library.current}):
        scenario = library.get(sid, version)
        if scenario is not None and sid not in dict(listed):
            listed.append((sid, scenario))
    return listed


@router.get("", summary="The current version of every scenario and the conversations running per version")
def list_scenarios(container: ContainerDep, who: Reader) -> dict[str, Any]:
    library = container.current_library()
    with container.reader() as conn:
        running = registry.active_counts(conn)
        history = registry.generations(conn, limit=10) if registry.has_registry(conn) else []
    return {
        "generation": container.generation,
        "policy_version": library.policy_version,
        "scenarios": [
            {
                "id": sid,
                "name": scenario.name,
                "purpose": scenario.purpose,
                "current_version": scenario.version if sid in library.current else None,  # None: retired
                "versions": sorted(v for (s, v) in library.versions if s == sid),
                "running": {str(v): n for (s, v), n in sorted(running.items()) if s == sid},
            }
            for sid, scenario in _listed(library, running)
        ],
        "generations": history,
    }


@router.get("/schema", summary="JSON Schema of a scenario template file")
def schema(who: Reader) -> dict[str, Any]:
    return scenario_schema()


@router.get("/{scenario_id}", summary="Every published version of one scenario, with its template")
def get_scenario(scenario_id: str, container: ContainerDep, who: Reader) -> dict[str, Any]:
    with container.reader() as conn:
        rows = [r for r in registry.versions(conn) if r["scenario_id"] == scenario_id]
    if not rows:
        raise NotFound(f"no published scenario {scenario_id!r}")
    current = container.current_library().current.get(scenario_id)
    return {
        "id": scenario_id,
        "current_version": current.version if current else None,
        "versions": [
            {
                "version": r["version"],
                "published_by": r["published_by"],
                "published_at": r["published_at"],
                "generation": r["generation"],
                "source": r["source"],
                "template": orjson.loads(r["spec"]),
            }
            for r in rows
        ],
    }


@router.post(
    ":reload",
    summary="Check the scenario files on the server and publish what changed",
    description="Refused files change nothing (422 lists file, line, field and reason for each "
    "problem) and the running generation stays. Running conversations finish on their version unless "
    "the new version lists theirs in `migrate_from`.",
)
async def reload(body: ReloadIn, container: ContainerDep, who: Publisher) -> dict[str, Any]:
    try:
        report = await run_in_threadpool(publish_files, container, actor=who.username, note=body.note)
    except DataFileError as exc:
        raise InvalidInput(
            f"the scenario files were refused; generation {container.generation} keeps running",
            [ItemError(None, f"{e.file}:{e.line or ''} {e.field}".strip(), e.reason) for e in exc.errors],
        ) from None
    return report.as_dict()


def _simulated(body: SimulateIn, container: Container) -> dict[str, Any]:
    library = container.current_library()
    if body.scenario is not None:
        messages = set(load_messages(container.settings.scenarios_dir / "messages"))
        try:
            _, scenario = check_scenario(body.scenario, None, Path("scenario"), container.catalogue, messages)
        except DataFileError as exc:
            raise InvalidInput(
                "the scenario template is not valid",
                [ItemError(None, f"scenario.{e.field}".rstrip("."), e.reason) for e in exc.errors],
            ) from None
        library = journeys.with_scenario(library, scenario)
    if body.only is not None:
        library = journeys.only(library, body.only)
    return journeys.simulate(body.journey, library, container.catalogue).as_dict()


@router.post(
    ":simulate",
    summary="What the scenarios will do for one client, on a simulated clock (nothing stored or sent)",
    description="Runs the journey - a client with consents, a start, and a timed list of events, reactions "
    "and operator outcomes - through the live engine on a throwaway database; returns every trigger, "
    "decision, send, wait, hold, skip and end with its simulated time, rule and reason.",
)
async def simulate(body: SimulateIn, container: ContainerDep, who: Publisher) -> dict[str, Any]:
    return await run_in_threadpool(_simulated, body, container)
