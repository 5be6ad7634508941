"""DD_MULTILINE_LOG_REGEX_PATTERN: lines joined into events; checkpoints only after whole events."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from forwarder.formats import Block, each_event
from forwarder.formats.lines import read_lines
from forwarder.formats.multiline import join_lines
from forwarder.model import Checkpoint, Gap, RawEvent

STARTS = re.compile(r"\d{4}-\d{2}-\d{2} ")
LOG = (
    b"2024-12-04 12:00:00 INFO started\n"
    b"2024-12-04 12:00:01 ERROR failed\n"
    b"java.lang.IllegalStateException: boom\n"
    b"\tat com.example.Main.run(Main.java:42)\n"
    b"\n"
    b"\tat com.example.Main.main(Main.java:7)\r\n"
    b"2024-12-04 12:00:02 INFO recovered\n"
)


def joined(data: bytes, size: int = 1 << 20, start: Checkpoint | None = None, cap: int = 1 << 20) -> list[Block]:
    offset, before = (start.decompressed, start.position) if start is not None else (0, 0)
    chunks = [data[at : at + size] for at in range(offset, len(data), size)]
    return list(join_lines(read_lines(chunks, "s3://b/app.log", cap, offset, before), STARTS, start, cap))


def events(blocks: list[Block]) -> list[tuple[int, str]]:
    return [(event.position, event.message or "") for event in each_event(blocks)]


def test_continuation_lines_join_the_line_that_starts_their_event() -> None:
    assert events(joined(LOG)) == [
        (1, "2024-12-04 12:00:00 INFO started"),
        (
            2,
            "2024-12-04 12:00:01 ERROR failed\njava.lang.IllegalStateException: boom\n"
            "\tat com.example.Main.run(Main.java:42)\n\n\tat com.example.Main.main(Main.java:7)",
        ),
        (7, "2024-12-04 12:00:02 INFO recovered"),
    ]


def test_a_joined_event_ends_where_its_last_line_ends() -> None:
    blocks = [block for block in joined(LOG) if len(block)]
    assert [(block.last().position, block.last().end_offset) for block in blocks] == [
        (1, 33),
        (6, LOG.index(b"2024-12-04 12:00:02")),
        (7, len(LOG)),
    ]


def test_lines_before_the_first_start_are_events_of_their_own() -> None:
    data = b"# header one\n# header two\n" + LOG
    found = events(joined(data))
    assert found[:3] == [(1, "# header one"), (2, "# header two"), (3, "2024-12-04 12:00:00 INFO started")]
    assert len(found) == 5
    never = b"a\n b\nc\n"
    assert events(joined(never)) == [(1, "a"), (2, " b"), (3, "c")]


def test_an_event_stops_growing_at_the_size_cap() -> None:
    data = b"2024-12-04 12:00:00 dump\n" + b"".join(b"x" * 30 + b"\n" for _ in range(10))
    found = events(joined(data, cap=100))
    assert "".join(message.replace("\n", "") for _, message in found) == "2024-12-04 12:00:00 dump" + "x" * 300
    assert len(found) > 3


@pytest.mark.parametrize("size", [1, 7, 40, 1 << 20])
def test_every_checkpoint_resumes_at_the_next_whole_event(size: int) -> None:
    """From the `last()` of every block, a continuation reads exactly the events not yet passed."""
    data = b"# header\n" + LOG * 3 + b"trailing without newline"
    blocks = joined(data, size)
    whole = events(blocks)
    passed = 0
    for block in blocks:
        passed += len(block)
        last = block.last()
        start = Checkpoint(0, 0, last.end_offset, last.position, "lines", "plain")
        assert events(joined(data, size, start)) == whole[passed:], (last.position, last.end_offset)
    assert any(isinstance(block, Gap) for block in blocks) or size == 1 << 20


def test_stopping_early_closes_the_lines_beneath() -> None:
    closed: list[bool] = []

    def lines() -> Iterator[Block]:
        try:
            yield RawEvent.line(1, "2024-12-04 12:00:00 a", 22)
            yield RawEvent.line(2, "2024-12-04 12:00:00 b", 44)
        finally:
            closed.append(True)

    stream = join_lines(lines(), STARTS)
    next(stream)
    stream.close()
    assert closed == [True]
