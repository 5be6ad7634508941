"""The Lambda entry point: trigger → read → split → enrich → batch → deliver → outcome.

Read top to bottom, `forward` is the whole pipeline. Every event read ends in one counted outcome
(see `metrics.Tally`); anything not delivered fails the invocation (S3, SNS, EventBridge,
CloudWatch Logs: AWS retries it) or its SQS message (a partial batch response), never a silent
success. Clients are created once per container and reused across invocations.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger

from forwarder import read, sources, split, triggers
from forwarder.batch import batches
from forwarder.enrich import Enricher, Invoker, container_metadata
from forwarder.errors import DeliveryError, IncompleteInvocation, InputError
from forwarder.intake.datadog import DatadogIntake, deliver
from forwarder.metrics import Label, Tally, publish
from forwarder.model import (
    AwsLogs,
    Deadline,
    Entry,
    Invocation,
    LogBatch,
    RawEvent,
    S3Object,
    Skip,
    Source,
    WorkItem,
)
from forwarder.settings import Settings, load_settings

logger = Logger(service="security-log-forwarder")


@dataclass
class Unit:
    """One work item on its way through the pipeline, and what became of it."""

    message: int
    trigger: str
    item: WorkItem
    label: Label = ("", "")
    failed: bool = False


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return handle(event, context, load_settings())


def handle(event: dict[str, Any], context: Any, settings: Settings, tally: Tally | None = None) -> dict[str, Any]:
    """Forward what `event` points at; the summary, or the SQS partial batch response.

    `tally` lets a caller (the demo, tests) see the counts behind an SQS response.
    """
    invocation = triggers.parse_event(event)
    deadline = Deadline(context.get_remaining_time_in_millis, settings.deadline_margin_seconds)
    invoker = Invoker.from_arn(getattr(context, "invoked_function_arn", ""), settings.region)
    tally = Tally() if tally is None else tally
    failed_messages = forward(invocation, settings, invoker, deadline, tally)
    summary = {**tally.summary(), "failed_messages": len(failed_messages)}
    logger.info("invocation summary", extra=summary)
    if not tally.balanced():
        logger.error("tally does not balance: an event has no outcome", extra=summary)
    publish(tally, settings.function_name)
    if invocation.from_sqs:
        ids = [invocation.messages[index].message_id for index in sorted(failed_messages)]
        return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in ids]}
    if failed_messages:
        raise IncompleteInvocation(
            f"{tally.total('failed')} of {tally.events_read} events not delivered, "
            f"{tally.input_errors} unreadable inputs; the invocation fails so AWS retries it. "
            + "; ".join(tally.problems)
        )
    return summary


def forward(invocation: Invocation, settings: Settings, invoker: Invoker, deadline: Deadline, tally: Tally) -> set[int]:
    """Run every work item of the invocation through the pipeline; the indexes of failed messages."""
    failed = _unreadable_messages(invocation, tally)
    units = _units(invocation, tally)
    if units:
        entries = _entries(units, settings, invoker, tally)
        outcomes = deliver(
            _intake(settings, settings.resolve_api_key()),
            batches(entries, settings.batch_max_entries, settings.batch_max_bytes),
            deadline,
            settings.max_workers,
        )
        for batch, error in outcomes:
            _count_batch(batch.entries, error, units, tally)
    failed.update(unit.message for unit in units if unit.failed)
    return failed


def _unreadable_messages(invocation: Invocation, tally: Tally) -> set[int]:
    failed = set()
    for index, message in enumerate(invocation.messages):
        if message.error:
            logger.error("message not understood", extra={"message_id": message.message_id, "reason": message.error})
            tally.note_problem(f"message {message.message_id}: {message.error}")
            failed.add(index)
    return failed


def _units(invocation: Invocation, tally: Tally) -> list[Unit]:
    units = []
    for index, message in enumerate(invocation.messages):
        for item in message.items:
            if isinstance(item, Skip):
                _skip(tally, item)
            else:
                units.append(Unit(index, message.trigger, item))
    return units


def _skip(tally: Tally, skip: Skip) -> None:
    logger.info("skipped", extra={"reason": skip.reason, "detail": skip.detail})
    tally.count_skip(skip.reason)


def _entries(units: list[Unit], settings: Settings, invoker: Invoker, tally: Tally) -> Iterator[Entry]:
    """Every unit's events as intake entries, one unit after another; bad input fails only its unit."""
    for owner, unit in enumerate(units):
        try:
            opened = _open(unit.item, settings, tally)
            if opened is None:
                continue
            source, container, events = opened
            unit.label = (unit.trigger, source.ddsource)
            enricher = Enricher(source, container_metadata(container), invoker, settings, owner)
            for raw in events:
                tally.count_read(unit.label)
                yield enricher.entry(raw)
        except InputError as exc:
            unit.failed = True
            tally.input_errors += 1
            tally.note_problem(str(exc))
            logger.error(
                "input not readable",
                extra={"origin": exc.origin, "position": exc.position, "reason": exc.reason, "trigger": unit.trigger},
            )


def _open(
    item: WorkItem, settings: Settings, tally: Tally
) -> tuple[Source, S3Object | LogBatch, Iterator[RawEvent]] | None:
    """The source and raw events of one work item, or None when it is skipped (and counted)."""
    if isinstance(item, AwsLogs):
        decoded = read.decode_awslogs(item.data)
        if isinstance(decoded, Skip):
            _skip(tally, decoded)
            return None
        return sources.for_log_batch(decoded, settings), decoded, split.split_log_batch(decoded)
    if sources.is_digest_key(item.key):
        _skip(tally, Skip("cloudtrail_digest", item.origin))
        return None
    chunks = read.decompress(read.open_object(_s3_client(), item, settings.read_chunk_bytes), item.origin)
    kind, events = split.split_object(chunks, item.origin)
    if kind is split.Format.DIGEST:
        _skip(tally, Skip("cloudtrail_digest", item.origin))
        return None
    return sources.for_object(item, kind is split.Format.CLOUDTRAIL, settings), item, events


def _count_batch(entries: list[Entry], error: DeliveryError | None, units: list[Unit], tally: Tally) -> None:
    if error is not None:
        tally.note_problem(f"{len(entries)} events not delivered: {error}")
        logger.error(
            "batch not delivered",
            extra={"events": len(entries), "reason": error.reason, "status": error.status, "answer": error.answer},
        )
    for entry in entries:
        unit = units[entry.owner]
        if error is not None:
            unit.failed = True
            tally.count_outcome(unit.label, "failed")
        else:
            tally.count_outcome(unit.label, "truncated" if entry.truncated else "delivered")


@functools.cache
def _s3_client() -> Any:
    """One S3 client per container; boto3's default chain finds credentials and AWS_ENDPOINT_URL(_S3)."""
    import boto3
    from botocore.config import Config

    config = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=60)
    return boto3.client("s3", config=config)


@functools.lru_cache(maxsize=2)
def _intake(settings: Settings, api_key: str) -> DatadogIntake:
    """One intake client (and its kept-alive connections) per container and API key, so a rotated key takes."""
    return DatadogIntake(settings, api_key)
