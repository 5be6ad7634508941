"""The Datadog output's transport over real HTTP on 127.0.0.1: the wire format, TLS and proxies,
answers that are not retried, what real sockets do (refused, dropped, slow, dripping) and concurrent
delivery. The retry policy, backoff, `Retry-After` and the deadline are in test_transport_retries.py."""

from __future__ import annotations

import gzip
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer, ThreadingHTTPServer

import orjson
import pytest

from forwarder.devintake import DROP, Fault, LocalIntake, Received
from forwarder.errors import ConfigError, DeliveryError, InputError
from forwarder.model import Deadline, Entry
from forwarder.outputs import Output
from forwarder.outputs.batch import Batch, json_array
from forwarder.outputs.datadog import output
from forwarder.outputs.deliver import deliver
from forwarder.outputs.http import ANSWER_MAX_CHARS, HttpTransport, compress, gzip_level
from forwarder.outputs.retry import RetryPolicy
from forwarder.settings import Settings

KEY = "test-key-0123456789abcdef"
FAST = RetryPolicy(max_attempts=4, backoff_base=0.01, backoff_cap=0.02)


class Sleeps(list[float]):
    """A fake sleep that records the waits asked for instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def deadline(seconds: float = 60.0) -> Deadline:
    return Deadline(lambda: int(seconds * 1000), margin_seconds=0.0)


def settings_for(url: str, **overrides: object) -> Settings:
    return Settings(url=url, **overrides)  # type: ignore[arg-type]


def make_batch(*messages: str, source: str = "cloudtrail") -> Batch:
    entries = [Entry(orjson.dumps({"ddsource": source, "message": message})) for message in messages]
    return Batch(entries, size=len(b"[" + b",".join(e.body for e in entries) + b"]"))


@pytest.fixture
def received() -> list[Received]:
    return []


@pytest.fixture
def intake(received: list[Received]) -> Iterator[LocalIntake]:
    with LocalIntake(api_key=KEY, on_request=received.append) as server:
        yield server


def client(url: str, sleep: Sleeps | None = None, policy: RetryPolicy = FAST, **overrides: object) -> Output:
    return output(settings_for(url, **overrides), KEY, policy=policy, sleep=Sleeps() if sleep is None else sleep)


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """A throwaway HTTP server on 127.0.0.1 with this handler; yields its intake URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api/v2/logs"
    finally:
        server.shutdown()
        server.server_close()


def answering(status: int, body: bytes, content_type: str = "application/json") -> type[BaseHTTPRequestHandler]:
    """A handler that answers every POST with this status and body, counting the requests it got."""

    class Answer(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        requests = 0

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            type(self).requests += 1
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Answer


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/api/v2/logs"


# --- wire format --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("level", "isal_level"),
    [(0, 0), (1, 1), (2, 1), (3, 1), (4, 2), (5, 2), (6, 2), (7, 3), (8, 3), (9, 3)],
)
def test_compression_level_maps_zlib_levels_onto_isal(level: int, isal_level: int) -> None:
    assert gzip_level(level) == isal_level


@pytest.mark.parametrize("level", range(10))
def test_compressed_body_is_plain_gzip(level: int) -> None:
    body = orjson.dumps([{"message": "x" * 1000, "n": i} for i in range(50)])
    assert gzip.decompress(compress(body, level)) == body


def test_compression_level_out_of_range() -> None:
    with pytest.raises(ValueError):
        gzip_level(10)


@pytest.mark.parametrize("use_compression", [True, False], ids=["gzip", "plain"])
def test_send_delivers_the_exact_entries(intake: LocalIntake, received: list[Received], use_compression: bool) -> None:
    batch = make_batch("one", "two", "three")
    with client(intake.url, use_compression=use_compression) as dd:
        dd.send(batch, deadline())
    assert intake.entries == orjson.loads(json_array(batch.entries))
    (request,) = received
    assert request.headers.get("Content-Encoding") == ("gzip" if use_compression else None)
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"] == "security-log-forwarder/0.1.0"
    assert request.body_bytes == batch.size


def test_tls_verification_is_on_unless_disabled() -> None:
    url = "https://intake.invalid/api/v2/logs"
    verify = client(url).transport._session.verify  # True, or the CA bundle REQUESTS_CA_BUNDLE names
    assert verify is True or (isinstance(verify, str) and verify)
    assert client(url, skip_ssl_validation=True).transport._session.verify is False


def test_keep_alive_reuses_one_connection(intake: LocalIntake) -> None:
    with client(intake.url) as dd:
        for i in range(3):
            dd.send(make_batch(str(i)), deadline())
    assert len(intake.entries) == 3
    assert intake.connections == 1


# --- answers that are not retried ---------------------------------------------------------------


def test_wrong_api_key_is_403_not_retried_and_the_key_never_shows(intake: LocalIntake, caplog) -> None:
    secret = "the-real-secret-key-value"
    dd = output(settings_for(intake.url), secret, policy=FAST, sleep=Sleeps())
    with caplog.at_level(logging.DEBUG), pytest.raises(DeliveryError) as failure:
        dd.send(make_batch("x"), deadline())
    assert failure.value.status == 403
    assert intake.requests == 1
    assert "not retried" in str(failure.value)
    for text in (str(failure.value), repr(failure.value), failure.value.answer, caplog.text, repr(dd)):
        assert secret not in text


class EchoKey(BaseHTTPRequestHandler):
    """An intake that quotes the API key back in its 400 answer, as a careless proxy might."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        body = f"bad request from key {self.headers['DD-API-KEY']}".encode()
        self.send_response(400)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_a_redirect_is_not_followed_so_the_key_never_leaves_for_another_host(intake: LocalIntake) -> None:
    seen_elsewhere: list[str] = []

    class Elsewhere(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen_elsewhere.append(self.headers.get("DD-API-KEY", ""))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_POST = do_GET

    other = HTTPServer(("127.0.0.1", 0), Elsewhere)
    threading.Thread(target=other.serve_forever, args=(0.05,), daemon=True).start()

    class Redirect(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.1:{other.server_address[1]}/steal")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    redirecting = HTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=redirecting.serve_forever, args=(0.05,), daemon=True).start()
    try:
        with pytest.raises(DeliveryError) as failure:
            client(f"http://127.0.0.1:{redirecting.server_address[1]}/api/v2/logs").send(make_batch("x"), deadline())
    finally:
        for server in (redirecting, other):
            server.shutdown()
            server.server_close()
    assert failure.value.status == 302 and "not followed" in failure.value.answer
    assert seen_elsewhere == []


def test_an_answer_quoting_the_key_is_redacted() -> None:
    server = HTTPServer(("127.0.0.1", 0), EchoKey)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        with pytest.raises(DeliveryError) as failure:
            client(f"http://127.0.0.1:{server.server_address[1]}/api/v2/logs").send(make_batch("x"), deadline())
    finally:
        server.shutdown()
        server.server_close()
    assert failure.value.answer == "bad request from key [redacted]"
    assert KEY not in str(failure.value)


@pytest.mark.parametrize(
    ("status", "body", "content_type"),
    [
        (200, b"<html><body>Welcome to nginx!</body></html>", "text/html"),
        (202, b"<html><body>Accepted, says the proxy</body></html>", "text/html"),
        (200, b"{}", "application/json"),
        (204, b"", "application/json"),
        (202, b"[]", "application/json"),
    ],
    ids=["200-html", "202-html", "200-json", "204-empty", "202-not-an-object"],
)
def test_a_200_html_page_is_not_the_intakes_answer(status: int, body: bytes, content_type: str) -> None:
    """A misconfigured URL answering 2xx must not count batches as delivered: only 202 and a JSON
    object, Datadog's own answer, does. The same answer would come again, so it is not retried."""
    handler = answering(status, body, content_type)
    sleeps = Sleeps()
    with serving(handler) as url, pytest.raises(DeliveryError) as failure:
        client(url, sleeps).send(make_batch("x"), deadline())
    assert failure.value.status == status
    assert "not the intake's success answer" in str(failure.value)
    assert "not retried" in str(failure.value)
    assert failure.value.answer == body.decode()
    assert (handler.requests, sleeps) == (1, [])


def test_a_wrong_answer_is_quoted_shortened_and_without_the_key() -> None:
    """A big web page is read only as far as needed and quoted shortened; a key it echoes is redacted."""
    page = f"<html>{KEY}".encode() + b"x" * 1_000_000
    with serving(answering(200, page, "text/html")) as url, pytest.raises(DeliveryError) as failure:
        client(url).send(make_batch("x"), deadline())
    assert failure.value.answer.startswith("<html>[redacted]xxx")
    assert len(failure.value.answer) <= ANSWER_MAX_CHARS
    assert len(str(failure.value)) < 1000
    assert KEY not in str(failure.value)


def test_the_local_intake_answers_as_datadog_does(intake: LocalIntake) -> None:
    """The local intake's success answer is the one the Datadog output accepts: 202 and `{}`."""
    import requests

    answer = requests.post(intake.url, data=b"[]", headers={"DD-API-KEY": KEY}, timeout=5)
    assert (answer.status_code, answer.text, answer.headers["Content-Type"]) == (202, "{}", "application/json")


def test_a_generic_intake_takes_any_2xx_as_delivered() -> None:
    """Only an output that knows its intake's answer narrows success; the transport alone takes any 2xx."""
    handler = answering(200, b"<html>ok</html>", "text/html")
    with serving(handler) as url, HttpTransport(settings_for(url), url, {}, secret=KEY) as transport:
        transport.send(b"[]", deadline())
    assert handler.requests == 1


def test_a_key_that_cannot_be_a_header_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigError) as failure:
        output(settings_for("http://127.0.0.1:9/api/v2/logs"), "secret\nvalue")
    assert "secret" not in str(failure.value)


# --- no answer, a slow answer: real sockets ------------------------------------------------------


def test_retry_after_for_real(intake: LocalIntake) -> None:
    """One real wait of a second: the default sleep honours Retry-After too."""
    intake.script([503], retry_after="1")
    started = time.monotonic()
    output(settings_for(intake.url), KEY, policy=FAST).send(make_batch("x"), deadline())
    assert 1.0 <= time.monotonic() - started < 2.0
    assert intake.requests == 2


def test_connection_refused_is_retried_then_fails() -> None:
    sleeps = Sleeps()
    with pytest.raises(DeliveryError) as failure:
        client(closed_port_url(), sleeps).send(make_batch("x"), deadline())
    assert failure.value.status is None
    assert "could not reach the intake" in str(failure.value)
    assert isinstance(failure.value.__cause__, Exception)
    assert len(sleeps) == FAST.max_attempts - 1


def test_dropped_connection_is_retried(intake: LocalIntake) -> None:
    intake.script([DROP])
    client(intake.url).send(make_batch("x"), deadline())
    assert (intake.requests, len(intake.entries)) == (2, 1)


def test_read_timeout_on_a_slow_intake_is_retried(intake: LocalIntake) -> None:
    intake.script([Fault(status=503, delay_seconds=0.6)])
    client(intake.url, http_timeout_seconds=0.2).send(make_batch("x"), deadline())
    assert intake.requests == 2
    assert len(intake.entries) == 1


def test_timeout_failure_says_no_answer(intake: LocalIntake) -> None:
    intake.delay_seconds = 0.4
    policy = RetryPolicy(max_attempts=1)
    with pytest.raises(DeliveryError, match=r"no answer from the intake within 0\.1 s"):
        client(intake.url, policy=policy, http_timeout_seconds=0.1).send(make_batch("x"), deadline())


def dripping(pause: float, where: str) -> type[BaseHTTPRequestHandler]:
    """A handler whose answer trickles in one byte every `pause` seconds: its headers (after the
    status line), or its body (after headers sent at once)."""
    head = b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 40\r\n"
    slow_head = b"X-Padding: " + b"a" * 40 + b"\r\n\r\n"

    class Drip(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            fast, slow = (head, slow_head + b" " * 40) if where == "headers" else (head + b"\r\n", b" " * 40)
            try:
                self.wfile.write(fast)
                self.wfile.flush()
                for byte in slow:
                    time.sleep(pause)
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
            except OSError:  # the client gave up: what the test wants
                pass
            self.close_connection = True

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Drip


@pytest.mark.parametrize("where", ["body", "headers"])
@pytest.mark.parametrize(("timeout", "time_left"), [(1.0, 60.0), (10.0, 1.0)], ids=["timeout", "time-left"])
def test_an_answer_dripping_one_byte_at_a_time_is_cut_at_the_request_bound(
    timeout: float, time_left: float, where: str
) -> None:
    """FORWARDER_HTTP_TIMEOUT_SECONDS (or the time left, if less) bounds the whole request, not each
    socket read: an answer trickling in a byte at a time must not hold the invocation past it."""
    with serving(dripping(0.3, where)) as url:
        started = time.monotonic()
        with pytest.raises(DeliveryError, match="no answer from the intake within") as failure:
            policy = RetryPolicy(max_attempts=1)
            client(url, policy=policy, http_timeout_seconds=timeout).send(make_batch("x"), deadline(time_left))
        took = time.monotonic() - started
    assert took < min(timeout, time_left) + 1.0, f"the request took {took:.1f} s"
    assert failure.value.status is None


# --- deliver(): concurrency, accounting, upstream errors ----------------------------------------


def test_deliver_bounds_requests_in_flight_and_batches_alive(intake: LocalIntake) -> None:
    intake.delay_seconds = 0.1
    produced = 0
    done = 0

    def source() -> Iterator[Batch]:
        nonlocal produced
        for i in range(10):
            produced += 1
            assert produced - done <= 3 + 1, "more than max_in_flight + 1 batches alive"
            yield make_batch(f"m{i}")

    with client(intake.url, max_workers=3) as dd:
        outcomes = []
        for outcome in deliver(dd.send, source(), deadline(), max_in_flight=3):
            done += 1
            outcomes.append(outcome)
    assert 2 <= intake.peak_concurrency <= 3
    assert all(error is None for _, error in outcomes)
    assert len(intake.entries) == 10


def test_deliver_yields_every_batch_exactly_once(intake: LocalIntake) -> None:
    intake.script([400, 500, 500, 500, 500])
    batches = [make_batch(f"m{i}") for i in range(12)]
    with client(intake.url) as dd:
        outcomes = list(deliver(dd.send, iter(batches), deadline(), max_in_flight=4))
    assert sorted(id(batch) for batch, _ in outcomes) == sorted(id(batch) for batch in batches)
    failed = [error for _, error in outcomes if error is not None]
    assert 1 <= len(failed) <= 2
    assert all(isinstance(error, DeliveryError) for error in failed)
    assert len(intake.entries) == 12 - len(failed)


def test_upstream_error_propagates_after_in_flight_batches_are_yielded(intake: LocalIntake) -> None:
    intake.delay_seconds = 0.2
    bad_input = InputError("s3://bucket/key", "record 3", "truncated gzip stream")

    def source() -> Iterator[Batch]:
        yield make_batch("a")
        yield make_batch("b")
        raise bad_input

    outcomes = []
    with client(intake.url) as dd, pytest.raises(InputError) as failure:
        for outcome in deliver(dd.send, source(), deadline(), max_in_flight=4):
            outcomes.append(outcome)
    assert failure.value is bad_input
    assert [error for _, error in outcomes] == [None, None]
    assert sorted(entry["message"] for entry in intake.entries) == ["a", "b"]


def test_deliver_turns_an_unexpected_send_failure_into_a_delivery_error() -> None:
    class Broken:
        def send(self, batch: Batch, deadline: Deadline) -> None:
            raise RuntimeError("bug")

    ((_, error),) = deliver(Broken().send, [make_batch("x")], deadline(), max_in_flight=1)
    assert isinstance(error, DeliveryError)
    assert "RuntimeError" in str(error)
    assert isinstance(error.__cause__, RuntimeError)


class _Recording:
    """An intake stand-in that notes which thread sent each batch, and when each send ended."""

    def __init__(self, pause: float = 0.0) -> None:
        self.pause = pause
        self.threads: set[int] = set()
        self.finished = 0
        self.lock = threading.Lock()

    def send(self, batch: Batch, deadline: Deadline) -> None:
        time.sleep(self.pause)
        with self.lock:
            self.threads.add(threading.get_ident())
            self.finished += 1


def test_deliver_keeps_its_threads_from_one_call_to_the_next() -> None:
    """A warm container reuses the delivery threads: starting them per call cost CPU per invocation."""
    recording = _Recording(pause=0.01)
    for _ in range(3):
        outcomes = list(deliver(recording.send, [make_batch(f"m{i}") for i in range(6)], deadline(), max_in_flight=2))
        assert [error for _, error in outcomes] == [None] * 6
    assert recording.finished == 18
    assert len(recording.threads) <= 2
    assert threading.get_ident() not in recording.threads


def test_deliver_closed_early_waits_for_the_sends_in_flight() -> None:
    recording = _Recording(pause=0.2)
    outcomes = deliver(recording.send, [make_batch(f"m{i}") for i in range(4)], deadline(), max_in_flight=3)
    next(outcomes)
    outcomes.close()
    assert recording.finished == 3  # the first, yielded, and the two sent alongside it: none left running


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")  # the case itself
def test_a_forked_child_delivers_with_threads_of_its_own() -> None:
    """A child has none of its parent's threads: reusing the parent's pool would wait forever."""
    list(deliver(_Recording().send, [make_batch("parent")], deadline(), max_in_flight=2))
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through its exit status only
        signal.signal(signal.SIGALRM, signal.SIG_DFL)  # not pytest-timeout's handler: die if stuck
        signal.alarm(10)
        recording = _Recording()
        outcomes = list(deliver(recording.send, [make_batch("child")], deadline(), max_in_flight=2))
        os._exit(0 if recording.finished == 1 and outcomes[0][1] is None else 1)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the child's delivery did not finish"


def test_deliver_with_nothing_to_send(intake: LocalIntake) -> None:
    assert list(deliver(client(intake.url).send, [], deadline(), max_in_flight=2)) == []
    assert intake.requests == 0


def test_deliver_needs_room_for_one_request(intake: LocalIntake) -> None:
    with pytest.raises(ValueError):
        list(deliver(client(intake.url).send, [], deadline(), max_in_flight=0))


def test_proxy_from_the_environment_is_resolved_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    session = client("https://intake.invalid/api/v2/logs").transport._session
    assert session.proxies["https"] == "http://127.0.0.1:3128"
    assert session.trust_env is False  # no environment lookups per request
    monkeypatch.setenv("NO_PROXY", "intake.invalid")
    assert "https" not in client("https://intake.invalid/api/v2/logs").transport._session.proxies
