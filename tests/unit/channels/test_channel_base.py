"""The channel contract's shared behaviour (channels/base.py): vendor limits refused before any
send, connection errors turned into transient failures, failover from provider A to B."""

from __future__ import annotations

from typing import ClassVar

import pytest

from omnicrm.channels.base import Accepted, Channel, Failover, Outgoing, Permanent, SendResult, Transient


class Provider(Channel):
    channel: ClassVar[str] = "sms"
    max_body: ClassVar[int | None] = 20

    def __init__(self, name: str, answers: list[SendResult | OSError]) -> None:
        super().__init__(name)
        self.answers = answers
        self.calls = 0

    def _send(self, message: Outgoing) -> SendResult:
        self.calls += 1
        answer = self.answers.pop(0)
        if isinstance(answer, OSError):
            raise answer
        return answer


def _sms(body: str = "hello") -> Outgoing:
    return Outgoing(idempotency_key="k-1", channel="sms", to="+380671234567", language="uk", body=body)


def test_a_body_over_the_vendor_limit_is_refused_before_any_send() -> None:
    provider = Provider("a", [Accepted("a", "x")])
    result = provider.send(_sms("x" * 21))
    assert isinstance(result, Permanent)
    assert result.reason == "body is 21 characters; a takes at most 20"
    assert provider.calls == 0


def test_a_connection_error_is_a_transient_failure() -> None:
    result = Provider("a", [ConnectionRefusedError("refused")]).send(_sms())
    assert isinstance(result, Transient)
    assert "ConnectionRefusedError" in result.reason


def test_failover_tries_b_when_a_fails_transiently_and_names_who_answered() -> None:
    a = Provider("a", [Transient("503 busy")])
    b = Provider("b", [Accepted("b", "id-b")])
    result = Failover([a, b]).send(_sms())
    assert result == Accepted("b", "id-b")
    assert (a.calls, b.calls) == (1, 1)


def test_failover_stops_at_a_permanent_failure_it_is_the_messages() -> None:
    a = Provider("a", [Permanent("bad number")])
    b = Provider("b", [Accepted("b", "id-b")])
    assert isinstance(Failover([a, b]).send(_sms()), Permanent)
    assert b.calls == 0


def test_failover_reports_every_providers_reason_when_all_fail() -> None:
    result = Failover([Provider("a", [Transient("503")]), Provider("b", [OSError("reset")])]).send(_sms())
    assert isinstance(result, Transient)
    assert "503" in result.reason
    assert "reset" in result.reason


def test_failover_refuses_mixed_channels() -> None:
    class Mail(Provider):
        channel: ClassVar[str] = "email"

    with pytest.raises(ValueError, match="mixes channels"):
        Failover([Provider("a", []), Mail("m", [])])
