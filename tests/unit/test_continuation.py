"""Checkpoints: a continuation started at any event's checkpoint reads exactly the events after it.

The read path here is the handler's (`Tracker` → `decompress` → `discard` → `split_object`), with the
S3 ranged GET played by slicing the object's bytes at the checkpoint's offset.
"""

from __future__ import annotations

import gzip
import itertools
import zlib
from typing import Any

import orjson
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from forwarder.errors import DeadlineReached, InputError
from forwarder.formats import Format, each_event
from forwarder.model import Checkpoint, RawEvent, S3Object
from forwarder.read.codecs import decompress, discard
from forwarder.read.s3 import Tracker
from forwarder.reliability import continuation
from forwarder.reliability.continuation import Progress
from tests.support import split_object

ORIGIN = "s3://bucket/key"


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[start : start + size] for start in range(0, len(data), size)]


def members(data: bytes, cuts: list[int], compress: Any = gzip.compress) -> bytes:
    """`data` as concatenated gzip members (or zstd frames), cut at arbitrary decompressed offsets."""
    bounds = [0, *sorted(set(cuts)), len(data)]
    return b"".join(compress(data[start:end]) for start, end in itertools.pairwise(bounds))


def zstd(data: bytes) -> bytes:
    return zstandard.ZstdCompressor().compress(data)


def read_pass(
    data: bytes, start: Checkpoint | None = None, chunk: int = 4096
) -> tuple[Format, list[tuple[RawEvent, Checkpoint]]]:
    """One invocation's read: from `start` (ranged GET = slice), each event with the checkpoint after it.

    Checkpoints are taken as the handler takes them, while reading, with decompression running ahead.
    """
    tracker = Tracker(start)
    body = data[start.offset :] if start is not None else data
    pieces = decompress(chunked(body, chunk), ORIGIN, tracker)
    if tracker.skip_bytes:
        pieces = discard(pieces, tracker, ORIGIN, lambda: False)
    form, items = split_object(pieces, ORIGIN, start=start)
    events = each_event(items)
    progress = Progress(tracker, form)
    out = []
    for event in events:
        progress.forget_before(event)
        out.append((event, progress.checkpoint(event)))
    return form, out


def view(event: RawEvent) -> tuple[Any, ...]:
    return (event.position, event.message, event.record, event.end_offset)


def lines_object(count: int = 60) -> bytes:
    parts = []
    for n in range(count):
        parts.append(b'{"kind":"Event","n":%d,"pad":"%s"}' % (n, b"x" * (n % 7)))
        parts.append(b"\r\n" if n % 5 == 0 else b"\n\n" if n % 9 == 0 else b"\n")
    parts.append(b"last line, no newline")
    return b"".join(parts)


def trail_object(count: int = 40) -> bytes:
    records = [{"eventVersion": "1.08", "eventID": f"id-{n}", "eventName": "Get", "n": n} for n in range(count)]
    return orjson.dumps({"Records": records})


LINES = lines_object()
TRAIL = trail_object()
TRAIL_PRETTY = orjson.dumps(orjson.loads(TRAIL), option=orjson.OPT_INDENT_2)
CONTENTS = {"lines": LINES, "trail": TRAIL, "trail_pretty": TRAIL_PRETTY}
ENCODINGS = {
    "plain": lambda data: data,
    "gzip": gzip.compress,
    "gzip_members": lambda data: members(data, list(range(97, len(data), 211))),
    "gzip_member_per_byte_run": lambda data: members(data, list(range(1, len(data), 13))),
    "zstd_frames": lambda data: members(data, list(range(50, len(data), 300)), zstd),
    "zlib": zlib.compress,
}


@pytest.mark.parametrize("chunk", [1, 64, 1 << 20])
@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("content", CONTENTS)
def test_resume_at_every_event_gives_exactly_the_rest(content: str, encoding: str, chunk: int) -> None:
    data = ENCODINGS[encoding](CONTENTS[content])
    form, whole = read_pass(data, chunk=chunk)
    assert form is (Format.LINES if content == "lines" else Format.CLOUDTRAIL)
    events = [view(event) for event, _ in whole]
    for index, (_, checkpoint) in enumerate(whole):
        resumed_form, rest = read_pass(data, checkpoint, chunk=chunk)
        assert resumed_form is form
        assert [view(event) for event, _ in rest] == events[index + 1 :], (encoding, index, checkpoint)


def test_checkpoints_use_the_cheapest_start_each_codec_allows() -> None:
    member_starts = {0}
    for part in chunked(LINES, 211)[:-1]:
        member_starts.add(max(member_starts) + len(gzip.compress(part)))
    cases = {
        "plain": LINES,
        "gzip": gzip.compress(LINES),
        "gzip_members": b"".join(gzip.compress(part) for part in chunked(LINES, 211)),
    }
    for encoding, data in cases.items():
        _, whole = read_pass(data)
        for event, checkpoint in whole:
            assert checkpoint.decompressed == event.end_offset
            assert checkpoint.position == event.position  # lines before the next event
            assert checkpoint.format == "lines"
            if encoding == "plain":
                assert (checkpoint.codec, checkpoint.offset, checkpoint.skip_bytes) == ("plain", event.end_offset, 0)
            elif encoding == "gzip":  # one member: start over, decompress and drop
                assert (checkpoint.codec, checkpoint.offset, checkpoint.skip_bytes) == ("gzip", 0, event.end_offset)
            else:  # the member holding the next event's first byte
                assert checkpoint.offset in member_starts
                assert checkpoint.skip_bytes == event.end_offset % 211
                assert checkpoint.offset == max(member_starts) or checkpoint.skip_bytes < 211


def test_cloudtrail_checkpoint_counts_records_and_ends_after_the_brace() -> None:
    _, whole = read_pass(TRAIL)
    for event, checkpoint in whole:
        assert TRAIL[checkpoint.decompressed - 1 : checkpoint.decompressed] == b"}"
        assert checkpoint.position == event.position + 1
        assert TRAIL[: checkpoint.decompressed].count(b'"eventID"') == checkpoint.position


def test_plain_text_that_starts_like_a_magic_number_is_not_decompressed_on_resume() -> None:
    data = b"first\nx\x9c looks like zlib\n\x1f\x8b looks like gzip\n(\xb5/\xfd zstd\nlast\n"
    _, whole = read_pass(data)
    for index, (_, checkpoint) in enumerate(whole):
        _, rest = read_pass(data, checkpoint)
        assert [view(event) for event, _ in rest] == [view(event) for event, _ in whole[index + 1 :]]


def test_resumed_cloudtrail_still_checks_the_rest_of_the_array() -> None:
    doc = b'{"Records":[{"eventID":"a"},{"eventID":"b"} {"eventID":"c"}]}'
    _, whole = read_pass(b'{"Records":[{"eventID":"a"},{"eventID":"b"}]}')
    checkpoint = whole[0][1]
    with pytest.raises(InputError) as caught:
        read_pass(doc, Checkpoint(checkpoint.decompressed, 0, checkpoint.decompressed, 1, "cloudtrail", "plain"))
    # the resumed pass reads record 1, then finds a '{' where ',' or ']' belongs: the position is the object's
    assert caught.value.position == f"record 2 (decompressed byte {doc.index(b' {') + 1})"
    truncated = b'{"Records":[{"eventID":"a"},{"eventID":"b"}'
    with pytest.raises(InputError) as caught:
        read_pass(truncated, Checkpoint(checkpoint.decompressed, 0, checkpoint.decompressed, 1, "cloudtrail", "plain"))
    assert "before the Records array closes" in caught.value.reason


def test_discard_past_the_end_is_an_input_error_and_past_the_deadline_a_deadline_error() -> None:
    data = gzip.compress(LINES)
    short = Checkpoint(0, len(LINES) + 10, len(LINES) + 10, 99, "lines", "gzip")
    with pytest.raises(InputError) as caught:
        read_pass(data, short)
    assert "ends before its checkpoint" in caught.value.reason
    tracker = Tracker(Checkpoint(0, 3000, 3000, 40, "lines", "gzip"))
    pieces = discard(chunked(LINES, 1000), tracker, ORIGIN, lambda: True)
    with pytest.raises(DeadlineReached) as late:
        list(pieces)
    assert late.value.position == "decompressed byte 1000 of the 3000 to drop"
    assert "deadline" in late.value.reason


def test_tracker_keeps_few_boundaries_when_checkpoints_are_taken_as_reading_goes() -> None:
    data = b"".join(gzip.compress(part) for part in chunked(LINES, 20))
    tracker = Tracker()
    form, items = split_object(decompress(chunked(data, 1 << 20), ORIGIN, tracker), ORIGIN)
    events = each_event(items)
    progress = Progress(tracker, form)
    most = 0
    for event in events:
        progress.forget_before(event)
        most = max(most, len(tracker.boundaries))
        progress.checkpoint(event)
    assert len(LINES) // 20 > 50 and most <= len(LINES) // 20  # bounded by read-ahead, then pruned
    assert len(tracker.boundaries) <= 2


# --- property: CloudTrail documents of any shape, members cut anywhere -----------------------------

RECORD = st.dictionaries(
    st.sampled_from(["eventVersion", "eventID", "a", "}", '"']) | st.text(max_size=6),
    st.none()
    | st.integers(-(2**53), 2**53)
    | st.text(max_size=8)
    | st.sampled_from(["},{", "]}", '"', "\\", '},{"eventVersion":']),
    max_size=4,
)


@settings(max_examples=150, deadline=None)
@given(
    records=st.lists(RECORD, min_size=1, max_size=8),
    indent=st.booleans(),
    encoding=st.sampled_from(["plain", "gzip", "gzip_members"]),
    data=st.data(),
)
def test_property_cloudtrail_resume_at_every_record_index(
    records: list[dict[str, Any]], indent: bool, encoding: str, data: Any
) -> None:
    doc = orjson.dumps({"Records": records}, option=orjson.OPT_INDENT_2 if indent else None)
    if encoding == "gzip_members":
        cuts = data.draw(st.lists(st.integers(min_value=1, max_value=max(1, len(doc) - 1)), max_size=8))
        obj = members(doc, cuts)
    else:
        obj = gzip.compress(doc) if encoding == "gzip" else doc
    chunk = data.draw(st.sampled_from([1, 7, 4096]))
    _, whole = read_pass(obj, chunk=chunk)
    assert [event.parse_record() for event, _ in whole] == records
    for index, (_, checkpoint) in enumerate(whole):
        _, rest = read_pass(obj, checkpoint, chunk=chunk)
        assert [(event.position, event.parse_record()) for event, _ in rest] == list(enumerate(records))[index + 1 :]


# --- the message ---------------------------------------------------------------------------------


def test_message_round_trips_the_checkpoint() -> None:
    checkpoint = Checkpoint(1234, 56, 9000, 70, "lines", "gzip", '"abc-2"')
    obj = S3Object("b", "k", etag="e1")
    fields = orjson.loads(continuation.message_body(obj, 64, checkpoint))[continuation.MESSAGE_KEY]
    assert continuation.from_message(fields) == S3Object(
        "b", "k", etag="e1", resume_at=64, checkpoint=checkpoint, continued=True
    )


def test_message_without_a_checkpoint_starts_the_object_again() -> None:
    fields = orjson.loads(continuation.message_body(S3Object("b", "k"), 0))[continuation.MESSAGE_KEY]
    assert "checkpoint" not in fields
    assert continuation.from_message(fields) == S3Object("b", "k", continued=True)
