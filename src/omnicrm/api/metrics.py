"""`GET /metrics`: the service's figures in Prometheus' text format, for the `monitoring` role.

The figures are read from the database when Prometheus scrapes (store/operations.py, the same
reading `omnicrm worker` prints), not counted in this process: every API process answers the same
numbers however many processes decide, dispatch or serve, and a restart loses none. Only the
response counter is this process's own (labelled with its pid), for it costs one integer addition
per request and no database write.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from omnicrm.api.deps import require
from omnicrm.bootstrap import Container
from omnicrm.domain.permissions import Permission
from omnicrm.services.access.auth import Principal
from omnicrm.store.operations import Figures, read_figures

router = APIRouter(tags=["operations"])
Monitoring = Annotated[Principal, Depends(require(Permission.READ_METRICS))]
UNASSIGNED = "unassigned"  # the provider label of outbox rows no provider has taken yet


class ResponseCounts:
    """Answers of this process by status class (1xx..5xx). Bumped on the event loop's one thread, so a
    plain list needs no lock."""

    def __init__(self) -> None:
        self.by_class = [0] * 6

    def add(self, status: int) -> None:
        self.by_class[min(status // 100, 5)] += 1


class CountResponses:
    """ASGI middleware, outermost, so the front door's refusals (401, 413, 422) are counted too."""

    def __init__(self, app: ASGIApp, counts: ResponseCounts) -> None:
        self.app, self.counts = app, counts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        counts = self.counts

        async def counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                counts.add(message["status"])
            await send(message)

        await self.app(scope, receive, counted)


class FiguresCollector:
    """A Prometheus collector that reads the figures at each scrape (`read` opens its own snapshot)."""

    def __init__(self, read: Callable[[], Figures], responses: ResponseCounts) -> None:
        self.read, self.responses = read, responses

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        figures = self.read()
        yield from figure_metrics(figures)
        yield from self._responses()
        yield GaugeMetricFamily(
            "omnicrm_metrics_read_seconds",
            "Time this scrape spent reading the figures from the database",
            value=time.perf_counter() - started,
        )

    def _responses(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "omnicrm_http_responses",
            "Responses of this API process (pid) by status class, since it started",
            labels=["pid", "code"],
        )
        pid = str(os.getpid())
        for index, count in enumerate(self.responses.by_class):
            if index:
                family.add_metric([pid, f"{index}xx"], count)
        yield family


def figure_metrics(figures: Figures) -> Iterator[Metric]:
    """The metric families of one reading."""
    yield GaugeMetricFamily(
        "omnicrm_decision_lag_events",
        "Events stored but not yet decided (the newest event's pk minus the decision worker's offset)",
        value=figures.lag_events,
    )
    yield GaugeMetricFamily(
        "omnicrm_decision_lag_seconds",
        "Age of the oldest event not yet decided (0 when none waits)",
        value=figures.lag_seconds,
    )
    yield GaugeMetricFamily(
        "omnicrm_timers_due", "Active conversations whose wait has timed out", value=figures.timers_due
    )
    yield GaugeMetricFamily(
        "omnicrm_timers_waiting",
        "Active conversations with a timer set, due or not",
        value=figures.timers_waiting,
    )
    yield from _outbox(figures)
    webhooks = CounterMetricFamily(
        "omnicrm_webhooks_received",
        "Feedback taken in (provider webhooks, tracking, dispositions), each provider event once",
        labels=["source"],
    )
    for source, count in sorted(figures.webhooks.items()):
        webhooks.add_metric([source], count)
    yield webhooks


def _outbox(figures: Figures) -> Iterator[Metric]:
    backlog = GaugeMetricFamily(
        "omnicrm_outbox_messages",
        "Outbox messages and tasks by channel and status",
        labels=["channel", "status"],
    )
    by_provider = GaugeMetricFamily(
        "omnicrm_provider_messages",
        "Outbox messages by the provider that took them and their status (sends, failures)",
        labels=["provider", "status"],
    )
    retries = CounterMetricFamily(
        "omnicrm_provider_retries",
        "Sends tried beyond the first, by the provider that has the message now",
        labels=["provider"],
    )
    channel_status: dict[tuple[str, str], int] = {}
    provider_status: dict[tuple[str, str], int] = {}
    provider_retries: dict[str, int] = {}
    for group in figures.outbox:
        provider = group.provider or UNASSIGNED
        channel_status[group.channel, group.status] = (
            channel_status.get((group.channel, group.status), 0) + group.rows
        )
        provider_status[provider, group.status] = (
            provider_status.get((provider, group.status), 0) + group.rows
        )
        provider_retries[provider] = provider_retries.get(provider, 0) + group.retries
    for labels, count in sorted(channel_status.items()):
        backlog.add_metric(list(labels), count)
    for labels, count in sorted(provider_status.items()):
        by_provider.add_metric(list(labels), count)
    for provider, count in sorted(provider_retries.items()):
        retries.add_metric([provider], count)
    yield from (backlog, by_provider, retries)


def install(app: FastAPI, container: Container) -> None:
    """Count this app's responses and give `/metrics` its registry (call after the other middleware:
    the counter goes outermost)."""

    def read() -> Figures:
        with container.reader() as conn:
            return read_figures(conn, datetime.now(UTC))

    counts = ResponseCounts()
    registry = CollectorRegistry()
    registry.register(FiguresCollector(read, counts))
    app.state.metrics = registry
    app.add_middleware(CountResponses, counts=counts)


@router.get(
    "/metrics",
    summary="The service's figures for Prometheus (text format 0.0.4)",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_PLAIN_0_0_4: {}}, "description": "Prometheus text format"}},
)
def metrics(request: Request, _: Monitoring) -> Response:
    """Plain `def`: FastAPI runs it in its thread pool, so the database read never blocks the loop."""
    registry: CollectorRegistry = request.app.state.metrics
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_PLAIN_0_0_4)
