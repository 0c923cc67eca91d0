"""`omnicrm replay`: what a scenario version would have done with the stored events of a period."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from omnicrm.bootstrap import Container
from omnicrm.cli.common import console, err, open_container, print_file_errors
from omnicrm.domain.scenarios import Scenario
from omnicrm.services.conversations import replay as replay_service
from omnicrm.services.conversations.datafiles import DataFileError, read_library


def _moment(text: str, option: str) -> datetime:
    """A date (midnight UTC) or an ISO date-time (UTC unless it names its offset)."""
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(), tzinfo=UTC)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is not a date (2026-11-01) or date-time", param_hint=option
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _scenario(container: Container, scenario_id: str, version: int | None) -> Scenario:
    """A published version, else one in the scenario files (so a draft can be tried before publishing)."""
    library = container.library
    found = library.current.get(scenario_id) if version is None else library.get(scenario_id, version)
    if found is None:
        try:
            files = read_library(container.settings.scenarios_dir, container.catalogue).library
        except DataFileError as exc:
            print_file_errors(exc)
            raise typer.Exit(1) from None
        found = files.current.get(scenario_id) if version is None else files.get(scenario_id, version)
    if found is None:
        which = f"{scenario_id} version {version}" if version else scenario_id
        err.print(f"[red]no scenario {which}[/red] (published or in {container.settings.scenarios_dir})")
        raise typer.Exit(1)
    return found


def replay(
    scenario: Annotated[str, typer.Option(help="Scenario id")],
    start: Annotated[str, typer.Option("--from", help="Start of the period (date or ISO date-time)")],
    end: Annotated[str, typer.Option("--to", help="End of the period, exclusive")],
    version: Annotated[int | None, typer.Option(help="Version (default: the current one)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON")] = False,
) -> None:
    """Run stored events through a scenario version without sending: who would enter, be contacted per
    channel, be suppressed by each rule, reach the goal."""
    since, until = _moment(start, "--from"), _moment(end, "--to")
    if until <= since:
        raise typer.BadParameter("must be after --from", param_hint="--to")
    container = open_container()
    chosen = _scenario(container, scenario, version)
    with container.reader() as conn:
        total = replay_service.count_events(conn, chosen, since, until)
        columns = (
            TextColumn(f"replay {chosen.key}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=err, transient=True) as bar:
            task = bar.add_task("replay", total=total)
            report = replay_service.replay(
                conn, container.library, chosen, since, until, progress=lambda n: bar.advance(task, n)
            )
    if as_json:
        typer.echo(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
        return
    table = Table(title=f"what-if {chosen.key}, {since:%Y-%m-%d %H:%M} - {until:%Y-%m-%d %H:%M} UTC")
    table.add_column("measure")
    table.add_column("count", justify="right")
    rows: list[tuple[str, object]] = [
        ("events read (triggers and goals)", report.events),
        ("decisions", report.decisions),
        ("conversations entered", report.entered),
        ("distinct clients entered", report.clients),
        ("  of which delayed (caps, quiet hours)", report.delayed),
        ("  of which handed to a person", report.escalated),
        ("trigger again while running (joined)", report.joined),
        *((f"contacted by {channel}", n) for channel, n in report.contacted.most_common()),
        ("call-centre tasks", report.tasks),
        ("sends skipped (not permitted then)", report.skipped),
        *((f"suppressed by {rule}", n) for rule, n in report.suppressed.most_common()),
        ("reached the goal", report.goal_reached),
        ("still running at the end", report.still_running),
    ]
    for name, value in rows:
        table.add_row(name, str(value))
    console.print(table)
    console.print(f"nothing was sent or stored. Assumes {report.note}.", markup=False, highlight=False)
