"""CloudWatch Logs: a decoded payload's `logEvents`, messages unchanged, a run at a time."""

from __future__ import annotations

from collections.abc import Iterator

import msgspec

from forwarder.model import LogBatch, LogEvent, RawEvent

MESSAGE_RUN_EVENTS = 500
"""CloudWatch Logs events per `MessageRun`: enough to save the per-event hops, few enough that a run's
entries (about 1 MB for EKS audit) do not add up for a 10,000-event payload."""


class MessageRun(msgspec.Struct, gc=False):
    """Consecutive events of one CloudWatch Logs batch: an encoder joins their entries in one loop
    instead of a few calls and generator hops per event."""

    position: int
    log_events: tuple[LogEvent, ...]

    def __len__(self) -> int:
        return len(self.log_events)

    def event(self, index: int) -> RawEvent:
        """Event `index` as the `RawEvent` reading event by event gives."""
        return RawEvent.log_event(self.position + index, self.log_events[index])

    def events(self) -> Iterator[RawEvent]:
        return (self.event(index) for index in range(len(self.log_events)))

    def last(self) -> RawEvent:
        """A marker for the run's last event (CloudWatch events have no offset to resume from)."""
        return RawEvent.marker(self.position + len(self.log_events) - 1)


def read_log_batch(batch: LogBatch) -> Iterator[MessageRun]:
    """The batch's events in runs of at most `MESSAGE_RUN_EVENTS`."""
    events = batch.log_events
    for start in range(0, len(events), MESSAGE_RUN_EVENTS):
        yield MessageRun(start, events[start : start + MESSAGE_RUN_EVENTS])
