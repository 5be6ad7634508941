"""Decompression by magic bytes, never by key suffix: gzip (multi-member), zstd, zlib, else plain.

CloudTrail writes `.json.gz`, but other writers mislabel, and a renamed object still has to be read.
Decompression streams with a cap on every piece it yields, so neither a multi-gigabyte object nor a
compression bomb is ever held whole; an error raised part-way leaves the pieces already yielded
with the caller, so events before the damage are still delivered.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import Any

import zstandard
from isal import isal_zlib

from forwarder.errors import DeadlineReached, InputError
from forwarder.read.s3 import PLAIN, Tracker

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
ZLIB_HEADERS = frozenset({b"\x78\x01", b"\x78\x5e", b"\x78\x9c", b"\x78\xda"})
PIECE_BYTES = 256 * 1024
"""Largest piece `decompress` yields (a zstd bomb can reach ZSTD_FEED_BYTES x 32768 in one step)."""
ZSTD_FEED_BYTES = 256
"""zstd has no output limit per call, and one 4-byte RLE block expands to 128 KiB: feed it in sips."""

ZLIB_GUESS_BYTES = 4096
"""How much of a stream that starts like zlib is decompressed at once before it counts as zlib."""

# isal's stubs declare `error` as an instance rather than a class.
ISAL_ERROR: type[Exception] = isal_zlib.error  # type: ignore[assignment]


def decompress(chunks: Iterable[bytes], origin: str, tracker: Tracker | None = None) -> Iterator[bytes]:
    """Yield the decompressed stream (gzip, zstd or zlib by magic bytes, else as is) in capped pieces.

    With a `tracker` whose codec is known (a continuation), the stream starts at a boundary of that
    codec and is not sniffed: plain text at an offset may begin with bytes that look like a magic
    number. The tracker learns the codec and the member boundaries.
    """
    stream = iter(chunks)
    if tracker is not None and tracker.codec is not None:
        codec = _CODECS.get(tracker.codec)
        rest: Iterator[bytes] = stream
    else:
        head = _peek(stream, 4)
        if not head:
            return
        rest = _prepend(head, stream)
        codec = _codec(head)
        if tracker is not None:
            tracker.codec = PLAIN if codec is None else codec.kind
        if codec is _ZLIB:
            yield from _zlib_or_plain(rest, origin, tracker)
            return
    if codec is None:
        yield from rest
    else:
        yield from _inflate(codec, origin, tracker).run(rest)


def discard(
    pieces: Iterable[bytes], tracker: Tracker, origin: str, time_to_stop: Callable[[], bool]
) -> Iterator[bytes]:
    """Drop the tracker's `skip_bytes` leading decompressed bytes, then pass the rest through.

    This is how a continuation reaches its next event inside a gzip member (every real CloudTrail
    file is one member): decompressing and dropping costs far less than splitting and parsing the
    events before it. The clock is checked after every piece dropped (a piece takes well under a
    millisecond to decompress); running out of time is `DeadlineReached`.
    """
    stream = iter(pieces)
    left = tracker.skip_bytes
    while left > 0:
        piece = next(stream, None)
        if piece is None:
            at = tracker.decompressed + tracker.skip_bytes - left
            raise InputError(origin, f"decompressed byte {at}", f"the object ends before its checkpoint at {at + left}")
        if len(piece) > left:
            yield piece[left:]
            break
        left -= len(piece)
        if left and time_to_stop():
            at = tracker.decompressed + tracker.skip_bytes - left
            raise DeadlineReached(
                origin,
                f"decompressed byte {at} of the {tracker.decompressed + tracker.skip_bytes} to drop",
                "the deadline came while decompressing up to the checkpoint: reaching it takes longer "
                "than the function's timeout",
            )
    yield from stream


def _inflate(codec: _Codec, origin: str, tracker: Tracker | None) -> _Inflate:
    if tracker is None:
        return _Inflate(codec, origin)
    return _Inflate(codec, origin, tracker.offset, tracker.decompressed, tracker.boundaries)


def _zlib_or_plain(stream: Iterator[bytes], origin: str, tracker: Tracker | None) -> Iterator[bytes]:
    """zlib when it is zlib; plain when the guess fails before any output and the input is text.

    zlib's two magic bytes are weak evidence (`x^`, 0x78 0x5e, is how a text can start), so the
    input is kept until the first output and, if decompression fails first, passed through as is.
    The first `ZLIB_GUESS_BYTES` go to the decompressor in one call, so that a text fails before any
    output however small the chunks it comes in. Damaged zlib data is not UTF-8 (4 KiB of it never
    is), so it stays an error rather than being forwarded as lines of garbage.
    """
    head = _peek(stream, ZLIB_GUESS_BYTES)
    stream = _prepend(head, stream)
    seen: list[bytes] | None = []

    def kept() -> Iterator[bytes]:
        for chunk in stream:
            if seen is not None:
                seen.append(chunk)
            yield chunk

    pieces = _inflate(_ZLIB, origin, tracker).run(kept())
    try:
        first = next(pieces, None)
    except InputError:
        if not _is_text(b"".join(seen or ())):
            raise
        if tracker is not None:
            tracker.codec = PLAIN
            tracker.boundaries.clear()
        yield from seen or ()
        yield from stream
        return
    seen = None  # decompressing: nothing more to keep
    if first is not None:
        yield first
        yield from pieces


def _is_text(data: bytes) -> bool:
    """UTF-8, but for a character cut at the end."""
    try:
        data.decode()
    except UnicodeDecodeError as exc:
        return exc.reason == "unexpected end of data"
    return True


def _codec(head: bytes) -> _Codec | None:
    if head.startswith(GZIP_MAGIC):
        return _GZIP
    if head.startswith(ZSTD_MAGIC):
        return _ZSTD
    if head[:2] in ZLIB_HEADERS:
        return _ZLIB
    return None


def _peek(stream: Iterator[bytes], size: int) -> bytes:
    """At least `size` leading bytes (fewer only at the end of the stream), however small the chunks."""
    head = b""
    while len(head) < size:
        chunk = next(stream, None)
        if chunk is None:
            break
        head += chunk
    return head


def _prepend(head: bytes, stream: Iterator[bytes]) -> Iterator[bytes]:
    yield head
    yield from stream


class _Codec:
    """One compression format: how to start a member, whether more input can begin another one."""

    def __init__(
        self,
        kind: str,
        new_stream: Callable[[], Any],
        continues: Callable[[bytes], bool],
        sip: int,
        zero_padded: bool = False,
    ) -> None:
        self.kind = kind
        self.new_stream = new_stream
        self.continues = continues
        self.sip = sip
        self.zero_padded = zero_padded
        """Whether zero bytes may follow the last member, as gzip(1) allows (some writers pad)."""


def _may_start(magics: tuple[bytes, ...]) -> Callable[[bytes], bool]:
    def check(data: bytes) -> bool:
        return any(magic.startswith(data[: len(magic)]) for magic in magics)

    return check


def _never(data: bytes) -> bool:
    return False


_ZSTD_SKIPPABLE = tuple(bytes([0x50 + n, 0x2A, 0x4D, 0x18]) for n in range(16))
_GZIP = _Codec("gzip", lambda: isal_zlib.decompressobj(wbits=31), _may_start((GZIP_MAGIC,)), 0, zero_padded=True)
_ZLIB = _Codec("zlib", lambda: isal_zlib.decompressobj(wbits=15), _never, 0)
_ZSTD = _Codec(
    "zstd",
    lambda: zstandard.ZstdDecompressor().decompressobj(),
    _may_start((ZSTD_MAGIC, *_ZSTD_SKIPPABLE)),
    ZSTD_FEED_BYTES,
)
_CODECS: dict[str, _Codec | None] = {codec.kind: codec for codec in (_GZIP, _ZLIB, _ZSTD)} | {PLAIN: None}


class _Inflate:
    """Decompresses member after member (`cat a.gz b.gz` is valid gzip; zstd files may hold many frames).

    `offset` counts the compressed bytes consumed, so errors say how far into the object reading got;
    `produced` the decompressed bytes yielded. Both start where the read starts. With `boundaries`,
    each member's start is appended to it as `(offset, produced)`.
    """

    def __init__(
        self,
        codec: _Codec,
        origin: str,
        offset: int = 0,
        produced: int = 0,
        boundaries: deque[tuple[int, int]] | None = None,
    ) -> None:
        self.codec = codec
        self.origin = origin
        self.offset = offset
        self.produced = produced
        self.boundaries = boundaries

    def run(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        stream: Any = None
        padding = False
        for chunk in chunks:
            data = chunk
            while data:
                if stream is not None and stream.eof and (padding or not self.codec.continues(data)):
                    if not (self.codec.zero_padded and data.count(0) == len(data)):
                        raise self._error(f"trailing data after the {self.codec.kind} stream")
                    padding = True  # zeros to the end, or an error
                    self.offset += len(data)
                    break
                if stream is None or stream.eof:
                    stream = self.codec.new_stream()
                    if self.boundaries is not None:
                        self._mark_boundary(self.boundaries)
                try:
                    data = yield from self._member(stream, data)
                except (ISAL_ERROR, zstandard.ZstdError) as exc:
                    raise self._error(f"corrupt {self.codec.kind} data: {exc}") from exc
        if stream is not None and not stream.eof:
            raise self._error(f"truncated {self.codec.kind} stream")

    def _mark_boundary(self, boundaries: deque[tuple[int, int]]) -> None:
        """Note where a member starts. One that starts where the last one did in the decompressed
        stream (the last produced nothing: an empty member) replaces it, being the later, better
        place to read from: a million empty members cost one entry, not a million."""
        if boundaries and boundaries[-1][1] == self.produced:
            boundaries[-1] = (self.offset, self.produced)
        else:
            boundaries.append((self.offset, self.produced))

    def _error(self, reason: str) -> InputError:
        return InputError(self.origin, f"compressed byte {self.offset}", reason)

    def _member(self, stream: Any, data: bytes) -> Generator[bytes, None, bytes]:
        """Feed `data` to one member's decompressor; yield its output; return input beyond its end."""
        if self.codec.sip:
            return (yield from self._sipped(stream, data))
        return (yield from self._capped(stream, data))

    def _capped(self, stream: Any, data: bytes) -> Generator[bytes, None, bytes]:
        """isal caps each call's output; its leftover input waits in `unconsumed_tail`."""
        pending = data
        while True:
            out = stream.decompress(pending, PIECE_BYTES)
            rest = stream.unused_data if stream.eof else stream.unconsumed_tail
            self.offset += len(pending) - len(rest)
            if out:
                self.produced += len(out)
                yield out
            if stream.eof:
                return rest
            pending = rest
            if not pending and len(out) < PIECE_BYTES:
                return b""

    def _sipped(self, stream: Any, data: bytes) -> Generator[bytes, None, bytes]:
        """zstandard cannot cap a call's output, so input goes in sips and output is regrouped."""
        buffered: list[bytes] = []
        size = 0
        sip_bytes = self.codec.sip
        for start in range(0, len(data), sip_bytes):
            out = stream.decompress(data[start : start + sip_bytes])
            buffered.append(out)
            size += len(out)
            if stream.eof:
                used = min(start + sip_bytes, len(data)) - len(stream.unused_data)
                self.offset += used - start
                yield from self._cut(b"".join(buffered))
                return data[used:]
            self.offset += min(sip_bytes, len(data) - start)
            if size >= PIECE_BYTES:
                yield from self._cut(b"".join(buffered))
                buffered, size = [], 0
        if size:
            yield from self._cut(b"".join(buffered))
        return b""

    def _cut(self, data: bytes) -> Iterator[bytes]:
        self.produced += len(data)
        for start in range(0, len(data), PIECE_BYTES):
            yield data[start : start + PIECE_BYTES]
