"""devintake: a local intake that checks and answers like the Datadog Logs API v2, over real HTTP."""

from __future__ import annotations

import gzip
import re
import signal
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import requests

from forwarder.devintake import DROP, Fault, LocalIntake, Received

KEY = "test-key-0123456789abcdef"


@pytest.fixture
def intake() -> Iterator[LocalIntake]:
    with LocalIntake(api_key=KEY) as server:
        yield server


def post(
    url: str, body: bytes, *, key: str | None = KEY, encoding: str | None = None, timeout: float = 5
) -> requests.Response:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["DD-API-KEY"] = key
    if encoding is not None:
        headers["Content-Encoding"] = encoding
    return requests.post(url, data=body, headers=headers, timeout=timeout)


def logs(count: int, source: str = "cloudtrail") -> list[dict[str, object]]:
    return [{"ddsource": source, "message": f"event {i}"} for i in range(count)]


def test_listens_on_loopback_with_an_ephemeral_port(intake: LocalIntake) -> None:
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/api/v2/logs", intake.url)
    assert not intake.url.endswith(":0/api/v2/logs")


@pytest.mark.parametrize(
    ("encoding", "encode"),
    [
        (None, lambda body: body),
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),
    ],
)
def test_accepts_an_array_and_answers_202_like_datadog(intake: LocalIntake, encoding, encode) -> None:
    response = post(intake.url, encode(orjson.dumps(logs(3))), encoding=encoding)
    assert (response.status_code, response.json()) == (202, {})
    assert intake.entries == logs(3)
    assert (intake.requests, intake.rejected) == (1, 0)


def test_accepts_a_single_object(intake: LocalIntake) -> None:
    assert post(intake.url, orjson.dumps({"message": "one"})).status_code == 202
    assert intake.entries == [{"message": "one"}]


@pytest.mark.parametrize("key", [None, "", "wrong-key"], ids=["missing", "empty", "wrong"])
def test_bad_api_key_is_403(intake: LocalIntake, key: str | None) -> None:
    response = post(intake.url, orjson.dumps(logs(1)), key=key)
    assert response.status_code == 403
    assert intake.entries == []
    assert intake.rejected == 1


@pytest.mark.parametrize(
    ("name", "body", "encoding", "status"),
    [
        ("not_json", b"[{", None, 400),
        ("entry_not_object", b"[1,2]", None, 400),
        ("corrupt_gzip", b"\x1f\x8b\x08\x00garbage", "gzip", 400),
        ("truncated_gzip", gzip.compress(b"[]" * 1000)[:-12], "gzip", 400),
        ("unknown_encoding", b"[]", "br", 415),
        ("over_1000_entries", orjson.dumps([{}] * 1001), None, 413),
        ("entry_over_1mb", orjson.dumps([{"message": "x" * 1_000_000}]), None, 413),
        ("payload_over_5mb", orjson.dumps([{"message": "x" * 900_000}] * 6), None, 413),
        ("gzip_bomb_over_5mb", gzip.compress(b"[" + b" " * 6_000_000 + b"]"), "gzip", 413),
    ],
)
def test_rejects_what_datadog_rejects(intake: LocalIntake, name, body, encoding, status) -> None:
    response = post(intake.url, body, encoding=encoding)
    assert response.status_code == status, name
    assert response.json()["errors"][0]["status"] == str(status)
    assert intake.entries == []


def test_limits_are_inclusive(intake: LocalIntake) -> None:
    exactly_1000 = orjson.dumps([{}] * 1000)
    assert post(intake.url, exactly_1000).status_code == 202
    assert len(intake.entries) == 1000


def test_wrong_path_and_method(intake: LocalIntake) -> None:
    base = intake.url.removesuffix("/api/v2/logs")
    assert post(base + "/v1/input", b"[]").status_code == 404
    assert requests.get(intake.url, timeout=5).status_code == 405


def test_out_path_gets_one_json_line_per_accepted_entry(tmp_path: Path) -> None:
    out = tmp_path / "entries.ndjson"
    with LocalIntake(api_key=KEY, out_path=out) as intake:
        post(intake.url, orjson.dumps(logs(2)))
        post(intake.url, orjson.dumps(logs(1)), key="wrong")
    assert [orjson.loads(line) for line in out.read_bytes().splitlines()] == logs(2)


def test_scripted_statuses_then_normal(intake: LocalIntake) -> None:
    intake.script([500, 429], retry_after="3")
    first, second, third = (post(intake.url, orjson.dumps(logs(1))) for _ in range(3))
    assert (first.status_code, second.status_code, third.status_code) == (500, 429, 202)
    assert first.headers["Retry-After"] == "3"
    assert "Retry-After" not in third.headers
    assert (intake.requests, intake.rejected, len(intake.entries)) == (3, 2, 1)


def test_dropped_connection_gets_no_answer(intake: LocalIntake) -> None:
    intake.script([DROP])
    with pytest.raises(requests.ConnectionError):
        post(intake.url, orjson.dumps(logs(1)))
    assert post(intake.url, orjson.dumps(logs(1))).status_code == 202


def test_delay_simulates_a_slow_intake(intake: LocalIntake) -> None:
    intake.script([Fault(delay_seconds=0.5)])
    with pytest.raises(requests.ReadTimeout):
        post(intake.url, orjson.dumps(logs(1)), timeout=0.1)
    intake.delay_seconds = 0.1
    started = time.monotonic()
    assert post(intake.url, orjson.dumps(logs(1))).status_code == 202
    assert time.monotonic() - started >= 0.1


def test_wait_for(intake: LocalIntake) -> None:
    assert not intake.wait_for(1, timeout=0.05)
    post(intake.url, orjson.dumps(logs(2)))
    assert intake.wait_for(2, timeout=1)


def test_on_request_reports_sources_and_hides_the_key() -> None:
    seen: list[Received] = []
    with LocalIntake(api_key=KEY, on_request=seen.append) as intake:
        post(intake.url, gzip.compress(orjson.dumps(logs(2) + logs(1, "kubernetes.audit"))), encoding="gzip")
    (received,) = seen
    assert received.status == 202
    assert received.sources == {"cloudtrail": 2, "kubernetes.audit": 1}
    assert received.entries == 3
    assert received.body_bytes == len(orjson.dumps(logs(2) + logs(1, "kubernetes.audit")))
    assert received.headers["Content-Encoding"] == "gzip"
    assert KEY not in repr(received)


def test_serve_prints_one_line_per_request_until_ctrl_c() -> None:
    code = f"from forwarder.devintake import serve; serve('127.0.0.1', 0, {KEY!r}, None)"
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=Path.cwd()
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+/api/v2/logs", banner)
        assert url, banner
        post(url.group(0), orjson.dumps(logs(2) + logs(1, "kubernetes.audit")))
        post(url.group(0), b"[]", key="wrong")
        accepted, rejected = process.stdout.readline(), process.stdout.readline()
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=5)
    finally:
        process.kill()
    assert accepted.startswith("202 entries=3 ")
    assert "cloudtrail=2 kubernetes.audit=1" in accepted
    assert rejected.startswith("403 rejected: missing or invalid API key")
    assert "stopped after 2 requests, 3 entries" in out
    assert KEY not in accepted + rejected + out + err
