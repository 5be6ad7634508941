"""Replay: re-send the batches kept in the failure store, as the `{"retry": true}` event asks."""

from __future__ import annotations

from typing import TYPE_CHECKING

from forwarder import logs
from forwarder.errors import ConfigError, DeliveryError, InputError, StoreError
from forwarder.metrics import Outcome
from forwarder.model import Entry, SkipReason

if TYPE_CHECKING:
    from forwarder.pipeline import Pipeline

logger = logs.logger()


def replay(run: Pipeline) -> None:
    """Re-send stored batches; delete each once all its events are accepted, keep what fails again.

    A stored batch that cannot be read is left in the store and fails the replay, after the other
    batches are replayed: a replay that succeeds has left nothing behind it could not read. One that
    cannot be rewritten, or whose delete fails, is sent again next time (a duplicate, never a loss).
    """
    store = run.store()
    if store is None:
        raise ConfigError("a replay needs DD_STORE_FAILED_EVENTS=true and DD_S3_BUCKET_NAME")
    label = ("replay", "stored")
    unreadable: list[str] = []
    for key in store.stored():
        if run.time_to_stop():
            run.tally.count_skip(SkipReason.REPLAY_LEFT_FOR_NEXT_RUN)
            break
        try:
            entries = store.load(key)
        except (InputError, StoreError) as exc:
            run.tally.input_errors += 1
            unreadable.append(str(exc))
            logger.error("stored batch not readable", extra={"key": key, "reason": str(exc)})
            continue
        run.tally.count_read(label, len(entries))
        again: list[bytes] = []
        last_error: DeliveryError | None = None
        for batch, error in run.deliver(iter([Entry(body) for body in entries])):
            if error is None:
                run.tally.count_outcome(label, Outcome.DELIVERED, len(batch.entries))
            else:
                again.extend(entry.body for entry in batch.entries)
                last_error = error
        run.tally.count_outcome(label, Outcome.STORED, len(again))
        try:
            if last_error is None:
                store.delete(key)
            elif len(again) < len(entries):
                store.keep(again, last_error, key=key)
        except StoreError as exc:
            run.tally.note_problem(str(exc))
            logger.error("stored batch not updated", extra={"key": key, "reason": str(exc)})
    if unreadable:
        raise StoreError(f"{len(unreadable)} stored batches not readable, left in the store; first: {unreadable[0]}")
