"""Reading import files (JSON Lines or CSV), and validating event files beside the writer.

An event import is one transaction, committed only if every line is valid. Validating a line
(JSON parsing, the envelope and attribute schemas, identifier rules, the card-number scan) costs
about as much CPU as writing it, so a big file is read and validated by a forked second process,
1,000 lines at a time, while this one writes the chunk before: both cores work. The pipe between
them is the backpressure (the reader runs at most a few chunks ahead), and the chunks come back
in file order, so the import is the same as validating first and writing after.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import gc
import multiprocessing
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import orjson

from omnicrm.domain.catalogue import Catalogue, ProductEffect
from omnicrm.domain.errors import InvalidInput, ItemError
from omnicrm.services import ingest

CHUNK = 1000
PARALLEL_FROM_BYTES = 1 << 20  # smaller files are validated in this process: a fork costs more
_PIPE_BYTES = 1 << 20  # room for a few validated chunks in flight
_SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv")


def _csv_row(row: dict[str, str]) -> dict[str, Any]:
    """A CSV row to the JSON shape: `identifiers.<kind>` columns, `attributes` as a JSON object."""
    item: dict[str, Any] = {}
    for key, value in row.items():
        if value in ("", None):
            continue
        if key.startswith("identifiers."):
            item.setdefault("identifiers", {})[key.removeprefix("identifiers.")] = value
        elif key == "attributes":
            item["attributes"] = orjson.loads(value)
        else:
            item[key] = value
    return item


def check_suffix(path: Path) -> None:
    if path.suffix.lower() not in _SUFFIXES:
        raise InvalidInput("unknown file type", [ItemError(None, "file", "use .jsonl, .ndjson or .csv")])


def read_lines(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed object) for each record of a .jsonl/.ndjson or .csv file."""
    check_suffix(path)
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as handle:
            for number, row in enumerate(csv.DictReader(handle), start=2):
                try:
                    yield number, _csv_row(row)
                except orjson.JSONDecodeError as exc:
                    yield number, ItemError(number, "attributes", f"not a JSON object: {exc}")
        return
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                try:
                    yield number, orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    yield number, ItemError(number, "(line)", f"not JSON: {exc}")


def count_records(path: Path) -> int:
    """Number of records in a file (for the progress bar)."""
    with path.open("rb") as handle:
        lines = sum(1 for line in handle if line.strip())
    return lines - 1 if path.suffix.lower() == ".csv" else lines


@dataclass(slots=True)
class ValidatedChunk:
    """Up to `CHUNK` consecutive records of a file: the valid ones (with their line) and the problems."""

    records: int = 0
    items: list[tuple[int, ingest.Prepared]] = field(default_factory=list)
    errors: list[ItemError] = field(default_factory=list)


def _validate(path: Path, catalogue: Catalogue, kinds: frozenset[str]) -> Iterator[ValidatedChunk]:
    """The records validated in chunks; a file that cannot be read or decoded is refused whole."""
    chunk = ValidatedChunk()
    try:
        for number, raw in read_lines(path):
            chunk.records += 1
            if isinstance(raw, ItemError):
                chunk.errors.append(raw)
            else:
                result = ingest.prepare_one(raw, number, catalogue, kinds)
                if isinstance(result, list):
                    chunk.errors.extend(result)
                else:
                    chunk.items.append((number, result))
            if chunk.records == CHUNK:
                yield chunk
                chunk = ValidatedChunk()
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InvalidInput(f"cannot read {path.name}: {exc}", [ItemError(None, "file", str(exc))]) from None
    if chunk.records:
        yield chunk


# Over the pipe a valid item travels as a plain tuple; its product effect (a catalogue object) is
# looked up again on arrival rather than pickled with every item.
_Wire = tuple[Any, ...]


def _pack(chunk: ValidatedChunk) -> _Wire:
    items = [
        (
            n,
            p.event_id,
            p.type,
            p.kind,
            p.source,
            p.channel,
            p.occurred_at,
            p.customer_id,
            p.pairs,
            p.attributes,
        )
        for n, p in chunk.items
    ]
    return ("chunk", chunk.records, items, [(e.index, e.field, e.reason) for e in chunk.errors])


def _unpack(message: _Wire, catalogue: Catalogue) -> ValidatedChunk:
    _, records, items, errors = message
    effects = {name: _effect(catalogue, name) for name in {item[2] for item in items}}
    return ValidatedChunk(
        records,
        [_item(item, effects) for item in items],
        [ItemError(*e) for e in errors],
    )


def _item(wire: _Wire, effects: dict[str, ProductEffect | None]) -> tuple[int, ingest.Prepared]:
    line, event_id, type_, kind, source, channel, occurred_at, customer_id, pairs, attributes = wire
    prepared = ingest.Prepared(
        event_id, type_, kind, source, channel, occurred_at, customer_id, pairs, attributes, effects[type_]
    )
    return line, prepared


def _effect(catalogue: Catalogue, name: str) -> ProductEffect | None:
    event_type = catalogue.get(name)
    if event_type is None:  # both processes hold the same catalogue: the reader validated the type
        raise RuntimeError(f"event type {name!r} is not in this process's catalogue")
    return event_type.product


def _produce(sender: Connection, path: Path, catalogue: Catalogue, kinds: frozenset[str]) -> None:
    """The reading process: every chunk, then ("end",); a file it cannot read ends with ("invalid", ...).
    Everything it builds is freed by reference counting: the cyclic collector stays off."""
    gc.disable()
    try:
        for chunk in _validate(path, catalogue, kinds):
            sender.send(_pack(chunk))
        sender.send(("end",))
    except InvalidInput as exc:
        sender.send(("invalid", exc.detail, [(e.index, e.field, e.reason) for e in exc.errors]))
    finally:
        sender.close()


def _received(receiver: Connection, child: Any, catalogue: Catalogue) -> Iterator[ValidatedChunk]:
    while True:
        try:
            message = receiver.recv()
        except EOFError:
            child.join(timeout=5)
            stopped = f"the process validating the file stopped (exit code {child.exitcode})"
            raise RuntimeError(stopped) from None
        if message[0] == "end":
            return
        if message[0] == "invalid":
            raise InvalidInput(message[1], [ItemError(*e) for e in message[2]])
        yield _unpack(message, catalogue)


@contextlib.contextmanager
def validated_chunks(
    path: Path, catalogue: Catalogue, kinds: frozenset[str], *, parallel: bool | None = None
) -> Iterator[Iterator[ValidatedChunk]]:
    """The file's records validated, chunk by chunk in file order. `parallel` (default: for files of
    a megabyte or more) validates in a forked process; leaving the block early stops it."""
    check_suffix(path)
    if parallel is None:
        parallel = path.stat().st_size >= PARALLEL_FROM_BYTES
    if not parallel:
        yield _validate(path, catalogue, kinds)
        return
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    with contextlib.suppress(OSError):  # a bigger pipe lets the reader run a few chunks ahead
        fcntl.fcntl(sender.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
    child = context.Process(
        target=_produce, args=(sender, path, catalogue, kinds), name="omnicrm-import-reader", daemon=True
    )
    child.start()
    sender.close()
    try:
        yield _received(receiver, child, catalogue)
    finally:
        receiver.close()
        child.join(timeout=0.5)
        if child.is_alive():
            child.terminate()
            child.join()
