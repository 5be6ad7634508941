"""Entries → batches within the intake's per-request limits, in order, one batch held at a time."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from forwarder.model import Entry


@dataclass(slots=True)
class Batch:
    """Entries for one request; `size` is the uncompressed JSON array's length in bytes."""

    entries: list[Entry] = field(default_factory=list)
    size: int = 2


def json_array(entries: list[Entry]) -> bytes:
    """The entries as one JSON array, in one copy: the brackets go onto the first and last entry."""
    bodies = [entry.body for entry in entries]
    if not bodies:
        return b"[]"
    bodies[0] = b"[" + bodies[0]
    bodies[-1] += b"]"
    return b",".join(bodies)


def ndjson(entries: list[Entry]) -> bytes:
    """The entries one per line, each line ended by a newline.

    A record spliced as read keeps its own whitespace, and a pretty-printed one has newlines: they
    become spaces. Inside a JSON string a newline is always escaped, so only whitespace between
    tokens changes, and the size does not.
    """
    bodies = [body.replace(b"\n", b" ") if b"\n" in body else body for body in (entry.body for entry in entries)]
    bodies.append(b"")
    return b"\n".join(bodies)


def batches(entries: Iterable[Entry], max_entries: int, max_bytes: int) -> Iterator[Batch]:
    """Pack `entries` in order into batches of at most `max_entries` entries and `max_bytes` bytes.

    The byte limit applies to the whole JSON array body (brackets and commas included), which is
    what the intake measures. The same entries as NDJSON (`ndjson`) are one byte shorter (a newline
    per entry against a comma between entries and two brackets), so the limit holds for both.
    A batch is yielded as soon as nothing more can join it, so delivery can start while later
    entries are still being read. An entry too large to fit even alone means the encoder failed to
    truncate it: that is a bug upstream, so it raises ValueError rather than sending a request the
    intake would reject.
    """
    if max_entries < 1:
        raise ValueError(f"max_entries must be at least 1, got {max_entries}")
    # The hot loop runs once per event: plain locals, no calls; the Batch is built when it is full.
    bodies: list[Entry] = []
    size = 2
    for entry in entries:
        length = len(entry.body)
        if bodies and size + 1 + length > max_bytes:
            yield Batch(bodies, size)
            bodies, size = [], 2
        if length + 2 > max_bytes:
            raise ValueError(f"an entry of {length} bytes cannot fit in a batch of at most {max_bytes} bytes")
        size += length + 1 if bodies else length
        bodies.append(entry)
        if len(bodies) >= max_entries or size >= max_bytes:
            yield Batch(bodies, size)
            bodies, size = [], 2
    if bodies:
        yield Batch(bodies, size)
