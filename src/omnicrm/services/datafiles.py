"""Loading versioned data files (catalogue, later scenarios): every error names file, line and field."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from omnicrm.domain.catalogue import Catalogue, compile_catalogue


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
    try:
        return yaml.safe_load(text), yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise DataFileError([FileError(str(path), line, "", f"YAML syntax: {exc}")]) from None


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
