"""The transport's retry policy, backoff, `Retry-After`, attempts and the deadline, against a scripted
exchange and a fake clock: no sockets and no real waiting. Real HTTP behaviour is in test_intake.py."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from forwarder.errors import DeliveryError
from forwarder.model import Deadline
from forwarder.outputs.datadog import transport
from forwarder.outputs.http import Answer, HttpTransport
from forwarder.outputs.retry import RetryPolicy, parse_retry_after
from forwarder.settings import Settings

KEY = "test-key-0123456789abcdef"
URL = "https://intake.invalid/api/v2/logs"
FAST = RetryPolicy(max_attempts=4, backoff_base=0.01, backoff_cap=0.02)
ACCEPTED = Answer(202, {"Content-Type": "application/json"}, "{}")


def answer(status: int, retry_after: str | None = None, text: str = "") -> Answer:
    headers = {"Content-Type": "application/json"}
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    return Answer(status, headers, text or f'{{"errors":[{{"status":"{status}"}}]}}')


def no_answer() -> DeliveryError:
    return DeliveryError("could not reach the intake at https://intake.invalid (ConnectionError)")


class Clock:
    """A fake clock: `sleep` moves it on instead of waiting, and notes each wait."""

    def __init__(self) -> None:
        self.now = 1_000_000.0
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def deadline(self, seconds: float) -> Deadline:
        """A deadline `seconds` from now on this clock, with no margin."""
        end = self.now + seconds
        return Deadline(lambda: round((end - self.now) * 1000), margin_seconds=0.0)


class Exchange:
    """A scripted exchange: each attempt gets the next answer, or raises the next error (no answer).

    It notes the time bound each attempt was given; `takes` seconds pass on the clock per attempt.
    """

    def __init__(self, clock: Clock, *outcomes: Answer | DeliveryError, takes: float = 0.0) -> None:
        self.clock = clock
        self.outcomes = list(outcomes)
        self.takes = takes
        self.bounds: list[float] = []

    @property
    def attempts(self) -> int:
        return len(self.bounds)

    def __call__(self, payload: bytes, seconds: float) -> Answer:
        assert self.outcomes, "more attempts than the script has answers"
        self.bounds.append(seconds)
        self.clock.now += min(self.takes, seconds)
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, DeliveryError):
            raise outcome
        return outcome


@pytest.fixture
def clock() -> Clock:
    return Clock()


def datadog(
    clock: Clock, exchange: Exchange, policy: RetryPolicy | None = FAST, rand: float = 0.5, **overrides: object
) -> HttpTransport:
    settings = Settings(url=URL, **overrides)  # type: ignore[arg-type]
    options: dict[str, object] = {"exchange": exchange, "sleep": clock.sleep, "now": clock.time, "rand": lambda: rand}
    if policy is not None:
        options["policy"] = policy
    return transport(settings, KEY, **options)


# --- what is retried ----------------------------------------------------------------------------


def test_server_errors_are_retried_until_accepted(clock: Clock) -> None:
    exchange = Exchange(clock, answer(500), answer(503), ACCEPTED)
    datadog(clock, exchange).send(b"[]", clock.deadline(60))
    assert (exchange.attempts, len(clock.sleeps)) == (3, 2)


def test_408_is_retried(clock: Clock) -> None:
    exchange = Exchange(clock, answer(408), ACCEPTED)
    datadog(clock, exchange).send(b"[]", clock.deadline(60))
    assert exchange.attempts == 2


def test_no_answer_is_retried_then_fails_with_no_status(clock: Clock) -> None:
    exchange = Exchange(clock, *[no_answer() for _ in range(FAST.max_attempts)])
    with pytest.raises(DeliveryError) as failure:
        datadog(clock, exchange).send(b"[]", clock.deadline(60))
    assert failure.value.status is None
    assert "could not reach the intake" in str(failure.value)
    assert f"gave up after {FAST.max_attempts} attempts" in str(failure.value)
    assert len(clock.sleeps) == FAST.max_attempts - 1


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413])
def test_client_errors_are_not_retried(clock: Clock, status: int) -> None:
    exchange = Exchange(clock, answer(status))
    with pytest.raises(DeliveryError) as failure:
        datadog(clock, exchange).send(b"[]", clock.deadline(60))
    assert failure.value.status == status
    assert '"errors"' in failure.value.answer
    assert "not retried" in str(failure.value)
    assert (exchange.attempts, clock.sleeps) == (1, [])


@pytest.mark.parametrize(
    "not_datadogs",
    [Answer(200, {}, "<html>Welcome to nginx!</html>"), Answer(202, {}, "<html>"), Answer(200, {}, "{}")],
    ids=["200-html", "202-html", "200-json"],
)
def test_a_2xx_that_is_not_the_intakes_answer_is_not_retried(clock: Clock, not_datadogs: Answer) -> None:
    exchange = Exchange(clock, not_datadogs, ACCEPTED)
    with pytest.raises(DeliveryError, match="not the intake's success answer") as failure:
        datadog(clock, exchange).send(b"[]", clock.deadline(60))
    assert failure.value.status == not_datadogs.status
    assert failure.value.answer == not_datadogs.text
    assert (exchange.attempts, clock.sleeps) == (1, [])


def test_the_output_says_what_its_intakes_success_answer_is(clock: Clock) -> None:
    """The transport knows no intake: an `accepts` hook decides which 2xx is success (any, by default)."""

    def only_201(status: int, headers: Mapping[str, str], text: str) -> bool:
        return status == 201 and headers.get("x-accepted") == "yes"

    page = Answer(200, {}, "<html>")
    generic = HttpTransport(Settings(url=URL), URL, {}, secret=KEY, exchange=Exchange(clock, page), sleep=clock.sleep)
    generic.send(b"[]", clock.deadline(60))
    picky = HttpTransport(
        Settings(url=URL), URL, {}, secret=KEY, accepts=only_201, exchange=Exchange(clock, page), sleep=clock.sleep
    )
    with pytest.raises(DeliveryError, match="not the intake's success answer"):
        picky.send(b"[]", clock.deadline(60))
    accepted = Answer(201, {"X-Accepted": "yes"}, "")
    HttpTransport(
        Settings(url=URL), URL, {}, secret=KEY, accepts=only_201, exchange=Exchange(clock, accepted), sleep=clock.sleep
    ).send(b"[]", clock.deadline(60))


# --- how many times -----------------------------------------------------------------------------


def test_retries_stop_after_max_attempts(clock: Clock) -> None:
    exchange = Exchange(clock, *[answer(500)] * 10)
    with pytest.raises(DeliveryError) as failure:
        datadog(clock, exchange).send(b"[]", clock.deadline(60))
    assert failure.value.status == 500
    assert "after 4 attempts" in str(failure.value)
    assert exchange.attempts == FAST.max_attempts


def test_max_attempts_comes_from_settings(clock: Clock) -> None:
    exchange = Exchange(clock, *[answer(500)] * 10)
    with pytest.raises(DeliveryError):
        datadog(clock, exchange, policy=None, max_attempts=2).send(b"[]", clock.deadline(60))
    assert exchange.attempts == 2


# --- how long between -----------------------------------------------------------------------------


def test_the_wait_between_attempts_is_the_policys_jittered_backoff(clock: Clock) -> None:
    exchange = Exchange(clock, answer(500), answer(500), answer(500), ACCEPTED)
    datadog(clock, exchange, policy=RetryPolicy(backoff_base=0.2), rand=0.5).send(b"[]", clock.deadline(60))
    assert clock.sleeps == pytest.approx([0.1, 0.2, 0.4])


def test_429_retry_after_seconds_is_honoured(clock: Clock) -> None:
    exchange = Exchange(clock, answer(429, retry_after="7"), ACCEPTED)
    datadog(clock, exchange).send(b"[]", clock.deadline(60))
    assert clock.sleeps == [7.0]
    assert exchange.attempts == 2


def test_503_retry_after_an_http_date_is_honoured(clock: Clock) -> None:
    clock.now = 1445412480.0  # Wed, 21 Oct 2015 07:28:00 GMT
    exchange = Exchange(clock, answer(503, retry_after="Wed, 21 Oct 2015 07:28:10 GMT"), ACCEPTED)
    datadog(clock, exchange).send(b"[]", clock.deadline(60))
    assert clock.sleeps == [10.0]


# --- the deadline -------------------------------------------------------------------------------


def test_no_retry_when_the_wait_would_pass_the_deadline(clock: Clock) -> None:
    exchange = Exchange(clock, answer(429, retry_after="5"), ACCEPTED)
    with pytest.raises(DeliveryError) as failure:
        datadog(clock, exchange).send(b"[]", clock.deadline(2))
    assert failure.value.status == 429
    assert "would pass the deadline" in str(failure.value)
    assert (exchange.attempts, clock.sleeps) == (1, [])


def test_nothing_is_sent_past_the_deadline(clock: Clock) -> None:
    exchange = Exchange(clock, ACCEPTED)
    with pytest.raises(DeliveryError, match="no time left"):
        datadog(clock, exchange).send(b"[]", clock.deadline(0))
    assert exchange.attempts == 0


def test_request_timeout_never_exceeds_the_time_left(clock: Clock) -> None:
    exchange = Exchange(clock, ACCEPTED)
    datadog(clock, exchange, http_timeout_seconds=10.0).send(b"[]", clock.deadline(0.2))
    assert exchange.bounds == pytest.approx([0.2])


def test_each_attempt_gets_the_timeout_or_what_is_left_whichever_is_less(clock: Clock) -> None:
    """Slow answers use up the invocation: the later attempts get only the time still left."""
    exchange = Exchange(clock, no_answer(), no_answer(), no_answer(), takes=2.0)
    with pytest.raises(DeliveryError):
        datadog(clock, exchange, rand=0.0, http_timeout_seconds=2.0).send(b"[]", clock.deadline(5))
    assert exchange.bounds == pytest.approx([2.0, 2.0, 1.0])


# --- the retry policy ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        *[(None, True), (408, True), (429, True), (500, True), (502, True), (503, True), (504, True)],
        *[(400, False), (401, False), (403, False), (404, False), (413, False), (202, False)],
    ],
)
def test_what_is_retried(status: int | None, retryable: bool) -> None:
    assert RetryPolicy().retryable(status) is retryable


def test_backoff_is_exponential_full_jitter_and_capped() -> None:
    policy = RetryPolicy(backoff_base=0.2, backoff_cap=10.0)
    assert [policy.backoff(n, rand=lambda: 1.0) for n in range(1, 9)] == [0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0, 10.0]
    assert policy.backoff(5, rand=lambda: 0.0) == 0.0
    assert policy.backoff(3, rand=lambda: 0.5) == pytest.approx(0.4)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("3", 3.0),
        (" 0 ", 0.0),
        ("1.5", 1.5),
        ("-4", 0.0),
        ("Wed, 21 Oct 2015 07:28:10 GMT", 10.0),
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),
        ("soon", None),
        ("nan", None),
        ("", None),
    ],
)
def test_parse_retry_after(header: str, expected: float | None) -> None:
    now = 1445412480.0  # Wed, 21 Oct 2015 07:28:00 GMT
    assert parse_retry_after(header, now=lambda: now) == expected


def test_retry_after_replaces_backoff_and_garbage_falls_back_to_it() -> None:
    policy = RetryPolicy(backoff_base=1.0)
    assert policy.delay(1, "9", rand=lambda: 0.5) == 9.0
    assert policy.delay(1, "garbage", rand=lambda: 0.5) == 0.5
    assert policy.delay(1, None, rand=lambda: 0.5) == 0.5


def test_policy_needs_an_attempt() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
