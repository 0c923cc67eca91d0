"""What every command shares: the consoles, the container and how errors are printed."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from pydantic import ValidationError
from rich.console import Console

from omnicrm.bootstrap import Container, bootstrap
from omnicrm.catchup import default_processes
from omnicrm.domain.errors import DomainError
from omnicrm.domain.partitions import COUNTS
from omnicrm.services.conversations.datafiles import DataFileError
from omnicrm.settings import Settings

console = Console()
err = Console(stderr=True)
CLI_ACTOR = "cli"


def check_settings() -> None:
    """Read the settings once before any command runs, so a bad OMNICRM_* value is refused at start
    in one line per problem (variable, reason, value) instead of a traceback half-way through."""
    try:
        Settings()
    except ValidationError as exc:
        for problem in exc.errors(include_url=False):
            name = "_".join(str(part) for part in problem["loc"]).upper()
            where = f"OMNICRM_{name}: " if name else ""
            given = f" (got {problem['input']!r})" if name else ""
            err.print(f"configuration refused: {where}{problem['msg']}{given}", markup=False, soft_wrap=True)
        raise typer.Exit(2) from None


def open_container(migrate: bool = True, *, publish: bool = True) -> Container:
    """The container; `publish=False` leaves publishing changed scenario files to the caller."""
    try:
        return bootstrap(Settings(publish_on_start=publish) if not publish else None, migrate=migrate)
    except DataFileError as exc:
        err.print(f"[red]configuration refused[/red]\n{exc}", markup=True, highlight=False)
        raise typer.Exit(2) from None


def report_error(exc: DomainError) -> None:
    err.print(f"[red]{exc.title}:[/red] {exc.detail}")
    for item in getattr(exc, "errors", [])[:50]:
        where = f"line {item.index}: " if item.index is not None else ""
        err.print(f"  {where}{item.field}: {item.reason}")


@contextmanager
def refusals_exit() -> Iterator[None]:
    """A business error raised inside is printed (`report_error`) and the command exits 1."""
    try:
        yield
    except DomainError as exc:
        report_error(exc)
        raise typer.Exit(1) from None


def print_file_errors(exc: DataFileError) -> None:
    for error in exc.errors:
        err.print(str(error), markup=False, highlight=False, soft_wrap=True)


PROCESSES = typer.Option(
    help="Processes deciding a long queue in parallel, each for a share of the customers "
    "(1, 2, 4, 8 or 16; 0: as many as cores)",
    min=0,
    max=16,
)


def processes_option(value: int) -> int:
    """`--processes` checked: one of the partition counts, or 0 for as many as cores."""
    if value and value not in COUNTS:
        err.print(f"[red]--processes:[/red] {value} is not one of {', '.join(map(str, COUNTS))}")
        raise typer.Exit(2)
    return value or default_processes()
