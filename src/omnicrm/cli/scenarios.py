"""`omnicrm scenarios …`: publish the scenario files, list what runs, print the JSON Schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from omnicrm.bootstrap import publish_files
from omnicrm.cli.common import CLI_ACTOR, console, open_container, print_file_errors, refusals_exit
from omnicrm.services.conversations import journeys
from omnicrm.services.conversations.datafiles import (
    DataFileError,
    load_messages,
    load_yaml,
    read_library,
    read_scenario,
    validation_errors,
)
from omnicrm.services.conversations.registry import scenario_schema
from omnicrm.store import registry

scenarios_app = typer.Typer(help="Scenario templates: publish new versions, list them, their JSON Schema.")


@scenarios_app.command("reload")
def reload(note: Annotated[str, typer.Option(help="Why (kept with the generation)")] = "") -> None:
    """Check the scenario files and publish what changed; refused files change nothing (exit 1)."""
    container = open_container(publish=False)
    try:
        report = publish_files(container, actor=CLI_ACTOR, note=note)
    except DataFileError as exc:
        print_file_errors(exc)
        console.print(f"refused: generation {container.generation} keeps running")
        raise typer.Exit(1) from None
    if not report.changed:
        console.print(f"nothing changed: generation {report.generation} keeps running")
        return
    console.print(f"published generation {report.generation}")
    for key in report.added:
        console.print(f"  new version {key}")
    for key in report.rolled_back:
        console.print(f"  rolled back to {key} (an older published version is current again)")
    for sid in report.retired:
        console.print(f"  retired {sid} (running conversations finish on their version)")
    for key, moved in report.migrated.items():
        console.print(f"  {moved} running conversations migrated to {key}")
    for key, left in report.not_migrated.items():
        console.print(f"  {left} running conversations stay on their version: their step is not in {key}")


@scenarios_app.command("list")
def list_scenarios() -> None:
    """The current version of every scenario and how many conversations run on each version.

    Plain tab-separated lines, never fitted to the terminal: an id is copied from here into
    `omnicrm replay --scenario`, so it must never be cut or wrapped."""
    container = open_container()
    library = container.library
    with container.reader() as conn:
        running = registry.active_counts(conn)
    print(f"scenario library, generation {container.generation}")
    print("scenario\tpurpose\tcurrent\trunning (version: count)")
    for sid, scenario in library.current.items():
        counts = ", ".join(f"v{v}: {n}" for (s, v), n in sorted(running.items()) if s == sid) or "-"
        print(f"{sid}\t{scenario.purpose}\tv{scenario.version}\t{counts}")


@scenarios_app.command("schema")
def schema(out: Annotated[Path | None, typer.Option(help="Write to this file")] = None) -> None:
    """The JSON Schema of a scenario template (for editors and reviews)."""
    text = json.dumps(scenario_schema(), indent=2, ensure_ascii=False) + "\n"
    if out is None:
        console.print(text, markup=False, highlight=False, soft_wrap=True)
    else:
        out.write_text(text, encoding="utf-8")
        console.print(f"wrote {out}")


@scenarios_app.command("simulate")
def simulate(
    journey: Annotated[Path, typer.Argument(help="Journey file (YAML or JSON): start, days, client, events")],
    library: Annotated[
        Path | None, typer.Option(help="A scenarios/ directory to run instead of the published library")
    ] = None,
    scenario: Annotated[
        Path | None, typer.Option(help="A scenario template file (published or not) added to the library")
    ] = None,
    only: Annotated[
        str | None, typer.Option(help="Run only this scenario id (the others stay silent)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the trace as JSON")] = False,
) -> None:
    """What the scenarios will do for one client on a simulated clock: every trigger, decision, send,
    wait, hold, skip and end with its time and reason. Runs the live engine; stores and sends nothing."""
    container = open_container()
    try:
        data, tree = load_yaml(journey)
        try:
            planned = journeys.JourneyIn.model_validate(data)
        except ValidationError as exc:
            raise DataFileError(validation_errors(journey, exc, tree)) from None
        files = read_library(library, container.catalogue) if library is not None else None
        chosen = files.library if files is not None else container.library
        if scenario is not None:
            folder = library or container.settings.scenarios_dir
            messages = set(load_messages(folder / "messages"))
            chosen = journeys.with_scenario(chosen, read_scenario(scenario, container.catalogue, messages)[1])
    except DataFileError as exc:
        print_file_errors(exc)
        raise typer.Exit(1) from None
    with refusals_exit():
        if only is not None:
            chosen = journeys.only(chosen, only)
        trace = journeys.simulate(planned, chosen, container.catalogue)
    if as_json:
        console.print_json(data=trace.as_dict(), default=str)
        return
    for line in trace.lines():
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    console.print("simulated: nothing was stored or sent")
