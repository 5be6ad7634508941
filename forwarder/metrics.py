"""The per-invocation tally, and its publication as a log line and CloudWatch EMF metrics.

Invariant: every event read ends in exactly one outcome — delivered, truncated (delivered after
truncation), filtered (by a rule the user set), stored (kept in the failure store for replay) or
failed — so `read == delivered + truncated + filtered + stored + failed`. Things that are not events
(digest files, control messages, test events, duplicate notifications) are counted apart, as skips
with their reason. Events an output could not map to its format (OCSF) are delivered, marked, and
counted apart too (`unmappable`): an extra count, never an outcome.
"""

from __future__ import annotations

import enum
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from forwarder.model import SkipReason

NAMESPACE = "SecurityLogForwarder"
MAX_PROBLEMS = 3

Label = tuple[str, str]
"""(trigger, source name): what the reads and outcomes are counted by."""
EntryTime = Callable[[bytes], int | None]
"""Reads the epoch-ms time an entry carries (each output knows where its entries carry it)."""


class Outcome(enum.StrEnum):
    """Where an event read ended: exactly one of these."""

    DELIVERED = "delivered"
    TRUNCATED = "truncated"
    FILTERED = "filtered"
    STORED = "stored"
    FAILED = "failed"


@dataclass
class TransportStats:
    """What the transport did: requests, retries, bytes sent, latency. Shared by the delivery threads
    of one work item, so every update holds a lock (a few per request, never per event)."""

    requests: int = 0
    retries: int = 0
    bytes_out: int = 0
    latency_ms_total: float = 0.0
    latency_ms_max: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count_request(self, payload_bytes: int, latency_ms: float, retry: bool) -> None:
        """One attempt's POST: its request bytes and how long its answer took."""
        with self._lock:
            self.requests += 1
            self.retries += retry
            self.bytes_out += payload_bytes
            self.latency_ms_total += latency_ms
            self.latency_ms_max = max(self.latency_ms_max, latency_ms)

    def merge(self, other: TransportStats) -> None:
        with self._lock:
            self.requests += other.requests
            self.retries += other.retries
            self.bytes_out += other.bytes_out
            self.latency_ms_total += other.latency_ms_total
            self.latency_ms_max = max(self.latency_ms_max, other.latency_ms_max)


@dataclass
class Lag:
    """From an event's own time to its delivery, in ms: the largest, and a sum and count for a mean.

    Measured per delivered batch from its first and last entries' times (a file's events are
    mostly in time order), so it costs two look-ups per batch, none per event."""

    max_ms: int = 0
    sum_ms: int = 0
    events: int = 0

    def add(self, max_ms: int, mean_ms: int, events: int) -> None:
        self.max_ms = max(self.max_ms, max_ms)
        self.sum_ms += mean_ms * events
        self.events += events

    def merge(self, other: Lag) -> None:
        self.add(other.max_ms, 0, 0)
        self.sum_ms += other.sum_ms
        self.events += other.events

    @property
    def mean_ms(self) -> float:
        return self.sum_ms / self.events if self.events else 0.0


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
    bytes_in: int = 0
    """Bytes read: an object's compressed bytes from S3, a CloudWatch Logs payload's bytes."""
    transport: TransportStats = field(default_factory=TransportStats)
    lag: dict[str, Lag] = field(default_factory=dict)
    """Per source name."""
    unmappable: Counter[Label] = field(default_factory=Counter)
    """Events the output could not map to its format (OCSF): delivered, marked, and counted here
    besides their outcome (a tally, not an outcome)."""

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

    def count_unmappable(self, label: Label, events: int) -> None:
        if events:
            self.unmappable[label] += events

    def count_lag(self, source: str, entries: Sequence[Any], entry_time: EntryTime | None = None) -> None:
        """The lag of a delivered batch's entries (`Entry`), from the times its first and last carry,
        read by the output's `entry_time` (Datadog entries' `timestamp` when not given)."""
        read = entry_time or entry_time_ms
        times = [when for when in (read(entries[0].body), read(entries[-1].body)) if when]
        if not times:
            return
        now = int(time.time() * 1000)
        lag = self.lag.setdefault(source, Lag())
        lag.add(max(0, now - min(times)), max(0, now - sum(times) // len(times)), len(entries))

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
        self.bytes_in += other.bytes_in
        self.transport.merge(other.transport)
        for source, lag in other.lag.items():
            self.lag.setdefault(source, Lag()).merge(lag)
        self.tag_fetch_errors += other.tag_fetch_errors
        self.unmappable.update(other.unmappable)
        for problem in other.problems:
            self.note_problem(problem)

    def summary(self) -> dict[str, Any]:
        """A flat summary for the invocation's log line."""
        return {
            "events_read": self.events_read,
            **{f"events_{outcome.value}": self.total(outcome) for outcome in Outcome},
            "events_scrubbed": self.scrubbed,
            "events_unmappable": sum(self.unmappable.values()),
            "skipped": {reason.value: count for reason, count in self.skipped.items()},
            "input_errors": self.input_errors,
            "bytes_in": self.bytes_in,
            "bytes_out": self.transport.bytes_out,
            "requests": self.transport.requests,
            "retries": self.transport.retries,
            "lag_max_ms": max((lag.max_ms for lag in self.lag.values()), default=0),
            "tag_fetch_errors": self.tag_fetch_errors,
            "by_source": {f"{trigger}/{source}": count for (trigger, source), count in sorted(self.read.items())},
        }


_TIMESTAMP = b'"timestamp":'


def member_time(name: str, ms_per_unit: float = 1.0) -> EntryTime:
    """A reader of the time an entry carries in its top-level member `name` (epoch ms; with
    `ms_per_unit` 1000, epoch seconds); None when it has none, or the entry is not a JSON object.
    msgspec skips every other member without building it: a few µs for an entry of a few KB, and
    it runs twice per batch, never per event."""
    decoder = msgspec.json.Decoder(msgspec.defstruct("Timed", [(name, float | None, None)]))

    def read(body: bytes) -> int | None:
        try:
            when = getattr(decoder.decode(body), name)
        except (msgspec.DecodeError, RecursionError):
            return None
        return round(when * ms_per_unit) if when is not None and when > 0 else None

    return read


_timestamp_member = member_time("timestamp")


def entry_time_ms(body: bytes) -> int | None:
    """The epoch-ms `timestamp` of a Datadog entry (also what the JSON intakes carry, and an OCSF
    object's Datadog entry). Most end with it, so the last bytes are looked at first; an entry
    written whole (a record with a reserved name, a cut audit event, OCSF) is read for it."""
    tail = body[-32:]
    at = tail.rfind(_TIMESTAMP)
    rest = tail[at + len(_TIMESTAMP) : -1] if at >= 0 else b""
    if rest.isdigit() and tail.endswith(b"}"):  # one brace after it: a member of the entry, not of a nested object
        return int(rest)
    return _timestamp_member(body)


def publish(tally: Tally, service: str) -> None:
    """Emit the tally as CloudWatch EMF metrics (JSON lines on stdout, read by Lambda's log agent):
    a few per source with `service` and `source` dimensions, then all with `service` alone."""
    from aws_lambda_powertools import Metrics
    from aws_lambda_powertools.metrics import MetricUnit

    _publish_by_source(tally, service)  # first: the invocation's own line stays the last one
    metrics = Metrics(namespace=NAMESPACE, service=service)
    # Powertools keeps metrics at class level and does not clear them when metrics are disabled:
    # start clean so a warm container neither grows nor reports an earlier invocation's counts.
    metrics.clear_metrics()
    count, ms, size, seconds = MetricUnit.Count, MetricUnit.Milliseconds, MetricUnit.Bytes, MetricUnit.Seconds
    metrics.add_metric(name="EventsRead", unit=count, value=tally.events_read)
    for outcome in Outcome:
        metrics.add_metric(name=f"Events{outcome.value.title()}", unit=count, value=tally.total(outcome))
    replayed = sum(n for (trigger, _, name), n in tally.outcomes.items() if trigger == "replay" and name == "delivered")
    metrics.add_metric(name="EventsReplayed", unit=count, value=replayed)
    metrics.add_metric(name="EventsScrubbed", unit=count, value=tally.scrubbed)
    metrics.add_metric(name="EventsUnmappable", unit=count, value=sum(tally.unmappable.values()))
    metrics.add_metric(name="ItemsSkipped", unit=count, value=sum(tally.skipped.values()))
    for reason, skipped in sorted(tally.skipped.items()):
        metrics.add_metric(name=f"Skipped_{reason}", unit=count, value=skipped)
    metrics.add_metric(name="InputErrors", unit=count, value=tally.input_errors)
    metrics.add_metric(name="BytesIn", unit=size, value=tally.bytes_in)
    sent = tally.transport
    metrics.add_metric(name="BytesOut", unit=size, value=sent.bytes_out)
    metrics.add_metric(name="Requests", unit=count, value=sent.requests)
    metrics.add_metric(name="Retries", unit=count, value=sent.retries)
    if sent.requests:
        metrics.add_metric(name="DeliveryLatencyMax", unit=ms, value=sent.latency_ms_max)
        metrics.add_metric(name="DeliveryLatencyAvg", unit=ms, value=sent.latency_ms_total / sent.requests)
    lags = tally.lag.values()
    if lags:  # in seconds, as the lag alarm's threshold (LagAlarmSeconds) is given
        lagged = sum(lag.events for lag in lags) or 1
        metrics.add_metric(name="LagMax", unit=seconds, value=max(lag.max_ms for lag in lags) / 1000)
        metrics.add_metric(name="LagAvg", unit=seconds, value=sum(lag.sum_ms for lag in lags) / lagged / 1000)
    metrics.add_metric(name="TagFetchErrors", unit=count, value=tally.tag_fetch_errors)
    metrics.flush_metrics()
    metrics.clear_metrics()


def _publish_by_source(tally: Tally, service: str) -> None:
    """A few metrics per source name (cloudtrail, eks_audit...: a closed, small set; never a bucket
    or key), so a dashboard can tell which source is behind."""
    from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

    sources = sorted({source for _, source in tally.read} | set(tally.lag))
    for source in sources:
        metrics = EphemeralMetrics(namespace=NAMESPACE, service=service)
        metrics.add_dimension(name="source", value=source)
        read = sum(n for (_, name), n in tally.read.items() if name == source)
        metrics.add_metric(name="EventsRead", unit=MetricUnit.Count, value=read)
        for outcome in (Outcome.DELIVERED, Outcome.FAILED):
            done = sum(n for (_, name, what), n in tally.outcomes.items() if name == source and what == outcome)
            metrics.add_metric(name=f"Events{outcome.value.title()}", unit=MetricUnit.Count, value=done)
        unmappable = sum(n for (_, name), n in tally.unmappable.items() if name == source)
        if unmappable:  # only where an output had some: a metric per source costs, and most have none
            metrics.add_metric(name="EventsUnmappable", unit=MetricUnit.Count, value=unmappable)
        lag = tally.lag.get(source)
        if lag is not None:
            metrics.add_metric(name="LagMax", unit=MetricUnit.Seconds, value=lag.max_ms / 1000)
        metrics.flush_metrics()
