"""Lines: one event per non-blank line (NDJSON, plain text), streamed."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from forwarder.errors import InputError
from forwarder.model import MAX_EVENT_BYTES, Gap, RawEvent

BOM = b"\xef\xbb\xbf"


def read_lines(
    chunks: Iterable[bytes],
    origin: str,
    max_event_bytes: int = MAX_EVENT_BYTES,
    offset: int = 0,
    lines_before: int = 0,
) -> Iterator[RawEvent | Gap]:
    """One event per non-blank line; `position` is the 1-based line number.

    Lines end at LF, with an optional CR before it; invalid UTF-8 is replaced, never fatal; a
    leading byte-order mark is dropped. `chunks` may start at a line start `offset` bytes into the
    decompressed object, after `lines_before` lines. Each event is a block of its own, and every
    piece read ends with a `Gap` at the last line it completed: however few events the lines hold,
    the consumer sees progress at least once a piece.
    """
    parts: list[bytes] = []
    pending = 0
    number = lines_before
    end = offset
    for chunk in chunks:
        last = chunk.rfind(b"\n")
        if last < 0:
            pending += len(chunk)
            if pending > max_event_bytes:
                raise _too_long(origin, number + 1, max_event_bytes)
            parts.append(chunk)
            continue
        parts.append(chunk[:last])
        block = b"".join(parts)
        parts = [chunk[last + 1 :]]
        pending = len(parts[0])
        for line in block.split(b"\n"):
            number += 1
            end += len(line) + 1
            event = _line_event(line, number, origin, max_event_bytes, end)
            if event is not None:
                yield event
        yield Gap(RawEvent.marker(number, end))
    line = b"".join(parts)
    if line:
        event = _line_event(line, number + 1, origin, max_event_bytes, end + len(line))
        if event is not None:
            yield event


def _line_event(line: bytes, number: int, origin: str, max_event_bytes: int, end: int) -> RawEvent | None:
    if line.endswith(b"\r"):
        line = line[:-1]
    if not line or line.isspace():
        return None
    if len(line) > max_event_bytes:
        raise _too_long(origin, number, max_event_bytes)
    if number == 1:
        line = line.removeprefix(BOM)
    return RawEvent.line(number, line.decode("utf-8", "replace"), end)


def _too_long(origin: str, number: int, max_event_bytes: int) -> InputError:
    return InputError(origin, f"line {number}", f"line longer than {max_event_bytes} bytes")
