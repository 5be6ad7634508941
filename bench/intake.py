"""The counting intake, its own process: `python -m bench.intake PORTFILE` serves on 127.0.0.1 and writes its port.

It gunzips and parses every request, like Datadog, and counts the entries, so the bench can check
that exactly the events generated arrived. `counts` is the bench's side of it.
"""

from __future__ import annotations

import http.server
import sys
import threading
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import simdjson
from isal import isal_zlib

from bench import API_KEY, DATADOG_API_KEY


class CountingHandler(http.server.BaseHTTPRequestHandler):
    """Gunzips and parses every request, like Datadog, and counts the entries; GET /count reads them.

    `GET /reset?decode=0` zeroes the counts and switches to reading and answering only (requests are
    still counted, entries are not); `/reset` switches decoding back on. `/api/v1/validate` answers
    the key check the Datadog Forwarder makes when it is imported.
    """

    protocol_version = "HTTP/1.1"
    # The answer's headers and body are two writes: with Nagle on, the body waits for the client's
    # delayed ACK (40 ms on Linux), a stall per request that Datadog's intake does not have.
    disable_nagle_algorithm = True
    counts: dict[str, int] = {"entries": 0, "requests": 0, "rejected": 0}  # noqa: RUF012
    decode = True
    lock = threading.Lock()

    def do_POST(self) -> None:
        wire = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            if self.headers.get("DD-API-KEY") not in (API_KEY, DATADOG_API_KEY):
                raise ValueError("bad API key")
            if not self.decode:
                with self.lock:
                    self.counts["requests"] += 1
                self._answer(202, b"{}")
                return
            # ISA-L, as the forwarder uses: the intake shares the 2 cores, and zlib would take 4x its CPU
            body = isal_zlib.decompress(wire, 31) if self.headers.get("Content-Encoding") == "gzip" else wire
            entries = entry_count(body)
        except (ValueError, isal_zlib.error):  # type: ignore[misc]  # isal types its error oddly
            with self.lock:
                self.counts["rejected"] += 1
            self._answer(400, b'{"errors":["bad request"]}')
            return
        with self.lock:
            self.counts["entries"] += entries
            self.counts["requests"] += 1
        self._answer(202, b"{}")

    def do_GET(self) -> None:
        if self.path.startswith("/api/v1/validate"):
            self._answer(200, b'{"valid":true}')
            return
        with self.lock:
            body = orjson.dumps(self.counts)
            if self.path.startswith("/reset"):
                self.counts.update(entries=0, requests=0, rejected=0)
                type(self).decode = self.path != "/reset?decode=0"
        self._answer(200, body)

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


_parsers = threading.local()


def entry_count(body: bytes) -> int:
    """How many entries `body` holds; ValueError unless it is a JSON array of objects.

    simdjson parses the whole body (structure, UTF-8, numbers) without building Python objects:
    orjson building every entry took about 6 ms of the shared CPU per 1.8 MB request, 9 times more,
    and a real intake's decoding does not run on the forwarder's cores. What simdjson refuses
    (integers past 64 bits, which the forwarder passes on as orjson does) orjson decides, as in
    `model.read_head`.
    """
    parser = getattr(_parsers, "parser", None)
    if parser is None:
        parser = _parsers.parser = simdjson.Parser()
    try:
        entries = parser.parse(body)
    except (ValueError, RuntimeError):
        parsed = orjson.loads(body)
        if not isinstance(parsed, list) or not all(isinstance(entry, dict) for entry in parsed):
            raise ValueError("not a JSON array of objects") from None
        return len(parsed)
    try:
        if not isinstance(entries, simdjson.Array) or not all(isinstance(entry, simdjson.Object) for entry in entries):
            raise ValueError("not a JSON array of objects")
        return len(entries)
    finally:
        del entries  # the parser refuses another document while a result of it is alive


def serve(port_file: str) -> None:
    from forwarder import memory

    memory.keep_freed_memory()  # it gunzips megabyte bodies too: less of the shared CPU spent on faults
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), CountingHandler)
    server.daemon_threads = True
    Path(port_file).write_text(str(server.server_address[1]))
    server.serve_forever()


def counts(port: str, reset: bool = False, decode: bool = True) -> dict[str, int]:
    """The intake's counts since its last reset; `reset` zeroes them and sets whether it decodes from now on."""
    path = ("reset" if decode else "reset?decode=0") if reset else "count"
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/{path}", timeout=10) as answer:
        found: dict[str, int] = orjson.loads(answer.read())
        return found


if __name__ == "__main__":
    serve(sys.argv[1])
