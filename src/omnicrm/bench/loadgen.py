"""A lean HTTP/1.1 load generator (asyncio streams, keep-alive) for measuring the running API."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(slots=True)
class LoadResult:
    latencies_ms: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    seconds: float = 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]

    @property
    def rate(self) -> float:
        return len(self.latencies_ms) / self.seconds if self.seconds else 0.0


async def _client(
    host: str,
    port: int,
    make_request: Callable[[], bytes],
    stop_at: float,
    result: LoadResult,
    interval: float | None,
    first_at: float,
) -> None:
    """One keep-alive connection. With `interval`, requests are paced from `first_at` on and latency
    counts from the scheduled send time, so a stall is charged to every request it delayed (no
    coordinated omission)."""
    reader, writer = await asyncio.open_connection(host, port)
    scheduled = first_at
    try:
        while time.perf_counter() < stop_at:
            request = make_request()
            if interval is not None:
                delay = scheduled - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            started = scheduled if interval is not None else time.perf_counter()
            writer.write(request)
            status_line = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            result.latencies_ms.append((time.perf_counter() - started) * 1000)
            if interval is not None:
                scheduled += interval
            status = int(status_line.split()[1]) if status_line else 0
            result.statuses[status] = result.statuses.get(status, 0) + 1
    finally:
        writer.close()


async def run_load(
    host: str,
    port: int,
    make_request: Callable[[], bytes],
    *,
    concurrency: int,
    seconds: float,
    rate: float | None = None,
) -> LoadResult:
    """`concurrency` connections for `seconds`: as fast as answered, or paced to `rate` requests/s in
    all. Paced connections are staggered evenly over one interval, so the server sees a steady
    `rate` rather than `concurrency` requests at once every interval."""
    result = LoadResult()
    started = time.perf_counter()
    stop_at = started + seconds
    interval = concurrency / rate if rate else None
    step = (interval or 0.0) / concurrency
    await asyncio.gather(
        *(
            _client(host, port, make_request, stop_at, result, interval, started + k * step)
            for k in range(concurrency)
        )
    )
    result.seconds = time.perf_counter() - started
    return result


def post_json(path: str, host: str, token: str, body: bytes) -> bytes:
    """The bytes of one POST request with a JSON body."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body
