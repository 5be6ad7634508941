"""The S3 Batch Operations answer: one result per task, temporary when trying again may help."""

from __future__ import annotations

import pytest

from forwarder.handler import MAX_RESULT_STRING, Settled, batch_operations_answer
from forwarder.metrics import Outcome
from forwarder.model import BatchOperations, Message, SkipReason
from forwarder.pipeline import FailureKind


@pytest.mark.parametrize(
    ("kinds", "expected"),
    [
        ((FailureKind.PERMANENT,), FailureKind.PERMANENT),
        ((FailureKind.PERMANENT, FailureKind.TEMPORARY), FailureKind.TEMPORARY),
        ((FailureKind.TEMPORARY, FailureKind.PERMANENT), FailureKind.TEMPORARY),
        ((FailureKind.PERMANENT, FailureKind.PERMANENT), FailureKind.PERMANENT),
    ],
)
def test_a_message_is_temporary_if_any_of_its_failures_is(
    kinds: tuple[FailureKind, ...], expected: FailureKind
) -> None:
    settled = Settled()
    for number, kind in enumerate(kinds):
        settled.fail(kind, f"problem {number}")
    assert settled.failure is expected
    assert settled.result() == "; ".join(f"problem {number}" for number in range(len(kinds)))


def test_a_result_string_is_cut_to_its_limit() -> None:
    settled = Settled()
    settled.fail(FailureKind.PERMANENT, "x" * 5000)
    assert len(settled.result()) == MAX_RESULT_STRING


def test_a_success_says_what_was_read_delivered_and_skipped() -> None:
    settled = Settled()
    settled.counts.count_read(("s3-batch-operations", "cloudtrail"), 5)
    settled.counts.count_outcome(("s3-batch-operations", "cloudtrail"), Outcome.DELIVERED, 4)
    settled.counts.count_outcome(("s3-batch-operations", "cloudtrail"), Outcome.STORED, 1)
    settled.counts.count_skip(SkipReason.CONTINUED_LATER)
    assert settled.result() == "5 events read, 4 delivered, 1 stored, skipped: continued_later"


def test_the_answer_echoes_the_invocation_and_answers_every_task_in_order() -> None:
    failed = Settled()
    failed.fail(FailureKind.TEMPORARY, "the intake answered 503")
    tasks = (Message("a", "s3-batch-operations"), Message("b", "s3-batch-operations"))

    answer = batch_operations_answer(BatchOperations("1.0", "inv-1"), tasks, [Settled(), failed])

    assert answer == {
        "invocationSchemaVersion": "1.0",
        "treatMissingKeysAs": "PermanentFailure",
        "invocationId": "inv-1",
        "results": [
            {"taskId": "a", "resultCode": "Succeeded", "resultString": "0 events read"},
            {"taskId": "b", "resultCode": "TemporaryFailure", "resultString": "the intake answered 503"},
        ],
    }
