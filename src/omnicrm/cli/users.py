"""`omnicrm users add|token`: accounts and API tokens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from omnicrm.cli.common import CLI_ACTOR, console, open_container, refusals_exit
from omnicrm.services import auth

users_app = typer.Typer(help="Users, roles and API tokens.")


@users_app.command("add")
def add_user(
    username: str,
    role: Annotated[str, typer.Option(help="admin, operator, marketer, compliance, auditor or integration")],
    branch: str | None = None,
    password: Annotated[bool, typer.Option(help="Ask for a password (else token-only)")] = False,
) -> None:
    """Create a user."""
    secret = typer.prompt("password", hide_input=True, confirmation_prompt=True) if password else None
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
