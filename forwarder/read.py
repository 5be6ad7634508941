"""Read stage: an S3 object's body or a CloudWatch Logs payload in, decompressed bytes out.

Compression is recognised by magic bytes, never by key suffix: CloudTrail writes `.json.gz`, but
other writers mislabel, and a renamed object still has to be read. Decompression streams with a cap
on every piece it yields, so neither a multi-gigabyte object nor a compression bomb is ever held
whole; an error raised part-way leaves the pieces already yielded with the caller, so events before
the damage are still delivered.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import Any

import orjson
import urllib3.exceptions
import zstandard
from botocore.exceptions import BotoCoreError, ClientError
from isal import isal_zlib

from forwarder.errors import InputError
from forwarder.model import LogBatch, LogEvent, S3Object, Skip

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
ZLIB_HEADERS = frozenset({b"\x78\x01", b"\x78\x5e", b"\x78\x9c", b"\x78\xda"})
PIECE_BYTES = 256 * 1024
"""Largest piece `decompress` yields (a zstd bomb can reach ZSTD_FEED_BYTES x 32768 in one step)."""
ZSTD_FEED_BYTES = 256
"""zstd has no output limit per call, and one 4-byte RLE block expands to 128 KiB: feed it in sips."""

# isal's stubs declare `error` as an instance rather than a class.
_ISAL_ERROR: type[Exception] = isal_zlib.error  # type: ignore[assignment]
_TRANSPORT_ERRORS = (BotoCoreError, ClientError, urllib3.exceptions.HTTPError, OSError)


def open_object(s3_client: Any, obj: S3Object, chunk_bytes: int) -> Iterator[bytes]:
    """Yield the object's body in chunks of about `chunk_bytes`; the body is closed on every path.

    Transport failures become `InputError` naming how many bytes had arrived.
    """
    request = {"Bucket": obj.bucket, "Key": obj.key}
    if obj.version_id:
        request["VersionId"] = obj.version_id
    try:
        body = s3_client.get_object(**request)["Body"]
    except _TRANSPORT_ERRORS as exc:
        raise InputError(obj.origin, "byte 0", _describe(exc)) from exc
    received = 0
    try:
        chunks = body.iter_chunks(chunk_bytes)
        while True:
            try:
                chunk = next(chunks, None)
            except _TRANSPORT_ERRORS as exc:
                raise InputError(obj.origin, f"byte {received}", _describe(exc)) from exc
            if chunk is None:
                return
            received += len(chunk)
            yield chunk
    finally:
        body.close()


def decompress(chunks: Iterable[bytes], origin: str) -> Iterator[bytes]:
    """Yield the decompressed stream (gzip, zstd or zlib by magic bytes, else as is) in capped pieces."""
    stream = iter(chunks)
    head = _peek(stream, 4)
    if not head:
        return
    rest = _prepend(head, stream)
    codec = _codec(head)
    if codec is None:
        yield from rest
    else:
        yield from _Inflate(codec, origin).run(rest)


def decode_awslogs(data: str) -> LogBatch | Skip:
    """Decode a subscription payload: base64, then gzip (zlib accepted too), then JSON.

    CloudWatch Logs sends a CONTROL_MESSAGE when a subscription is created to check the destination
    is reachable; it carries no log events of the account and is skipped.
    """
    try:
        compressed = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InputError("awslogs payload", "base64", str(exc)) from exc
    try:
        raw = isal_zlib.decompress(compressed, wbits=47)  # 32 + 15: gzip or zlib header, detected
    except _ISAL_ERROR as exc:
        raise InputError("awslogs payload", "decompress", str(exc)) from exc
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InputError("awslogs payload", "json", str(exc)) from exc
    if not isinstance(payload, dict):
        raise InputError("awslogs payload", "json", f"expected an object, got {type(payload).__name__}")
    if payload.get("messageType") == "CONTROL_MESSAGE":
        return Skip("control_message", _first_message(payload))
    try:
        return _log_batch(payload)
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError("awslogs payload", "fields", f"malformed DATA_MESSAGE: {_describe(exc)}") from exc


def _log_batch(payload: dict[str, Any]) -> LogBatch:
    events = tuple(
        LogEvent(id=str(event["id"]), timestamp=int(event["timestamp"]), message=_text(event["message"]))
        for event in payload["logEvents"]
    )
    return LogBatch(
        owner=str(payload["owner"]),
        log_group=str(payload["logGroup"]),
        log_stream=str(payload["logStream"]),
        subscription_filters=tuple(str(name) for name in payload.get("subscriptionFilters") or ()),
        log_events=events,
    )


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"message is {type(value).__name__}, not a string")
    return value


def _first_message(payload: dict[str, Any]) -> str:
    events = payload.get("logEvents")
    if isinstance(events, list) and events and isinstance(events[0], dict):
        return str(events[0].get("message", ""))
    return ""


def _codec(head: bytes) -> _Codec | None:
    if head.startswith(GZIP_MAGIC):
        return _GZIP
    if head.startswith(ZSTD_MAGIC):
        return _ZSTD
    if head[:2] in ZLIB_HEADERS:
        return _ZLIB
    return None


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


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

    def __init__(self, kind: str, new_stream: Callable[[], Any], continues: Callable[[bytes], bool], sip: int) -> None:
        self.kind = kind
        self.new_stream = new_stream
        self.continues = continues
        self.sip = sip


def _may_start(magics: tuple[bytes, ...]) -> Callable[[bytes], bool]:
    def check(data: bytes) -> bool:
        return any(magic.startswith(data[: len(magic)]) for magic in magics)

    return check


def _never(data: bytes) -> bool:
    return False


_ZSTD_SKIPPABLE = tuple(bytes([0x50 + n, 0x2A, 0x4D, 0x18]) for n in range(16))
_GZIP = _Codec("gzip", lambda: isal_zlib.decompressobj(wbits=31), _may_start((GZIP_MAGIC,)), 0)
_ZLIB = _Codec("zlib", lambda: isal_zlib.decompressobj(wbits=15), _never, 0)
_ZSTD = _Codec(
    "zstd",
    lambda: zstandard.ZstdDecompressor().decompressobj(),
    _may_start((ZSTD_MAGIC, *_ZSTD_SKIPPABLE)),
    ZSTD_FEED_BYTES,
)


class _Inflate:
    """Decompresses member after member (`cat a.gz b.gz` is valid gzip; zstd files may hold many frames).

    `offset` counts the compressed bytes consumed, so errors say how far into the object reading got.
    """

    def __init__(self, codec: _Codec, origin: str) -> None:
        self.codec = codec
        self.origin = origin
        self.offset = 0

    def run(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        stream: Any = None
        for chunk in chunks:
            data = chunk
            while data:
                if stream is not None and stream.eof and not self.codec.continues(data):
                    raise self._error(f"trailing data after the {self.codec.kind} stream")
                if stream is None or stream.eof:
                    stream = self.codec.new_stream()
                try:
                    data = yield from self._member(stream, data)
                except (_ISAL_ERROR, zstandard.ZstdError) as exc:
                    raise self._error(f"corrupt {self.codec.kind} data: {exc}") from exc
        if stream is not None and not stream.eof:
            raise self._error(f"truncated {self.codec.kind} stream")

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
                yield from _cut(b"".join(buffered))
                return data[used:]
            self.offset += min(sip_bytes, len(data) - start)
            if size >= PIECE_BYTES:
                yield from _cut(b"".join(buffered))
                buffered, size = [], 0
        if size:
            yield from _cut(b"".join(buffered))
        return b""


def _cut(data: bytes) -> Iterator[bytes]:
    for start in range(0, len(data), PIECE_BYTES):
        yield data[start : start + PIECE_BYTES]
