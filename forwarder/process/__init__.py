"""Processing: what happens to events between reading and encoding (filters, scrubbers, policies).

A processor takes a block and returns what it keeps (None when nothing is kept) and how many events
it filtered; the pipeline counts those as `filtered`, an outcome of their own, never a silent drop.
A processor that changes nothing returns the block it was given, so events no rule touches keep
their byte pass-through and their reader's fast path.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

import msgspec

from forwarder.formats import Block
from forwarder.metrics import Tally
from forwarder.model import RawEvent
from forwarder.settings import Settings


class Processor(Protocol):
    def process(self, block: Block) -> tuple[Block | None, int]: ...


class EventList(msgspec.Struct, gc=False):
    """The events a processor kept of a block, and the block's own last event (where a checkpoint
    after the block points, whether or not that event was kept)."""

    kept: list[RawEvent]
    end: RawEvent

    def __len__(self) -> int:
        return len(self.kept)

    def events(self) -> Iterator[RawEvent]:
        return iter(self.kept)

    def last(self) -> RawEvent:
        return self.end


def apply(processors: Sequence[Processor], block: Block) -> tuple[Block | None, int]:
    """Run `block` through every processor in order: what is left, and how many were filtered."""
    filtered = 0
    current: Block | None = block
    for processor in processors:
        if current is None:
            break
        current, dropped = processor.process(current)
        filtered += dropped
    return current, filtered


def processors(settings: Settings, tally: Tally) -> list[Processor]:
    """The processors the settings turn on, filters first: as in the Datadog Forwarder, the filter
    patterns see events before scrubbing. None at all when nothing is set, so blocks go straight on."""
    from forwarder.process.filter import Filter  # imported here: they build on this module's EventList
    from forwarder.process.scrub import Scrubber, rules

    chosen: list[Processor] = []
    if settings.include_at_match is not None or settings.exclude_at_match is not None:
        chosen.append(Filter(settings.include_at_match, settings.exclude_at_match))
    scrubbing = rules(settings)
    if scrubbing:
        chosen.append(Scrubber(scrubbing, tally))
    return chosen
