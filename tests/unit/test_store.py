"""The failure store: what is kept is what is re-sent, byte for byte; garbage is never kept."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from forwarder.errors import DeliveryError, InputError, StoreError
from forwarder.reliability.store import FailureStore

EXACT = [
    b'{"n":123456789012345678901234567890,"e":1E2,"z":-0.0,"u":"caf\\u00e9"}',
    b'{\n  "pretty": [1, 2],\n  "s": "},{\\"entries\\":[{"\n}',
    b'{"entries":[{"a":"]}"}],"x":{"y":[[],{}]}}',
    b'{"ddsource":"cloudtrail","message":"plain"}',
]


class FakeS3:
    """The few S3 calls the store makes, on a dict."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def put_object(self, Bucket: str, Key: str, Body: bytes) -> None:
        self.objects[Key] = Body

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        body = self.objects[Key]

        class Body:
            def read(self) -> bytes:
                return body

        return {"Body": Body()}

    def get_paginator(self, name: str) -> Any:
        objects = self.objects

        class Paginator:
            def paginate(self, Bucket: str, Prefix: str) -> Iterator[dict[str, Any]]:
                yield {"Contents": [{"Key": key} for key in sorted(objects) if key.startswith(Prefix)]}

        return Paginator()

    def delete_object(self, Bucket: str, Key: str) -> None:
        del self.objects[Key]


def store() -> tuple[FailureStore, FakeS3]:
    s3 = FakeS3()
    return FailureStore(s3, "store-bucket", "failed-events/f/"), s3


def test_big_integers_and_exponents_survive_a_store_and_load_byte_for_byte() -> None:
    kept, _ = store()
    key = kept.keep(EXACT, DeliveryError("refused", 400, '{"errors":["bad"]}'))
    assert kept.load(key) == EXACT


@pytest.mark.parametrize("indent", [False, True], ids=["as_written", "re_indented"])
def test_a_v1_object_is_read_with_its_entries_exact(indent: bool) -> None:
    kept, s3 = store()
    head = b'{"format":"security-log-forwarder/failed-events/v1","reason":"refused \\",\\"entries\\":[","status":400'
    if indent:
        document = head + b',\n  "entries" : [\n    ' + b" ,\n    ".join(EXACT) + b"\n  ]\n}"
    else:
        document = head + b',"entries":[' + b",".join(EXACT) + b"]}"
    s3.objects["failed-events/f/old.json.gz"] = gzip.compress(document)
    assert kept.load("failed-events/f/old.json.gz") == EXACT


def test_an_empty_stored_batch_loads_as_no_entries() -> None:
    kept, _ = store()
    assert kept.load(kept.keep([], DeliveryError("refused", 400))) == []


@pytest.mark.parametrize(
    "bad", [b"", b'{"a":1', b"[1]", b'{"a":1}{"b":2}', b'{"a":NaN}'], ids=["empty", "cut", "array", "two", "nan"]
)
def test_an_invalid_entry_is_never_stored(bad: bytes) -> None:
    kept, s3 = store()
    with pytest.raises(StoreError, match="entry 1 is not a JSON object"):
        kept.keep([EXACT[0], bad, EXACT[1]], DeliveryError("refused", 400))
    assert s3.objects == {}


@pytest.mark.parametrize(
    "body",
    [
        b"\x1f\x8bbad",
        gzip.compress(b'{"entries":[{"a":1},,{"b":2}]}'),
        gzip.compress(b'{"entries":[{"a":1},[2]]}'),
        gzip.compress(b'{"entries":{"a":1}}'),
        gzip.compress(b'{"no_entries":[]}'),
    ],
    ids=["not_gzip", "double_comma", "not_an_object", "not_a_list", "no_entries"],
)
def test_an_unreadable_stored_batch_is_an_input_error(body: bytes) -> None:
    kept, s3 = store()
    s3.objects["failed-events/f/bad.json.gz"] = body
    with pytest.raises(InputError, match="not a stored batch"):
        kept.load("failed-events/f/bad.json.gz")


def test_what_is_stored_is_one_json_document_with_the_reason() -> None:
    kept, s3 = store()
    key = kept.keep(EXACT, DeliveryError("refused", 400, "no"))
    document = orjson.loads(gzip.decompress(s3.objects[key]))
    assert (document["reason"], document["status"], document["answer"]) == ("refused", 400, "no")
    assert document["entries"] == [orjson.loads(entry) for entry in EXACT]
