"""Entries → batches within the intake's per-request limits, in order, one batch held at a time."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from forwarder.model import Batch, Entry


def batches(entries: Iterable[Entry], max_entries: int, max_bytes: int) -> Iterator[Batch]:
    """Pack `entries` in order into batches of at most `max_entries` entries and `max_bytes` bytes.

    The byte limit applies to the whole JSON array body (brackets and commas included), which is
    what the intake measures. A batch is yielded as soon as nothing more can join it, so delivery
    can start while later entries are still being read. An entry too large to fit even alone means
    `enrich` failed to truncate it: that is a bug upstream, so it raises ValueError rather than
    sending a request the intake would reject.
    """
    if max_entries < 1:
        raise ValueError(f"max_entries must be at least 1, got {max_entries}")
    batch = Batch()
    for entry in entries:
        if batch.entries and batch.size + 1 + len(entry.body) > max_bytes:
            yield batch
            batch = Batch()
        _add(batch, entry, max_bytes)
        if len(batch.entries) >= max_entries or batch.size >= max_bytes:
            yield batch
            batch = Batch()
    if batch.entries:
        yield batch


def _add(batch: Batch, entry: Entry, max_bytes: int) -> None:
    added = len(entry.body) + (1 if batch.entries else 0)
    if batch.size + added > max_bytes:
        raise ValueError(f"an entry of {len(entry.body)} bytes cannot fit in a batch of at most {max_bytes} bytes")
    batch.entries.append(entry)
    batch.size += added
