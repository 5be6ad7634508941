"""A read-only, seekable file over S3 ranged GETs, for formats read by random access (Parquet).

A Parquet reader reads the footer at the end first, then each row group's byte range: streaming the
body from its start would hold the whole object or read it twice. Each read here is one ranged GET
of what was asked, at least `read_ahead` bytes, and the last answer is kept so that the many small
reads a reader makes of one region cost one request. Memory is one window, whatever the object's size.

Every GET is pinned to one version of the object, as `s3.open_object` pins a continuation: its
VersionId, else IfMatch with the ETag (the checkpoint's, else the one the first answer gave), so a
key overwritten between two reads is reported, never read half old and half new.
"""

from __future__ import annotations

import io
import re
from typing import Any

from forwarder.errors import InputError
from forwarder.model import S3Object
from forwarder.read.s3 import _TRANSPORT_ERRORS, Tracker, _status, describe_error

READ_AHEAD = 1 << 20
"""The least one GET asks for: a Parquet footer and a row group's column chunk headers in one request."""
_TOTAL = re.compile(r"/(\d+)$")


class RangedFile(io.RawIOBase):
    """The object as a file: `seek`, `tell` and `read` served by ranged GETs; `tracker.etag` pins them."""

    def __init__(self, s3_client: Any, obj: S3Object, tracker: Tracker, read_ahead: int = READ_AHEAD) -> None:
        super().__init__()
        self._client = s3_client
        self._obj = obj
        self._tracker = tracker
        self._read_ahead = max(1, read_ahead)
        self._position = 0
        self._size: int | None = None
        """From the first answer's Content-Range: a notification's size may be another write's."""
        self._window_start = 0
        self._window = b""
        self.requests = 0
        """GETs made, for tests of the read-ahead."""

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def size(self) -> int:
        """The object's length, from the first answer's Content-Range (a tail GET when none came yet)."""
        if self._size is None:
            self._fetch(None)
        assert self._size is not None
        return self._size

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position}.get(whence)
        position = offset + (self.size() if base is None else base)
        if position < 0:
            raise ValueError(f"negative seek position {position}")
        self._position = position
        return position

    def read(self, size: int | None = -1) -> bytes:
        end = self.size() if size is None or size < 0 else min(self.size(), self._position + size)
        if end <= self._position:
            return b""
        if not (self._window_start <= self._position and end <= self._window_start + len(self._window)):
            self._fetch(self._position, max(end - self._position, self._read_ahead))
        start = self._position - self._window_start
        data = self._window[start : start + end - self._position]
        self._position += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def _fetch(self, start: int | None, length: int = 0) -> None:
        """One ranged GET into the window: `length` bytes from `start`, or the last `read_ahead` bytes."""
        obj = self._obj
        request: dict[str, Any] = {"Bucket": obj.bucket, "Key": obj.key}
        request["Range"] = f"bytes=-{self._read_ahead}" if start is None else f"bytes={start}-{start + length - 1}"
        etag = self._tracker.etag
        if obj.version_id:
            request["VersionId"] = obj.version_id
        elif etag:
            request["IfMatch"] = etag
        where = "the footer" if start is None else f"byte {start}"
        self.requests += 1
        try:
            response = self._client.get_object(**request)
            body = response["Body"]
            try:
                data = body.read()
            finally:
                body.close()
        except _TRANSPORT_ERRORS as exc:
            if _status(exc) == 412:
                raise InputError(
                    obj.origin, where, f"the object was replaced while it was being read (its ETag is no longer {etag})"
                ) from exc
            raise InputError(obj.origin, where, describe_error(exc)) from exc
        if self._tracker.etag is None:
            self._tracker.etag = response.get("ETag")
        total = _TOTAL.search(response.get("ContentRange") or "")
        if total is not None:
            self._size = int(total.group(1))
        elif self._size is None:
            self._size = len(data)  # no Content-Range: the answer is the whole object
        self._window_start = self._size - len(data) if start is None else start
        self._window = data
