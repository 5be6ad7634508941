"""The Lambda entry point: trigger → read → split → enrich → batch → deliver → outcome.

Read top to bottom, `forward` is the whole pipeline, one work item at a time. Every event read ends
in one counted outcome (see `metrics.Tally`): delivered, truncated, stored for replay, or failed.
Anything failed fails the invocation (S3, SNS, EventBridge, CloudWatch Logs: AWS retries it) or its
SQS message (a partial batch response); never a silent success. Near the deadline an object's
remaining events are handed to a continuation message instead of being cut off.
Clients are created once per container and reused across invocations.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger

from forwarder import continuation, memory, read, sources, split, triggers
from forwarder.batch import batches
from forwarder.enrich import Enricher, Invoker
from forwarder.errors import (
    REREAD_TOO_SLOW,
    ConfigError,
    DeliveryError,
    IncompleteInvocation,
    InputError,
    StoreError,
)
from forwarder.idempotency import ObjectGuard, Verdict
from forwarder.intake.datadog import DatadogIntake, deliver
from forwarder.metrics import Label, Tally, publish
from forwarder.model import (
    AwsLogs,
    Batch,
    Checkpoint,
    Deadline,
    Entry,
    EventRun,
    Invocation,
    LogBatch,
    RawEvent,
    Replay,
    S3Object,
    Skip,
    Source,
    WorkItem,
)
from forwarder.settings import Settings, load_settings
from forwarder.store import FailureStore

logger = Logger(service="security-log-forwarder")

DEADLINE_CHECK_EVERY = 256  # events between two looks at the clock


@dataclass
class Unit:
    """One work item on its way through the pipeline, and what became of it."""

    message: int
    trigger: str
    item: WorkItem
    label: Label = ("", "")
    failed: bool = False
    stopped_at: int | None = None  # events handled when reading stopped for the deadline
    checkpoint: Checkpoint | None = None  # where the first event not handled starts, when reading stopped


@dataclass
class Run:
    """One invocation: its settings, clock, counts and the container's clients."""

    settings: Settings
    invoker: Invoker
    deadline: Deadline
    tally: Tally

    def intake(self) -> DatadogIntake:
        return _INTAKE.client(self.settings, self.settings.resolve_api_key())

    def store(self) -> FailureStore | None:
        if not self.settings.store_failed_events:
            return None
        return FailureStore(_client("s3"), self.settings.store_bucket, self.settings.store_prefix)

    def time_to_stop(self) -> bool:
        """Stop reading while there is still time to finish the requests in flight."""
        return self.deadline.seconds_left() < self.settings.http_timeout_seconds


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
    run = Run(
        settings,
        Invoker.from_arn(getattr(context, "invoked_function_arn", ""), settings.region),
        Deadline(context.get_remaining_time_in_millis, settings.deadline_margin_seconds),
        Tally() if tally is None else tally,
    )
    guard = _guard(settings)
    if guard is not None:
        guard.register(context)
    failed_messages: set[int] = set()
    try:
        failed_messages = forward(invocation, run, guard)
        if not run.tally.balanced():
            run.tally.note_problem("an event read has no outcome (a bug): every message fails so AWS retries it")
            failed_messages = set(range(len(invocation.messages)))
    finally:
        summary = {**run.tally.summary(), "failed_messages": len(failed_messages)}
        logger.info("invocation summary", extra=summary)
        publish(run.tally, settings.function_name)
    if invocation.from_sqs:
        ids = [invocation.messages[index].message_id for index in sorted(failed_messages)]
        return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in ids]}
    if failed_messages:
        raise IncompleteInvocation(
            f"{run.tally.total('failed')} of {run.tally.events_read} events not delivered, "
            f"{run.tally.input_errors} unreadable inputs; the invocation fails so AWS retries it. "
            + "; ".join(run.tally.problems)
        )
    return summary


def forward(invocation: Invocation, run: Run, guard: ObjectGuard | None = None) -> set[int]:
    """Run every work item of the invocation through the pipeline; the indexes of failed messages.

    The intake client (and so the API key) is resolved before anything is read: a missing key is
    one clear error, not a failure per object. Anything unexpected fails only its own work item.
    """
    failed = _unreadable_messages(invocation, run.tally)
    units = _units(invocation, run.tally)
    if units:
        run.intake()
    for unit in units:
        try:
            if isinstance(unit.item, Replay):
                replay(run)
            elif guard is not None and isinstance(unit.item, S3Object) and not unit.trigger.endswith("continuation"):
                _forward_once(unit, run, guard)
            else:
                _forward_unit(unit, run)
        except Exception as exc:  # a bug or an unforeseen failure: fail this item, keep the others going
            unit.failed = True
            run.tally.note_problem(f"{_describe(unit.item)}: {type(exc).__name__}: {exc}")
            logger.exception("work item failed", extra={"item": _describe(unit.item), "trigger": unit.trigger})
        if unit.failed:
            failed.add(unit.message)
    return failed


def _describe(item: WorkItem) -> str:
    if isinstance(item, S3Object):
        return item.origin
    return "replay" if isinstance(item, Replay) else "CloudWatch Logs payload"


def _forward_once(unit: Unit, run: Run, guard: ObjectGuard) -> None:
    """Forward an object unless an earlier notification of the same write already did."""
    assert isinstance(unit.item, S3Object)

    def work() -> bool:
        _forward_unit(unit, run)
        return not unit.failed

    verdict = guard.run_once(unit.item, work)
    if verdict is Verdict.DUPLICATE:
        _skip(run.tally, Skip("duplicate_notification", unit.item.origin))
    elif verdict is Verdict.IN_PROGRESS:
        unit.failed = True
        run.tally.note_problem(f"{unit.item.origin} is being forwarded by another invocation; retry later")


def _forward_unit(unit: Unit, run: Run) -> None:
    """One work item: read, split, enrich, batch, deliver, count; hand over the rest at the deadline."""
    try:
        if run.time_to_stop():
            unit.stopped_at = unit.item.resume_at if isinstance(unit.item, S3Object) else 0
        else:
            opened = _open(unit.item, run)
            if opened is not None:
                entries = _entries(unit, *opened, run)
                for batch, error in _deliver(run, entries):
                    _settle(batch, error, unit, run)
    except InputError as exc:
        _unreadable(unit, exc, run)
    if unit.stopped_at is not None and not unit.failed:
        _hand_over(unit, run)


def _unreadable(unit: Unit, exc: InputError, run: Run) -> None:
    unit.failed = True
    run.tally.input_errors += 1
    run.tally.note_problem(str(exc))
    logger.error(
        "input not readable",
        extra={"origin": exc.origin, "position": exc.position, "reason": exc.reason, "trigger": unit.trigger},
    )


def _deliver(run: Run, entries: Iterator[Entry]) -> Iterator[tuple[Batch, DeliveryError | None]]:
    settings = run.settings
    packed = batches(entries, settings.batch_max_entries, settings.batch_max_bytes)
    return deliver(run.intake(), packed, run.deadline, settings.max_workers)


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


def _open(
    item: WorkItem, run: Run
) -> tuple[Source, S3Object | LogBatch, Iterator[RawEvent | EventRun], continuation.Progress | None] | None:
    """The source, raw events and checkpointing of one work item, or None when it is skipped (and counted).

    A continuation with a checkpoint reads from there on (see `continuation`).
    """
    if isinstance(item, AwsLogs):
        decoded = read.decode_awslogs(item.data)
        if isinstance(decoded, Skip):
            _skip(run.tally, decoded)
            return None
        return sources.for_log_batch(decoded, run.settings), decoded, split.split_log_batch(decoded), None
    assert isinstance(item, S3Object)
    if sources.is_digest_key(item.key):
        _skip(run.tally, Skip("cloudtrail_digest", item.origin))
        return None
    tracker = read.Tracker(item.checkpoint)
    body = read.open_object(_client("s3"), item, run.settings.read_chunk_bytes, tracker)
    chunks = read.decompress(body, item.origin, tracker)
    if tracker.skip_bytes:
        chunks = read.discard(chunks, tracker, item.origin, run.time_to_stop)
    kind, events = split.split_object(chunks, item.origin, start=item.checkpoint)
    if kind is split.Format.DIGEST:
        _close(chunks)  # releases the S3 body now, not at garbage collection
        _skip(run.tally, Skip("cloudtrail_digest", item.origin))
        return None
    source = sources.for_object(item, kind is split.Format.CLOUDTRAIL, run.settings)
    return source, item, events, continuation.Progress(tracker, kind)


def _entries(
    unit: Unit,
    source: Source,
    container: S3Object | LogBatch,
    events: Iterator[RawEvent | EventRun],
    progress: continuation.Progress | None,
    run: Run,
) -> Iterator[Entry]:
    """The unit's events as intake entries, counted as read; stops early when the deadline nears.

    A continuation's first `resume_at` events were handled by an earlier invocation. With a
    checkpoint, `events` starts after them; without one (an older message) they are read past, not
    sent. On stopping, `unit.checkpoint` says where the first event not handled starts.
    Bad input ends the entries here rather than raising through the batcher, so that the events read
    before it are still batched and delivered.
    """
    unit.label = (unit.trigger, source.ddsource)
    enricher = Enricher(source, container, run.invoker, run.settings)
    resume_at = container.resume_at if isinstance(container, S3Object) else 0
    start = container.checkpoint if isinstance(container, S3Object) else None
    handled = resume_at if start is not None else 0
    # Reading past events already handled is counted event by event, so runs are taken apart for it.
    items = events if handled >= resume_at else split.each_event(events)
    read_here = 0
    next_check = 0
    last: RawEvent | None = None
    try:
        for item in items:
            if read_here >= next_check:
                next_check = read_here + DEADLINE_CHECK_EVERY
                if progress is not None and last is not None:
                    progress.forget_before(last)
                if run.time_to_stop():
                    if handled < resume_at:
                        raise InputError(
                            container.origin, f"event {handled} of the {resume_at} handled", REREAD_TOO_SLOW
                        )
                    unit.stopped_at = handled
                    unit.checkpoint = start if last is None or progress is None else progress.checkpoint(last)
                    return
            if not isinstance(item, RawEvent):  # a run: counted and enriched together
                read_here += len(item)
                handled += len(item)
                last = item.last()
                yield from enricher.run_entries(item)
                continue
            read_here += 1
            handled += 1
            last = item
            if handled <= resume_at:
                continue
            yield enricher.entry(item)
    except InputError as exc:
        _unreadable(unit, exc, run)
    finally:
        run.tally.count_read(unit.label, max(0, handled - resume_at))
        _close(items)  # stopping early would leave the S3 body open until garbage collection
        _close(events)


def _close(stream: Iterator[Any]) -> None:
    """Close a chain of generators (and the S3 body at its root) without waiting for garbage collection."""
    close = getattr(stream, "close", None)
    if close is not None:
        close()


def _settle(batch: Batch, error: DeliveryError | None, unit: Unit, run: Run) -> None:
    """Count a batch's events: delivered, or else stored for replay, or else failed."""
    if error is None:
        truncated = sum(entry.truncated for entry in batch.entries)
        run.tally.count_outcome(unit.label, "truncated", truncated)
        run.tally.count_outcome(unit.label, "delivered", len(batch.entries) - truncated)
        return
    logger.error(
        "batch not delivered",
        extra={"events": len(batch.entries), "reason": error.reason, "status": error.status, "answer": error.answer},
    )
    if _keep(batch, error, run):
        run.tally.count_outcome(unit.label, "stored", len(batch.entries))
        return
    unit.failed = True
    run.tally.count_outcome(unit.label, "failed", len(batch.entries))
    run.tally.note_problem(f"{len(batch.entries)} events not delivered: {error}")


def _keep(batch: Batch, error: DeliveryError, run: Run) -> bool:
    """Store a failed batch for replay; False when there is no store or storing failed."""
    store = run.store()
    if store is None:
        return False
    try:
        key = store.keep([entry.body for entry in batch.entries], error)
    except StoreError as exc:
        logger.error("failed events not stored", extra={"reason": str(exc)})
        run.tally.note_problem(str(exc))
        return False
    logger.warning("failed events stored for replay", extra={"events": len(batch.entries), "key": key})
    return True


def _hand_over(unit: Unit, run: Run) -> None:
    """Send the rest of an object to the continuation queue, or fail it so AWS retries it."""
    assert unit.stopped_at is not None
    item = unit.item
    queue = run.settings.continuation_queue_url
    if not isinstance(item, S3Object):
        unit.failed = True
        run.tally.note_problem(f"deadline reached in a {_describe(item)} after {unit.stopped_at} events")
        return
    if not queue:
        unit.failed = True
        run.tally.note_problem(
            f"deadline reached in {item.origin} after {unit.stopped_at} events; "
            "set FORWARDER_CONTINUATION_QUEUE_URL to continue"
        )
        return
    # Stopped before reading anything (the deadline came before the object was opened): where it started.
    checkpoint = unit.checkpoint if unit.checkpoint is not None else item.checkpoint
    try:
        continuation.hand_off(_client("sqs"), queue, item, unit.stopped_at, checkpoint)
    except StoreError as exc:
        unit.failed = True
        run.tally.note_problem(str(exc))
        return
    where_next = {} if checkpoint is None else {"offset": checkpoint.offset, "skip_bytes": checkpoint.skip_bytes}
    logger.info(
        "handed over to a continuation", extra={"origin": item.origin, "resume_at": unit.stopped_at, **where_next}
    )
    run.tally.count_skip("continued_later")


def replay(run: Run) -> None:
    """Re-send stored batches; delete each once all its events are accepted, keep what fails again.

    A stored batch that cannot be read or rewritten is reported and left for the next replay; one
    whose delete fails is sent again then (a duplicate, never a loss).
    """
    store = run.store()
    if store is None:
        raise ConfigError("a replay needs DD_STORE_FAILED_EVENTS=true and DD_S3_BUCKET_NAME")
    label = ("replay", "stored")
    for key in store.stored():
        if run.time_to_stop():
            run.tally.count_skip("replay_left_for_next_run")
            break
        try:
            entries = store.load(key)
        except (InputError, StoreError) as exc:
            run.tally.input_errors += 1
            run.tally.note_problem(str(exc))
            logger.error("stored batch not readable", extra={"key": key, "reason": str(exc)})
            continue
        run.tally.count_read(label, len(entries))
        again: list[bytes] = []
        last_error: DeliveryError | None = None
        for batch, error in _deliver(run, iter([Entry(body) for body in entries])):
            if error is None:
                run.tally.count_outcome(label, "delivered", len(batch.entries))
            else:
                again.extend(entry.body for entry in batch.entries)
                last_error = error
        run.tally.count_outcome(label, "stored", len(again))
        try:
            if last_error is None:
                store.delete(key)
            elif len(again) < len(entries):
                store.keep(again, last_error, key=key)
        except StoreError as exc:
            run.tally.note_problem(str(exc))
            logger.error("stored batch not updated", extra={"key": key, "reason": str(exc)})


def _guard(settings: Settings) -> ObjectGuard | None:
    if not settings.idempotency_table:
        return None
    return _object_guard(settings.idempotency_table, settings.idempotency_expiry_seconds)


@functools.cache
def _object_guard(table: str, expiry_seconds: int) -> ObjectGuard:
    return ObjectGuard(table, expiry_seconds)


@functools.cache
def _client(service: str) -> Any:
    """One client per service and container; boto3's default chain finds credentials and AWS_ENDPOINT_URL.

    Timeouts are short so that no S3 read, store write or hand-off blocks past the time the
    handler keeps for them before the deadline.
    """
    import boto3
    from botocore.config import Config

    config = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=3, read_timeout=10)
    return boto3.client(service, config=config)


class _IntakeSlot:
    """One intake client per container, kept alive across invocations.

    A new API key (rotation) or new settings replace it, and the old client's connections are closed.
    """

    def __init__(self) -> None:
        self._made_for: tuple[Settings, str] | None = None
        self._client: DatadogIntake | None = None

    def client(self, settings: Settings, api_key: str) -> DatadogIntake:
        if self._client is None or self._made_for != (settings, api_key):
            if self._client is not None:
                self._client.close()
            self._client = DatadogIntake(settings, api_key)
            self._made_for = (settings, api_key)
        return self._client

    @property
    def built(self) -> bool:
        return self._client is not None


_INTAKE = _IntakeSlot()
