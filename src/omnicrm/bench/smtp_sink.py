"""A counting SMTP server (aiosmtpd) for the dispatch crash test and benchmark: it accepts every
message and counts arrivals per `X-Idempotency-Key` (like ../shared/tools/peer_dispatch's sink), with
the time of each, so a test can tell lost, doubled and late messages apart."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from typing import Any

from aiosmtpd.controller import Controller

_HEADER = b"x-idempotency-key:"


class _Counter:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.arrivals: dict[str, list[float]] = defaultdict(list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        data: bytes = envelope.original_content or envelope.content
        key = "<none>"
        for line in data.split(b"\r\n"):
            if not line:
                break
            if line.lower().startswith(_HEADER):
                key = line[len(_HEADER) :].strip().decode()
                break
        with self.lock:
            self.arrivals[key].append(time.time())
        return "250 OK"


class CountingSink:
    """`with CountingSink() as sink:` - an SMTP server on 127.0.0.1:`sink.port`."""

    def __init__(self, port: int = 0) -> None:
        self._counter = _Counter()
        self._controller = Controller(self._counter, hostname="127.0.0.1", port=port or _free_port())
        self.port = self._controller.port

    def __enter__(self) -> CountingSink:
        self._controller.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._controller.stop()

    def arrivals(self) -> dict[str, list[float]]:
        with self._counter.lock:
            return {k: list(v) for k, v in self._counter.arrivals.items()}

    def count(self) -> int:
        with self._counter.lock:
            return sum(len(v) for v in self._counter.arrivals.values())


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
