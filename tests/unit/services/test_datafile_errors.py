"""Loading the catalogue file: every refusal names the file, the line and the field."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from omnicrm.domain.catalogue import Catalogue
from omnicrm.services.conversations.datafiles import DataFileError, FileError, load_catalogue
from omnicrm.settings import SHIPPED_CATALOGUE

REAL_CATALOGUE = SHIPPED_CATALOGUE


def write(tmp_path: Path, text: str, name: str = "events.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def refusal(path: Path) -> DataFileError:
    with pytest.raises(DataFileError) as info:
        load_catalogue(path)
    assert info.value.errors
    return info.value


def test_real_catalogue_loads(tmp_path: Path) -> None:
    copy = tmp_path / "copy.yaml"
    shutil.copy(REAL_CATALOGUE, copy)
    catalogue = load_catalogue(copy)
    assert isinstance(catalogue, Catalogue)
    assert catalogue.get("product.opened") is not None


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "version: 1\n"
        "types:\n"
        "  a.b:\n"
        "    kind: behavioural\n"
        "   description: badly indented\n"  # line 5
        "    attributes: {}\n",
    )
    error = refusal(path)
    [problem] = error.errors
    assert problem.file == str(path)
    assert problem.line == 5
    assert "YAML syntax" in problem.reason
    assert str(error).startswith(f"{path}:5: YAML syntax")


def test_unclosed_flow_sequence_is_a_syntax_error(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1\ntypes:\n  a.b: [unclosed\n")
    [problem] = refusal(path).errors
    assert problem.file == str(path)
    assert problem.line is not None
    assert problem.line >= 3
    assert "YAML syntax" in problem.reason


@pytest.mark.parametrize("line", [8, 12])
def test_bad_attribute_type_points_at_its_line(tmp_path: Path, line: int) -> None:
    padding = "\n" * (line - 8)
    path = write(
        tmp_path,
        "version: 1\n"
        "types:\n"
        "  a.b:\n"
        "    kind: behavioural\n"
        "    description: x\n"
        f"{padding}"
        "    attributes:\n"
        "      ok: {type: string}\n"
        "      amount: {type: money}\n",  # line 8 (+ padding)
    )
    error = refusal(path)
    [problem] = error.errors
    assert problem.file == str(path)
    assert problem.line == line
    assert "amount" in problem.field
    assert problem.field == "types.a.b.attributes.amount.type"
    assert f"{path}:{line}: types.a.b.attributes.amount.type:" in str(error)


def test_block_style_bad_type_points_at_the_type_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "version: 1\n"
        "types:\n"
        "  a.b:\n"
        "    kind: behavioural\n"
        "    description: x\n"
        "    attributes:\n"
        "      amount:\n"
        "        required: true\n"
        "        type: money\n",  # line 9
    )
    [problem] = refusal(path).errors
    assert (problem.line, problem.field) == (9, "types.a.b.attributes.amount.type")


def test_every_problem_is_listed_with_its_own_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "version: 1\n"
        "types:\n"
        "  a.b:\n"
        "    kind: behavioural\n"
        "    description: x\n"
        "    attributes:\n"
        "      colour:\n"
        "        type: enum\n"  # line 8: enum without values
        "    bogus: 1\n"  # line 9: extra field
        "  c.d:\n"
        "    kind: telepathic\n",  # line 11: bad kind; and no description for c.d
    )
    found = {(e.line, e.field) for e in refusal(path).errors}
    assert (8, "types.a.b.attributes.colour") in found
    assert (9, "types.a.b.bogus") in found
    assert (11, "types.c.d.kind") in found
    assert (11, "types.c.d.description") in found  # a missing key: the line where its mapping starts


def test_model_level_problem_points_at_the_type(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "version: 1\n"
        "types:\n"
        "  card.thing:\n"  # line 3
        "    kind: operational\n"
        "    description: x\n"
        "    attributes:\n"
        "      contract_number: {type: string, required: true}\n"
        "    product: {class: card, contract_from: nope, state: active}\n",
    )
    [problem] = refusal(path).errors
    assert problem.field == "types.card.thing"
    assert problem.line == 4  # the type's mapping starts on its first key
    assert "undeclared attribute 'nope'" in problem.reason


@pytest.mark.parametrize("text", ["", "- just\n- a list\n", "version: 1\n"])
def test_wrong_document_shape_is_refused(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    error = refusal(path)
    assert all(e.file == str(path) for e in error.errors)


def test_missing_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "missing.yaml"
    [problem] = refusal(path).errors
    assert problem == FileError(str(path), None, "", "cannot read: No such file or directory")
    assert str(refusal(path)) == f"{path}: cannot read: No such file or directory"


def test_directory_is_refused(tmp_path: Path) -> None:
    [problem] = refusal(tmp_path).errors
    assert problem.file == str(tmp_path)
    assert problem.line is None
    assert problem.reason.startswith("cannot read")


def test_non_utf8_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("version: 1\ntypes: {}\n# caf\xe9\n".encode("latin-1"))
    [problem] = refusal(path).errors
    assert problem.file == str(path)


@pytest.mark.parametrize(
    ("error", "text"),
    [
        (FileError("f.yaml", 3, "types.a", "bad"), "f.yaml:3: types.a: bad"),
        (FileError("f.yaml", None, "types.a", "bad"), "f.yaml: types.a: bad"),
        (FileError("f.yaml", 2, "", "bad"), "f.yaml:2: bad"),
    ],
)
def test_file_error_text(error: FileError, text: str) -> None:
    assert str(error) == text
