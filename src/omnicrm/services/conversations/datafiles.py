"""Loading versioned data files (catalogue, later scenarios): every error names file, line and field."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from jinja2 import TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment
from pydantic import ValidationError

from omnicrm.domain.catalogue import Catalogue, compile_catalogue
from omnicrm.domain.facts import SAMPLE_CUSTOMER
from omnicrm.domain.messages import MessageSpec
from omnicrm.domain.policy import Policy
from omnicrm.domain.scenarios import Library, Scenario, ScenarioSpec, compile_scenario

_JINJA = SandboxedEnvironment(autoescape=True)
# libyaml's parser (in PyYAML's wheels) reads the library ~10x faster than the pure-Python one.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True, slots=True)
class FileError:
    file: str
    line: int | None
    field: str
    reason: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.field}: {self.reason}" if self.field else f"{where}: {self.reason}"


class DataFileError(Exception):
    """A data file was refused; `errors` lists every problem found."""

    def __init__(self, errors: list[FileError]) -> None:
        super().__init__("\n".join(str(e) for e in errors))
        self.errors = errors


def _line_of(node: yaml.Node | None, path: tuple[Any, ...]) -> int | None:
    """1-based line of the deepest node on `path` that exists in the YAML tree."""
    line = node.start_mark.line + 1 if node is not None else None
    for key in path:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if k.value == str(key)), None)
            if match is None:
                # The key itself may be what's wrong (extra field): point at it.
                match_key = next((k for k, _ in node.value if k.value == str(key)), None)
                return match_key.start_mark.line + 1 if match_key is not None else line
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
        else:
            return line
        line = node.start_mark.line + 1
    return line


def load_yaml(path: Path) -> tuple[Any, yaml.Node | None]:
    """Parse a YAML file to data and its node tree (for line numbers); syntax errors become FileError."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DataFileError([FileError(str(path), None, "", f"cannot read: {exc.strerror}")]) from None
    except UnicodeDecodeError as exc:
        raise DataFileError([FileError(str(path), None, "", f"not UTF-8 text: {exc.reason}")]) from None
    loader = _Loader(text)  # libyaml: parsed once, the data built from the node tree
    try:
        tree = loader.get_single_node()
        return (loader.construct_document(tree) if tree is not None else None), tree
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise DataFileError([FileError(str(path), line, "", f"YAML syntax: {exc}")]) from None
    finally:
        loader.dispose()


def validation_errors(path: Path, exc: ValidationError, tree: yaml.Node | None) -> list[FileError]:
    errors = []
    for err in exc.errors(include_url=False):
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-after")))
        errors.append(FileError(str(path), _line_of(tree, loc), ".".join(map(str, loc)), err["msg"]))
    return errors


def load_catalogue(path: Path) -> Catalogue:
    """Read and compile the event catalogue, or raise DataFileError with every problem."""
    data, tree = load_yaml(path)
    try:
        return compile_catalogue(data)
    except ValidationError as exc:
        raise DataFileError(validation_errors(path, exc, tree)) from None


def load_policy(path: Path) -> Policy:
    """Read the contact policy, or raise DataFileError with every problem."""
    data, tree = load_yaml(path)
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        raise DataFileError(validation_errors(path, exc, tree)) from None


def _sample_event(catalogue: Catalogue, event_type: str) -> dict[str, Any]:
    """An event of this type with every declared attribute filled, to test-run conditions at load."""
    spec = catalogue.get(event_type)
    return {"type": event_type, "channel": "", "attributes": dict(spec.sample) if spec else {}}


def _check_conditions(scenario: Scenario, catalogue: Catalogue) -> list[tuple[tuple[Any, ...], str]]:
    """Run every condition once on sample data: a typo in a field name fails here, not at run time."""
    problems: list[tuple[tuple[Any, ...], str]] = []
    base = SAMPLE_CUSTOMER.as_cel()
    checks = [
        (("trigger", "when"), scenario.trigger_when, scenario.trigger_event),
        (("audience",), scenario.audience, scenario.trigger_event),
        (("goal", "when"), scenario.goal_when, scenario.goal_event),
    ]
    for step in scenario.steps.values():
        for i, route in enumerate(step.routes):
            where: tuple[Any, ...] = ("steps", step.name, "routes", i, "when")
            checks.append((where, route.when, scenario.trigger_event))
    for loc, condition, event_type in checks:
        if condition is None:
            continue
        context = {**base, "event": _sample_event(catalogue, event_type), "reaction": ""}
        try:
            condition.test(context)
        except (ValueError, RuntimeError, KeyError, TypeError) as exc:
            problems.append((loc, f"condition {condition.source!r} cannot run: {exc}"))
    return problems


def load_scenario(path: Path, catalogue: Catalogue, messages: set[str]) -> Scenario:
    """Read, check and compile one scenario template file."""
    return read_scenario(path, catalogue, messages)[1]


def read_scenario(path: Path, catalogue: Catalogue, messages: set[str]) -> tuple[ScenarioSpec, Scenario]:
    """Read, check and compile one scenario template file; the checked spec comes with it."""
    data, tree = load_yaml(path)
    return check_scenario(data, tree, path, catalogue, messages)


def check_scenario(
    data: Any, tree: yaml.Node | None, path: Path, catalogue: Catalogue, messages: set[str]
) -> tuple[ScenarioSpec, Scenario]:
    """Check and compile a scenario template's data (from a file, or a request: `tree` None) against
    the catalogue and the message templates; DataFileError names each problem's place."""
    try:
        spec = ScenarioSpec.model_validate(data)
    except ValidationError as exc:
        raise DataFileError(validation_errors(path, exc, tree)) from None
    errors: list[FileError] = []
    for where, event_type in (
        (("trigger", "event"), spec.trigger.event),
        (("goal", "event"), spec.goal.event),
    ):
        if catalogue.get(event_type) is None:
            errors.append(
                FileError(
                    str(path), _line_of(tree, where), ".".join(where), f"unknown event type {event_type!r}"
                )
            )
    for name, step in spec.steps.items():
        if step.send is not None and step.send.template not in messages:
            loc = ("steps", name, "send", "template")
            errors.append(
                FileError(
                    str(path),
                    _line_of(tree, loc),
                    ".".join(loc),
                    f"no message template {step.send.template!r} in messages/",
                )
            )
    try:
        scenario = compile_scenario(spec)
    except ValueError as exc:
        raise DataFileError([*errors, FileError(str(path), None, "", f"CEL: {exc}")]) from None
    errors.extend(
        FileError(str(path), _line_of(tree, loc), ".".join(map(str, loc)), reason)
        for loc, reason in _check_conditions(scenario, catalogue)
    )
    if errors:
        raise DataFileError(errors)
    return spec, scenario


def load_messages(directory: Path) -> dict[str, MessageSpec]:
    """Every message template of messages/*.yaml, keyed by id; ids are unique across files."""
    messages: dict[str, MessageSpec] = {}
    errors: list[FileError] = []
    for path in sorted(directory.glob("*.yaml")):
        data, tree = load_yaml(path)
        if not isinstance(data, dict):
            errors.append(FileError(str(path), 1, "", "expected a mapping of template id -> template"))
            continue
        for template_id, spec in data.items():
            if template_id in messages:
                errors.append(
                    FileError(str(path), _line_of(tree, (template_id,)), str(template_id), "defined twice")
                )
                continue
            try:
                message = messages[str(template_id)] = MessageSpec.model_validate(spec)
            except ValidationError as exc:
                errors.extend(
                    FileError(
                        str(path),
                        _line_of(tree, (template_id, *e["loc"])),
                        ".".join(map(str, (template_id, *e["loc"]))),
                        e["msg"],
                    )
                    for e in exc.errors(include_url=False)
                )
                continue
            for language in ("uk", "en"):
                for part, text in getattr(message, language).parts().items():
                    try:
                        _JINJA.parse(text)
                    except TemplateSyntaxError as exc:
                        loc = (template_id, language, part)
                        errors.append(
                            FileError(
                                str(path),
                                _line_of(tree, loc),
                                ".".join(map(str, loc)),
                                f"template syntax (line {exc.lineno} of the text): {exc.message}",
                            )
                        )
    if errors:
        raise DataFileError(errors)
    return messages


@dataclass(frozen=True)
class LibraryFiles:
    """A scenarios/ directory, checked: the compiled library and the specs it was compiled from."""

    library: Library
    specs: dict[tuple[str, int], tuple[ScenarioSpec, str]]  # (id, version) -> (spec, file)
    messages: dict[str, MessageSpec]


def load_library(directory: Path, catalogue: Catalogue) -> Library:
    """Policy, messages and every scenario template under `directory`; all errors reported at once."""
    return read_library(directory, catalogue).library


def read_library(directory: Path, catalogue: Catalogue) -> LibraryFiles:
    """Read and check a whole scenarios/ directory; every error of every file is reported at once."""
    errors: list[FileError] = []
    policy: Policy | None = None
    try:
        policy = load_policy(directory / "policy.yaml")
    except DataFileError as exc:
        errors.extend(exc.errors)
    try:
        messages = load_messages(directory / "messages")
    except DataFileError as exc:
        errors.extend(exc.errors)
        messages = {}
    versions: dict[tuple[str, int], Scenario] = {}
    specs: dict[tuple[str, int], tuple[ScenarioSpec, str]] = {}
    for path in sorted((directory / "templates").glob("*.yaml")):
        try:
            spec, scenario = read_scenario(path, catalogue, set(messages))
        except DataFileError as exc:
            errors.extend(exc.errors)
            continue
        if (scenario.id, scenario.version) in versions:
            errors.append(FileError(str(path), None, "version", f"{scenario.key} is defined twice"))
        for step in scenario.steps.values():
            message = messages.get(step.template or "")
            if step.kind == "send" and message is not None and message.channel != step.channel:
                errors.append(
                    FileError(
                        str(path),
                        None,
                        f"steps.{step.name}",
                        f"template {step.template} is for {message.channel}, not {step.channel}",
                    )
                )
        versions[(scenario.id, scenario.version)] = scenario
        specs[(scenario.id, scenario.version)] = (spec, str(path))
    if errors or policy is None:
        raise DataFileError(errors)
    return LibraryFiles(Library(versions, policy, messages=messages), specs, messages)
