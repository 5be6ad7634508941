"""The Lambda entry point: the Lambda event → work items → the pipeline → the response.

Every event read ends in one counted outcome (see `metrics.Tally`). Anything failed fails the
invocation (S3, SNS, EventBridge, CloudWatch Logs: AWS retries it) or its SQS message (a partial
batch response); never a silent success. `pipeline` runs each work item through the stages;
`runtime` keeps the clients that live as long as the container.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger

from forwarder import memory, process, runtime, triggers
from forwarder.errors import IncompleteInvocation
from forwarder.metrics import Outcome, Tally, publish
from forwarder.model import Deadline, Invocation, Invoker, Skip
from forwarder.pipeline import Pipeline, Unit
from forwarder.reliability.idempotency import ObjectGuard
from forwarder.settings import Settings, load_settings

logger = Logger(service="security-log-forwarder")


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return handle(event, context, load_settings())


def handle(event: dict[str, Any], context: Any, settings: Settings, tally: Tally | None = None) -> dict[str, Any]:
    """Forward what `event` points at; the summary, or the SQS partial batch response.

    `tally` lets a caller (the demo, tests) see the counts behind an SQS response.
    """
    if settings.keep_freed_memory:
        memory.keep_freed_memory()
    invocation = triggers.parse_event(event)
    pipeline = Pipeline(
        settings,
        Invoker.from_arn(getattr(context, "invoked_function_arn", ""), settings.region),
        Deadline(context.get_remaining_time_in_millis, settings.deadline_margin_seconds),
        Tally() if tally is None else tally,
        lambda: runtime.OUTPUT.get(settings),
        process.processors(settings),
    )
    guard = runtime.guard(settings)
    if guard is not None:
        guard.register(context)
    failed_messages: set[int] = set()
    try:
        failed_messages = forward(invocation, pipeline, guard)
        if not pipeline.tally.balanced():
            pipeline.tally.note_problem("an event read has no outcome (a bug): every message fails so AWS retries it")
            failed_messages = set(range(len(invocation.messages)))
    finally:
        summary = {**pipeline.tally.summary(), "failed_messages": len(failed_messages)}
        logger.info("invocation summary", extra=summary)
        publish(pipeline.tally, settings.function_name)
    if invocation.from_sqs:
        ids = [invocation.messages[index].message_id for index in sorted(failed_messages)]
        return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in ids]}
    if failed_messages:
        tally = pipeline.tally
        raise IncompleteInvocation(
            f"{tally.total(Outcome.FAILED)} of {tally.events_read} events not delivered, "
            f"{tally.input_errors} unreadable inputs; the invocation fails so AWS retries it. "
            + "; ".join(tally.problems)
        )
    return summary


def forward(invocation: Invocation, pipeline: Pipeline, guard: ObjectGuard | None = None) -> set[int]:
    """Run every work item of the invocation through the pipeline; the indexes of failed messages.

    The output (and so the API key) is resolved before anything is read: a missing key is one clear
    error, not a failure per object.
    """
    failed = _unreadable_messages(invocation, pipeline.tally)
    units = _units(invocation, pipeline)
    if units:
        pipeline.output()
    for unit in units:
        pipeline.run(unit, guard)
        if unit.failed:
            failed.add(unit.message)
    return failed


def _unreadable_messages(invocation: Invocation, tally: Tally) -> set[int]:
    failed = set()
    for index, message in enumerate(invocation.messages):
        if message.error:
            logger.error("message not understood", extra={"message_id": message.message_id, "reason": message.error})
            tally.note_problem(f"message {message.message_id}: {message.error}")
            failed.add(index)
    return failed


def _units(invocation: Invocation, pipeline: Pipeline) -> list[Unit]:
    units = []
    for index, message in enumerate(invocation.messages):
        for item in message.items:
            if isinstance(item, Skip):
                pipeline.skip(item)
            else:
                units.append(Unit(index, message.trigger, item))
    return units
