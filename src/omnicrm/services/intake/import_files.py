"""Reading import files (JSON Lines or CSV), and validating them beside the writer.

An import is one transaction, committed only if every line is valid. Validating a line (JSON
parsing, the schemas, identifier rules, the card-number scan) costs about as much CPU as writing
it, so a big file is read and validated by a forked second process, 1,000 lines at a time, while
this one writes the chunk before: both cores work. The pipe between them is the backpressure (the
reader runs at most a few chunks ahead), and the chunks come back in file order, so the import is
the same as validating first and writing after. Event files (`validated_chunks`) and profile files
(`validated_profiles`) share the machinery; only the validation of a line differs.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import gc
import multiprocessing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Generic, TypeVar

import orjson

from omnicrm.domain.catalogue import Catalogue, ProductEffect
from omnicrm.domain.errors import InvalidInput, ItemError
from omnicrm.services.intake import ingest
from omnicrm.services.profiles import bulk_profiles

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


_T = TypeVar("_T")


@dataclass(slots=True)
class ValidatedChunk(Generic[_T]):
    """Up to `CHUNK` consecutive records of a file: the valid ones (with their line) and the problems."""

    records: int = 0
    items: list[tuple[int, _T]] = field(default_factory=list)
    errors: list[ItemError] = field(default_factory=list)


def _chunked(path: Path, prepare: Callable[[Any, int], _T | list[ItemError]]) -> Iterator[ValidatedChunk[_T]]:
    """The records validated by `prepare` (an item, or the line's problems) in chunks; a file that
    cannot be read or decoded is refused whole."""
    chunk = ValidatedChunk[_T]()
    try:
        for number, raw in read_lines(path):
            chunk.records += 1
            if isinstance(raw, ItemError):
                chunk.errors.append(raw)
            else:
                result = prepare(raw, number)
                if isinstance(result, list):
                    chunk.errors.extend(result)
                else:
                    chunk.items.append((number, result))
            if chunk.records == CHUNK:
                yield chunk
                chunk = ValidatedChunk[_T]()
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InvalidInput(f"cannot read {path.name}: {exc}", [ItemError(None, "file", str(exc))]) from None
    if chunk.records:
        yield chunk


def _validate(
    path: Path, catalogue: Catalogue, kinds: frozenset[str]
) -> Iterator[ValidatedChunk[ingest.Prepared]]:
    """The records of an event file validated in chunks."""
    return _chunked(path, lambda raw, number: ingest.prepare_one(raw, number, catalogue, kinds))


def _validate_profiles(path: Path) -> Iterator[ValidatedChunk[bulk_profiles.Prepared]]:
    """The records of a profile file validated in chunks."""
    return _chunked(path, bulk_profiles.prepare_line)


# Over the pipe a valid item travels as a plain tuple (a named tuple or a dataclass costs several
# times as much to pickle). An event's product effect (a catalogue object) is looked up again on
# arrival rather than pickled with every item.
_Wire = tuple[Any, ...]


def _pack_events(items: list[tuple[int, ingest.Prepared]]) -> list[_Wire]:
    return [
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
        for n, p in items
    ]


def _unpacking_events(catalogue: Catalogue) -> Callable[[list[_Wire]], list[tuple[int, ingest.Prepared]]]:
    def unpack(items: list[_Wire]) -> list[tuple[int, ingest.Prepared]]:
        effects = {name: _effect(catalogue, name) for name in {item[2] for item in items}}
        return [_item(item, effects) for item in items]

    return unpack


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


def _pack_profiles(items: list[tuple[int, bulk_profiles.Prepared]]) -> list[_Wire]:
    return [(n, *p) for n, p in items]


def _unpack_profiles(items: list[_Wire]) -> list[tuple[int, bulk_profiles.Prepared]]:
    return [(item[0], bulk_profiles.Prepared._make(item[1:])) for item in items]


def _produce(
    sender: Connection,
    chunks: Callable[[], Iterator[ValidatedChunk[_T]]],
    pack: Callable[[list[tuple[int, _T]]], Any],
) -> None:
    """The reading process: every chunk, then ("end",); a file it cannot read ends with ("invalid", ...).
    Everything it builds is freed by reference counting: the cyclic collector stays off."""
    gc.disable()
    try:
        for chunk in chunks():
            errors = [(e.index, e.field, e.reason) for e in chunk.errors]
            sender.send(("chunk", chunk.records, pack(chunk.items), errors))
        sender.send(("end",))
    except InvalidInput as exc:
        sender.send(("invalid", exc.detail, [(e.index, e.field, e.reason) for e in exc.errors]))
    finally:
        sender.close()


def _received(
    receiver: Connection, child: Any, unpack: Callable[[Any], list[tuple[int, _T]]]
) -> Iterator[ValidatedChunk[_T]]:
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
        _, records, items, errors = message
        yield ValidatedChunk(records, unpack(items), [ItemError(*e) for e in errors])


@contextlib.contextmanager
def _reading(
    path: Path,
    chunks: Callable[[], Iterator[ValidatedChunk[_T]]],
    wire: tuple[Callable[[list[tuple[int, _T]]], Any], Callable[[Any], list[tuple[int, _T]]]],
    parallel: bool | None,
) -> Iterator[Iterator[ValidatedChunk[_T]]]:
    """`chunks()` in this process, or in a forked one (default: for files of a megabyte or more)
    whose chunks travel `wire` = (pack, unpack); leaving the block early stops it."""
    check_suffix(path)
    if parallel is None:
        parallel = path.stat().st_size >= PARALLEL_FROM_BYTES
    if not parallel:
        yield chunks()
        return
    pack, unpack = wire
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    with contextlib.suppress(OSError):  # a bigger pipe lets the reader run a few chunks ahead
        fcntl.fcntl(sender.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
    child = context.Process(
        target=_produce, args=(sender, chunks, pack), name="omnicrm-import-reader", daemon=True
    )
    child.start()
    sender.close()
    try:
        yield _received(receiver, child, unpack)
    finally:
        receiver.close()
        child.join(timeout=0.5)
        if child.is_alive():
            child.terminate()
            child.join()


def validated_chunks(
    path: Path, catalogue: Catalogue, kinds: frozenset[str], *, parallel: bool | None = None
) -> contextlib.AbstractContextManager[Iterator[ValidatedChunk[ingest.Prepared]]]:
    """The event file's records validated, chunk by chunk in file order. `parallel` (default: for
    files of a megabyte or more) validates in a forked process; leaving the block early stops it."""
    return _reading(
        path,
        lambda: _validate(path, catalogue, kinds),  # looked up when called: tests replace _validate
        (_pack_events, _unpacking_events(catalogue)),
        parallel,
    )


def validated_profiles(
    path: Path, *, parallel: bool | None = None
) -> contextlib.AbstractContextManager[Iterator[ValidatedChunk[bulk_profiles.Prepared]]]:
    """The profile file's records validated (`bulk_profiles.prepare_line`), chunk by chunk in file
    order; `parallel` as for `validated_chunks`."""
    return _reading(path, lambda: _validate_profiles(path), (_pack_profiles, _unpack_profiles), parallel)
