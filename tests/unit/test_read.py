"""The read stage: S3 bodies in chunks, decompression by magic bytes, CloudWatch Logs payloads."""

from __future__ import annotations

import base64
import gzip
import os
import zlib
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import urllib3.exceptions
import zstandard

from forwarder.errors import InputError
from forwarder.formats import each_event
from forwarder.formats.lines import read_lines
from forwarder.model import Checkpoint, LogBatch, LogEvent, S3Object, Skip
from forwarder.read.awslogs import decode_awslogs
from forwarder.read.codecs import PIECE_BYTES, decompress
from forwarder.read.s3 import Tracker, open_object

FIXTURES = Path(__file__).parent.parent / "fixtures"
CLOUDWATCH = FIXTURES / "envelopes" / "cloudwatch-logs"
ORIGIN = "s3://bucket/key.json.gz"
PAYLOAD = b"".join(b'{"line":%d,"noise":"%s"}\n' % (n, os.urandom(8).hex().encode()) for n in range(400))


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[start : start + size] for start in range(0, len(data), size)]


def zstd(data: bytes) -> bytes:
    return zstandard.ZstdCompressor().compress(data)


def read_all(data: bytes, size: int = 4096) -> bytes:
    return b"".join(decompress(chunked(data, size), ORIGIN))


def read_until_error(data: bytes, size: int = 4096) -> tuple[bytes, InputError]:
    received: list[bytes] = []
    with pytest.raises(InputError) as caught:
        received.extend(decompress(chunked(data, size), ORIGIN))
    return b"".join(received), caught.value


HALF = len(PAYLOAD) // 2
ENCODINGS = {
    "plain": PAYLOAD,
    "gzip": gzip.compress(PAYLOAD),
    "gzip_multi_member": gzip.compress(PAYLOAD[:HALF]) + gzip.compress(PAYLOAD[HALF:]),
    "gzip_many_members": b"".join(gzip.compress(part) for part in chunked(PAYLOAD, 1000)),
    "zstd": zstd(PAYLOAD),
    "zstd_multi_frame": zstd(PAYLOAD[:HALF]) + zstd(PAYLOAD[HALF:]),
    "zlib": zlib.compress(PAYLOAD),
}


@pytest.mark.parametrize("chunk_size", [1, 7, 4096, 1 << 20])
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_decompress_by_magic_bytes_at_any_chunking(encoding: str, chunk_size: int) -> None:
    assert read_all(ENCODINGS[encoding], chunk_size) == PAYLOAD


def test_gzip_multi_member_split_exactly_at_member_boundary() -> None:
    first, second = gzip.compress(PAYLOAD[:HALF]), gzip.compress(PAYLOAD[HALF:])
    assert b"".join(decompress([first, second], ORIGIN)) == PAYLOAD


@pytest.mark.parametrize("chunks", [[], [b""], [b"", b""]], ids=["no_chunks", "one_empty", "two_empty"])
def test_empty_object_yields_nothing(chunks: list[bytes]) -> None:
    assert list(decompress(chunks, ORIGIN)) == []


@pytest.mark.parametrize(
    "name",
    ["loki_lambda-promtail_cloudtrail-log-file.json.gz", next((FIXTURES / "cloudtrail").glob("trailscraper_*")).name],
)
def test_real_gzipped_cloudtrail_files(name: str) -> None:
    data = (FIXTURES / "cloudtrail" / name).read_bytes()
    assert read_all(data, 100) == gzip.decompress(data)


@pytest.mark.parametrize("compress", [gzip.compress, zstd], ids=["gzip", "zstd"])
def test_compression_bomb_yields_capped_pieces(compress: Any) -> None:
    bomb = compress(bytes(64 << 20))
    sizes = [len(piece) for piece in decompress(chunked(bomb, 1 << 20), ORIGIN)]
    assert sum(sizes) == 64 << 20
    assert max(sizes) <= PIECE_BYTES


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (gzip.compress(PAYLOAD)[:-100], "gzip"),
        ((gzip.compress(PAYLOAD[:HALF]) + gzip.compress(PAYLOAD[HALF:]))[:-100], "gzip"),
        (zstd(PAYLOAD[:HALF]) + zstd(PAYLOAD[HALF:])[:-10], "zstd"),
        (zlib.compress(PAYLOAD)[:-20], "zlib"),
    ],
    ids=["gzip", "gzip_second_member", "zstd_second_frame", "zlib"],
)
def test_truncated_stream_names_offset_after_yielding_what_came_before(data: bytes, kind: str) -> None:
    received, error = read_until_error(data)
    assert f"truncated {kind}" in error.reason
    assert error.origin == ORIGIN
    assert error.position == f"compressed byte {len(data)}"
    assert len(received) > HALF // 2
    assert PAYLOAD.startswith(received)


def test_corrupt_middle_of_gzip_is_an_error_after_earlier_data() -> None:
    data = bytearray(gzip.compress(PAYLOAD[:HALF]) + gzip.compress(PAYLOAD[HALF:]))
    middle = len(data) * 3 // 4
    data[middle : middle + 16] = b"\xff" * 16
    received, error = read_until_error(bytes(data), 256)
    assert "gzip" in error.reason
    assert error.position.startswith("compressed byte ")
    assert PAYLOAD[:HALF] == received[:HALF]


def test_corrupt_zstd_frame_is_an_error() -> None:
    data = bytearray(zstandard.ZstdCompressor(write_checksum=True).compress(PAYLOAD))  # as the zstd CLI writes
    data[len(data) // 2 : len(data) // 2 + 8] = b"\x00" * 8
    _, error = read_until_error(bytes(data))
    assert "corrupt zstd" in error.reason


@pytest.mark.parametrize(
    ("data", "kind", "garbage"),
    [
        (gzip.compress(PAYLOAD), "gzip", b"not gzip"),
        (zstd(PAYLOAD), "zstd", b"not gzip"),
        (zstd(PAYLOAD), "zstd", b"\x00" * 8),
        (zlib.compress(PAYLOAD), "zlib", b"not gzip"),
        (zlib.compress(PAYLOAD), "zlib", b"\x00" * 8),
    ],
    ids=["gzip", "zstd", "zstd_zeros", "zlib", "zlib_zeros"],
)
def test_trailing_garbage_names_its_offset(data: bytes, kind: str, garbage: bytes) -> None:
    received, error = read_until_error(data + garbage)
    assert received == PAYLOAD
    assert error.position == f"compressed byte {len(data)}"
    assert f"trailing data after the {kind} stream" in error.reason


@pytest.mark.parametrize("chunk_size", [1, 5, 4096])
@pytest.mark.parametrize("padding", [1, 100, 70_000])
@pytest.mark.parametrize("encoding", ["gzip", "gzip_many_members"])
def test_gzip_with_trailing_zero_padding_keeps_its_last_record(encoding: str, padding: int, chunk_size: int) -> None:
    data = ENCODINGS[encoding] + b"\x00" * padding
    lines = each_event(read_lines(decompress(chunked(data, chunk_size), ORIGIN), ORIGIN))
    assert [event.message for event in lines] == PAYLOAD.decode().splitlines()


@pytest.mark.parametrize(
    "after",
    [b"\x00" * 9 + b"x", b"\x00" * 9 + gzip.compress(b"more\n"), b"\x00\x1f\x8b"],
    ids=["text", "member", "magic"],
)
def test_zero_padding_after_gzip_must_be_zeros_to_the_end(after: bytes) -> None:
    data = gzip.compress(PAYLOAD)
    received, error = read_until_error(data + after, 3)
    assert received == PAYLOAD
    assert "trailing data after the gzip stream" in error.reason


@pytest.mark.parametrize(
    "text",
    [b"x^2 + y^2 = z^2\n" * 500, b"x^", "x\u0680 is 0x78 0xda in UTF-8, \u00e9t\u00e9 \u2603\n".encode() * 300],
    ids=["formula", "two_bytes", "xda_in_utf8"],
)
@pytest.mark.parametrize("chunk_size", [1, 4096])
def test_text_that_starts_like_a_zlib_header_is_read_as_plain_text(text: bytes, chunk_size: int) -> None:
    tracker = Tracker()
    assert b"".join(decompress(chunked(text, chunk_size), ORIGIN, tracker)) == text
    assert tracker.codec == "plain" and not tracker.boundaries


def test_zlib_that_fails_after_its_first_output_is_still_an_error() -> None:
    payload = PAYLOAD * 4
    data = bytearray(zlib.compress(payload))
    data[len(data) * 3 // 4 : len(data) * 3 // 4 + 16] = b"\xff" * 16
    received, error = read_until_error(bytes(data), 256)
    assert "corrupt zlib" in error.reason and received.startswith(payload[:1000])


@pytest.mark.parametrize("chunk_size", [1, 4096])
def test_zlib_damaged_at_its_first_bytes_is_an_error_not_text(chunk_size: int) -> None:
    data = bytearray(zlib.compress(PAYLOAD))
    data[2:18] = b"\xff" * 16
    received, error = read_until_error(bytes(data), chunk_size)
    assert received == b"" and "corrupt zlib" in error.reason


@pytest.mark.parametrize("encoding", ["gzip", "gzip_many_members", "zstd_multi_frame", "zlib", "plain"])
def test_tracker_records_where_each_member_starts(encoding: str) -> None:
    tracker = Tracker()
    assert b"".join(decompress(chunked(ENCODINGS[encoding], 333), ORIGIN, tracker)) == PAYLOAD
    assert tracker.codec == encoding.split("_")[0]
    if encoding == "plain":
        assert not tracker.boundaries and tracker.locate(1234) == (1234, 0)
        return
    parts = {"gzip_many_members": chunked(PAYLOAD, 1000), "zstd_multi_frame": [PAYLOAD[:HALF], PAYLOAD[HALF:]]}
    compress = zstd if encoding.startswith("zstd") else zlib.compress if encoding == "zlib" else gzip.compress
    expected, compressed, decompressed = [], 0, 0
    for part in parts.get(encoding, [PAYLOAD]):
        expected.append((compressed, decompressed))
        compressed += len(compress(part))
        decompressed += len(part)
    assert list(tracker.boundaries) == expected


def test_plain_text_passes_through_unchanged() -> None:
    chunks = [b"x", b"yz\n", b"{}"]
    assert list(decompress(chunks, ORIGIN)) == [b"xyz\n", b"{}"]


class TestOpenObject:
    def test_reads_back_in_small_chunks(self, s3: Any) -> None:
        s3.create_bucket(Bucket="read-chunks")
        body = gzip.compress(PAYLOAD)
        s3.put_object(Bucket="read-chunks", Key="AWSLogs/a b+c.json.gz", Body=body)
        chunks = list(open_object(s3, S3Object("read-chunks", "AWSLogs/a b+c.json.gz"), 1000))
        assert b"".join(chunks) == body
        assert len(chunks) > 1
        assert max(len(chunk) for chunk in chunks) <= 1000

    def test_reads_the_requested_version(self, s3: Any) -> None:
        s3.create_bucket(Bucket="read-versions")
        s3.put_bucket_versioning(Bucket="read-versions", VersioningConfiguration={"Status": "Enabled"})
        first = s3.put_object(Bucket="read-versions", Key="k", Body=b"first")["VersionId"]
        s3.put_object(Bucket="read-versions", Key="k", Body=b"second")
        obj = S3Object("read-versions", "k", version_id=first)
        assert b"".join(open_object(s3, obj, 1024)) == b"first"

    def test_missing_key_is_an_input_error_at_byte_zero(self, s3: Any) -> None:
        s3.create_bucket(Bucket="read-missing")
        with pytest.raises(InputError) as caught:
            list(open_object(s3, S3Object("read-missing", "nope"), 1024))
        assert caught.value.origin == "s3://read-missing/nope"
        assert caught.value.position == "byte 0"
        assert "NoSuchKey" in caught.value.reason
        assert isinstance(caught.value.__cause__, Exception)

    def test_connection_lost_midway_names_bytes_received_and_closes_body(self) -> None:
        body = FakeBody([b"abc", b"defg"], fail=urllib3.exceptions.ProtocolError("connection reset"))
        received: list[bytes] = []
        with pytest.raises(InputError) as caught:
            received.extend(open_object(FakeS3(body), S3Object("b", "k"), 4))
        assert received == [b"abc", b"defg"]
        assert caught.value.position == "byte 7"
        assert "ProtocolError" in caught.value.reason
        assert body.closed

    def test_checkpoint_reads_from_its_offset_pinned_to_the_etag_read_first(self, s3: Any) -> None:
        s3.create_bucket(Bucket="read-ranged")
        body = gzip.compress(PAYLOAD[:HALF]) + gzip.compress(PAYLOAD[HALF:])
        etag = s3.put_object(Bucket="read-ranged", Key="k", Body=body)["ETag"]
        first = Tracker()
        assert b"".join(open_object(s3, S3Object("read-ranged", "k"), 1000, first)) == body
        assert first.etag == etag
        offset = len(gzip.compress(PAYLOAD[:HALF]))
        checkpoint = Checkpoint(offset, 0, HALF, 200, "lines", "gzip", first.etag)
        resumed = S3Object("read-ranged", "k", resume_at=200, checkpoint=checkpoint)
        assert b"".join(open_object(s3, resumed, 1000, Tracker(checkpoint))) == body[offset:]

    def test_replaced_object_is_an_input_error_saying_so(self, s3: Any) -> None:
        s3.create_bucket(Bucket="read-replaced")
        etag = s3.put_object(Bucket="read-replaced", Key="k", Body=b"old\n" * 100)["ETag"]
        s3.put_object(Bucket="read-replaced", Key="k", Body=b"new\n" * 100)
        checkpoint = Checkpoint(40, 0, 40, 10, "lines", "plain", etag)
        with pytest.raises(InputError) as caught:
            list(open_object(s3, S3Object("read-replaced", "k", resume_at=10, checkpoint=checkpoint), 1024))
        assert caught.value.position == "byte 40"
        assert "replaced since an earlier invocation read it" in caught.value.reason and etag in caught.value.reason

    @pytest.mark.parametrize(
        ("obj", "expected"),
        [
            (S3Object("b", "k", etag="e1"), {}),  # a first read takes the object as it is
            (S3Object("b", "k", etag="e1", resume_at=5), {"IfMatch": '"e1"'}),  # an older continuation message
            (
                S3Object("b", "k", etag="e1", resume_at=5, checkpoint=Checkpoint(9, 0, 9, 6, "lines", "plain", '"r"')),
                {"IfMatch": '"r"', "Range": "bytes=9-"},
            ),
            (
                S3Object("b", "k", "v1", resume_at=5, checkpoint=Checkpoint(0, 9, 9, 6, "lines", "gzip", '"r"')),
                {"VersionId": "v1"},  # a version is pinned already; offset 0 needs no range
            ),
        ],
        ids=["first-read", "count-only", "checkpoint", "versioned"],
    )
    def test_request_pins_and_ranges_only_continuations(self, obj: S3Object, expected: dict[str, str]) -> None:
        fake = FakeS3(FakeBody([b"abc"]))
        list(open_object(fake, obj, 4))
        assert fake.requests == [{"Bucket": "b", "Key": "k", **expected}]

    def test_body_closed_when_reader_stops_early(self) -> None:
        body = FakeBody([b"abc", b"def"])
        reader = open_object(FakeS3(body), S3Object("b", "k"), 4)
        assert isinstance(reader, Generator)
        assert next(reader) == b"abc"
        reader.close()
        assert body.closed


class FakeBody:
    """A StreamingBody stand-in whose connection can drop after its chunks."""

    def __init__(self, chunks: list[bytes], fail: Exception | None = None) -> None:
        self.chunks = chunks
        self.fail = fail
        self.closed = False

    def iter_chunks(self, chunk_size: int) -> Iterator[bytes]:
        yield from self.chunks
        if self.fail is not None:
            raise self.fail

    def close(self) -> None:
        self.closed = True


class FakeS3:
    def __init__(self, body: FakeBody) -> None:
        self.body = body
        self.requests: list[dict[str, str]] = []

    def get_object(self, **request: str) -> dict[str, Any]:
        self.requests.append(request)
        return {"Body": self.body}


def awslogs_data(name: str) -> str:
    return str(orjson.loads((CLOUDWATCH / name).read_bytes())["awslogs"]["data"])


def encode(payload: object, compress: Any = gzip.compress) -> str:
    return base64.b64encode(compress(orjson.dumps(payload))).decode()


EXPECTED_BATCH = LogBatch(
    owner="123456789123",
    log_group="testLogGroup",
    log_stream="testLogStream",
    subscription_filters=("testFilter",),
    log_events=(
        LogEvent("eventId1", 1440442987000, "[ERROR] First test message"),
        LogEvent("eventId2", 1440442987001, "[ERROR] Second test message"),
    ),
)


@pytest.mark.parametrize(
    "name", ["powertools_cloudWatchLogEvent.json", "powertools_cloudWatchLogEventWithPolicyLevel.json"]
)
def test_decode_awslogs_gzip_and_zlib(name: str) -> None:
    assert decode_awslogs(awslogs_data(name)) == EXPECTED_BATCH


def test_decode_awslogs_control_message_is_skipped() -> None:
    firehose = orjson.loads((CLOUDWATCH / "sam-cli_KinesisFirehoseCloudwatchLogsProcessor.json").read_bytes())
    skip = decode_awslogs(firehose["records"][0]["data"])
    assert skip == Skip("control_message", "CWL CONTROL MESSAGE: Checking health of destination Firehose.")


def test_decode_awslogs_keeps_messages_byte_for_byte() -> None:
    message = ' {"a": "é\\u0000"}\t\r\n'
    data = encode(
        {
            "messageType": "DATA_MESSAGE",
            "owner": "1",
            "logGroup": "/aws/eks/c/cluster",
            "logStream": "kube-apiserver-audit-1",
            "subscriptionFilters": [],
            "logEvents": [{"id": "9" * 56, "timestamp": 1, "message": message}],
        }
    )
    batch = decode_awslogs(data)
    assert isinstance(batch, LogBatch)
    assert batch.log_events == (LogEvent("9" * 56, 1, message),)
    assert batch.subscription_filters == ()


@pytest.mark.parametrize(
    ("data", "stage"),
    [
        ("not base64!", "base64"),
        (base64.b64encode(b"plain text").decode(), "decompress"),
        (base64.b64encode(gzip.compress(PAYLOAD)[:-8]).decode(), "decompress"),
        (base64.b64encode(gzip.compress(b"not json")).decode(), "json"),
        (encode([1, 2]), "json"),
        (encode({"messageType": "DATA_MESSAGE", "owner": "1"}), "fields"),
        (
            encode({"messageType": "DATA_MESSAGE", "owner": "1", "logGroup": "g", "logStream": "s", "logEvents": [{}]}),
            "fields",
        ),
    ],
    ids=["bad_base64", "not_compressed", "truncated_gzip", "not_json", "not_an_object", "missing_keys", "bad_event"],
)
def test_decode_awslogs_malformed_names_the_stage(data: str, stage: str) -> None:
    with pytest.raises(InputError) as caught:
        decode_awslogs(data)
    assert caught.value.origin == "awslogs payload"
    assert caught.value.position == stage
