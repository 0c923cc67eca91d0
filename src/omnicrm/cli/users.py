"""`omnicrm users add|token|tokens|revoke|deactivate`: accounts and API tokens."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer

from omnicrm.cli.common import CLI_ACTOR, console, err, open_container, refusals_exit
from omnicrm.services.access import auth

users_app = typer.Typer(help="Users, roles and API tokens.")


def read_password() -> str:
    """At a terminal, ask twice without echo; from a pipe (`echo … | omnicrm users add …`, a secrets
    manager), read one line: asking twice and getpass's echo warnings make no sense there."""
    if sys.stdin.isatty():
        secret = str(typer.prompt("password", hide_input=True, confirmation_prompt=True))
    else:
        secret = sys.stdin.readline().rstrip("\r\n")
    if not secret:
        err.print("--password: the password is empty")
        raise typer.Exit(2)
    return secret


@users_app.command("add")
def add_user(
    username: str,
    role: Annotated[str, typer.Option(help="admin, operator, marketer, compliance, auditor or integration")],
    branch: str | None = None,
    password: Annotated[
        bool,
        typer.Option(
            help="Set a password (else token-only): asked twice at a terminal, else read from stdin"
        ),
    ] = False,
) -> None:
    """Create a user."""
    secret = read_password() if password else None
    container = open_container()
    with refusals_exit(), container.uow() as uow:
        auth.create_user(
            uow.conn,
            username=username,
            role=role,
            password=secret,
            branch=branch,
            actor=CLI_ACTOR,
            now=datetime.now(UTC),
        )
        uow.commit()
    console.print(f"user {username} ({role}) created")


@users_app.command("token")
def issue_token(
    username: str,
    name: str = "cli",
    days: Annotated[
        int,
        typer.Option(
            min=1,
            max=auth.TOKEN_DAYS_MAX,
            help=f"Days until the token expires: 1-{auth.TOKEN_DAYS_MAX}",
        ),
    ] = auth.TOKEN_DAYS_DEFAULT,
) -> None:
    """Issue an API token for a user and print it (it is shown only once)."""
    container = open_container()
    with refusals_exit(), container.uow() as uow:
        token = auth.issue_token(
            uow.conn,
            username=username,
            name=name,
            ttl=timedelta(days=days),
            actor=CLI_ACTOR,
            now=datetime.now(UTC),
        )
        uow.commit()
    print(token)


def _when(value: Any) -> str:
    return value.isoformat(timespec="seconds") if isinstance(value, datetime) else "-"


@users_app.command("tokens")
def list_tokens(username: str) -> None:
    """List a user's API tokens: id, name, created, expires, revoked (never the token or its hash)."""
    container = open_container()
    with refusals_exit(), container.reader() as conn:
        items = auth.list_tokens(conn, username)
    print("id\tname\tcreated\texpires\trevoked")
    for t in items:
        cells = [
            str(t["id"]),
            t["name"],
            _when(t["created_at"]),
            _when(t["expires_at"]),
            _when(t["revoked_at"]),
        ]
        print("\t".join(cells))


@users_app.command("revoke")
def revoke_token(
    username: str,
    token_id: Annotated[int, typer.Argument(min=1, max=2**63 - 1, help="From `omnicrm users tokens`")],
) -> None:
    """Revoke one of a user's API tokens (again is a no-op). A running API refuses it within
    OMNICRM_TOKEN_CACHE_SECONDS."""
    container = open_container()
    with refusals_exit(), container.uow() as uow:
        auth.revoke_token(
            uow.conn, username=username, token_id=token_id, actor=CLI_ACTOR, now=datetime.now(UTC)
        )
        uow.commit()
    console.print(f"token {token_id} of {username} revoked")


@users_app.command("deactivate")
def deactivate_user(username: str) -> None:
    """Deactivate a user: revoke every token of theirs and refuse their login (again is a no-op).
    A running API refuses them within OMNICRM_TOKEN_CACHE_SECONDS."""
    container = open_container()
    with refusals_exit(), container.uow() as uow:
        changed = auth.deactivate_user(uow.conn, username=username, actor=CLI_ACTOR, now=datetime.now(UTC))
        uow.commit()
    console.print(f"user {username} {'deactivated' if changed else 'was already deactivated'}")
