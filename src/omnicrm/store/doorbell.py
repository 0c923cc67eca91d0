"""Wake the process that decides on a database from the processes that write events to it.

The decision worker may run in its own process beside the API workers (`omnicrm serve` with
`OMNICRM_DECIDER_PROCESS=true`, or `omnicrm worker`). Instead of polling for new events every few
milliseconds, it listens on a datagram socket named after the database in Linux's abstract socket
namespace (no file to clean up, gone with the process), and each commit of new events rings it.
Ringing never blocks and never fails the writer: with nobody listening it costs one refused
system call. Polling stays as the fallback (another host, another operating system).
"""

from __future__ import annotations

import hashlib
import os
import select
import socket
import sys
import time

from sqlalchemy import Engine

SUPPORTED = sys.platform.startswith("linux")


def _identity(engine: Engine) -> str:
    url = engine.url
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        return "sqlite:" + os.path.realpath(url.database)
    return url.render_as_string(hide_password=True)


class Doorbell:
    def __init__(self, engine: Engine) -> None:
        digest = hashlib.sha256(_identity(engine).encode()).hexdigest()[:32]
        self.address = b"\0omnicrm-decider-" + digest.encode()
        self._sender: socket.socket | None = None
        self._listener: socket.socket | None = None

    @property
    def listening(self) -> bool:
        return self._listener is not None

    def ring(self) -> None:
        if not SUPPORTED:
            return
        try:
            if self._sender is None:
                self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._sender.setblocking(False)
            self._sender.sendto(b"!", self.address)
        except OSError:
            pass  # nobody listens, or its queue is full (then it is awake anyway)

    def listen(self) -> bool:
        """Receive the rings (the one deciding process does); False if it cannot here."""
        if self._listener is not None:
            return True
        if not SUPPORTED:
            return False
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            listener.bind(self.address)
        except OSError:
            listener.close()
            return False
        listener.setblocking(False)
        self._listener = listener
        return True

    def wait(self, timeout_s: float) -> bool:
        """Sleep until rung or `timeout_s` passed; True if rung. Rings that came meanwhile count once."""
        if self._listener is None:
            time.sleep(timeout_s)
            return False
        ready, _, _ = select.select([self._listener], [], [], timeout_s)
        if not ready:
            return False
        try:
            while self._listener.recv(64):
                pass
        except BlockingIOError:
            pass
        return True

    def close(self) -> None:
        for sock in (self._sender, self._listener):
            if sock is not None:
                sock.close()
        self._sender = self._listener = None
