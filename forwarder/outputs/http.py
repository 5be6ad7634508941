"""The HTTP transport: one keep-alive session, compression, retries, `Retry-After`, the deadline.

It knows nothing of the wire format: an output hands it request bodies, the headers its intake
needs and, if it knows it, what its intake's success answer looks like (`accepts`; any 2xx
otherwise). Timeouts, 408, 429 and 5xx are worth retrying; any other 4xx (bad payload, bad key, too
large) would fail again, so it fails at once, and so does a 2xx that is not the intake's success
answer (a misconfigured URL answering with a web page would answer the same again). Retries never
outlive the invocation: the Lambda deadline bounds every wait and request.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.cookiejar import DefaultCookiePolicy
from types import TracebackType
from urllib.parse import urlsplit

import requests
import urllib3
from isal import igzip
from requests.structures import CaseInsensitiveDict
from urllib3.util import Timeout

from forwarder import logs
from forwarder.errors import ConfigError, DeliveryError
from forwarder.metrics import TransportStats
from forwarder.model import Deadline
from forwarder.outputs.clocked import ClockedAdapter, request_clock
from forwarder.outputs.retry import RetryPolicy
from forwarder.settings import Settings

logger = logs.logger()

ANSWER_MAX_CHARS = 1000
ANSWER_READ_BYTES = 4 * ANSWER_MAX_CHARS
"""The most of an answer's body read: enough to judge it and to quote ANSWER_MAX_CHARS of it."""
_REDIRECTS = frozenset({301, 302, 303, 307, 308})

Accepts = Callable[[int, Mapping[str, str], str], bool]
"""Whether a 2xx answer (status, headers, body text) is the intake's success answer."""


def any_2xx(status: int, headers: Mapping[str, str], text: str) -> bool:
    """The success test for an intake the transport knows nothing more of."""
    return 200 <= status < 300


def gzip_level(compression_level: int) -> int:
    """Map DD_COMPRESSION_LEVEL (zlib's 0-9) onto ISA-L's 0-3: 0 → 0, 1-3 → 1, 4-6 → 2, 7-9 → 3.

    ISA-L has no "stored" mode, so 0 is its fastest real compression rather than none; zlib's
    default 6 lands on ISA-L's trade-off level 2, and 9 on its best, 3.
    """
    if not 0 <= compression_level <= 9:
        raise ValueError(f"compression level must be between 0 and 9, got {compression_level}")
    return (compression_level + 2) // 3


def compress(body: bytes, compression_level: int) -> bytes:
    """Plain single-member gzip (RFC 1952), as `Content-Encoding: gzip` promises."""
    return igzip.compress(body, gzip_level(compression_level))


@dataclass(frozen=True, slots=True)
class Answer:
    """The intake's answer to one POST: its status, its headers (looked up in any case) and the
    start of its body (ANSWER_READ_BYTES at most, as UTF-8)."""

    status: int
    headers: Mapping[str, str]
    text: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "headers", CaseInsensitiveDict(self.headers))


Exchange = Callable[[bytes, float], Answer]
"""One attempt: POST this payload and return the answer within so many seconds, or raise
DeliveryError when no answer came. The real one is HTTP; tests of the retry logic script one."""


class HttpTransport:
    """A keep-alive client for one intake URL, shared by the delivery threads.

    The threads share one session's connection pool (urllib3's pool is thread-safe); the session
    keeps no cookies, the one piece of per-response state it would otherwise update.
    `exchange` replaces the HTTP attempt itself, so retries and timing can be tested without sockets.
    TLS certificates are verified unless DD_SKIP_SSL_VALIDATION is set. Redirects are not followed:
    requests would turn the POST into a body-less GET and carry the DD-API-KEY header to another
    host. The `secret` (the API key) lives only in the session's headers: it is never part of an
    error, a log line or this object's repr, and is redacted from any answer that quotes it.
    """

    def __init__(
        self,
        settings: Settings,
        url: str,
        headers: dict[str, str],
        *,
        secret: str,
        policy: RetryPolicy | None = None,
        accepts: Accepts = any_2xx,
        exchange: Exchange | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rand: Callable[[], float] = random.random,
        now: Callable[[], float] = time.time,
    ) -> None:
        if secret:  # an intake that asks for no secret has none to check or redact
            _check_secret(secret)
        self.url = url
        self.policy = policy or RetryPolicy(max_attempts=settings.max_attempts)
        self._timeout = settings.http_timeout_seconds
        self._accepts = accepts
        self._exchange = exchange or self._post_over_http
        self._compression_level = settings.compression_level if settings.use_compression else None
        self._sleep = sleep
        self._rand = rand
        self._now = now
        self._redact = _redactor(secret)
        self._session = _session(settings, url, headers)

    def __enter__(self) -> HttpTransport:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._session.close()

    def encode(self, body: bytes) -> bytes:
        """The request body as sent: compressed when compression is on."""
        return body if self._compression_level is None else compress(body, self._compression_level)

    def send(self, body: bytes, deadline: Deadline, stats: TransportStats | None = None) -> None:
        """Deliver one request body, retrying what is worth retrying; raise DeliveryError when it cannot.

        `stats`, when given, counts each attempt: its request bytes, its latency, whether it was a retry.
        """
        payload = self.encode(body)
        for attempt in itertools.count(1):
            left = deadline.seconds_left()
            if left <= 0:
                raise DeliveryError("no time left before the invocation's deadline to send the batch")
            started = time.monotonic()
            try:
                answer = self._post(payload, left)
            except DeliveryError as failure:
                if stats is not None:
                    stats.count_request(len(payload), (time.monotonic() - started) * 1000, attempt > 1)
                self._before_retry(failure, attempt, None, deadline)
                continue
            if stats is not None:
                stats.count_request(len(payload), (time.monotonic() - started) * 1000, attempt > 1)
            if 200 <= answer.status < 300:
                if self._accepts(answer.status, answer.headers, answer.text):
                    return
                raise _final(self._not_success(answer), "not retried")
            self._before_retry(self._rejection(answer), attempt, answer.headers.get("Retry-After"), deadline)

    def _before_retry(self, failure: DeliveryError, attempt: int, retry_after: str | None, deadline: Deadline) -> None:
        """Wait before the next attempt, or raise the final DeliveryError when there should be none."""
        if not self.policy.retryable(failure.status):
            raise _final(failure, "not retried")
        if attempt >= self.policy.max_attempts:
            raise _final(failure, f"gave up after {attempt} attempts")
        pause = self.policy.delay(attempt, retry_after, self._rand, self._now)
        if pause >= deadline.seconds_left():
            raise _final(failure, f"gave up after {attempt} attempts: waiting {pause:.1f} s would pass the deadline")
        logger.warning(
            "intake delivery attempt failed, retrying",
            extra={"attempt": attempt, "wait_seconds": round(pause, 3), "reason": str(failure)},
        )
        self._sleep(pause)

    def _post(self, payload: bytes, left: float) -> Answer:
        """One attempt, bounded by the request timeout and the time left, whichever is less."""
        return self._exchange(payload, max(0.001, min(self._timeout, left)))

    def _post_over_http(self, payload: bytes, seconds: float) -> Answer:
        """One POST and its answer within `seconds`; DeliveryError when no whole answer came.

        A socket timeout applies to each read afresh, so urllib3's `total` does not bound an answer
        trickling in a byte at a time: it held requests for as long as it trickled. The connection
        reads the answer, headers and body, through a `_ClockedReader` that stops `seconds` after
        the start; the connect and the send keep urllib3's timeout. The body is read only as far as
        judging the answer needs.
        """
        timeout = Timeout(connect=seconds, read=seconds, total=seconds)
        request_clock.ends = time.monotonic() + seconds
        try:
            response = self._session.post(self.url, data=payload, timeout=timeout, allow_redirects=False, stream=True)  # type: ignore[arg-type]
        except requests.Timeout as exc:
            raise _no_answer(seconds, exc) from exc
        except requests.RequestException as exc:
            raise DeliveryError(f"could not reach the intake at {_host(self.url)} ({type(exc).__name__})") from exc
        finally:
            request_clock.ends = None
        try:
            body = _read_answer(response, seconds)
        finally:
            response.close()  # a body left unread closes the connection; one read to its end is kept
        return Answer(response.status_code, response.headers, body.decode("utf-8", "replace"))

    def _not_success(self, answer: Answer) -> DeliveryError:
        reason = (
            f"the intake answered {answer.status}, which is not the intake's success answer (a wrong URL or a proxy?)"
        )
        return DeliveryError(reason, answer.status, self._redact(answer.text[:ANSWER_MAX_CHARS]))

    def _rejection(self, answer: Answer) -> DeliveryError:
        text = self._redact(answer.text[:ANSWER_MAX_CHARS])
        location = answer.headers.get("Location")
        if answer.status in _REDIRECTS and location is not None:
            text = f"redirect to {_host(location)} not followed; {text}"
        return DeliveryError(f"the intake answered {answer.status}", answer.status, text)


def _read_answer(response: requests.Response, seconds: float) -> bytes:
    """The answer's body, up to ANSWER_READ_BYTES: enough to judge it and to quote it. Each read
    returns what has arrived; the connection's `_ClockedReader` ends them when the time is up."""
    raw = response.raw
    chunks: list[bytes] = []
    size = 0
    while size < ANSWER_READ_BYTES:
        try:
            chunk = raw.read1(ANSWER_READ_BYTES - size, decode_content=True)
        except (urllib3.exceptions.TimeoutError, TimeoutError) as exc:
            raise _no_answer(seconds, exc) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise DeliveryError(f"the intake's answer broke off ({type(exc).__name__})") from exc
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _no_answer(seconds: float, exc: BaseException | None = None) -> DeliveryError:
    how = f" ({type(exc).__name__})" if exc is not None else ""
    return DeliveryError(f"no answer from the intake within {seconds:.1f} s{how}")


def _session(settings: Settings, url: str, headers: dict[str, str]) -> requests.Session:
    session = requests.Session()
    adapter = ClockedAdapter(pool_connections=1, pool_maxsize=settings.max_workers, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.verify = not settings.skip_ssl_validation
    session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
    session.headers.update(
        {
            **headers,
            "Content-Type": "application/json",
            "User-Agent": f"security-log-forwarder/{settings.version}",
        }
    )
    if settings.use_compression:
        session.headers["Content-Encoding"] = "gzip"
    # Proxies and the CA bundle named in the environment, resolved once: with `trust_env` requests
    # looks them up (and for a .netrc file) on every request, a fifth of its own CPU per request.
    found = session.merge_environment_settings(url, {}, None, session.verify, None)
    session.proxies.update(found["proxies"])
    session.verify = found["verify"]
    session.trust_env = False
    return session


def _check_secret(secret: str) -> None:
    """Reject a key requests would refuse as a header, before requests echoes it in its error."""
    if not secret or not secret.isascii() or not secret.isprintable() or any(c.isspace() for c in secret):
        raise ConfigError("the API key is empty or has characters not allowed in an HTTP header")


def _redactor(secret: str) -> Callable[[str], str]:
    if not secret:
        return lambda text: text
    return lambda text: text.replace(secret, "[redacted]")


def _host(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


def _final(failure: DeliveryError, how: str) -> DeliveryError:
    """The error `send` raises: the last failure, saying why it was the last; chained to its cause."""
    error = DeliveryError(f"{failure.reason}; {how}", failure.status, failure.answer)
    error.__cause__ = failure.__cause__
    return error
