"""Integration tests of the scenario registry: publishing, immutable versions, reload, retire, migrate.

Every test builds its own Container on the fixture's database (SQLite and PostgreSQL) with its own copy
of scenarios/ in tmp_path, edits that copy the way a marketer would, publishes it and asserts on the
stored rows (scenario_versions, library_generations, scenario_instances, outbox). The repository's
scenarios/ files are never touched.
"""

from __future__ import annotations

import itertools
import shutil
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from omnicrm.bootstrap import Container, bootstrap, publish_files
from omnicrm.services.contracts import CustomerIn
from omnicrm.services.conversations.datafiles import DataFileError, read_library
from omnicrm.services.conversations.decider import consume, fire_timers
from omnicrm.services.conversations.registry import PublishReport
from omnicrm.services.intake import ingest
from omnicrm.services.profiles import customers
from omnicrm.settings import SHIPPED_CATALOGUE, SHIPPED_SCENARIOS, Settings
from omnicrm.store import registry as registry_store
from omnicrm.store.tables import (
    audit_log,
    decisions,
    instances,
    library_generations,
    outbox,
    scenario_versions,
)

SHIPPED = SHIPPED_SCENARIOS
CATALOGUE = SHIPPED_CATALOGUE
LOAN = "loan-application-reminder"
OTHER = "card-tariff-interest"
T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)  # 12:00 in Kyiv: outside quiet hours
H = timedelta(hours=1)
_SEQ = itertools.count(1)

# v1 of the loan scenario: push -> wait_push (24 h) -> email -> wait_email (48 h) -> call -> done.
# v2 (below): push -> wait_push (24 h) -> call -> done; the e-mail steps are gone.
V1_EMAIL_ROUTE = "      - {goto: email}\n"
V2_CALL_ROUTE = "      - {goto: call}\n"
EMAIL_STEPS = (
    "  email:\n"
    "    send: {channel: email, template: loan_reminder_email}\n"
    "    next: wait_email\n"
    "  wait_email:\n"
    "    wait: 48h\n"
    "    routes:\n"
    '      - {when: \'reaction in ["opened", "clicked"]\', goto: done}\n'
    "      - {goto: call}\n"
)


# ------------------------------------------------------------------------------------ helpers


def replace_once(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} is not in {path} exactly once"
    path.write_text(text.replace(old, new), encoding="utf-8")


def line_of(path: Path, prefix: str) -> int:
    lines = path.read_text(encoding="utf-8").splitlines()
    return next(n for n, text in enumerate(lines, 1) if text.startswith(prefix))


def database_url(container: Container) -> str:
    return container.engine.url.render_as_string(hide_password=False)


def settings_for(container: Container, directory: Path, **extra: Any) -> Settings:
    return Settings(
        database_url=database_url(container),
        catalogue_file=CATALOGUE,
        scenarios_dir=directory,
        env="test",
        decide_in_process=False,
        **extra,
    )


class Registry:
    """A process of its own (its Container) on the fixture's database, with its own scenarios/ copy."""

    def __init__(self, base: Container, directory: Path) -> None:
        self.base = base
        self.dir = directory
        library = read_library(directory, base.catalogue).library
        self.container = Container(settings_for(base, directory), base.engine, base.catalogue, library)

    # --- the files ------------------------------------------------------------------------------
    def template(self, scenario_id: str = LOAN) -> Path:
        return self.dir / "templates" / f"{scenario_id}.yaml"

    def edit(self, old: str, new: str, scenario_id: str = LOAN) -> Path:
        path = self.template(scenario_id)
        replace_once(path, old, new)
        return path

    def loan_v2(self, version: int = 2, migrate_from: str | None = None) -> Path:
        """Turn the loan template into a new version whose wait_push times out to the call centre."""
        path = self.edit("version: 1\n", f"version: {version}\n")
        replace_once(path, V1_EMAIL_ROUTE, V2_CALL_ROUTE)
        replace_once(path, EMAIL_STEPS, "")
        if migrate_from is not None:
            replace_once(path, "start: push\n", f"migrate_from: {migrate_from}\nstart: push\n")
        return path

    def publish(self, note: str = "") -> PublishReport:
        return publish_files(self.container, actor="test", note=note)

    # --- stored rows ----------------------------------------------------------------------------
    def generations(self) -> list[int]:
        with self.container.reader() as conn:
            query = select(library_generations.c.generation).order_by(library_generations.c.generation)
            return [int(g) for g in conn.execute(query).scalars()]

    def versions(self) -> list[tuple[str, int, int]]:
        """(scenario id, version, generation) of every published version."""
        with self.container.reader() as conn:
            query = select(
                scenario_versions.c.scenario_id, scenario_versions.c.version, scenario_versions.c.generation
            ).order_by(scenario_versions.c.scenario_id, scenario_versions.c.version)
            return [(r.scenario_id, r.version, r.generation) for r in conn.execute(query)]

    def latest_generation(self) -> dict[str, Any]:
        with self.container.reader() as conn:
            query = select(library_generations).order_by(library_generations.c.generation.desc()).limit(1)
            return dict(conn.execute(query).one()._mapping)

    def counts(self) -> dict[str, int]:
        with self.container.reader() as conn:
            return {
                t.name: int(conn.execute(select(func.count()).select_from(t)).scalar_one())
                for t in (scenario_versions, library_generations, audit_log)
            }

    # --- conversations --------------------------------------------------------------------------
    def new_client(self, at: datetime) -> tuple[str, str]:
        """A client with marketing consent on push, e-mail and call centre: (customer_id, cookie)."""
        cookie = f"reg-ck-{next(_SEQ)}"
        body = {
            "status": "client",
            "first_name": "Ivan",
            "identifiers": [{"kind": "cookie_id", "value": cookie}],
            "consents": [
                {
                    "channel": c,
                    "purpose": "marketing",
                    "granted": True,
                    "effective_at": "2026-01-01T00:00:00Z",
                }
                for c in ("webpush", "email", "callcentre")
            ],
        }
        with self.container.uow() as uow:
            cid, _ = customers.upsert(uow.conn, CustomerIn.model_validate(body), actor="test", now=at)
            uow.commit()
        return cid, cookie

    def abandon(self, cookie: str, at: datetime) -> None:
        raw = [
            {
                "event_id": f"reg-ev-{next(_SEQ)}",
                "type": "application.abandoned",
                "occurred_at": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "source": "web",
                "identifiers": {"cookie_id": cookie},
                "attributes": {
                    "product_class": "consumer_loan",
                    "application_id": "A-1",
                    "last_step": "documents",
                },
            }
        ]
        with self.container.uow() as uow:
            prepared = ingest.prepare(raw, self.container.catalogue, ingest.EVENT_KINDS)
            ingest.ingest(uow.conn, prepared, actor="test", now=at)
            uow.commit()

    def consume(self, now: datetime) -> None:
        consume(self.container.uow, self.container.current_library(max_age_s=0), now=now)

    def timers(self, now: datetime) -> None:
        fire_timers(self.container.uow, self.container.current_library(max_age_s=0), now=now)

    def start_conversation(self, at: datetime = T0) -> str:
        """A loan conversation started at `at` (its push sent, waiting 24 h in wait_push)."""
        cid, cookie = self.new_client(at - H)
        self.abandon(cookie, at - 5 * timedelta(minutes=1))
        self.consume(at)
        return cid

    def instance(self, cid: str, scenario_id: str = LOAN) -> dict[str, Any]:
        with self.container.reader() as conn:
            query = select(instances).where(
                instances.c.customer_id == cid, instances.c.scenario_id == scenario_id
            )
            rows = [dict(r._mapping) for r in conn.execute(query)]
        assert len(rows) == 1, rows
        return rows[0]

    def instances_of(self, cid: str, scenario_id: str = LOAN) -> list[dict[str, Any]]:
        with self.container.reader() as conn:
            query = select(instances).where(
                instances.c.customer_id == cid, instances.c.scenario_id == scenario_id
            )
            return [dict(r._mapping) for r in conn.execute(query)]

    def sent(self, instance_id: str) -> list[tuple[str, str, str | None]]:
        """(kind, channel, template) of everything the conversation queued, in order."""
        with self.container.reader() as conn:
            query = select(outbox).where(outbox.c.instance_id == instance_id).order_by(outbox.c.id)
            return [(r.kind, r.channel, r.template) for r in conn.execute(query)]

    def loan_decisions(self, cid: str) -> list[str]:
        with self.container.reader() as conn:
            query = select(decisions.c.action).where(
                decisions.c.customer_id == cid, decisions.c.scenario_id == LOAN
            )
            return [str(a) for a in conn.execute(query).scalars()]


@pytest.fixture
def scenarios_dir(tmp_path: Path) -> Path:
    target = tmp_path / "scenarios"
    shutil.copytree(SHIPPED, target)
    return target


@pytest.fixture
def reg(container: Container, scenarios_dir: Path) -> Registry:
    return Registry(container, scenarios_dir)


@pytest.fixture
def booted() -> Iterator[list[Container]]:
    """Containers made by bootstrap() in a test (their own engines), closed at the end."""
    built: list[Container] = []
    yield built
    for item in built:
        item.close()


def shipped_versions() -> dict[str, int]:
    found = {}
    for path in sorted((SHIPPED / "templates").glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        found[data["id"]] = data["version"]
    return found


V1_MESSAGES = [("message", "webpush", "loan_reminder_push"), ("message", "email", "loan_reminder_email")]
V2_MESSAGES = [("message", "webpush", "loan_reminder_push"), ("task", "callcentre", None)]


# ------------------------------------------------------------------------------------ publishing


def test_publishing_the_shipped_files_gives_generation_1_with_one_row_per_template(reg: Registry) -> None:
    expected = shipped_versions()
    assert len(expected) == 42
    assert reg.container.generation == 0

    report = reg.publish(note="first")

    assert (report.generation, report.changed) == (1, True)
    assert report.added == sorted(f"{sid}@{v}" for sid, v in expected.items())
    assert (report.retired, report.migrated, report.not_migrated) == ([], {}, {})
    assert reg.versions() == sorted((sid, v, 1) for sid, v in expected.items())
    assert reg.generations() == [1]
    latest = reg.latest_generation()
    assert latest["current"] == expected
    assert (latest["published_by"], latest["note"]) == ("test", "first")
    assert latest["policy"]["version"] == 2
    assert "loan_reminder_push" in latest["messages"]
    assert reg.container.generation == 1
    assert reg.container.library.current_versions == expected
    assert sorted(reg.container.library.current) == sorted(expected)
    with reg.container.reader() as conn:
        audit = conn.execute(
            select(audit_log.c.actor, audit_log.c.target).where(audit_log.c.action == "scenarios.publish")
        ).all()
    assert [tuple(a) for a in audit] == [("test", "generation:1")]


def test_publishing_unchanged_files_again_writes_nothing(reg: Registry) -> None:
    reg.publish()
    before = reg.counts()

    again = reg.publish()

    assert (again.generation, again.changed, again.added) == (1, False, [])
    assert reg.counts() == before
    assert reg.container.generation == 1


def test_a_comment_edited_in_a_published_template_is_not_a_change(reg: Registry) -> None:
    reg.publish()
    before = reg.counts()
    reg.edit("# call-centre task if still nothing", "# call-centre task when there is still nothing")

    again = reg.publish()

    assert (again.generation, again.changed) == (1, False)
    assert reg.counts() == before


def test_a_published_version_edited_in_place_is_refused_and_nothing_changes(reg: Registry) -> None:
    reg.publish()
    library = reg.container.library
    before = reg.counts()
    path = reg.edit("    wait: 24h\n", "    wait: 12h\n")
    line = line_of(path, "version:")

    with pytest.raises(DataFileError) as refused:
        reg.publish()

    (error,) = refused.value.errors
    assert (error.file, error.line, error.field) == (str(path), line, "version")
    assert "loan-application-reminder version 1 was already published with other content" in error.reason
    assert "give your change version 2" in error.reason
    assert f"{path}:{line}: version: " in str(refused.value)
    assert reg.counts() == before
    assert reg.generations() == [1]
    assert reg.container.generation == 1
    assert reg.container.library is library
    wait = reg.container.library.versions[(LOAN, 1)].steps["wait_push"].wait
    assert wait == timedelta(hours=24)


# ------------------------------------------------------------------------------------ new versions


def test_a_new_version_becomes_current_while_a_running_conversation_finishes_on_v1(reg: Registry) -> None:
    reg.publish()
    cid = reg.start_conversation()
    started = reg.instance(cid)
    assert (started["scenario_version"], started["step"], started["status"]) == (1, "wait_push", "active")
    reg.loan_v2()

    report = reg.publish()

    assert (report.generation, report.changed, report.added) == (2, True, [f"{LOAN}@2"])
    assert (report.retired, report.migrated, report.not_migrated) == ([], {}, {})
    assert (LOAN, 2, 2) in reg.versions()
    assert (LOAN, 1, 1) in reg.versions()
    assert reg.latest_generation()["current"][LOAN] == 2
    assert reg.container.generation == 2
    assert reg.container.library.current[LOAN].version == 2
    assert reg.instance(cid)["scenario_version"] == 1

    reg.timers(T0 + 25 * H)  # the wait times out: v1 sends the e-mail, v2 would call
    moved = reg.instance(cid)
    assert (moved["scenario_version"], moved["step"], moved["status"]) == (1, "wait_email", "active")
    assert reg.sent(moved["id"]) == V1_MESSAGES

    reg.timers(T0 + 25 * H + 49 * H)
    done = reg.instance(cid)
    assert (done["scenario_version"], done["status"], done["step"], done["outcome"]) == (
        1,
        "completed",
        "done",
        "finished",
    )
    assert reg.sent(done["id"]) == [*V1_MESSAGES, ("task", "callcentre", None)]


def test_a_conversation_started_after_the_reload_runs_on_v2(reg: Registry) -> None:
    reg.publish()
    reg.loan_v2()
    reg.publish()

    cid = reg.start_conversation()
    reg.timers(T0 + 25 * H)

    row = reg.instance(cid)
    assert (row["scenario_version"], row["status"], row["outcome"]) == (2, "completed", "finished")
    assert reg.sent(row["id"]) == V2_MESSAGES


def test_migrate_from_moves_running_conversations_whose_step_exists_in_the_new_version(
    reg: Registry,
) -> None:
    reg.publish()
    # `behind` is already waiting for its e-mail (a step v2 no longer has); `ahead` waits for its push.
    behind = reg.start_conversation(T0 - 26 * H)
    reg.timers(T0 - H)
    assert reg.instance(behind)["step"] == "wait_email"
    ahead = reg.start_conversation(T0)
    assert reg.instance(ahead)["step"] == "wait_push"
    reg.loan_v2(migrate_from="[1]")

    report = reg.publish()

    assert report.added == [f"{LOAN}@2"]
    assert report.migrated == {f"{LOAN}@2": 1}
    assert report.not_migrated == {f"{LOAN}@2": 1}
    assert (reg.instance(ahead)["scenario_version"], reg.instance(ahead)["step"]) == (2, "wait_push")
    assert (reg.instance(behind)["scenario_version"], reg.instance(behind)["step"]) == (1, "wait_email")

    reg.timers(T0 + 25 * H)  # ahead: v2's routing table sends it to the call centre, no e-mail
    row = reg.instance(ahead)
    assert (row["scenario_version"], row["status"], row["outcome"]) == (2, "completed", "finished")
    assert reg.sent(row["id"]) == V2_MESSAGES
    assert reg.instance(behind)["status"] == "active"

    reg.timers(T0 + 48 * H)  # behind: finishes on v1 (its e-mail wait times out to the call)
    row = reg.instance(behind)
    assert (row["scenario_version"], row["status"], row["outcome"]) == (1, "completed", "finished")
    assert reg.sent(row["id"]) == [*V1_MESSAGES, ("task", "callcentre", None)]


def test_removing_a_template_retires_it_while_its_running_conversation_advances(reg: Registry) -> None:
    reg.publish()
    running = reg.start_conversation()
    reg.template().unlink()

    report = reg.publish()

    assert (report.generation, report.changed, report.added, report.retired) == (2, True, [], [LOAN])
    assert LOAN not in reg.latest_generation()["current"]
    assert LOAN not in reg.container.library.current
    assert len(reg.container.library.current) == 41
    assert reg.container.library.get(LOAN, 1) is not None  # kept for the conversations it runs

    late = reg.start_conversation(T0 + 2 * H)  # nothing new starts on a retired scenario
    assert reg.instances_of(late) == []
    assert reg.loan_decisions(late) == []

    reg.timers(T0 + 25 * H)
    row = reg.instance(running)
    assert (row["scenario_version"], row["status"], row["step"]) == (1, "active", "wait_email")
    assert reg.sent(row["id"]) == V1_MESSAGES


# ------------------------------------------------------------------------------------ refused files


def test_a_new_version_lower_than_the_published_one_is_refused(reg: Registry) -> None:
    reg.publish()
    reg.loan_v2(version=3)
    reg.publish()
    before = reg.counts()
    path = reg.edit("version: 3\n", "version: 2\n")

    with pytest.raises(DataFileError) as refused:
        reg.publish()

    (error,) = refused.value.errors
    assert (error.file, error.line, error.field) == (str(path), line_of(path, "version:"), "version")
    assert "version 2 is new but lower than the published version 3" in error.reason
    assert reg.counts() == before
    assert (reg.container.generation, reg.container.library.current[LOAN].version) == (2, 3)


@pytest.mark.parametrize(
    ("version", "migrate_from", "named"),
    [(2, "[3]", 3), (2, "[2]", 2), (3, "[2]", 2), (2, "[1, 7]", 7)],
    ids=["later", "itself", "unknown-earlier", "unknown-among-known"],
)
def test_migrate_from_an_unknown_or_later_version_is_refused(
    reg: Registry, version: int, migrate_from: str, named: int
) -> None:
    reg.publish()
    before = reg.counts()
    path = reg.loan_v2(version=version, migrate_from=migrate_from)

    with pytest.raises(DataFileError) as refused:
        reg.publish()

    (error,) = refused.value.errors
    assert (error.file, error.line, error.field) == (
        str(path),
        line_of(path, "migrate_from:"),
        "migrate_from",
    )
    assert f"{LOAN} version {version} cannot migrate from version {named}" in error.reason
    assert reg.counts() == before
    assert reg.container.generation == 1
    assert reg.container.library.current[LOAN].version == 1


def test_a_policy_changed_without_a_new_version_is_refused(reg: Registry) -> None:
    reg.publish()
    before = reg.counts()
    policy = reg.dir / "policy.yaml"
    replace_once(policy, "caps: {per_day: 2, per_week: 5}", "caps: {per_day: 3, per_week: 5}")

    with pytest.raises(DataFileError) as refused:
        reg.publish()

    (error,) = refused.value.errors
    assert (error.file, error.field) == (str(policy), "version")
    assert "the policy changed but kept version 2: give it version 3" in error.reason
    assert reg.counts() == before
    assert reg.container.library.policy.caps.per_day == 2

    replace_once(policy, "version: 2\n", "version: 3\n")
    report = reg.publish()

    assert (report.generation, report.changed, report.added) == (2, True, [])
    assert reg.latest_generation()["policy"]["caps"]["per_day"] == 3
    assert (reg.container.library.policy_version, reg.container.library.policy.caps.per_day) == (3, 3)


def test_a_policy_version_going_back_is_refused(reg: Registry) -> None:
    policy = reg.dir / "policy.yaml"
    replace_once(policy, "version: 2\n", "version: 3\n")
    reg.publish()
    replace_once(policy, "version: 3\n", "version: 2\n")

    with pytest.raises(DataFileError) as refused:
        reg.publish()

    (error,) = refused.value.errors
    assert (error.file, error.field) == (str(policy), "version")
    assert "policy version 2 is lower than the published 3" in error.reason
    assert reg.generations() == [1]


def test_broken_yaml_is_refused_with_its_file_and_line(reg: Registry) -> None:
    reg.publish()
    before = reg.counts()
    library = reg.container.library
    path = reg.edit("start: push\n", "start: [push\n")

    with pytest.raises(DataFileError) as refused:
        reg.publish()

    errors = [e for e in refused.value.errors if e.file == str(path)]
    assert errors, refused.value.errors
    assert errors[0].line is not None
    assert line_of(path, "start:") <= errors[0].line <= line_of(path, "start:") + 2
    assert "YAML syntax" in errors[0].reason
    assert reg.counts() == before
    assert reg.container.generation == 1
    assert reg.container.library is library


# ------------------------------------------------------------------------------------ bootstrap


def test_bootstrap_publishes_the_files_at_start(
    container: Container, scenarios_dir: Path, booted: list[Container]
) -> None:
    started = bootstrap(settings_for(container, scenarios_dir), migrate=True)
    booted.append(started)

    assert started.generation == 1
    assert started.library.current[LOAN].version == 1
    with started.reader() as conn:
        row = conn.execute(select(library_generations)).one()
    assert (row.generation, row.published_by, row.note) == (1, "system:startup", "published at start")


@pytest.mark.parametrize(("migrate", "publish"), [(False, True), (True, False)])
def test_bootstrap_without_migrate_or_publish_on_start_publishes_nothing(
    container: Container, scenarios_dir: Path, booted: list[Container], migrate: bool, publish: bool
) -> None:
    settings = settings_for(container, scenarios_dir, publish_on_start=publish)
    started = bootstrap(settings, migrate=migrate)
    booted.append(started)

    assert started.generation == 0
    assert LOAN in started.library.current  # runs on the files until something is published
    with started.reader() as conn:
        assert conn.execute(select(func.count()).select_from(library_generations)).scalar_one() == 0


def test_bootstrap_on_broken_files_starts_on_the_published_library(
    reg: Registry, booted: list[Container]
) -> None:
    reg.publish()
    reg.loan_v2()
    reg.publish()  # generation 2: the loan scenario is on v2
    reg.edit("start: push\n", "start: [push\n")

    started = bootstrap(reg.container.settings, migrate=True)
    booted.append(started)

    assert started.generation == 2
    assert started.library.current[LOAN].version == 2
    assert started.library.get(LOAN, 1) is not None
    assert len(started.library.current) == 42
    assert reg.generations() == [1, 2]


def test_bootstrap_on_files_refused_at_publish_keeps_the_published_generation(
    reg: Registry, booted: list[Container]
) -> None:
    reg.publish()
    reg.edit("    wait: 24h\n", "    wait: 12h\n")  # v1 edited in place: reads fine, publishing refuses

    started = bootstrap(reg.container.settings, migrate=True)
    booted.append(started)

    assert started.generation == 1
    assert started.library.versions[(LOAN, 1)].steps["wait_push"].wait == timedelta(hours=24)
    assert reg.generations() == [1]


def test_bootstrap_on_broken_files_without_a_published_generation_raises(
    reg: Registry, booted: list[Container]
) -> None:
    path = reg.edit("start: push\n", "start: [push\n")

    with pytest.raises(DataFileError) as refused:
        booted.append(bootstrap(reg.container.settings, migrate=True))

    assert any(e.file == str(path) and "YAML syntax" in e.reason for e in refused.value.errors)
    assert reg.generations() == []


# ------------------------------------------------------------------------------------ other processes


def test_a_second_process_picks_up_a_new_generation(
    reg: Registry, scenarios_dir: Path, tmp_path: Path, booted: list[Container]
) -> None:
    reg.publish()
    other_dir = tmp_path / "other"
    shutil.copytree(SHIPPED, other_dir)
    other = bootstrap(settings_for(reg.base, other_dir, publish_on_start=False))
    booted.append(other)
    assert other.generation == 1
    library = other.current_library(max_age_s=0)
    assert library.current[LOAN].version == 1

    reg.loan_v2()
    assert reg.publish().generation == 2

    assert other.current_library(max_age_s=3600) is library  # checked a moment ago: no new query
    assert other.generation == 1
    fresh = other.current_library(max_age_s=0)
    assert other.generation == 2
    assert fresh is not library
    assert fresh.current[LOAN].version == 2
    assert fresh.get(LOAN, 1) is not None
    assert other.refresh_library() is False  # already on the newest generation


def test_two_reloads_at_the_same_moment_do_not_crash(reg: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    if reg.base.engine.dialect.name == "sqlite":
        pytest.skip("SQLite writers take BEGIN IMMEDIATE: two publications cannot interleave")
    reg.publish()
    other = Registry(reg.base, reg.dir)  # a second API worker on the same files and database
    reg.loan_v2()
    readers = threading.Semaphore(0)
    real = registry_store.checksums

    def both_have_read(conn: Any) -> dict[tuple[str, int], str]:
        found = real(conn)
        readers.release()
        # give the other publication time to read too: without a lock both then insert generation 2
        readers.acquire(timeout=1.5)
        time.sleep(0.3)
        return found

    monkeypatch.setattr(registry_store, "checksums", both_have_read)
    results: dict[str, PublishReport | Exception] = {}

    def publish(name: str, registry: Registry) -> None:
        try:
            results[name] = registry.publish()
        except Exception as exc:
            results[name] = exc

    threads = [threading.Thread(target=publish, args=item) for item in (("a", reg), ("b", other))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert reg.generations() == [1, 2]  # the database stays consistent either way
    assert (LOAN, 2, 2) in reg.versions()
    crashed = [r for r in results.values() if isinstance(r, IntegrityError)]
    assert crashed == [], crashed
    reports = [r for r in results.values() if isinstance(r, PublishReport)]
    assert sorted(r.generation for r in reports) == [2, 2]


def test_files_back_on_an_older_published_version_roll_back_and_say_so(reg: Registry) -> None:
    original = reg.template().read_text(encoding="utf-8")
    reg.publish()
    reg.loan_v2()
    assert reg.publish().added == [f"{LOAN}@2"]
    reg.template().write_text(original, encoding="utf-8")  # the v1 file is deployed again

    report = reg.publish()

    assert (report.changed, report.generation, report.added) == (True, 3, [])
    assert report.rolled_back == [f"{LOAN}@1"]
    assert reg.container.library.current[LOAN].version == 1
