"""The Parquet reader and the ranged S3 file it reads through: rows, resumption, pinning, sources.

S3 is a moto server; the Parquet objects are the aws-samples Security Lake files or tables pyarrow
writes here with several small row groups.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from forwarder import formats, sources
from forwarder.errors import InputError
from forwarder.formats import Format
from forwarder.formats.parquet import read_parquet
from forwarder.model import S3Object, Source
from forwarder.read.ranged import RangedFile
from forwarder.read.s3 import Tracker
from forwarder.reliability import continuation
from forwarder.reliability.continuation import Progress
from forwarder.settings import Settings

SAMPLES = Path(__file__).parent.parent / "fixtures" / "securitylake"
BUCKET = "parquet-unit"
ROWS = [{"time": 1700000000000 + index, "n": index, "tags": {"k": str(index)}} for index in range(10)]


def parquet_bytes(rows: list[dict[str, Any]], row_group_size: int) -> bytes:
    body = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), body, row_group_size=row_group_size)
    return body.getvalue()


@pytest.fixture
def stored(s3: Any) -> S3Object:
    """Ten rows in row groups of 3, 3, 3 and 1."""
    if BUCKET not in {bucket["Name"] for bucket in s3.list_buckets()["Buckets"]}:
        s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="rows.parquet", Body=parquet_bytes(ROWS, 3))
    return S3Object(BUCKET, "rows.parquet")


def read(s3: Any, obj: S3Object, tracker: Tracker, **options: Any) -> list[Any]:
    return list(read_parquet(RangedFile(s3, obj, tracker), obj.origin, frozenset(), tracker, **options))


def test_each_row_is_one_event_at_its_own_time_numbered_from_zero(s3: Any, stored: S3Object) -> None:
    events = read(s3, stored, Tracker(), slice_rows=2)

    assert [orjson.loads(event.record) for event in events] == ROWS
    assert [event.timestamp_ms for event in events] == [row["time"] for row in ROWS]
    assert [(event.position, event.end_offset) for event in events] == [(index, index + 1) for index in range(10)]


@pytest.mark.parametrize("handled", range(1, 10))
def test_a_continuation_resumes_at_the_row_group_of_the_checkpoint_after_any_row(
    s3: Any, stored: S3Object, handled: int
) -> None:
    tracker = Tracker()
    tracker.codec = continuation.PARQUET_CODEC
    progress = Progress(tracker, Format.PARQUET)
    events = read_parquet(RangedFile(s3, stored, tracker), stored.origin, frozenset(), tracker)
    last = [next(events) for _ in range(handled)][-1]
    checkpoint = progress.checkpoint(last)
    events.close()

    message = orjson.loads(continuation.message_body(stored, handled, checkpoint))
    resumed = continuation.from_message(message[continuation.MESSAGE_KEY])
    assert resumed.checkpoint is not None
    assert (resumed.checkpoint.offset, resumed.checkpoint.skip_bytes) in {
        (handled // 3, handled % 3),
        (handled // 3 - 1, 3),
    }
    rest = read(s3, stored, Tracker(resumed.checkpoint), start=resumed.checkpoint)
    assert [orjson.loads(event.record) for event in rest] == ROWS[handled:]
    assert rest[0].position == handled


def test_a_checkpoint_that_does_not_match_the_row_groups_is_an_input_error(s3: Any, stored: S3Object) -> None:
    tracker = Tracker()
    events = read(s3, stored, tracker)
    checkpoint = Progress(tracker, Format.PARQUET).checkpoint(events[4])
    wrong = type(checkpoint)(2, 1, 5, 5, "parquet", "parquet")

    assert (checkpoint.offset, checkpoint.skip_bytes, checkpoint.position) == (1, 2, 5)
    with pytest.raises(InputError, match="does not match the object's row groups"):
        read(s3, stored, Tracker(wrong), start=wrong)


def test_a_row_group_too_large_to_decode_refuses_the_object_before_any_row_is_read(s3: Any) -> None:
    """pyarrow decodes a row group whole: one larger than the function can hold must not be started, and the
    object must not be half-forwarded first (the check is on the footer, before the first row)."""
    rows = [{"time": 1700000000000, "text": f"{index:04d}" * 2500} for index in range(40)]
    if BUCKET not in {bucket["Name"] for bucket in s3.list_buckets()["Buckets"]}:
        s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="wide.parquet", Body=parquet_bytes(rows[:4] + rows, 4))
    obj = S3Object(BUCKET, "wide.parquet")
    largest = max(
        pq.ParquetFile(io.BytesIO(parquet_bytes(rows[:4] + rows, 4))).metadata.row_group(index).total_byte_size
        for index in range(11)
    )

    with pytest.raises(InputError, match=r"row group \d+ is \d+ bytes uncompressed") as refused:
        next(read_parquet(RangedFile(s3, obj, Tracker()), obj.origin, frozenset(), Tracker(), max_row_group_bytes=1000))
    assert refused.value.position.startswith("the footer, row group ")
    assert len(read(s3, obj, Tracker(), max_row_group_bytes=largest)) == 44


def test_a_parquet_checkpoint_message_names_a_parquet_codec(stored: S3Object) -> None:
    body = {"bucket": BUCKET, "key": "k", "resume_at": 4}
    checkpoint = {"offset": 1, "skip_bytes": 1, "decompressed": 4, "position": 4, "format": "parquet"}

    assert continuation.from_message({**body, "checkpoint": {**checkpoint, "codec": "parquet"}}).checkpoint
    with pytest.raises(ValueError, match="parquet codec"):
        continuation.from_message({**body, "checkpoint": {**checkpoint, "codec": "gzip"}})


def test_the_footer_and_a_small_object_take_one_get(s3: Any, stored: S3Object) -> None:
    tracker = Tracker()
    file = RangedFile(s3, stored, tracker)

    events = list(read_parquet(file, stored.origin, frozenset(), tracker))

    assert len(events) == 10 and file.requests == 1
    assert tracker.etag is not None


def test_reads_far_apart_each_fetch_only_their_window(s3: Any, stored: S3Object) -> None:
    data = s3.get_object(Bucket=BUCKET, Key=stored.key)["Body"].read()
    file = RangedFile(s3, stored, Tracker(), read_ahead=16)

    assert file.seek(-8, io.SEEK_END) == len(data) - 8 and file.read(8) == data[-8:]
    file.seek(4)
    assert file.read(100) == data[4:104] and file.tell() == 104
    assert file.read(4) == data[104:108]
    assert file.requests == 3


def test_an_object_replaced_between_two_reads_is_an_input_error_not_a_mixed_read(s3: Any) -> None:
    """Row groups past pyarrow's first 64 KiB read of the tail, so the second one takes its own GET."""
    rows = [{"time": index, "blob": os.urandom(20_000).hex()} for index in range(8)]
    s3.put_object(Bucket=BUCKET, Key="big.parquet", Body=parquet_bytes(rows, 2))
    obj, tracker = S3Object(BUCKET, "big.parquet"), Tracker()
    events = read_parquet(RangedFile(s3, obj, tracker, read_ahead=64), obj.origin, frozenset(), tracker)
    next(events)
    s3.put_object(Bucket=BUCKET, Key=obj.key, Body=parquet_bytes(rows[:5], 2))

    with pytest.raises(InputError, match="replaced while it was being read"):
        list(events)


def test_the_ocsf_sample_keeps_its_field_names_and_turns_maps_into_objects(s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key="eks.parquet", Body=(SAMPLES / "eks_audit-1.1.0.parquet").read_bytes())
    obj = S3Object(BUCKET, "eks.parquet")

    (event,) = read(s3, obj, Tracker())

    row = orjson.loads(event.record)
    assert list(row) == pq.read_schema(SAMPLES / "eks_audit-1.1.0.parquet").names
    assert row["unmapped"]["kind"] == "Event" and row["metadata"]["product"]["name"] == "Amazon EKS"


def test_parquet_is_recognised_by_its_magic_bytes_and_by_its_key() -> None:
    assert formats.sniff(b"PAR1\x15\x04") is Format.PARQUET
    assert formats.sniffed([b"PA", b"R1", b"\x00" * 600])[0] is Format.PARQUET
    assert formats.by_key("aws/VPC_FLOW/1.0/region=us-east-1/accountId=1/eventDay=1/x.gz.parquet") is Format.PARQUET
    assert formats.by_key("AWSLogs/123456789012/CloudTrail/us-east-1/x.json.gz") is None


@pytest.mark.parametrize(
    ("key", "name", "account"),
    [
        ("aws/EKS_AUDIT/2.0/region=eu-west-1/accountId=123456789012/eventDay=20240101/a.parquet", "kubernetes.audit",
         "123456789012"),
        ("aws/CLOUD_TRAIL_MGMT/2.0/region=eu-west-1/accountId=123456789012/eventDay=20240101/a.parquet", "cloudtrail",
         "123456789012"),
        ("prefix/aws/SH_FINDINGS/1.0/region=eu-west-1/accountId=123456789012/eventDay=20240101/a.gz.parquet",
         "securityhub", "123456789012"),
        ("aws/LAMBDA_EXECUTION/2.0/region=eu-west-1/accountId=external/eventDay=20240101/a.parquet", "lambda",
         "external"),
        ("aws/CLOUD_TRAIL/region=eu-west-1/accountId=123456789012/eventHour=2023042316/a.gz.parquet", "cloudtrail",
         "123456789012"),
        ("aws/WAF/2.0/region=eu-west-1/accountId=123456789012/eventDay=20240101/a.parquet", "waf", "123456789012"),
    ],
)  # fmt: skip
def test_a_security_lake_key_names_the_source_account_and_region(key: str, name: str, account: str) -> None:
    decided = sources.for_object(S3Object("lake", key), Settings())

    assert isinstance(decided, Source)
    assert (decided.name, decided.tags, decided.time_fields) == (
        name,
        (f"aws_account:{account}", "region:eu-west-1"),
        (),
    )


def test_iceberg_metadata_beside_the_partitions_is_not_a_security_lake_object() -> None:
    decided = sources.for_object(S3Object("lake", "aws/CLOUD_TRAIL_MGMT/2.0/metadata/00001.metadata.json"), Settings())

    assert decided is None or (isinstance(decided, Source) and decided.tags == ())
