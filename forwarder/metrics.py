"""The per-invocation tally, and its publication as a log line and CloudWatch EMF metrics.

Invariant: every event read ends in exactly one outcome — delivered, truncated (delivered after
truncation), stored (kept in the failure store for replay) or failed — so
`read == delivered + truncated + stored + failed`. Things that are not events (digest files, control
messages, test events, duplicate notifications) are counted apart, as skips with their reason;
events a continuation reads past because an earlier invocation handled them are not read again.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

NAMESPACE = "SecurityLogForwarder"
OUTCOMES = ("delivered", "truncated", "stored", "failed")
MAX_PROBLEMS = 3

Label = tuple[str, str]  # (trigger, ddsource)


@dataclass
class Tally:
    read: Counter[Label] = field(default_factory=Counter)
    outcomes: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    input_errors: int = 0
    problems: list[str] = field(default_factory=list)

    def note_problem(self, description: str) -> None:
        """Keep the first few failures' descriptions for the invocation's error message."""
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(description)

    def count_read(self, label: Label, events: int = 1) -> None:
        self.read[label] += events

    def count_outcome(self, label: Label, outcome: str, events: int = 1) -> None:
        self.outcomes[(*label, outcome)] += events

    def count_skip(self, reason: str, items: int = 1) -> None:
        self.skipped[reason] += items

    def total(self, outcome: str) -> int:
        return sum(count for (_, _, name), count in self.outcomes.items() if name == outcome)

    @property
    def events_read(self) -> int:
        return sum(self.read.values())

    def balanced(self) -> bool:
        return self.events_read == sum(self.total(outcome) for outcome in OUTCOMES)

    def merge(self, other: Tally) -> None:
        self.read.update(other.read)
        self.outcomes.update(other.outcomes)
        self.skipped.update(other.skipped)
        self.input_errors += other.input_errors
        for problem in other.problems:
            self.note_problem(problem)

    def summary(self) -> dict[str, Any]:
        """A flat summary for the invocation's log line."""
        return {
            "events_read": self.events_read,
            **{f"events_{outcome}": self.total(outcome) for outcome in OUTCOMES},
            "skipped": dict(self.skipped),
            "input_errors": self.input_errors,
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
    for outcome in OUTCOMES:
        metrics.add_metric(name=f"Events{outcome.title()}", unit=MetricUnit.Count, value=tally.total(outcome))
    metrics.add_metric(name="ItemsSkipped", unit=MetricUnit.Count, value=sum(tally.skipped.values()))
    metrics.add_metric(name="InputErrors", unit=MetricUnit.Count, value=tally.input_errors)
    metrics.flush_metrics()
    metrics.clear_metrics()
