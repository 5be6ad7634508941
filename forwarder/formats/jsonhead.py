"""Checking a JSON record and decoding only its head: the few fields encoding needs.

A record's bytes go to the intake as they are, so the rest of it is never built. What an output must
know of a record's other top-level names (the Datadog encoder: whether it uses a name the encoder
writes itself) it declares as `watched` names; their presence is decoded as a flag, not a value.
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar

import msgspec
import orjson
import simdjson
from msgspec import UNSET, Raw, UnsetType

VALIDATOR_MAX_BYTES = 1 << 20
"""simdjson keeps buffers sized for the largest document it has parsed: larger records go to orjson."""
InvalidRecord = orjson.JSONDecodeError
"""What `HeadReader.read` raises for bytes that are not one valid JSON object in UTF-8."""


class Identity(msgspec.Struct, frozen=True, gc=False):
    """A CloudTrail record's `userIdentity`, only its `arn` (an instance-profile session names its host).
    Frozen, so that a head's labels key (account, region, identity) is hashable."""

    arn: str | None = None


class Head(msgspec.Struct, gc=False):
    """The fields every head decodes; `head_types` adds the watched names after them.

    `recipientAccountId`, `awsRegion` and `userIdentity` label a CloudTrail record with the account,
    region and host that own it. They are typed: a record where one has another type is decoded the
    slow way (`HeadReader._parsed_head`), where the value counts as absent.

    The fields are in the order CloudTrail writes them. msgspec finds a record's key among a struct's
    fields by trying them in order from the one after the last found, so in this order each of a
    record's five fields is found at the first try (in another, about seven tries each; a try is
    about 15 instructions, and most of a record's keys are no field and try every one).
    """

    userIdentity: Identity | None = None
    eventTime: Any = None
    awsRegion: str | None = None
    eventID: Any = None
    recipientAccountId: str | None = None
    requestReceivedTimestamp: Any = None
    stageTimestamp: Any = None

    def flagged(self) -> bool:
        """Whether the record has a top-level field by one of the watched names."""
        return msgspec.structs.astuple(self)[_OWN_FIELDS:] != self._none_watched

    _none_watched: ClassVar[tuple[Any, ...]] = ()
    """What the watched fields hold when none is present (set per type by `head_types`)."""


_OWN_FIELDS = len(Head.__struct_fields__)


@functools.cache
def head_types(watched: frozenset[str]) -> tuple[type[Head], type[Head]]:
    """`(RecordHead, RunHead)` for these watched names.

    A RecordHead flags each watched name present. A RunHead, for records checked a run at a time,
    refuses one instead (no JSON value is UNSET): a run's records never need their fields moved.
    """
    names = sorted(watched)
    record_head = msgspec.defstruct(
        "RecordHead",
        [(name, Raw | UnsetType, UNSET) for name in names],
        bases=(Head,),
        namespace={"_none_watched": (UNSET,) * len(names)},
        gc=False,
    )
    run_head = msgspec.defstruct(
        "RunHead", [(name, UnsetType, UNSET) for name in names], bases=(record_head,), gc=False
    )
    return record_head, run_head  # type: ignore[return-value]


class HeadReader:
    """Checks records and decodes their heads; one per reader, as a simdjson parser is not thread-safe."""

    def __init__(self, watched: frozenset[str]) -> None:
        self.record_head, self.run_head = head_types(watched)
        self._watched = watched
        self._decode = msgspec.json.Decoder(self.record_head).decode
        self._decode_lenient = msgspec.json.Decoder(_lenient(self.record_head)).decode
        self._validator = simdjson.Parser(max_capacity=VALIDATOR_MAX_BYTES)

    def read(self, record: bytes) -> Head:
        """Check that `record` is one JSON object a full parse accepts, and decode its head; raises `InvalidRecord`.

        Validity is orjson's: UTF-8, RFC 8259, numbers within the double range, at most 1024 levels of
        nesting (the intake refuses a whole batch over one entry that breaks these). simdjson checks
        that, at a quarter of orjson's cost (a leading BOM, which it allows, msgspec refuses); what it
        refuses (integers past 64 bits, which orjson takes; records over 1 MiB) goes to orjson to
        decide. msgspec then decodes the head, skipping the rest unbuilt: alone it would let numbers
        past the double range through, and its nesting limit follows Python's recursion limit.
        """
        if len(record) > VALIDATOR_MAX_BYTES:  # over any entry limit: truncated, its bytes never sent as they are
            return self._big_head(record)
        try:
            self._validator.parse(record)
        except (ValueError, RuntimeError):
            orjson.loads(record)
        try:
            return self._decode(record)
        except (RecursionError, msgspec.DecodeError):  # deeper than msgspec goes, a BOM, or not an object
            return self._parsed_head(record)

    def _big_head(self, record: bytes) -> Head:
        """The head of a record too big for any entry, checked as one JSON object without building
        its values: a record of millions of nested lists costs no more memory than its bytes."""
        try:
            return self._decode(record)
        except msgspec.ValidationError:  # a labels field of another type, or not an object
            pass
        except (RecursionError, msgspec.DecodeError) as exc:
            raise InvalidRecord(f"a record must be one JSON object: {exc}", "", 0) from None
        try:
            head = self._decode_lenient(record)
        except (RecursionError, msgspec.DecodeError) as exc:
            raise InvalidRecord(f"a record must be one JSON object: {exc}", "", 0) from None
        values = msgspec.structs.asdict(head)
        values.update((name, _typed(values[name], kind)) for name, kind in _LABEL_TYPES.items())
        return self.record_head(**values)

    def _parsed_head(self, record: bytes) -> Head:
        fields = orjson.loads(record)
        if not isinstance(fields, dict):
            raise InvalidRecord("a record must be a JSON object", record.decode(errors="replace"), 0) from None
        present = {name: Raw(b"null") for name in self._watched if name in fields}
        identity = fields.get("userIdentity")
        arn = identity.get("arn") if isinstance(identity, dict) else None
        return self.record_head(
            eventID=fields.get("eventID"),
            eventTime=fields.get("eventTime"),
            stageTimestamp=fields.get("stageTimestamp"),
            requestReceivedTimestamp=fields.get("requestReceivedTimestamp"),
            recipientAccountId=_text(fields.get("recipientAccountId")),
            awsRegion=_text(fields.get("awsRegion")),
            userIdentity=Identity(_text(arn)) if isinstance(identity, dict) else None,
            **present,
        )


_LABEL_TYPES: dict[str, Any] = {"recipientAccountId": str, "awsRegion": str, "userIdentity": Identity}
"""The typed head fields: a big record holding one of another type has it read as absent."""


@functools.cache
def _lenient(record_head: type[Head]) -> type[Head]:
    """`record_head` with its typed fields kept undecoded (`Raw`), after all the others."""
    fields = [
        (field.name, Raw, Raw(b"null")) if field.name in _LABEL_TYPES else (field.name, field.type, field.default)
        for field in msgspec.structs.fields(record_head)
    ]
    return msgspec.defstruct("LenientHead", fields, gc=False)  # type: ignore[return-value]


def _typed(raw: Raw, kind: Any) -> Any:
    try:
        return msgspec.json.decode(raw, type=kind | None)
    except (RecursionError, msgspec.DecodeError):
        return None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None
