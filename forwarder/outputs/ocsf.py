"""The OCSF output (FORWARDER_OUTPUT_FORMAT=ocsf): each event as an OCSF 1.1.0 object.

CloudTrail records and Kubernetes audit events become API Activity (class_uid 6003) as Amazon
Security Lake maps them (`outputs.ocsf_map`, docs/ocsf.md). What is mapped is decided by each
record's shape, so CloudTrail delivered through CloudWatch Logs or renamed with DD_SOURCE is mapped
too. Every other event passes as a minimal OCSF Base Event (class_uid 0) that says so in
`unmapped["forwarder.ocsf"]` = `passthrough`; a CloudTrail or audit record that lacks what a
required attribute comes from is delivered the same way, marked `unmappable` with the reason in
`unmapped["forwarder.ocsf_reason"]`, logged and counted (the encoder's `unmappable`, which the
pipeline adds to the tally). Every object keeps the original event as `raw_data`. Amazon Security
Lake's rows are OCSF already: they pass as the events they are, their own class and all.

To a Datadog intake each OCSF object travels as a Datadog entry: under `ocsf`, beside the reserved
attributes (`ddsource`, `service`, `host`, `ddtags`, `aws`), `timestamp` (the OCSF `time`) and
`forwarder.id`, so labels, tags and duplicate dropping work as for the Datadog output. To a generic
intake it travels as the OCSF object alone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import orjson

from forwarder.formats import Block
from forwarder.metrics import EntryTime, member_time
from forwarder.model import Container, Entry, Invoker, LogBatch, RawEvent, S3Object, Source
from forwarder.outputs import ocsf_audit, ocsf_map
from forwarder.outputs.datadog import event_id, labels
from forwarder.outputs.ocsf_map import OCSF_VERSION, PROFILES, Unmappable, Where
from forwarder.settings import Settings
from forwarder.sources import SECURITY_LAKE_RULES
from forwarder.times import field_time

logger = logging.getLogger(__name__)

MARKER = "forwarder.ocsf"
"""The `unmapped` key saying an event is not API Activity: `passthrough` or `unmappable`."""
REASON = "forwarder.ocsf_reason"
PASSTHROUGH = "passthrough"
UNMAPPABLE = "unmappable"
_MAPPED_SOURCES = frozenset({"cloudtrail", "kubernetes.audit"})
"""Sources whose every event should map: one that does not is unmappable, not passed through."""
_BULKY = (("raw_data",), ("api", "request", "data"), ("api", "response", "data"))
"""What is dropped first from an entry over the per-entry limit: each is also in `raw_data`."""
entry_time_ms: EntryTime = member_time("time")
"""The OCSF object alone carries its time as `time`, in epoch ms (in a Datadog entry, `timestamp`)."""


def is_cloudtrail(fields: dict[str, Any]) -> bool:
    return "eventVersion" in fields or ("eventSource" in fields and "eventName" in fields)


def is_ocsf(fields: dict[str, Any]) -> bool:
    """Already an OCSF event: a class, a time and metadata, as every OCSF class requires."""
    return (
        type(fields.get("class_uid")) is int
        and type(fields.get("time")) is int
        and isinstance(fields.get("metadata"), dict)
    )


def is_security_lake(container: Container) -> bool:
    """An object where Amazon Security Lake keeps a source, as the source rules recognise it."""
    return isinstance(container, S3Object) and any(
        rule.key is not None and rule.key.search(container.key) for rule in SECURITY_LAKE_RULES
    )


def is_audit(fields: dict[str, Any]) -> bool:
    version = fields.get("apiVersion")
    if isinstance(version, str) and version.startswith("audit.k8s.io/"):
        return True
    return fields.get("kind") == "Event" and ("auditID" in fields or "verb" in fields)


class OcsfEncoder:
    """Turns one container's events into OCSF entries. `unmappable` counts the records of a mapped
    kind that could not be mapped (each is also logged). In a Security Lake object, a row that is
    OCSF already is sent as it is."""

    watched: frozenset[str] = frozenset()
    """Every record is parsed in full, so the reader need flag no name."""

    def __init__(
        self, source: Source, container: Container, invoker: Invoker, settings: Settings, *, datadog: bool
    ) -> None:
        self._source = source
        self._origin = container.origin
        self._id_base = container.id_base
        self._limit = settings.entry_max_bytes
        self._account = invoker.account
        self._region = invoker.region
        self._from_eks = False
        if isinstance(container, LogBatch):  # the account that owns the log, not the forwarder's
            self._account = container.owner or invoker.account
            self._from_eks = container.log_group.startswith("/aws/eks/")
        self._lead: bytes | None = None
        if datadog:
            meta = labels(source, container, invoker, settings)
            meta["ddtags"] += ",output_format:ocsf"
            self._lead = orjson.dumps(meta)[:-1]
        self.unmappable = 0
        self._told_passthrough = False
        self._security_lake = is_security_lake(container)

    def entries(self, block: Block) -> list[Entry]:
        return [self.entry(event) for event in block.events()]

    def entry(self, raw: RawEvent) -> Entry:
        uid = event_id(raw, self._id_base)
        text = raw.message if raw.message is not None else (raw.record or b"").decode("utf-8", "replace")
        fields = raw.parse_record() if raw.record is not None else _parsed_message(text)
        written: bytes | None = None
        if self._security_lake and fields is not None and is_ocsf(fields):
            event, written = fields, raw.record  # OCSF already: as read, its own class and all
        else:
            event = self.event(raw, fields, text, uid)
        try:
            body = self._body(event, uid, written)
        except orjson.JSONEncodeError:  # nested deeper than orjson writes: the original stays as text
            event = self._base(text, uid, raw.timestamp_ms, self._unmappable(raw, "nested too deeply to write"))
            body = self._body(event, uid)
        if len(body) <= self._limit:
            return Entry(body)
        return Entry(self._shrunk(event, uid, len(body), text), True)

    def event(self, raw: RawEvent, fields: dict[str, Any] | None, text: str, uid: str) -> dict[str, Any]:
        """The OCSF object for one event (`fields`, parsed from `text` if it is a JSON object): API
        Activity, or a marked Base Event."""
        where = Where(self._account, self._region, uid, raw.timestamp_ms, self._from_eks)
        mapper = _mapper(fields) if fields is not None else None
        if mapper is None:
            if self._source.name in _MAPPED_SOURCES:
                marker = self._unmappable(raw, "not a CloudTrail record or audit event")
            else:
                marker = self._passthrough()
            return self._base(text, uid, self._own_time(fields, raw), marker)
        assert fields is not None, "a mapper is only found for a parsed record"
        try:
            event = mapper(fields, where)
        except Unmappable as exc:
            return self._base(text, uid, self._own_time(fields, raw), self._unmappable(raw, str(exc)))
        event["raw_data"] = text
        return event

    def _body(self, event: dict[str, Any], uid: str, written: bytes | None = None) -> bytes:
        """The OCSF object alone, or inside a Datadog entry beside its reserved attributes;
        `written` is the object as JSON already, when it was read so."""
        ocsf = orjson.dumps(event) if written is None else written
        if self._lead is None:
            return ocsf
        identity = orjson.dumps({"timestamp": event["time"], "forwarder": {"id": uid}})[1:-1]
        return b"".join((self._lead, b",", identity, b',"ocsf":', ocsf, b"}"))

    def _own_time(self, fields: dict[str, Any] | None, raw: RawEvent) -> int | None:
        return (field_time(fields, self._source.time_fields) if fields else None) or raw.timestamp_ms

    def _base(self, text: str, uid: str, ms: int | None, marker: dict[str, str]) -> dict[str, Any]:
        """A minimal OCSF Base Event carrying the original: for what is not, or cannot be, mapped;
        its time is the event's own, else CloudWatch's, else now."""
        return {
            "activity_id": 0,
            "activity_name": "Unknown",
            "category_uid": 0,
            "category_name": "Uncategorized",
            "class_uid": 0,
            "class_name": "Base Event",
            "type_uid": 0,
            "type_name": "Base Event: Unknown",
            **ocsf_map.INFORMATIONAL,
            **ocsf_map.timed(ms or int(time.time() * 1000)),
            "metadata": {
                "version": OCSF_VERSION,
                "product": {"name": self._source.name, "vendor_name": "AWS"},
                "profiles": list(PROFILES),
                "uid": uid,
            },
            "cloud": ocsf_map.cloud(self._account, self._region),
            "raw_data": text,
            "unmapped": marker,
        }

    def _passthrough(self) -> dict[str, str]:
        if not self._told_passthrough:
            self._told_passthrough = True
            logger.info(
                "events of this source are not mapped to OCSF: they pass as Base Events",
                extra={"source": self._source.name, "origin": self._origin},
            )
        return {MARKER: PASSTHROUGH}

    def _unmappable(self, raw: RawEvent, reason: str) -> dict[str, str]:
        self.unmappable += 1
        logger.warning(
            "record not mapped to OCSF, delivered as a marked Base Event",
            extra={"origin": self._origin, "position": raw.position, "reason": reason},
        )
        return {MARKER: UNMAPPABLE, REASON: reason}

    def _shrunk(self, event: dict[str, Any], uid: str, original_bytes: int, text: str) -> bytes:
        """An entry over the limit: without the parts `raw_data` repeats (and `raw_data` itself), or
        failing that a Base Event with the start of the original `text`. Marked truncated either way."""
        smaller = orjson.loads(orjson.dumps(event))
        for path in _BULKY:
            _drop(smaller, path)
        if not isinstance(smaller.get("unmapped"), dict):  # a Security Lake row's may be null
            smaller["unmapped"] = {}
        smaller["unmapped"].update({"forwarder.truncated": "true", "forwarder.original_bytes": str(original_bytes)})
        body = self._body(smaller, uid)
        if len(body) <= self._limit:
            return body
        head = {key: smaller[key] for key in ("time", "time_dt", "metadata", "cloud", "unmapped") if key in smaller}
        base = {**self._base("", uid, smaller["time"], {}), **head}
        return _fit_text(lambda cut: self._body({**base, "raw_data": cut}, uid), text, self._limit)


def _drop(event: dict[str, Any], path: tuple[str, ...]) -> None:
    *parents, last = path
    for key in parents:
        inner = event.get(key)
        if not isinstance(inner, dict):
            return
        event = inner
    event.pop(last, None)


def _mapper(fields: dict[str, Any]) -> Callable[[dict[str, Any], Where], dict[str, Any]] | None:
    if is_cloudtrail(fields):
        return ocsf_map.from_cloudtrail
    if is_audit(fields):
        return ocsf_audit.from_audit
    return None


def _fit_text(build: Callable[[str], bytes], text: str, limit: int) -> bytes:
    """`build(cut)` for the longest start `cut` of `text` that fits `limit`; escaping can make the
    text grow when written, so cut, measure and cut again."""
    cut = text[: max(0, limit - len(build("")) - 32)]
    while True:
        body = build(cut)
        if len(body) <= limit or not cut:
            return body
        cut = cut[: max(0, int(len(cut) * limit / len(body)) - 64)]


def _parsed_message(text: str) -> dict[str, Any] | None:
    """A text event's JSON object (an audit event, CloudTrail through CloudWatch Logs), if it is one."""
    if not text.startswith("{"):
        return None
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    return parsed if isinstance(parsed, dict) else None
