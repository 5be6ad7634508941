"""The Lambda entry point: the Lambda event → work items → the pipeline → the response.

Every event read ends in one counted outcome (see `metrics.Tally`). Anything failed fails the
invocation (S3, SNS, EventBridge, CloudWatch Logs: AWS retries it), its SQS message (a partial
batch response) or its S3 Batch Operations task (a per-task answer: `TemporaryFailure`, which Batch
Operations retries, or `PermanentFailure`, with the reason); never a silent success. `pipeline` runs
each work item through the stages; `runtime` keeps the clients that live as long as the container.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from forwarder import logs, memory, runtime, triggers
from forwarder.errors import IncompleteInvocation
from forwarder.metrics import Outcome, Tally, publish
from forwarder.model import BatchOperations, Deadline, Invocation, Invoker, Message, Skip
from forwarder.pipeline import FailureKind, Pipeline, Unit
from forwarder.process import processors
from forwarder.reliability.idempotency import ObjectGuard
from forwarder.settings import Settings, load_settings

logger = logs.logger()

RESULT_CODES = {None: "Succeeded", FailureKind.TEMPORARY: "TemporaryFailure", FailureKind.PERMANENT: "PermanentFailure"}
"""A Batch Operations task's `resultCode` for what became of its message."""
MAX_RESULT_STRING = 1024
"""A task's `resultString` (a column of the job's completion report) is cut to this many characters."""


@dataclass
class Settled:
    """What became of one message: whether it failed and why, and what its work items read."""

    failure: FailureKind | None = None
    problems: list[str] = field(default_factory=list)
    counts: Tally = field(default_factory=Tally)

    def fail(self, kind: FailureKind, problem: str) -> None:
        """Record a failure; the message is temporary if any of its failures is (trying again may help)."""
        both = (self.failure, kind)
        self.failure = FailureKind.TEMPORARY if FailureKind.TEMPORARY in both else FailureKind.PERMANENT
        self.problems.append(problem)

    def result(self) -> str:
        """What a Batch Operations report says of the task: the problems, or what was forwarded."""
        if self.failure is not None:
            return "; ".join(self.problems)[:MAX_RESULT_STRING]
        tally = self.counts
        said = [f"{tally.events_read} events read"]
        said += [f"{tally.total(outcome)} {outcome.value}" for outcome in Outcome if tally.total(outcome)]
        said += [f"skipped: {reason.value}" for reason in tally.skipped]
        return ", ".join(said)[:MAX_RESULT_STRING]


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return handle(event, context, load_settings())


def handle(event: dict[str, Any], context: Any, settings: Settings, tally: Tally | None = None) -> dict[str, Any]:
    """Forward what `event` points at; the summary, the SQS partial batch response, or the S3 Batch
    Operations answer.

    `tally` lets a caller (the demo, tests) see the counts behind a response.
    """
    if settings.keep_freed_memory:
        memory.keep_freed_memory()
    invocation = triggers.parse_event(event)
    tally = Tally() if tally is None else tally
    pipeline = Pipeline(
        settings,
        Invoker.from_arn(getattr(context, "invoked_function_arn", ""), settings.region),
        Deadline(context.get_remaining_time_in_millis, settings.deadline_margin_seconds),
        tally,
        lambda: runtime.OUTPUT.get(settings),
        processors(settings, tally),
    )
    guard = runtime.guard(settings)
    if guard is not None:
        guard.register(context)
    settled = [Settled() for _ in invocation.messages]
    try:
        settled = forward(invocation, pipeline, guard)
        if not pipeline.tally.balanced():
            problem = "an event read has no outcome (a bug): every message fails so AWS retries it"
            pipeline.tally.note_problem(problem)
            for message in settled:
                message.fail(FailureKind.TEMPORARY, problem)
    finally:
        failed = [index for index, message in enumerate(settled) if message.failure is not None]
        summary = {**pipeline.tally.summary(), "failed_messages": len(failed)}
        logger.info("invocation summary", extra=summary)
        publish(pipeline.tally, settings.function_name)
    if invocation.from_sqs:
        ids = [invocation.messages[index].message_id for index in failed]
        return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in ids]}
    if invocation.from_batch_operations is not None:
        return batch_operations_answer(invocation.from_batch_operations, invocation.messages, settled)
    if failed:
        tally = pipeline.tally
        raise IncompleteInvocation(
            f"{tally.total(Outcome.FAILED)} of {tally.events_read} events not delivered, "
            f"{tally.input_errors} unreadable inputs; the invocation fails so AWS retries it. "
            + "; ".join(tally.problems)
        )
    return summary


def forward(invocation: Invocation, pipeline: Pipeline, guard: ObjectGuard | None = None) -> list[Settled]:
    """Run every work item of the invocation through the pipeline; what became of each message.

    Each work item is counted in a tally of its own, merged into the invocation's, so that a
    message's answer names its own problems and counts. The output (and so the API key) is resolved
    before anything is read: a missing key is one clear error, not a failure per object.
    """
    settled = [Settled() for _ in invocation.messages]
    for index, message in enumerate(invocation.messages):
        if message.error:
            logger.error("message not understood", extra={"message_id": message.message_id, "reason": message.error})
            pipeline.tally.note_problem(f"message {message.message_id}: {message.error}")
            settled[index].fail(FailureKind.PERMANENT, message.error)
    units = _units(invocation, pipeline)
    if units:
        pipeline.output()
    total = pipeline.tally
    try:
        for unit in units:
            pipeline.tally = own = Tally()
            try:
                pipeline.run(unit, guard)
            finally:
                total.merge(own)
            settled[unit.message].counts.merge(own)
            if unit.failed:
                settled[unit.message].fail(unit.failure, "; ".join(own.problems) or f"{unit.item.origin} failed")
    finally:
        pipeline.tally = total
    return settled


def batch_operations_answer(job: BatchOperations, tasks: Sequence[Message], settled: list[Settled]) -> dict[str, Any]:
    """The answer S3 Batch Operations expects: one result per task, in the order it sent them."""
    return {
        "invocationSchemaVersion": job.schema_version,
        "treatMissingKeysAs": "PermanentFailure",
        "invocationId": job.invocation_id,
        "results": [
            {"taskId": task.message_id, "resultCode": RESULT_CODES[done.failure], "resultString": done.result()}
            for task, done in zip(tasks, settled, strict=True)
        ],
    }


def _units(invocation: Invocation, pipeline: Pipeline) -> list[Unit]:
    units = []
    for index, message in enumerate(invocation.messages):
        for item in message.items:
            if isinstance(item, Skip):
                pipeline.skip(item)
            else:
                units.append(Unit(index, message.trigger, item))
    return units
