"""An entry over the intake's per-entry limit, cut down rather than dropped.

The truncated entry keeps the metadata, the record's small top-level fields (so rules on
`eventName`, `userIdentity`... still match), the start of the original text as `message`, and the
marker the encoder gives (`truncated: true`, `original_bytes`).
"""

from __future__ import annotations

from typing import Any

import orjson

from forwarder.model import RawEvent

SMALL_FIELD_BYTES = 1024


def truncated_entry(
    meta: dict[str, Any],
    fields: dict[str, Any],
    raw: RawEvent,
    timestamp: int | None,
    marker: dict[str, Any],
    reserved: frozenset[str],
    limit: int,
) -> bytes:
    """The entry for `raw` within `limit` bytes, its small `fields` kept beside `meta`."""
    head = dict(meta)
    if timestamp is not None:
        head["timestamp"] = timestamp
    for key, value in fields.items():
        if key not in reserved and _serialised_size(value) <= SMALL_FIELD_BYTES:
            head[key] = value
    text = raw.message if raw.message is not None else (raw.record or b"").decode("utf-8", "replace")
    return _fit_message({**head, "forwarder": marker}, text, limit) or _fit_message(
        {**meta, "forwarder": marker}, text, limit
    )


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
