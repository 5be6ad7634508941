"""The per-invocation tally, and its publication as a log line and CloudWatch EMF metrics.

Invariant: every event read ends in exactly one outcome — delivered, truncated (delivered after
truncation), filtered (by a rule the user set), stored (kept in the failure store for replay) or
failed — so `read == delivered + truncated + filtered + stored + failed`. Things that are not events
(digest files, control messages, test events, duplicate notifications) are counted apart, as skips
with their reason.
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from forwarder.model import SkipReason

NAMESPACE = "SecurityLogForwarder"
MAX_PROBLEMS = 3

Label = tuple[str, str]
"""(trigger, source name): what the reads and outcomes are counted by."""


class Outcome(enum.StrEnum):
    """Where an event read ended: exactly one of these."""

    DELIVERED = "delivered"
    TRUNCATED = "truncated"
    FILTERED = "filtered"
    STORED = "stored"
    FAILED = "failed"


@dataclass
class Tally:
    read: Counter[Label] = field(default_factory=Counter)
    outcomes: Counter[tuple[str, str, Outcome]] = field(default_factory=Counter)
    skipped: Counter[SkipReason] = field(default_factory=Counter)
    input_errors: int = 0
    scrubbed: int = 0
    """Events a scrubbing rule changed (a tally, not an outcome: a scrubbed event still ends in one)."""
    tag_fetch_errors: int = 0
    """Resource tag look-ups that failed (`forwarder.tags`): the events went without those tags."""
    problems: list[str] = field(default_factory=list)

    def note_problem(self, description: str) -> None:
        """Keep the first few failures' descriptions for the invocation's error message."""
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(description)

    def count_read(self, label: Label, events: int = 1) -> None:
        self.read[label] += events

    def count_outcome(self, label: Label, outcome: Outcome, events: int = 1) -> None:
        self.outcomes[(*label, outcome)] += events

    def count_skip(self, reason: SkipReason, items: int = 1) -> None:
        self.skipped[reason] += items

    def total(self, outcome: Outcome) -> int:
        return sum(count for (_, _, name), count in self.outcomes.items() if name == outcome)

    @property
    def events_read(self) -> int:
        return sum(self.read.values())

    def balanced(self) -> bool:
        return self.events_read == sum(self.total(outcome) for outcome in Outcome)

    def merge(self, other: Tally) -> None:
        self.read.update(other.read)
        self.outcomes.update(other.outcomes)
        self.skipped.update(other.skipped)
        self.input_errors += other.input_errors
        self.scrubbed += other.scrubbed
        self.tag_fetch_errors += other.tag_fetch_errors
        for problem in other.problems:
            self.note_problem(problem)

    def summary(self) -> dict[str, Any]:
        """A flat summary for the invocation's log line."""
        return {
            "events_read": self.events_read,
            **{f"events_{outcome.value}": self.total(outcome) for outcome in Outcome},
            "events_scrubbed": self.scrubbed,
            "skipped": {reason.value: count for reason, count in self.skipped.items()},
            "input_errors": self.input_errors,
            "tag_fetch_errors": self.tag_fetch_errors,
            "by_source": {f"{trigger}/{source}": count for (trigger, source), count in sorted(self.read.items())},
        }


def publish(tally: Tally, service: str) -> None:
    """Emit the tally as CloudWatch EMF metrics (one JSON line on stdout, read by Lambda's log agent)."""
    from aws_lambda_powertools import Metrics
    from aws_lambda_powertools.metrics import MetricUnit

    metrics = Metrics(namespace=NAMESPACE, service=service)
    # Powertools keeps metrics at class level and does not clear them when metrics are disabled:
    # start clean so a warm container neither grows nor reports an earlier invocation's counts.
    metrics.clear_metrics()
    metrics.add_metric(name="EventsRead", unit=MetricUnit.Count, value=tally.events_read)
    for outcome in Outcome:
        metrics.add_metric(name=f"Events{outcome.value.title()}", unit=MetricUnit.Count, value=tally.total(outcome))
    metrics.add_metric(name="EventsScrubbed", unit=MetricUnit.Count, value=tally.scrubbed)
    metrics.add_metric(name="ItemsSkipped", unit=MetricUnit.Count, value=sum(tally.skipped.values()))
    metrics.add_metric(name="InputErrors", unit=MetricUnit.Count, value=tally.input_errors)
    metrics.add_metric(name="TagFetchErrors", unit=MetricUnit.Count, value=tally.tag_fetch_errors)
    metrics.flush_metrics()
    metrics.clear_metrics()
