"""Loading scenario templates, messages and the whole library: errors name file, line and field."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from omnicrm.domain.catalogue import Catalogue
from omnicrm.services.conversations.datafiles import (
    DataFileError,
    FileError,
    load_catalogue,
    load_library,
    load_messages,
    load_policy,
    load_scenario,
)
from omnicrm.settings import SHIPPED_CATALOGUE, SHIPPED_SCENARIOS

REAL_SCENARIOS = SHIPPED_SCENARIOS
REAL_TEMPLATE = REAL_SCENARIOS / "templates" / "loan-application-reminder.yaml"
MESSAGES = {"loan_reminder_push", "loan_reminder_email"}


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return load_catalogue(SHIPPED_CATALOGUE)


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), start=1) if needle in line)


def write_template(tmp_path: Path, old: str, new: str) -> tuple[Path, str]:
    text = REAL_TEMPLATE.read_text(encoding="utf-8")
    assert old in text
    text = text.replace(old, new, 1)
    path = tmp_path / "t.yaml"
    path.write_text(text, encoding="utf-8")
    return path, text


def errors_of(exc: pytest.ExceptionInfo[DataFileError]) -> list[FileError]:
    return exc.value.errors


def test_real_template_loads(catalogue: Catalogue) -> None:
    scenario = load_scenario(REAL_TEMPLATE, catalogue, MESSAGES)
    assert scenario.key == "loan-application-reminder@1"
    assert scenario.channels == ("webpush", "email", "callcentre")


def test_unknown_trigger_event_names_file_and_line(tmp_path: Path, catalogue: Catalogue) -> None:
    path, text = write_template(tmp_path, "event: application.abandoned", "event: application.forgotten")
    with pytest.raises(DataFileError) as exc:
        load_scenario(path, catalogue, MESSAGES)
    # The trigger's condition cannot be test-run on an unknown event either; that is reported too.
    [err] = [e for e in errors_of(exc) if e.field == "trigger.event"]
    assert err.file == str(path)
    assert err.line == line_of(text, "application.forgotten")
    assert "application.forgotten" in err.reason
    assert f"{path}:{err.line}: trigger.event" in str(exc.value)


def test_unknown_goal_event_names_its_line(tmp_path: Path, catalogue: Catalogue) -> None:
    path, text = write_template(tmp_path, "event: application.completed", "event: application.done")
    with pytest.raises(DataFileError) as exc:
        load_scenario(path, catalogue, MESSAGES)
    fields = {e.field: e.line for e in errors_of(exc)}
    assert fields["goal.event"] == line_of(text, "application.done")


def test_wrong_attribute_in_condition_names_its_line(tmp_path: Path, catalogue: Catalogue) -> None:
    path, text = write_template(
        tmp_path,
        'when: event.attributes.product_class == "consumer_loan"\naudience',
        'when: event.attributes.no_such_field == "x"\naudience',
    )
    with pytest.raises(DataFileError) as exc:
        load_scenario(path, catalogue, MESSAGES)
    [err] = errors_of(exc)
    assert err.field == "trigger.when"
    assert err.line == line_of(text, "no_such_field")
    assert "no_such_field" in err.reason


def test_wrong_attribute_in_goal_condition(tmp_path: Path, catalogue: Catalogue) -> None:
    path, text = write_template(
        tmp_path,
        'when: event.attributes.product_class == "consumer_loan"\nreentry',
        'when: event.attributes.last_step == "x"\nreentry',  # last_step exists on abandoned, not completed
    )
    with pytest.raises(DataFileError) as exc:
        load_scenario(path, catalogue, MESSAGES)
    [err] = errors_of(exc)
    assert (err.field, err.line) == ("goal.when", line_of(text, "last_step"))


def test_wrong_customer_field_in_route(tmp_path: Path, catalogue: Catalogue) -> None:
    path, text = write_template(
        tmp_path,
        "{when: 'reaction == \"clicked\"', goto: done}",
        "{when: 'customer.shoe_size > 3', goto: done}",
    )
    with pytest.raises(DataFileError) as exc:
        load_scenario(path, catalogue, MESSAGES)
    [err] = errors_of(exc)
    assert err.field == "steps.wait_push.routes.0.when"
    assert err.line == line_of(text, "shoe_size")


def test_cel_syntax_error_is_a_data_file_error(tmp_path: Path, catalogue: Catalogue) -> None:
    path, _ = write_template(tmp_path, 'customer.status == "client" ||', 'customer.status == "client" || ||')
    with pytest.raises(DataFileError) as exc:
        load_scenario(path, catalogue, MESSAGES)
    assert any(e.reason.startswith("CEL:") and e.file == str(path) for e in errors_of(exc))


def test_missing_message_template(tmp_path: Path, catalogue: Catalogue) -> None:
    path, text = write_template(tmp_path, "template: loan_reminder_email", "template: loan_reminder_letter")
    with pytest.raises(DataFileError) as exc:
        load_scenario(path, catalogue, MESSAGES)
    [err] = errors_of(exc)
    assert err.field == "steps.email.send.template"
    assert err.line == line_of(text, "loan_reminder_letter")
    assert "loan_reminder_letter" in err.reason


def test_spec_error_names_field_and_line(tmp_path: Path, catalogue: Catalogue) -> None:
    path, text = write_template(tmp_path, "priority: 70", "priority: 700")
    with pytest.raises(DataFileError) as exc:
        load_scenario(path, catalogue, MESSAGES)
    [err] = errors_of(exc)
    assert (err.field, err.line) == ("priority", line_of(text, "priority: 700"))


def test_several_problems_are_reported_together(tmp_path: Path, catalogue: Catalogue) -> None:
    path, _ = write_template(tmp_path, "event: application.completed", "event: application.done")
    text = path.read_text(encoding="utf-8").replace("loan_reminder_email}", "nope_email}")
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataFileError) as exc:
        load_scenario(path, catalogue, MESSAGES)
    assert {e.field for e in errors_of(exc)} >= {"goal.event", "steps.email.send.template"}


# ---------------------------------------------------------------- messages


def write_messages(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


SMS_OK = """\
hello_sms:
  channel: sms
  uk: {body: "Привіт, {{ first_name }}"}
  en: {body: "Hello, {{ first_name }}"}
"""


def test_real_messages_load() -> None:
    messages = load_messages(REAL_SCENARIOS / "messages")
    assert set(messages) >= MESSAGES
    assert messages["loan_reminder_push"].channel == "webpush"


def test_good_sms_loads(tmp_path: Path) -> None:
    write_messages(tmp_path, "a.yaml", SMS_OK)
    assert load_messages(tmp_path)["hello_sms"].channel == "sms"


def test_bad_jinja_names_its_line(tmp_path: Path) -> None:
    text = SMS_OK.replace('en: {body: "Hello, {{ first_name }}"}', 'en: {body: "Hello, {{ first_name }"}')
    path = write_messages(tmp_path, "a.yaml", text)
    with pytest.raises(DataFileError) as exc:
        load_messages(tmp_path)
    [err] = errors_of(exc)
    assert err.file == str(path)
    assert err.line == line_of(text, "en:")
    assert err.field.startswith("hello_sms.en")
    assert "template syntax" in err.reason


def test_sms_over_480_characters_is_refused(tmp_path: Path) -> None:
    text = SMS_OK.replace("Hello, {{ first_name }}", "x" * 481)
    write_messages(tmp_path, "a.yaml", text)
    with pytest.raises(DataFileError) as exc:
        load_messages(tmp_path)
    assert any("480" in e.reason for e in errors_of(exc))


def test_sms_of_exactly_480_characters_is_accepted(tmp_path: Path) -> None:
    write_messages(tmp_path, "a.yaml", SMS_OK.replace("Hello, {{ first_name }}", "x" * 480))
    assert "hello_sms" in load_messages(tmp_path)


def test_email_needs_subject(tmp_path: Path) -> None:
    write_messages(tmp_path, "a.yaml", SMS_OK.replace("channel: sms", "channel: email"))
    with pytest.raises(DataFileError, match="subject"):
        load_messages(tmp_path)


def test_message_defined_twice_across_files(tmp_path: Path) -> None:
    write_messages(tmp_path, "a.yaml", SMS_OK)
    second = write_messages(
        tmp_path, "b.yaml", "other_sms:\n  channel: sms\n  uk: {body: a}\n  en: {body: b}\n" + SMS_OK
    )
    with pytest.raises(DataFileError) as exc:
        load_messages(tmp_path)
    [err] = errors_of(exc)
    assert (err.file, err.field, err.reason) == (str(second), "hello_sms", "defined twice")
    assert err.line in (5, 6)  # the duplicate definition (its key or its first line)


def test_messages_file_not_a_mapping(tmp_path: Path) -> None:
    write_messages(tmp_path, "a.yaml", "- just\n- a list\n")
    with pytest.raises(DataFileError, match="mapping"):
        load_messages(tmp_path)


# ---------------------------------------------------------------- library


def test_real_policy_loads() -> None:
    policy = load_policy(REAL_SCENARIOS / "policy.yaml")
    assert policy.caps.per_day == 2
    assert policy.exempt_from_caps == ["service"]


def test_real_library_loads(catalogue: Catalogue) -> None:
    library = load_library(REAL_SCENARIOS, catalogue)
    assert "loan-application-reminder" in library.current
    assert library.get("loan-application-reminder", 1) is not None
    assert library.policy_version >= 1


@pytest.fixture
def library_copy(tmp_path: Path) -> Path:
    target = tmp_path / "scenarios"
    shutil.copytree(REAL_SCENARIOS, target)
    return target


def test_broken_template_in_library_is_named(library_copy: Path, catalogue: Catalogue) -> None:
    broken = library_copy / "templates" / "broken.yaml"
    text = REAL_TEMPLATE.read_text(encoding="utf-8").replace(
        "id: loan-application-reminder", "id: broken-copy"
    )
    broken.write_text(text.replace("event: application.abandoned", "event: no.such.event"), encoding="utf-8")
    with pytest.raises(DataFileError) as exc:
        load_library(library_copy, catalogue)
    assert {e.file for e in errors_of(exc)} == {str(broken)}
    assert "trigger.event" in {e.field for e in errors_of(exc)}


def test_library_reports_every_broken_file(library_copy: Path, catalogue: Catalogue) -> None:
    policy = library_copy / "policy.yaml"
    policy.write_text(
        policy.read_text(encoding="utf-8").replace("version: 2", "version: 0"), encoding="utf-8"
    )
    broken = library_copy / "templates" / "broken.yaml"
    text = REAL_TEMPLATE.read_text(encoding="utf-8").replace(
        "id: loan-application-reminder", "id: broken-copy"
    )
    broken.write_text(text.replace("priority: 70", "priority: -1"), encoding="utf-8")
    with pytest.raises(DataFileError) as exc:
        load_library(library_copy, catalogue)
    files = {e.file for e in errors_of(exc)}
    assert files == {str(policy), str(broken)}


def test_library_refuses_the_same_version_twice(library_copy: Path, catalogue: Catalogue) -> None:
    shutil.copy(
        library_copy / "templates" / "loan-application-reminder.yaml", library_copy / "templates" / "dup.yaml"
    )
    with pytest.raises(DataFileError, match="defined twice"):
        load_library(library_copy, catalogue)


def test_library_refuses_a_message_for_another_channel(library_copy: Path, catalogue: Catalogue) -> None:
    path = library_copy / "templates" / "loan-application-reminder.yaml"
    path.write_text(
        path.read_text(encoding="utf-8").replace("{channel: email, template", "{channel: sms, template"),
        encoding="utf-8",
    )
    with pytest.raises(DataFileError, match="is for email, not sms"):
        load_library(library_copy, catalogue)
