"""Replay end to end: the stored bytes are what goes out again, and an unreadable batch fails the replay."""

from __future__ import annotations

from typing import Any

import boto3

from forwarder.errors import DeliveryError
from forwarder.metrics import Tally
from forwarder.model import Deadline, Invoker, Replay
from forwarder.outputs import Output
from forwarder.outputs.batch import json_array
from forwarder.outputs.datadog import RESERVED
from forwarder.pipeline import Pipeline, Unit
from forwarder.reliability.store import FailureStore
from tests.unit.test_store import EXACT

from .helpers import settings_for


class Recorder:
    """A transport that keeps every request body and accepts it."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    def send(self, body: bytes, deadline: Deadline, stats: object = None) -> None:
        self.bodies.append(body)

    def close(self) -> None:
        pass


def replay_run(bucket: str, recorder: Recorder) -> tuple[Pipeline, Tally]:
    settings = settings_for("http://127.0.0.1:9/unused", DD_STORE_FAILED_EVENTS="true", DD_S3_BUCKET_NAME=bucket)
    tally = Tally()
    output = Output(lambda *_: None, RESERVED, json_array, recorder)  # type: ignore[arg-type,return-value]
    return Pipeline(settings, Invoker(), Deadline(lambda: 60_000, 0), tally, lambda: output), tally


def test_big_integers_and_exponents_survive_a_store_and_replay_byte_for_byte(s3: Any) -> None:
    s3.create_bucket(Bucket="exact-store")
    recorder = Recorder()
    run, tally = replay_run("exact-store", recorder)
    FailureStore(boto3.client("s3"), "exact-store", run.settings.store_prefix).keep(EXACT, DeliveryError("no", 400))
    unit = Unit(0, "replay", Replay())

    run.run(unit, guard=None)

    assert not unit.failed and tally.balanced()
    assert recorder.bodies == [b"[" + b",".join(EXACT) + b"]"]
    assert s3.list_objects_v2(Bucket="exact-store").get("KeyCount") == 0


def test_an_unreadable_stored_batch_fails_the_replay(s3: Any) -> None:
    s3.create_bucket(Bucket="bad-store")
    recorder = Recorder()
    run, tally = replay_run("bad-store", recorder)
    prefix = run.settings.store_prefix
    s3.put_object(Bucket="bad-store", Key=f"{prefix}2024/01/01/000000-a.json.gz", Body=b"\x1f\x8bbad")
    FailureStore(boto3.client("s3"), "bad-store", prefix).keep(EXACT, DeliveryError("no", 400))
    unit = Unit(0, "replay", Replay())

    run.run(unit, guard=None)

    assert unit.failed and tally.input_errors == 1 and tally.balanced()
    assert any("000000-a.json.gz" in problem for problem in tally.problems)
    assert recorder.bodies == [b"[" + b",".join(EXACT) + b"]"]
    left = s3.list_objects_v2(Bucket="bad-store")["Contents"]
    assert [item["Key"].rsplit("/", 1)[-1] for item in left] == ["000000-a.json.gz"]
