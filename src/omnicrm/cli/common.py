"""What every command shares: the consoles, the container and how errors are printed."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console

from omnicrm.bootstrap import Container, bootstrap
from omnicrm.domain.errors import DomainError
from omnicrm.services.datafiles import DataFileError
from omnicrm.settings import Settings

console = Console()
err = Console(stderr=True)
CLI_ACTOR = "cli"


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
