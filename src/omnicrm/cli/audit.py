"""`omnicrm audit head|verify`: export the head to anchor it outside the database, and verify the
chain (and that an anchor exported earlier is still a prefix of it); exit 1 when it is broken."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import orjson
import typer

from omnicrm.cli.common import console, err, open_container
from omnicrm.store import audit

audit_app = typer.Typer(help="The audit log: its head and its verification.")


@audit_app.command("head")
def show_head() -> None:
    """Print the head as JSON (last_id, count, hash, at): keep it somewhere the database cannot reach."""
    container = open_container()
    with container.reader() as conn:
        head = audit.head(conn)
    print(orjson.dumps(head).decode())


def _anchor(value: str | None) -> audit.Anchor | None:
    if value is None:
        return None
    try:
        return audit.parse_anchor(value)
    except (ValueError, KeyError, TypeError) as exc:
        raise typer.BadParameter(str(exc) or "not an anchor", param_hint="--anchor") from None


@audit_app.command("verify")
def verify(
    full: Annotated[
        bool, typer.Option(help="Walk the whole chain, not just what is new since the last check")
    ] = False,
    anchor: Annotated[
        str | None,
        typer.Option(help="A head exported earlier (its JSON, or its hash) that must still be a prefix"),
    ] = None,
) -> None:
    """Verify the audit chain; exit 1 when it is broken or the anchor is no longer a prefix of it."""
    wanted = _anchor(anchor)
    container = open_container()
    with container.reader() as conn:
        verdict = audit.verify(conn, full=full)
        problem = audit.anchor_problem(conn, wanted) if wanted is not None else None
    if verdict.through is not None:
        with container.uow() as uow:
            audit.save_checkpoint(uow.conn, verdict, datetime.now(UTC))
            uow.commit()
    how = "full walk" if full else "since the last verified point"
    if verdict.intact:
        console.print(
            f"audit chain intact: {verdict.entries} entries, {verdict.entries_checked} checked ({how})"
        )
    else:
        err.print(
            f"audit chain BROKEN: first bad entry: {verdict.first_bad_id or 'unknown'}; {verdict.reason}"
        )
    if problem is not None:
        err.print(f"anchor not a prefix of the chain: {problem}")
    elif wanted is not None:
        console.print("anchor still a prefix of the chain")
    if not verdict.intact or problem is not None:
        raise typer.Exit(1)
