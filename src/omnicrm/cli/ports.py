"""Is the address free? Asked before `demo` or `serve` create or print anything, so that a busy port
is one clear line instead of a database, a token and then uvicorn's traceback."""

from __future__ import annotations

import errno
import socket
from typing import NoReturn

import typer

from omnicrm.cli.common import err


def refuse_busy_port(host: str, port: int) -> None:
    """Exit 1 with one line when nothing can listen on host:port. The probe binds as uvicorn does
    (SO_REUSEADDR), so a port only lingering in TIME_WAIT still counts as free."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        _refuse(f"cannot serve on {host}:{port}: {exc.strerror}")
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                _refuse(f"{host}:{port} is already in use: choose another with --port (or OMNICRM_PORT)")
            _refuse(f"cannot serve on {host}:{port}: {exc.strerror}")


def _refuse(message: str) -> NoReturn:
    err.print(message, markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(1)
