"""The real brokers of this machine (RabbitMQ, NATS JetStream), with names unique to each test and
removed after it, so the bridge tests run beside other suites on the same servers."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace

import pytest
from bridge_peers import (
    free_port,
    nats_delete_streams,
    nats_reachable,
    rabbit_delete,
    rabbit_reachable,
)

from omnicrm.bridge.nats import NatsConfig
from omnicrm.bridge.rabbitmq import RabbitConfig

AMQP_URL = os.environ.get("OMNICRM_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
NATS_URL = os.environ.get("OMNICRM_TEST_NATS_URL", "nats://127.0.0.1:4222")


@pytest.fixture(scope="session")
def amqp_url() -> str:
    if not rabbit_reachable(AMQP_URL):
        pytest.fail(f"RabbitMQ is not running at {AMQP_URL} (start rabbitmq-server)")
    return AMQP_URL


@pytest.fixture(scope="session")
def nats_url() -> Iterator[str]:
    """The machine's NATS; where it is not running, a private `nats-server -js` on a free port."""
    if nats_reachable(NATS_URL):
        yield NATS_URL
        return
    binary = shutil.which("nats-server")
    if binary is None:
        pytest.fail(f"NATS is not running at {NATS_URL} and nats-server is not installed")
    port = free_port()
    with tempfile.TemporaryDirectory() as store:
        server = subprocess.Popen(
            [binary, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", store],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"nats://127.0.0.1:{port}"
        try:
            for _ in range(100):
                if nats_reachable(url):
                    break
                time.sleep(0.05)
            yield url
        finally:
            server.terminate()
            server.wait(10)


@pytest.fixture
def tag() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture
def rabbit(amqp_url: str, tag: str) -> Iterator[RabbitConfig]:
    """omnicrm's side: consumes `bank-<tag>` through its quorum queue, publishes to `status-<tag>`."""
    config = RabbitConfig(
        url=amqp_url,
        publish_exchange=f"test.status.{tag}",
        consume_exchange=f"test.bank.{tag}",
        consume_queue=f"test.events.{tag}",
        dead_letter_exchange=f"test.dead.{tag}",
        dead_letter_queue=f"test.events.{tag}.dead",
        connection_name=f"omnicrm-test-{tag}",
    )
    yield config
    rabbit_delete(
        amqp_url,
        queues=[config.consume_queue, config.dead_letter_queue, f"test.watch.{tag}"],
        exchanges=[config.publish_exchange, config.consume_exchange, config.dead_letter_exchange],
    )


@pytest.fixture
def bank_rabbit(rabbit: RabbitConfig) -> RabbitConfig:
    """A bank system's side: publishes to the exchange omnicrm's queue is bound to."""
    return replace(
        rabbit, publish_exchange=rabbit.consume_exchange, connection_name=f"bank-{rabbit.connection_name}"
    )


@pytest.fixture
def jetstream(nats_url: str, tag: str) -> Iterator[NatsConfig]:
    config = NatsConfig(
        servers=(nats_url,),
        publish_stream=f"TEST_STATUS_{tag}",
        publish_prefix=f"test.status.{tag}",
        consume_stream=f"TEST_BANK_{tag}",
        consume_subject=f"test.bank.{tag}.>",
        durable=f"omnicrm-{tag}",
        dead_letter_stream=f"TEST_DEAD_{tag}",
        dead_letter_subject=f"test.dead.{tag}",
        ack_wait=30.0,
    )
    yield config
    nats_delete_streams(nats_url, [config.publish_stream, config.consume_stream, config.dead_letter_stream])


@pytest.fixture
def bank_jetstream(jetstream: NatsConfig, tag: str) -> NatsConfig:
    """A bank system's side: publishes into the stream omnicrm consumes."""
    return replace(jetstream, publish_stream=jetstream.consume_stream, publish_prefix=f"test.bank.{tag}")
