"""One work item through the stages: read → source → blocks → process → encode → batch → deliver → outcome.

Every event read ends in one counted outcome (see `metrics.Tally`): delivered, truncated, filtered,
stored for replay, or failed, and a failed event fails its work item. Near the deadline an object's
remaining events are handed to a continuation message instead of being cut off: the blocks read so
far are delivered, and the checkpoint after the last of them says where the rest starts.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import urllib3.exceptions
from botocore.exceptions import BotoCoreError, ClientError

from forwarder import logs, runtime, tags
from forwarder.errors import DeadlineReached, DeliveryError, HandOffError, InputError, StoreError
from forwarder.formats import Block
from forwarder.metrics import Label, Outcome, Tally
from forwarder.model import (
    Checkpoint,
    Deadline,
    Entry,
    Invoker,
    RawEvent,
    Replay,
    S3Object,
    Skip,
    SkipReason,
    WorkItem,
)
from forwarder.opening import Opened, close_stream, open_item
from forwarder.outputs import Output
from forwarder.outputs.batch import Batch, batches
from forwarder.outputs.deliver import deliver
from forwarder.process import Processor, apply
from forwarder.reliability import continuation
from forwarder.reliability.idempotency import ObjectGuard, Verdict
from forwarder.reliability.replay import replay
from forwarder.reliability.store import FailureStore
from forwarder.settings import Settings

logger = logs.logger()

DEADLINE_CHECK_EVERY = 256
"""Events between two looks at the clock; a block of no events (a `Gap`) is looked at too."""
_TEMPORARY_CODES = frozenset(
    {"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "RequestTimeout", "InternalError"}
)
"""S3 error codes that say "try again later" (with 5xx, 408 and 429 answers)."""


class FailureKind(enum.Enum):
    """Why a work item failed: whether trying it again later can help (S3 Batch Operations retries a
    `TemporaryFailure` task, never a `PermanentFailure` one)."""

    TEMPORARY = "temporary"
    """The intake, S3 or time failed: delivery errors, throttling, timeouts, the deadline, a bug."""
    PERMANENT = "permanent"
    """The input itself: a missing object, access denied, corrupt or malformed content."""


@dataclass
class Unit:
    """One work item on its way through the pipeline, and what became of it."""

    message: int
    trigger: str
    item: WorkItem
    label: Label = ("", "")
    failed: bool = False
    stopped_at: int | None = None
    """Events handled when reading stopped for the deadline."""
    checkpoint: Checkpoint | None = None
    """Where the first event not handled starts, when reading stopped."""
    failure: FailureKind = FailureKind.TEMPORARY
    """Why it failed, when it did: permanent only when every failure recorded was the input's own."""


class Pipeline:
    """One invocation's run of work items: its settings, clock, counts, output and processors."""

    def __init__(
        self,
        settings: Settings,
        invoker: Invoker,
        deadline: Deadline,
        tally: Tally,
        output: Callable[[], Output],
        processors: Sequence[Processor] = (),
    ) -> None:
        self.settings = settings
        self.invoker = invoker
        self.deadline = deadline
        self.tally = tally
        self.output = output
        self.processors = tuple(processors)
        self.stop_before = min(settings.http_timeout_seconds, deadline.seconds_left() / 2)
        """Reading stops when less than this is left: time for the requests in flight. An HTTP
        timeout longer than half the invocation's budget would leave no time to read at all."""
        self.progressed = False
        """Whether any block was read: an invocation that hands work on must have moved it forward."""

    def time_to_stop(self) -> bool:
        """Stop reading while there is still time to finish the requests in flight."""
        return self.deadline.seconds_left() < self.stop_before

    def run(self, unit: Unit, guard: ObjectGuard | None) -> None:
        """Forward one work item; anything unexpected fails only this item."""
        try:
            item = unit.item
            if type(item) is Replay:
                replay(self)
            elif guard is not None and type(item) is S3Object and not item.continued:
                self._forward_once(unit, item, guard)
            else:
                self._forward(unit)
        except Exception as exc:  # a bug or an unforeseen failure: fail this item, keep the others going
            unit.failed = True
            unit.failure = FailureKind.TEMPORARY
            self.tally.note_problem(f"{unit.item.origin}: {type(exc).__name__}: {exc}")
            logger.exception("work item failed", extra={"item": unit.item.origin, "trigger": unit.trigger})

    def skip(self, skip: Skip) -> None:
        logger.info("skipped", extra={"reason": skip.reason.value, "detail": skip.detail})
        self.tally.count_skip(skip.reason)

    def store(self) -> FailureStore | None:
        if not self.settings.store_failed_events:
            return None
        return FailureStore(runtime.client("s3"), self.settings.store_bucket, self.settings.store_prefix)

    def deliver(self, entries: Iterator[Entry]) -> Iterator[tuple[Batch, DeliveryError | None]]:
        settings = self.settings
        packed = batches(entries, settings.batch_max_entries, settings.batch_max_bytes)
        send = functools.partial(self.output().send, stats=self.tally.transport)
        return deliver(send, packed, self.deadline, settings.max_workers)

    def _forward_once(self, unit: Unit, item: S3Object, guard: ObjectGuard) -> None:
        """Forward an object unless an earlier notification of the same write already did."""

        def work() -> bool:
            self._forward(unit)
            return not unit.failed

        verdict = guard.run_once(item, work)
        if verdict is Verdict.DUPLICATE:
            self.skip(Skip(SkipReason.DUPLICATE_NOTIFICATION, item.origin))
        elif verdict is Verdict.IN_PROGRESS:
            unit.failed = True
            self.tally.note_problem(f"{item.origin} is being forwarded by another invocation; retry later")

    def _forward(self, unit: Unit) -> None:
        """Read, process, encode, batch, deliver, count; hand over the rest at the deadline."""
        try:
            if self.time_to_stop():
                unit.stopped_at = unit.item.resume_at
            else:
                opened = open_item(self, unit.item)
                if opened is not None:
                    opened.source = tags.tagged(
                        opened.source, opened.container, self.settings, self.invoker, self.tally
                    )
                    for batch, error in self.deliver(self._entries(unit, opened)):
                        self._settle(batch, error, unit)
        except (InputError, DeadlineReached) as exc:
            self._unreadable(unit, exc)
        if unit.stopped_at is not None and not unit.failed:
            self._hand_over(unit)

    def _entries(self, unit: Unit, opened: Opened) -> Iterator[Entry]:
        """The unit's events as entries, counted as read; stops early when the deadline nears.

        A continuation's first `resume_at` events were handled by an earlier invocation; its blocks
        start after them. On stopping, `unit.checkpoint` says where the first event not handled
        starts. Bad input ends the entries here rather than raising through the batcher, so that the
        events read before it are still batched and delivered.
        """
        unit.label = label = (unit.trigger, opened.source.name)
        encoder = self.output().encoder(opened.source, opened.container, self.invoker)
        progress, processors = opened.progress, self.processors
        read_here = 0
        next_check = 0
        last: RawEvent | None = None
        try:
            for block in opened.blocks:
                events = len(block)
                if read_here >= next_check or not events:
                    next_check = read_here + DEADLINE_CHECK_EVERY
                    if progress is not None and last is not None:
                        progress.forget_before(last)
                    if self.time_to_stop():
                        unit.stopped_at = opened.resume_at + read_here
                        if last is not None and progress is not None:
                            unit.checkpoint = progress.checkpoint(last)
                        else:
                            unit.checkpoint = opened.start
                        return
                read_here += events
                last = block.last()
                self.progressed = True
                kept: Block | None = block
                if processors:
                    kept, filtered = apply(processors, block, opened.source)
                    if filtered:
                        self.tally.count_outcome(label, Outcome.FILTERED, filtered)
                if kept is not None and not self.settings.forward_log:  # DD_FORWARD_LOG=false: read, count, send none
                    self.tally.count_outcome(label, Outcome.FILTERED, len(kept))
                elif kept is not None:
                    yield from encoder.entries(kept)
        except (InputError, DeadlineReached) as exc:
            self._unreadable(unit, exc)
        finally:
            self.tally.count_read(label, read_here)
            self.tally.count_unmappable(label, encoder.unmappable)
            close_stream(opened.blocks)  # stopping early would leave the S3 body open until garbage collection

    def _settle(self, batch: Batch, error: DeliveryError | None, unit: Unit) -> None:
        """Count a batch's events: delivered, or else stored for replay, or else failed."""
        if error is None:
            truncated = sum(entry.truncated for entry in batch.entries)
            self.tally.count_outcome(unit.label, Outcome.TRUNCATED, truncated)
            self.tally.count_outcome(unit.label, Outcome.DELIVERED, len(batch.entries) - truncated)
            self.tally.count_lag(unit.label[1], batch.entries, self.output().entry_time)
            return
        logger.error(
            "batch not delivered",
            extra={
                "events": len(batch.entries),
                "reason": error.reason,
                "status": error.status,
                "answer": error.answer,
            },
        )
        if self._keep(batch, error):
            self.tally.count_outcome(unit.label, Outcome.STORED, len(batch.entries))
            return
        unit.failed = True
        unit.failure = FailureKind.TEMPORARY
        self.tally.count_outcome(unit.label, Outcome.FAILED, len(batch.entries))
        self.tally.note_problem(f"{len(batch.entries)} events not delivered: {error}")

    def _keep(self, batch: Batch, error: DeliveryError) -> bool:
        """Store a failed batch for replay; False when there is no store, storing failed, or it is too
        late to start a write: like a request, a write starts only while the invocation has time for it."""
        store = self.store()
        if store is None:
            return False
        if self.time_to_stop():
            logger.error("failed events not stored: the deadline is near", extra={"events": len(batch.entries)})
            self.tally.note_problem(f"{len(batch.entries)} failed events not stored: the deadline was near")
            return False
        try:
            key = store.keep([entry.body for entry in batch.entries], error)
        except StoreError as exc:
            logger.error("failed events not stored", extra={"reason": str(exc)})
            self.tally.note_problem(str(exc))
            return False
        logger.warning("failed events stored for replay", extra={"events": len(batch.entries), "key": key})
        return True

    def _unreadable(self, unit: Unit, exc: InputError | DeadlineReached) -> None:
        if not unit.failed or unit.failure is FailureKind.PERMANENT:
            unit.failure = failure_kind(exc)
        unit.failed = True
        self.tally.note_problem(str(exc))
        if isinstance(exc, InputError):
            self.tally.input_errors += 1
        logger.error(
            "input not readable" if isinstance(exc, InputError) else "deadline reached",
            extra={"origin": exc.origin, "position": exc.position, "reason": exc.reason, "trigger": unit.trigger},
        )

    def _hand_over(self, unit: Unit) -> None:
        """Send the rest of an object to the continuation queue, or fail it so AWS retries it."""
        assert unit.stopped_at is not None
        item = unit.item
        queue = self.settings.continuation_queue_url
        if not isinstance(item, S3Object):
            unit.failed = True
            self.tally.note_problem(f"deadline reached in a {item.origin} after {unit.stopped_at} events")
            return
        if not queue:
            unit.failed = True
            self.tally.note_problem(
                f"deadline reached in {item.origin} after {unit.stopped_at} events; "
                "set FORWARDER_CONTINUATION_QUEUE_URL to continue"
            )
            return
        if not self.progressed:
            unit.failed = True
            self.tally.note_problem(
                f"deadline reached in {item.origin} before this invocation read anything: handing it on would "
                "not move it forward; the function's timeout is too short for FORWARDER_DEADLINE_MARGIN_SECONDS"
            )
            return
        # Stopped before reading anything (the deadline came before the object was opened): where it started.
        checkpoint = unit.checkpoint if unit.checkpoint is not None else item.checkpoint
        try:
            continuation.hand_off(runtime.client("sqs"), queue, item, unit.stopped_at, checkpoint)
        except HandOffError as exc:
            unit.failed = True
            self.tally.note_problem(str(exc))
            return
        where_next = {} if checkpoint is None else {"offset": checkpoint.offset, "skip_bytes": checkpoint.skip_bytes}
        logger.info(
            "handed over to a continuation", extra={"origin": item.origin, "resume_at": unit.stopped_at, **where_next}
        )
        self.tally.count_skip(SkipReason.CONTINUED_LATER)


def failure_kind(exc: InputError | DeadlineReached) -> FailureKind:
    """Bad input is permanent, unless what stopped the read was S3 or the network being unavailable
    or throttled for now (the `InputError`'s cause); the deadline is temporary."""
    cause = exc.__cause__
    if isinstance(exc, DeadlineReached):
        return FailureKind.TEMPORARY
    if isinstance(cause, ClientError):
        status = cause.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        busy = isinstance(status, int) and (status >= 500 or status in (408, 429))
        if busy or cause.response.get("Error", {}).get("Code") in _TEMPORARY_CODES:
            return FailureKind.TEMPORARY
        return FailureKind.PERMANENT
    if isinstance(cause, BotoCoreError | urllib3.exceptions.HTTPError | ConnectionError | TimeoutError):
        return FailureKind.TEMPORARY
    return FailureKind.PERMANENT
