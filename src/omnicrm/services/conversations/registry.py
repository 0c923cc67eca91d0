"""Publishing scenario libraries: files are checked, then written as an immutable, numbered generation.

A published scenario version never changes: new content needs a new version number. Conversations
finish on the version they started with, unless the new version lists theirs in `migrate_from` and
their current step exists in it. Every process (API workers, the decision worker, the CLI) builds
its library from the newest generation, so a reload reaches all of them without a restart, and a
refused reload leaves the previous generation running.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy.engine import Connection

from omnicrm.domain.messages import MessageSpec
from omnicrm.domain.policy import Policy
from omnicrm.domain.scenarios import Library, ScenarioSpec, compile_scenario
from omnicrm.services.conversations.datafiles import DataFileError, FileError, LibraryFiles
from omnicrm.store import audit
from omnicrm.store import registry as store

log = logging.getLogger(__name__)


@dataclass
class PublishReport:
    generation: int
    changed: bool
    added: list[str] = field(default_factory=list)  # "id@version" published now
    retired: list[str] = field(default_factory=list)  # ids no longer started (their runs finish)
    rolled_back: list[str] = field(default_factory=list)  # "id@version" current again, older than before
    migrated: dict[str, int] = field(default_factory=dict)  # "id@version" -> conversations moved to it
    not_migrated: dict[str, int] = field(default_factory=dict)  # left on the old version (step gone)

    def as_dict(self) -> dict[str, Any]:
        return {
            "generation": self.generation,
            "changed": self.changed,
            "added": self.added,
            "retired": self.retired,
            "rolled_back": self.rolled_back,
            "migrated": self.migrated,
            "not_migrated": self.not_migrated,
        }


def spec_text(spec: ScenarioSpec) -> str:
    """The spec as JSON text, in file order (the order of steps decides the order of channels)."""
    return orjson.dumps(spec.model_dump(mode="json")).decode()


def spec_checksum(spec: ScenarioSpec) -> str:
    """What identifies a version's content: its fields that differ from their defaults. A field the
    template model gains later, with a default, therefore leaves published versions unchanged."""
    return _sha(orjson.dumps(spec.model_dump(mode="json", exclude_defaults=True)))


def _same_content(checksum: str, spec: ScenarioSpec) -> bool:
    # versions published before checksums left defaults out carry the checksum of the whole text
    return checksum in (spec_checksum(spec), _sha(spec_text(spec)))


def scenario_schema() -> dict[str, Any]:
    """The published JSON Schema of a scenario template (scenarios/schema/scenario.schema.json)."""
    document = ScenarioSpec.model_json_schema()
    document["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    document["$id"] = "https://omnicrm.example/schemas/scenario.schema.json"
    return document


def _sha(text: str | bytes) -> str:
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()


def _line(path: str, key: str) -> int | None:
    """The line of a top-level `key:` in a template file, to point the marketer at it."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    return next((n for n, text in enumerate(lines, 1) if text.startswith(f"{key}:")), None)


def _check_versions(
    files: LibraryFiles, published: dict[tuple[str, int], str]
) -> tuple[list[tuple[str, int]], list[FileError]]:
    """New versions to publish, and the errors: changed published versions, numbers going back."""
    errors: list[FileError] = []
    added: list[tuple[str, int]] = []
    top: dict[str, int] = {}
    for sid, version in published:
        top[sid] = max(top.get(sid, 0), version)
    for key, (spec, path) in sorted(files.specs.items()):
        sid, version = key
        checksum = published.get(key)
        if checksum is None:
            if version < top.get(sid, 0):
                errors.append(
                    FileError(
                        path,
                        _line(path, "version"),
                        "version",
                        f"{sid} version {version} is new but lower than the published version "
                        f"{top[sid]}: a new version needs a higher number",
                    )
                )
            added.append(key)
        elif not _same_content(checksum, spec):
            errors.append(
                FileError(
                    path,
                    _line(path, "version"),
                    "version",
                    f"{sid} version {version} was already published with other content; a published "
                    f"version never changes: give your change version {top[sid] + 1}",
                )
            )
        known = {v for s, v in [*published, *files.specs] if s == sid}
        for old in spec.migrate_from:
            if old >= version or old not in known:
                errors.append(
                    FileError(
                        path,
                        _line(path, "migrate_from"),
                        "migrate_from",
                        f"{sid} version {version} cannot migrate from version {old}: "
                        "only earlier, published versions can be migrated",
                    )
                )
    return added, errors


def _check_policy(files: LibraryFiles, latest: dict[str, Any] | None, where: str) -> list[FileError]:
    if latest is None:
        return []
    before = Policy.model_validate(latest["policy"])
    now = files.library.policy
    if now.version < before.version:
        reason = f"policy version {now.version} is lower than the published {before.version}"
        return [FileError(where, None, "version", reason)]
    if now.version == before.version and now != before:
        return [
            FileError(
                where,
                None,
                "version",
                f"the policy changed but kept version {now.version}: give it version {before.version + 1}",
            )
        ]
    return []


def publish(
    conn: Connection, files: LibraryFiles, *, actor: str, now: datetime, note: str = "", where: str = ""
) -> PublishReport:
    """Publish checked files as a new generation (nothing is written when nothing changed).

    Raises DataFileError, writing nothing, when a published version was edited in place, a new
    version number goes back, a migration names an unknown version, or the policy changed
    without a new version."""
    store.lock_publishing(conn)
    latest = store.latest_generation(conn)
    published = store.checksums(conn)
    added, errors = _check_versions(files, published)
    errors += _check_policy(files, latest, f"{where}/policy.yaml" if where else "policy.yaml")
    if errors:
        raise DataFileError(errors)
    current = {sid: version for sid, version in sorted(files.specs)}  # the highest version wins
    policy = files.library.policy.model_dump(mode="json")
    messages = {k: v.model_dump(mode="json") for k, v in sorted(files.messages.items())}
    everything = {"current": current, "policy": policy, "messages": messages}
    checksum = _sha(orjson.dumps(everything, option=orjson.OPT_SORT_KEYS))
    if latest is not None and latest["checksum"] == checksum and not added:
        return PublishReport(latest["generation"], changed=False)
    generation = (latest["generation"] if latest else 0) + 1
    report = PublishReport(generation, changed=True, added=[f"{s}@{v}" for s, v in added])
    before: dict[str, int] = dict(latest["current"]) if latest else {}
    report.retired = sorted(set(before) - set(current))
    report.rolled_back = [f"{s}@{v}" for s, v in current.items() if s in before and v < int(before[s])]
    store.insert_versions(conn, _version_rows(files, added, generation, actor, now))
    store.insert_generation(
        conn,
        {
            "generation": generation,
            "checksum": checksum,
            "policy": policy,
            "messages": messages,
            "current": current,
            "published_by": actor,
            "published_at": now,
            "note": note[:500],
        },
    )
    _migrate(conn, files, added, report)
    audit.append(
        conn,
        at=now,
        actor=actor,
        action="scenarios.publish",
        target=f"generation:{generation}",
        details={**report.as_dict(), "note": note},
    )
    return report


def _version_rows(
    files: LibraryFiles, added: list[tuple[str, int]], generation: int, actor: str, now: datetime
) -> list[dict[str, Any]]:
    """The registry rows of the scenario versions first published in `generation`."""
    return [
        {
            "scenario_id": sid,
            "version": version,
            "checksum": spec_checksum(files.specs[(sid, version)][0]),
            "spec": spec_text(files.specs[(sid, version)][0]),
            "source": files.specs[(sid, version)][1][-300:],
            "generation": generation,
            "published_by": actor,
            "published_at": now,
        }
        for sid, version in added
    ]


def _migrate(
    conn: Connection, files: LibraryFiles, added: list[tuple[str, int]], report: PublishReport
) -> None:
    running = store.active_counts(conn)
    for sid, version in added:
        spec = files.specs[(sid, version)][0]
        if not spec.migrate_from:
            continue
        moved = store.migrate_instances(conn, sid, list(spec.migrate_from), version, list(spec.steps))
        waiting = sum(running.get((sid, old), 0) for old in spec.migrate_from)
        report.migrated[f"{sid}@{version}"] = moved
        if waiting - moved:
            report.not_migrated[f"{sid}@{version}"] = waiting - moved


def load(conn: Connection) -> tuple[Library, int] | None:
    """The newest published library with every version ever published (running conversations need
    theirs), or None when nothing was published yet."""
    latest = store.latest_generation(conn)
    if latest is None:
        return None
    versions = {}
    for row in store.versions(conn):
        spec = ScenarioSpec.model_validate_json(row["spec"])
        versions[(spec.id, spec.version)] = compile_scenario(spec)
    policy = Policy.model_validate(latest["policy"])
    current = {str(k): int(v) for k, v in latest["current"].items()}
    messages = {str(k): MessageSpec.model_validate(v) for k, v in (latest.get("messages") or {}).items()}
    return Library(versions, policy, current_versions=current, messages=messages), int(latest["generation"])
