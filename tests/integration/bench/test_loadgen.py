"""The load generator against a real socket server: pacing is steady, stalls are charged, statuses counted."""

from __future__ import annotations

import asyncio
import statistics
import time

from omnicrm.bench.loadgen import LoadResult, post_json, run_load


class _Server:
    """A minimal HTTP/1.1 keep-alive server that records when each request arrived."""

    def __init__(self, *, stall_on: int | None = None, stall_s: float = 0.0) -> None:
        self.arrivals: list[float] = []
        self.stall_on, self.stall_s = stall_on, stall_s

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                await reader.readexactly(length)
                self.arrivals.append(time.perf_counter())
                if len(self.arrivals) == self.stall_on:
                    await asyncio.sleep(self.stall_s)
                body = b'{"ok":true}'
                writer.write(b"HTTP/1.1 201 Created\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


async def _load(server: _Server, *, concurrency: int, seconds: float, rate: float | None) -> LoadResult:
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    request = post_json("/v1/events", "127.0.0.1", "t0ken", b'{"a":1}')
    try:
        return await run_load(
            "127.0.0.1", port, lambda: request, concurrency=concurrency, seconds=seconds, rate=rate
        )
    finally:
        listener.close()


def test_paced_connections_are_spread_over_the_interval_not_sent_in_bursts() -> None:
    server = _Server()
    result = asyncio.run(_load(server, concurrency=8, seconds=0.6, rate=400.0))

    assert result.statuses == {201: len(server.arrivals)}
    assert 200 <= len(server.arrivals) <= 260  # ~400/s for 0.6 s
    gaps = [b - a for a, b in zip(server.arrivals, server.arrivals[1:], strict=False)]
    # 8 connections, one request each every 20 ms: one request every 2.5 ms in all. Connections
    # started together would send 8 at once every 20 ms: most gaps ~0.
    assert statistics.median(gaps) > 0.0015
    assert sum(gap < 0.0005 for gap in gaps) < len(gaps) / 4


def test_a_paced_stall_is_charged_to_every_request_it_delayed() -> None:
    server = _Server(stall_on=5, stall_s=0.2)
    paced = asyncio.run(_load(server, concurrency=1, seconds=0.5, rate=100.0))
    # requests due every 10 ms wait behind the 200 ms answer: each counts from when it was due
    assert sum(ms > 50 for ms in paced.latencies_ms) >= 10

    server = _Server(stall_on=5, stall_s=0.2)
    closed = asyncio.run(_load(server, concurrency=1, seconds=0.5, rate=None))
    assert sum(ms > 50 for ms in closed.latencies_ms) == 1  # as fast as answered: only the slow one
    assert closed.percentile(100) >= 200
