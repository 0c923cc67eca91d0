"""JSON log lines (omnicrm/logs.py): one object per line with the act's ids, and never a personal
value, whether it is passed to `act()` or as any record's `extra`."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from omnicrm import logs

PHONE = "+380501234567"
EMAIL = "olena.kovalenko@example.com"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """The root logger configured for JSON lines into a buffer; put back as it was afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stream = io.StringIO()
    logs.configure("INFO", json=True, stream=stream)
    try:
        yield stream
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    text = stream.getvalue()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_an_act_is_one_json_object_with_its_ids(captured: io.StringIO) -> None:
    logs.act(
        logging.getLogger("omnicrm.dispatch"),
        "outbox.sent",
        message_id="42",
        idempotency_key="01JD3Q8W7Z:reminder:1",
        customer_id="01JD3Q8W7ZC4YB6TQ0V9N5M2KX",
        provider="smtp-a",
        attempts=2,
    )
    [line] = lines(captured)
    assert line["act"] == line["message"] == "outbox.sent"
    assert line["level"] == "INFO"
    assert line["logger"] == "omnicrm.dispatch"
    assert line["time"].startswith("20")
    assert line["message_id"] == "42"
    assert line["idempotency_key"] == "01JD3Q8W7Z:reminder:1"
    assert line["customer_id"] == "01JD3Q8W7ZC4YB6TQ0V9N5M2KX"
    assert line["provider"] == "smtp-a"
    assert line["attempts"] == 2
    assert "dropped" not in line


def test_a_phone_number_or_an_address_never_reaches_the_log(captured: io.StringIO) -> None:
    log = logging.getLogger("omnicrm.dispatch")
    logs.act(log, "outbox.sent", message_id="7", phone=PHONE, email=EMAIL, to=EMAIL, body="Привіт, Олено")
    logs.act(log, "outbox.sent", customer_id=EMAIL, provider_id=PHONE, idempotency_key="k 1 with text")
    log.info("delivery report", extra={"msisdn": PHONE, "recipient": EMAIL, "channel": "sms"})
    text = captured.getvalue()
    assert PHONE not in text
    assert EMAIL not in text
    assert "Олено" not in text
    first, second, third = lines(captured)
    assert first["message_id"] == "7"
    assert first["dropped"] == ["body", "email", "phone", "to"]
    assert second["dropped"] == ["customer_id", "idempotency_key", "provider_id"]
    assert third["channel"] == "sms"
    assert third["dropped"] == ["msisdn", "recipient"]


def test_an_act_name_must_be_a_name_not_text() -> None:
    with pytest.raises(ValueError, match="lower-case"):
        logs.act(logging.getLogger("x"), f"sent to {EMAIL}")


def test_the_format_follows_the_environment_or_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv(logs.FORMAT_VARIABLE, raising=False)
    assert logs.json_wanted(io.StringIO()) is True  # a pipe, a file, a container's log
    assert logs.json_wanted(Terminal()) is False
    monkeypatch.setenv(logs.FORMAT_VARIABLE, "json")
    assert logs.json_wanted(Terminal()) is True
    monkeypatch.setenv(logs.FORMAT_VARIABLE, "text")
    assert logs.json_wanted(io.StringIO()) is False
    monkeypatch.setenv(logs.FORMAT_VARIABLE, "xml")
    with pytest.raises(ValueError, match="OMNICRM_LOG_FORMAT"):
        logs.json_wanted(io.StringIO())


def test_text_logs_for_a_person_at_a_terminal(captured: io.StringIO) -> None:
    stream = io.StringIO()
    logs.configure("WARNING", json=False, stream=stream)
    logging.getLogger("omnicrm.x").info("not shown")
    logging.getLogger("omnicrm.x").warning("shown")
    assert stream.getvalue().count("\n") == 1
    assert "WARNING omnicrm.x: shown" in stream.getvalue()
    assert len(logging.getLogger().handlers) == 1  # configuring again replaced, not added
