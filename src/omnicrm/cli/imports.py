"""`omnicrm import customers|events|interactions FILE`: JSON Lines or CSV, with a progress bar."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from omnicrm.cli.common import CLI_ACTOR, console, err, open_container, refusals_exit
from omnicrm.services.intake import import_files, importer
from omnicrm.services.intake.ingest import EVENT_KINDS, INTERACTION_KINDS

import_app = typer.Typer(help="Import customers, events or interactions from .jsonl or .csv files.")
# A missing or unreadable file is refused before anything is opened, with click's own message.
ImportFile = Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)]


def import_file(kind: str, path: Path) -> None:
    """Import one file of `kind` (customers, events, interactions) with a progress bar."""
    container = open_container()
    total = import_files.count_records(path)
    columns = (TextColumn(f"import {kind}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with refusals_exit(), Progress(*columns, console=err, transient=False) as bar:
        task = bar.add_task(kind, total=total)
        advance = lambda n: bar.advance(task, n)  # noqa: E731
        if kind == "customers":
            report = importer.import_customers(container.uow, path, actor=CLI_ACTOR, progress=advance)
        else:
            kinds = EVENT_KINDS if kind == "events" else INTERACTION_KINDS
            report = importer.import_events(
                container.uow, path, container.catalogue, kinds, actor=CLI_ACTOR, progress=advance
            )
    console.print(
        f"{report.lines} lines: {report.accepted} stored, {report.duplicates} already known, "
        f"{report.customers_created} new profiles, {report.merges} merges"
    )


@import_app.command("customers")
def import_customers(path: ImportFile) -> None:
    """Import profiles (one CustomerIn per line)."""
    import_file("customers", path)


@import_app.command("events")
def import_events(path: ImportFile) -> None:
    """Import behavioural, operational and reaction events."""
    import_file("events", path)


@import_app.command("interactions")
def import_interactions(path: ImportFile) -> None:
    """Import CRM interactions (calls, complaints, tickets, offers...)."""
    import_file("interactions", path)
