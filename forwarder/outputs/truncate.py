"""An entry over the intake's per-entry limit, cut down rather than dropped.

The truncated entry keeps the metadata, the record's small top-level fields (so rules on
`eventName`, `userIdentity`... still match), the start of the original text as `message`, and the
marker the encoder gives (`truncated: true`, `original_bytes`). When those do not all fit, the
entry keeps less (`truncated_entry`), but it is always a valid entry within the limit.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import msgspec
import orjson

from forwarder.model import RawEvent

SMALL_FIELD_BYTES = 1024
MAX_ID_BYTES = 256
"""An id longer than this as JSON is replaced by its hash in an entry that does not fit whole."""


_decode_members = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode
"""A record's top-level members as slices of its bytes: their values are checked, never built."""


def top_level_fields(record: bytes | None) -> dict[str, Any]:
    """The record's top-level fields whose values are small enough to keep, parsed; the others are
    never built, so a record of millions of nested values costs no more memory than its bytes."""
    if record is None:
        return {}
    try:
        members = _decode_members(record)
    except (msgspec.DecodeError, RecursionError):
        return {}
    # A value's bytes bound its size as JSON from above, give or take its whitespace.
    kept = {}
    for key, value in members.items():
        view = memoryview(value)
        if len(view) <= 8 * SMALL_FIELD_BYTES:
            try:
                kept[key] = orjson.loads(view)
            except orjson.JSONDecodeError:  # a value only a full parse refuses (a number past the double range)
                continue
    return kept


def truncated_entry(
    meta: dict[str, Any],
    fields: dict[str, Any],
    raw: RawEvent,
    timestamp: int | None,
    marker: dict[str, Any],
    reserved: frozenset[str],
    limit: int,
) -> bytes:
    """The entry for `raw` within `limit` bytes: valid JSON that carries `marker`, never empty.

    What it keeps gives way in turn until it fits: an id over `MAX_ID_BYTES` (hashed, `id_hashed` in
    the marker); then the small `fields`; then the metadata's members, largest first. An empty entry
    would make the whole batch invalid JSON, which the intake refuses for every event in it.
    """
    stamp = {} if timestamp is None else {"timestamp": timestamp}
    small = {
        key: value
        for key, value in fields.items()
        if key not in reserved and len(key) + _serialised_size(value) <= SMALL_FIELD_BYTES
    }
    # Only a prefix of the text can fit: an event of millions of characters is never copied whole.
    text = raw.message if raw.message is not None else (raw.record or b"")[:limit].decode("utf-8", "replace")
    text = text[:limit]
    for head in _heads({**meta, **stamp}, small, marker):
        body = _fit_message(head, text, limit)
        if body:
            return body
    raise ValueError(f"an entry limit of {limit} bytes cannot hold the truncation marker")


def _heads(meta: dict[str, Any], small: dict[str, Any], marker: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """What a truncated entry keeps besides its message, from the most to the least."""
    yield {**meta, **small, "forwarder": marker}
    own_id = marker.get("id")
    if isinstance(own_id, str) and _serialised_size(own_id) > MAX_ID_BYTES:
        hashed = hashlib.blake2b(own_id.encode(), digest_size=16).hexdigest()
        marker = {**marker, "id": hashed, "id_hashed": True}
        yield {**meta, **small, "forwarder": marker}
    yield {**meta, "forwarder": marker}
    kept = dict(meta)
    for name in sorted(kept, key=lambda name: _serialised_size(kept[name]), reverse=True):
        del kept[name]
        yield {**kept, "forwarder": marker}


def _serialised_size(value: Any) -> float:
    """Bytes of `value` as JSON; infinite when orjson cannot write it (nested past 255 levels)."""
    try:
        return len(orjson.dumps(value))
    except orjson.JSONEncodeError:
        return float("inf")


def _fit_message(head: dict[str, Any], text: str, limit: int) -> bytes:
    """The longest prefix of `text` whose entry fits `limit` (b"" if `head` alone does not fit).

    JSON escaping and UTF-8 can make the text grow when serialised, so cut, measure and cut again.
    """
    cut = text[: max(0, limit - len(orjson.dumps(head)) - 32)]
    while True:
        body = orjson.dumps({**head, "message": cut})
        if len(body) <= limit:
            return body
        if not cut:
            return b""
        cut = cut[: max(0, int(len(cut) * limit / len(body)) - 64)]
