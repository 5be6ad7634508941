"""Parquet objects (Amazon Security Lake's OCSF): one event per row, read row group by row group.

A row becomes one JSON object with the OCSF field names as written: structs are objects, lists
arrays, maps objects, timestamps RFC 3339 text, binary base64. Its `time` (OCSF: epoch
milliseconds) is the event's own time. Memory follows the largest row group, never the object:
pyarrow decodes a row group's columns whole (measured: about 1.3x its uncompressed size, 120 MB
for a 90 MB row group, whatever the batch size), reading their pages through a buffer of
`COLUMN_BUFFER_BYTES` rather than each compressed column chunk at once; the rows become Python
objects `SLICE_ROWS` at a time. A row group larger uncompressed than the function can decode refuses
the object at its footer, before any row is forwarded. Values stored once in a dictionary page are
materialised a slice at a time, so a slice's memory follows its rows' sizes: real events keep it to a
few MB; a hand-made file of huge repeated values could still outgrow it (Security Lake writes these
objects itself).

A checkpoint names a row group and the rows of it already handled (`model.Checkpoint`: `offset` is
the row group's index, `skip_bytes` the rows of it to skip, `decompressed` and `position` the rows
before the next event), and the rows before each row group are known from the footer, so a
continuation starts at its row group without reading the ones before. The reader records where each
row group starts in the tracker, as the byte readers record gzip members.

pyarrow is optional (the `parquet` extra, or the Lambda layer): without it a Parquet object fails
with a message saying what to install, never read as lines of binary.
"""

from __future__ import annotations

import base64
import datetime
import decimal
import importlib
from collections.abc import Iterator
from typing import Any

import orjson

from forwarder.errors import InputError
from forwarder.formats.jsonhead import HeadReader, InvalidRecord
from forwarder.model import MAX_EVENT_BYTES, Checkpoint, RawEvent
from forwarder.read.s3 import Tracker

CODEC = "parquet"
"""The checkpoint codec of a Parquet object: its columns are compressed inside, page by page."""
MAGIC = b"PAR1"
SLICE_ROWS = 1024
"""Rows turned into Python objects at once: a few MB for OCSF rows of a few KB."""
COLUMN_BUFFER_BYTES = 1 << 20
"""Column chunks are read through a buffer of this size, not whole (a Security Lake row group may be
256 MB compressed): a quarter less peak memory in the measurement above."""
MISSING = (
    "this object is Parquet (Amazon Security Lake) and reading it needs pyarrow, which is not installed: "
    "pip install 'security-log-forwarder[parquet]', or in Lambda deploy with EnableParquet=true "
    "(the layer `make package` builds, dist/parquet-layer-<arch>.zip)"
)


def read_parquet(
    file: Any,
    origin: str,
    watched: frozenset[str],
    tracker: Tracker,
    start: Checkpoint | None = None,
    max_event_bytes: int = MAX_EVENT_BYTES,
    slice_rows: int = SLICE_ROWS,
    max_row_group_bytes: int | None = None,
) -> Iterator[RawEvent]:
    """The object's rows as structured events, from `start` when given; `file` is seekable (`RangedFile`).

    A row group over `max_row_group_bytes` uncompressed refuses the object at its footer, before any row
    is forwarded, rather than decode it past the function's memory.
    """
    parquet = _pyarrow_parquet(origin)
    errors = _arrow_errors()
    try:
        reader = parquet.ParquetFile(file, buffer_size=COLUMN_BUFFER_BYTES, pre_buffer=False)
        groups = [reader.metadata.row_group(index) for index in range(reader.metadata.num_row_groups)]
    except errors as exc:
        raise InputError(origin, "the footer", f"not a readable Parquet file: {exc}") from exc
    sizes = [group.num_rows for group in groups]
    if max_row_group_bytes is not None:
        _refuse_oversized(origin, [group.total_byte_size for group in groups], max_row_group_bytes)
    group, skip = _resume(sizes, start, origin)
    first_row = sum(sizes[:group])
    heads = HeadReader(watched)
    for index in range(group, len(sizes)):
        tracker.boundaries.append((index, first_row))
        row = first_row + skip
        try:
            batches = reader.iter_batches(batch_size=slice_rows, row_groups=[index], use_threads=False)
            for batch in _skipped(batches, skip):
                for fields in batch.to_pylist(maps_as_pydicts="lossy"):
                    yield _event(fields, row, heads, origin, max_event_bytes)
                    row += 1
        except errors as exc:
            raise InputError(origin, f"row group {index} (row {row})", f"not a readable Parquet row: {exc}") from exc
        first_row += sizes[index]
        skip = 0


def _refuse_oversized(origin: str, uncompressed: list[int], limit: int) -> None:
    """Name the first row group larger than `limit` bytes uncompressed, as an input error."""
    for index, size in enumerate(uncompressed):
        if size > limit:
            raise InputError(
                origin,
                f"the footer, row group {index}",
                f"row group {index} is {size} bytes uncompressed, over the {limit} this function can decode "
                "(FORWARDER_PARQUET_MAX_ROW_GROUP_BYTES; by default 40% of the function's memory): give the "
                "function more memory",
            )


def _pyarrow_parquet(origin: str) -> Any:
    try:
        return importlib.import_module("pyarrow.parquet")
    except ImportError as exc:
        raise InputError(origin, "byte 0", MISSING) from exc


def _arrow_errors() -> tuple[type[Exception], ...]:
    """What pyarrow raises for a file it cannot read (its own errors are also OSError or ValueError)."""
    arrow = importlib.import_module("pyarrow")
    return (arrow.ArrowException, OSError, ValueError)


def _resume(sizes: list[int], start: Checkpoint | None, origin: str) -> tuple[int, int]:
    """The row group to start at and the rows of it to skip; a checkpoint past a whole group moves on."""
    if start is None:
        return 0, 0
    group, skip = start.offset, start.skip_bytes
    if group > len(sizes) or sum(sizes[:group]) + skip != start.position:
        raise InputError(origin, f"row group {group}", "the checkpoint does not match the object's row groups")
    while group < len(sizes) and skip >= sizes[group]:
        skip -= sizes[group]
        group += 1
    return group, skip


def _skipped(batches: Iterator[Any], rows: int) -> Iterator[Any]:
    """The batches less their first `rows` rows (handled by an earlier invocation)."""
    for batch in batches:
        if rows >= batch.num_rows:
            rows -= batch.num_rows
            continue
        yield batch.slice(rows) if rows else batch
        rows = 0


def _event(fields: dict[str, Any], row: int, heads: HeadReader, origin: str, max_event_bytes: int) -> RawEvent:
    try:
        record = orjson.dumps(fields, default=_json_value, option=orjson.OPT_NON_STR_KEYS)
    except orjson.JSONEncodeError as exc:
        raise InputError(origin, f"row {row}", f"the row cannot be written as JSON: {exc}") from exc
    if len(record) > max_event_bytes:
        raise InputError(origin, f"row {row}", f"the row is {len(record)} bytes as JSON, over {max_event_bytes}")
    try:
        head = heads.read(record)
    except InvalidRecord as exc:
        raise InputError(origin, f"row {row}", f"the row is not JSON the intake accepts: {exc}") from exc
    when = fields.get("time")
    timestamp = when if type(when) is int and when > 0 else None
    return RawEvent(row, None, record, head, timestamp, None, row + 1)


def _json_value(value: Any) -> Any:
    """What orjson does not write itself: binary as base64, decimals as text, times of day."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    raise TypeError(f"a {type(value).__name__} value")
