"""A local stand-in for the Datadog Logs API v2 intake, for tests, the demo and `forwarder intake`.

It checks what Datadog checks (the API key, the encoding, the per-request limits) and answers as
Datadog does (202 `{}`), so a forwarder that passes against it sends requests Datadog accepts. It is
stricter in one place on purpose: Datadog truncates a log above 1 MB and accepts it, while this intake
rejects the request (413), because the forwarder is meant to truncate entries itself.

Faults can be scripted for tests: answer the next requests with given statuses, a `Retry-After`,
after a delay, or by dropping the connection without an answer.

It also answers Datadog's key validation (`GET /api/v1/validate`, which `forwarder check` asks):
200 `{"valid": true}` for its key, 403 otherwise. Those requests are not log requests and are not
counted or scripted.
"""

from __future__ import annotations

import hmac
import threading
import time
import zlib
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import IO, Any
from urllib.parse import urlsplit

import orjson

PATH = "/api/v2/logs"
VALIDATE_PATH = "/api/v1/validate"
MAX_ENTRIES = 1000
MAX_BODY_BYTES = 5_000_000
MAX_ENTRY_BYTES = 1_000_000
_WBITS = {"gzip": 31, "x-gzip": 31, "deflate": 15}


@dataclass(frozen=True, slots=True)
class Fault:
    """How to answer one request instead of normally.

    `status` answers with that status (None: check and accept the request as usual, after the
    delay); `drop` closes the connection without any answer, after reading the request.
    """

    status: int | None = None
    retry_after: str | None = None
    delay_seconds: float = 0.0
    drop: bool = False


DROP = Fault(drop=True)


@dataclass(frozen=True, slots=True)
class Received:
    """One request as the intake saw it: what `serve` prints and `on_request` callbacks get.

    `headers` are the request's, less the API key: it is checked, never kept.
    """

    status: int
    wire_bytes: int
    headers: dict[str, str] = field(default_factory=dict)
    body_bytes: int = 0
    sources: Counter[str] = field(default_factory=Counter)
    reason: str = ""

    @property
    def entries(self) -> int:
        return sum(self.sources.values())


class _Rejection(Exception):
    def __init__(self, status: HTTPStatus, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class LocalIntake:
    """A Datadog-compatible intake on a background thread; use it as a context manager.

    `port=0` picks a free port; `url` is then the full intake URL. `entries` are the accepted log
    objects in arrival order; `requests` counts every request, `rejected` the non-2xx answers,
    `connections` the TCP connections accepted and `peak_concurrency` the most requests handled at once.
    """

    def __init__(
        self,
        api_key: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        out_path: str | Path | None = None,
        delay_seconds: float = 0.0,
        on_request: Callable[[Received], None] | None = None,
    ) -> None:
        self.api_key = api_key
        self.delay_seconds = delay_seconds
        self.requests = 0
        self.rejected = 0
        self.connections = 0
        self.peak_concurrency = 0
        self._on_request = on_request
        self._out_path = Path(out_path) if out_path is not None else None
        self._out: IO[bytes] | None = None
        self._entries: list[dict[str, Any]] = []
        self._faults: deque[Fault] = deque()
        self._in_flight = 0
        self._changed = threading.Condition()
        self._server = ThreadingHTTPServer((host, port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{PATH}"

    @property
    def validate_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{VALIDATE_PATH}"

    @property
    def entries(self) -> list[dict[str, Any]]:
        with self._changed:
            return list(self._entries)

    def script(self, faults: Iterable[int | Fault], retry_after: str | None = None) -> None:
        """Answer the next requests with these statuses or faults, in order, then normally again.

        A bare status is sent with `retry_after` as its `Retry-After` header, when given.
        """
        with self._changed:
            for fault in faults:
                self._faults.append(fault if isinstance(fault, Fault) else Fault(fault, retry_after))

    def wait_for(self, count: int, timeout: float) -> bool:
        """Wait until at least `count` entries were accepted; False if `timeout` seconds pass first."""
        with self._changed:
            return self._changed.wait_for(lambda: len(self._entries) >= count, timeout)

    def start(self) -> LocalIntake:
        if self._out_path is not None:
            self._out = self._out_path.open("ab")
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="local-intake", daemon=True
        )  # a short poll interval makes stop() quick: tests start and stop many intakes
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()
        if self._out is not None:
            self._out.close()
            self._out = None

    def __enter__(self) -> LocalIntake:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _connected(self) -> None:
        with self._changed:
            self.connections += 1

    def _begin(self) -> Fault | None:
        with self._changed:
            self.requests += 1
            self._in_flight += 1
            self.peak_concurrency = max(self.peak_concurrency, self._in_flight)
            return self._faults.popleft() if self._faults else None

    def _end(self, received: Received, entries: list[dict[str, Any]]) -> None:
        with self._changed:
            self._in_flight -= 1
            if received.status >= 300:
                self.rejected += 1
            self._entries.extend(entries)
            if self._out is not None and entries:
                self._out.write(b"".join(orjson.dumps(entry) + b"\n" for entry in entries))
                self._out.flush()
            self._changed.notify_all()
        if self._on_request is not None:
            self._on_request(received)

    def _accept(self, headers: Any, wire: bytes) -> tuple[int, list[dict[str, Any]]]:
        """The uncompressed size and the log entries, or _Rejection with the status Datadog would answer."""
        if not self._key_matches(headers):
            raise _Rejection(HTTPStatus.FORBIDDEN, "missing or invalid API key")
        body = _decode(wire, headers.get("Content-Encoding", ""))
        return len(body), _parse(body)

    def _key_matches(self, headers: Any) -> bool:
        return hmac.compare_digest(headers.get("DD-API-KEY", "").encode(), self.api_key.encode())


def _decode(wire: bytes, encoding: str) -> bytes:
    """Undo Content-Encoding, refusing to inflate past the payload limit (a zip bomb stays small)."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        body = wire
    elif encoding in _WBITS:
        inflater = zlib.decompressobj(_WBITS[encoding])
        try:
            body = inflater.decompress(wire, MAX_BODY_BYTES + 1)
        except zlib.error as exc:
            raise _Rejection(HTTPStatus.BAD_REQUEST, f"body is not valid {encoding}: {exc}") from exc
        if len(body) <= MAX_BODY_BYTES and not inflater.eof:
            raise _Rejection(HTTPStatus.BAD_REQUEST, f"{encoding} body is truncated")
    else:
        raise _Rejection(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, f"unsupported Content-Encoding {encoding!r}")
    if len(body) > MAX_BODY_BYTES:
        raise _Rejection(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"payload above {MAX_BODY_BYTES} bytes uncompressed")
    return body


def _parse(body: bytes) -> list[dict[str, Any]]:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise _Rejection(HTTPStatus.BAD_REQUEST, f"body is not JSON: {exc}") from exc
    entries = value if isinstance(value, list) else [value]
    if len(entries) > MAX_ENTRIES:
        raise _Rejection(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"{len(entries)} entries, above {MAX_ENTRIES}")
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise _Rejection(HTTPStatus.BAD_REQUEST, f"entry {index} is not a JSON object")
        size = len(orjson.dumps(entry))
        if size > MAX_ENTRY_BYTES:
            reason = f"entry {index} is {size} bytes, above {MAX_ENTRY_BYTES}"
            raise _Rejection(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, reason)
    return entries


def _sources(entries: list[dict[str, Any]]) -> Counter[str]:
    return Counter(str(entry.get("ddsource", "-")) for entry in entries)


def _handler_for(intake: LocalIntake) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the forwarder's session expects
        server_version = "local-intake"
        # Headers and body are two writes: with Nagle on, the body waits for the client's delayed ACK
        # (40 ms per request on Linux), a stall Datadog's intake does not have.
        disable_nagle_algorithm = True

        def setup(self) -> None:
            super().setup()
            intake._connected()

        def do_POST(self) -> None:
            wire = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            fault = intake._begin()
            headers = {name: value for name, value in self.headers.items() if name.lower() != "dd-api-key"}
            received = Received(HTTPStatus.INTERNAL_SERVER_ERROR, len(wire), headers, reason="local intake failed")
            entries: list[dict[str, Any]] = []
            try:
                time.sleep(intake.delay_seconds + (fault.delay_seconds if fault else 0.0))
                received, entries = self._outcome(fault, wire, headers)
            finally:  # recorded before answering, so a client that got 202 finds its entries here
                intake._end(received, entries)
            if fault is not None and fault.drop:
                self.close_connection = True
            elif received.status == HTTPStatus.ACCEPTED:
                self._answer(received.status, b"{}")
            else:
                retry_after = fault.retry_after if fault is not None else None
                self._answer(received.status, _error(received.status, received.reason), retry_after)

        def _outcome(
            self, fault: Fault | None, wire: bytes, headers: dict[str, str]
        ) -> tuple[Received, list[dict[str, Any]]]:
            if fault is not None and fault.drop:
                return Received(0, len(wire), headers, reason="dropped the connection"), []
            if fault is not None and fault.status is not None:
                return Received(fault.status, len(wire), headers, reason="scripted"), []
            if urlsplit(self.path).path != PATH:
                return Received(HTTPStatus.NOT_FOUND, len(wire), headers, reason=f"no such path; use {PATH}"), []
            try:
                body_bytes, entries = intake._accept(self.headers, wire)
            except _Rejection as rejection:
                return Received(rejection.status, len(wire), headers, reason=rejection.reason), []
            return Received(HTTPStatus.ACCEPTED, len(wire), headers, body_bytes, _sources(entries)), entries

        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            if path == PATH:
                self._answer(HTTPStatus.METHOD_NOT_ALLOWED, _error(HTTPStatus.METHOD_NOT_ALLOWED, "POST logs here"))
            elif path != VALIDATE_PATH:
                self._answer(HTTPStatus.NOT_FOUND, _error(HTTPStatus.NOT_FOUND, f"no such path; use {PATH}"))
            elif intake._key_matches(self.headers):
                self._answer(HTTPStatus.OK, b'{"valid":true}')
            else:  # Datadog's own answer to an unknown key
                self._answer(HTTPStatus.FORBIDDEN, b'{"errors":["Forbidden"]}')

        def _answer(self, status: int, body: bytes, retry_after: str | None = None) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                if retry_after is not None:
                    self.send_header("Retry-After", retry_after)
                self.end_headers()
                self.wfile.write(body)
            except ConnectionError:  # the client timed out and left: nobody to answer
                self.close_connection = True

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: `serve` prints its own line per request and tests want clean output."""

    return Handler


def _error(status: int, detail: str) -> bytes:
    """An error body shaped like Datadog's."""
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    return orjson.dumps({"errors": [{"status": str(status), "title": title, "detail": detail}]})


def serve(host: str, port: int, api_key: str, out_path: str | None) -> None:
    """Run a local intake in the foreground until Ctrl-C, printing one line per request."""
    with LocalIntake(api_key, host=host, port=port, out_path=out_path, on_request=_print) as intake:
        target = f", appending entries to {out_path}" if out_path else ""
        print(f"local intake listening on {intake.url}{target} (Ctrl-C to stop)", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            print(f"stopped after {intake.requests} requests, {len(intake.entries)} entries", flush=True)


def _print(received: Received) -> None:
    if received.status == HTTPStatus.ACCEPTED:
        sources = " ".join(f"{source}={count}" for source, count in sorted(received.sources.items()))
        print(
            f"{received.status} entries={received.entries} bytes={received.wire_bytes} "
            f"uncompressed={received.body_bytes} {sources}",
            flush=True,
        )
    else:
        print(f"{received.status or '---'} rejected: {received.reason} bytes={received.wire_bytes}", flush=True)
