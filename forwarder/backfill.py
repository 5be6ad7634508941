"""`forwarder backfill s3://bucket/prefix`: the pipeline over every object under a prefix, on one machine.

Each object goes through its own `Pipeline` (one per object, as one invocation per notification in
Lambda), on a bounded pool of worker threads; readers keep their simdjson parsers per instance, so
objects read concurrently share none. There is no Lambda deadline: each object gets a long
`LocalContext`, so it is read to its end and never handed to a continuation queue.

Resumable: an object is recorded in the checkpoint file (`--state`, one JSON object per line: key
and ETag) as soon as every one of its events has an outcome other than failed; a rerun skips
objects recorded with the same ETag, so nothing accepted is sent again. Ctrl-C or SIGTERM stops
starting objects, lets the ones in flight finish and be recorded, and exits; a second one abandons
them (they are not recorded, and a rerun forwards them again).

`--since`/`--until` (whole UTC days, both included) compare the date in the key when it has one
(CloudTrail's `.../YYYY/MM/DD/...`: the day the events happened, which a copied or restored
archive keeps) and the object's LastModified otherwise.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import orjson

from forwarder import runtime
from forwarder.metrics import Outcome, Tally
from forwarder.model import Deadline, Invoker, S3Object
from forwarder.pipeline import Pipeline, Unit
from forwarder.process import processors
from forwarder.settings import Settings

OBJECT_TIMEOUT_SECONDS = 7 * 24 * 3600.0
"""Each object's own "invocation" time: long enough that no object stops part-way."""
TRIGGER = "backfill"
_KEY_DATE = re.compile(r"/(\d{4})/(\d{2})/(\d{2})/")


@dataclass(frozen=True)
class Listed:
    """One object under the prefix, as the listing gave it."""

    key: str
    etag: str
    size: int
    modified: dt.datetime


@dataclass(frozen=True)
class Window:
    """The days to backfill, both ends included; None is open."""

    since: dt.date | None = None
    until: dt.date | None = None

    def holds(self, listed: Listed) -> bool:
        day = key_date(listed.key) or listed.modified.astimezone(dt.UTC).date()
        return (self.since is None or day >= self.since) and (self.until is None or day <= self.until)


def key_date(key: str) -> dt.date | None:
    """The date a CloudTrail-style key names (`.../YYYY/MM/DD/...`), if it names a valid one."""
    match = _KEY_DATE.search(key)
    if match is None:
        return None
    try:
        return dt.date(*(int(part) for part in match.groups()))
    except ValueError:
        return None


def default_state_path(bucket: str, prefix: str) -> Path:
    digest = hashlib.sha256(f"s3://{bucket}/{prefix}".encode()).hexdigest()[:12]
    return Path(f".forwarder-backfill-{digest}.json")


class Checkpoints:
    """The objects done, appended one JSON line each as they finish; a torn last line is ignored."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.done: dict[str, str] = {}
        self._lock = threading.Lock()
        if path.exists():
            for line in path.read_bytes().splitlines():
                try:
                    record = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue  # a line cut short by a crash: its object is simply forwarded again
                if isinstance(record, dict) and isinstance(record.get("key"), str):
                    self.done[record["key"]] = str(record.get("etag", ""))

    def is_done(self, listed: Listed) -> bool:
        return self.done.get(listed.key) == listed.etag

    def record(self, listed: Listed) -> None:
        line = orjson.dumps({"key": listed.key, "etag": listed.etag}) + b"\n"
        with self._lock, self.path.open("ab") as out:
            out.write(line)
            out.flush()
            os.fsync(out.fileno())  # recorded means sent: a crash must not forget it
        self.done[listed.key] = listed.etag


@dataclass
class Progress:
    """Objects, events and bytes so far; rendered in place on a terminal, a line at a time otherwise."""

    objects: int
    total_bytes: int
    out: TextIO = sys.stderr
    every_seconds: float = 10.0
    done: int = 0
    events: int = 0
    bytes_done: int = 0
    started: float = field(default_factory=time.monotonic)
    _last: float = 0.0

    def add(self, listed: Listed, events: int) -> None:
        self.done += 1
        self.events += events
        self.bytes_done += listed.size

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = self.bytes_done / elapsed
        left = self.total_bytes - self.bytes_done
        eta = _clock(left / rate) if rate > 0 else "--:--:--"
        share = self.bytes_done / self.total_bytes if self.total_bytes else 1.0
        width = 20
        bar = "#" * int(share * width)
        return (
            f"[{bar:<{width}}] objects {self.done}/{self.objects}  events {self.events:,}  "
            f"{rate / 1e6:.2f} MB/s  ETA {eta}"
        )

    def show(self, final: bool = False) -> None:
        """Render when due: at most 5 times a second in place on a terminal, every `every_seconds` otherwise."""
        now = time.monotonic()
        tty = self.out.isatty()
        if not final and now - self._last < (0.2 if tty else self.every_seconds):
            return
        self._last = now
        self.out.write(("\r" + self.line() + ("\n" if final else "")) if tty else self.line() + "\n")
        self.out.flush()


@dataclass
class Report:
    """What the backfill did: the merged counts, the objects skipped as done, and the failures."""

    tally: Tally = field(default_factory=Tally)
    listed: int = 0
    already_done: int = 0
    forwarded: int = 0
    bytes_read: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    interrupted: bool = False
    seconds: float = 0.0

    def summary(self) -> str:
        t = self.tally
        outcomes = ", ".join(f"{t.total(outcome)} {outcome.value}" for outcome in Outcome)
        lines = [
            f"forwarder backfill: {self.listed} objects listed, {self.already_done} already done, "
            f"{self.forwarded} forwarded, {len(self.failed)} failed"
            + (" (interrupted: rerun to continue)" if self.interrupted else ""),
            f"  events: {t.events_read} read; {outcomes}",
            f"  {self.bytes_read / 1e6:.1f} MB in {self.seconds:.1f} s; {t.transport.requests} requests "
            f"({t.transport.retries} retries), {t.transport.bytes_out / 1e6:.1f} MB sent",
        ]
        lines += [f"  failed: s3://{key}: {reason}" for key, reason in sorted(self.failed.items())]
        return "\n".join(lines)


@dataclass
class Backfill:
    """One backfill run: where, which days, how many workers, and where its checkpoints go."""

    settings: Settings
    bucket: str
    prefix: str
    window: Window = field(default_factory=Window)
    workers: int = 4
    state: Path | None = None
    out: TextIO = sys.stderr
    progress_every: float = 10.0
    stop_after: int | None = None
    """Stop starting objects after this many finished (a test hook for an interruption)."""
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        # Read each object to its end: no continuation queue, however long it takes.
        self.settings = dataclasses.replace(self.settings, continuation_queue_url="")

    def run(self) -> Report:
        report = Report()
        started = time.monotonic()
        checkpoints = Checkpoints(self.state or default_state_path(self.bucket, self.prefix))
        todo = []
        for listed in self.listing():
            report.listed += 1
            if checkpoints.is_done(listed):
                report.already_done += 1
            else:
                todo.append(listed)
        progress = Progress(len(todo), sum(item.size for item in todo), self.out, self.progress_every)
        runtime.OUTPUT.get(self.settings)  # built once here, not raced by the workers; a bad key fails now
        with _signals_stop(self.stop):
            self._forward_all(todo, checkpoints, progress, report)
        progress.show(final=True)
        report.interrupted = self.stop.is_set() and report.forwarded + len(report.failed) < len(todo)
        report.seconds = time.monotonic() - started
        return report

    def listing(self) -> Iterator[Listed]:
        pages = runtime.client("s3").get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix)
        for page in pages:
            for item in page.get("Contents", []):
                listed = Listed(item["Key"], item.get("ETag", ""), item.get("Size", 0), item["LastModified"])
                if not listed.key.endswith("/") and self.window.holds(listed):
                    yield listed

    def _forward_all(self, todo: list[Listed], checkpoints: Checkpoints, progress: Progress, report: Report) -> None:
        """Keep `workers` objects in flight until all are done or a stop is asked for."""
        pending = iter(todo)
        in_flight: dict[Future[tuple[Tally, bool]], Listed] = {}
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="backfill") as pool:
            while True:
                while not self.stop.is_set() and len(in_flight) < self.workers:
                    listed = next(pending, None)
                    if listed is None:
                        break
                    in_flight[pool.submit(self.forward, listed)] = listed
                if not in_flight:
                    return
                done, _ = wait(in_flight, timeout=0.2, return_when=FIRST_COMPLETED)
                for future in done:
                    self._settle(in_flight.pop(future), future, checkpoints, progress, report)
                progress.show()

    def _settle(
        self,
        listed: Listed,
        future: Future[tuple[Tally, bool]],
        checkpoints: Checkpoints,
        progress: Progress,
        report: Report,
    ) -> None:
        tally, failed = future.result()
        report.tally.merge(tally)
        report.bytes_read += listed.size
        progress.add(listed, tally.events_read)
        if failed:
            report.failed[f"{self.bucket}/{listed.key}"] = "; ".join(tally.problems)
        else:
            checkpoints.record(listed)
            report.forwarded += 1
        if self.stop_after is not None and progress.done >= self.stop_after:
            self.stop.set()

    def forward(self, listed: Listed) -> tuple[Tally, bool]:
        """One object through its own pipeline: its tally, and whether it failed (its problems say why)."""
        from forwarder.cli import LocalContext

        tally = Tally()
        context = LocalContext(timeout_seconds=OBJECT_TIMEOUT_SECONDS)
        invoker = Invoker.from_arn(context.invoked_function_arn, self.settings.region)
        deadline = Deadline(context.get_remaining_time_in_millis, self.settings.deadline_margin_seconds)
        output = runtime.OUTPUT.get(self.settings)
        pipeline = Pipeline(self.settings, invoker, deadline, tally, lambda: output, processors(self.settings, tally))
        unit = Unit(0, TRIGGER, S3Object(self.bucket, listed.key, etag=listed.etag.strip('"'), size=listed.size))
        pipeline.run(unit, None)
        if unit.failed and not tally.problems:
            tally.note_problem(f"{unit.failure.value} failure")
        return tally, unit.failed


class _signals_stop:
    """While active, the first SIGINT or SIGTERM sets `stop` (in-flight objects finish and are
    recorded); a second one exits at once with status 130, abandoning them: every object recorded
    is already on disk, and the abandoned ones are forwarded again whole by a rerun. Only the main
    thread can set handlers."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: object) -> None:
        if self.stop.is_set():
            print("\nforwarder backfill: abandoned the objects in flight; rerun to continue", file=sys.stderr)
            os._exit(130)  # worker threads cannot be stopped part-way; the checkpoint file is already saved
        self.stop.set()
        print("\nforwarder backfill: stopping after the objects in flight (again to abandon them)", file=sys.stderr)

    def __enter__(self) -> _signals_stop:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


def parse_day(text: str) -> dt.date:
    """A `--since`/`--until` day: YYYY-MM-DD."""
    return dt.date.fromisoformat(text)


def split_prefix(uri: str, fail: Callable[[str], Exception]) -> tuple[str, str]:
    """`s3://bucket/prefix` → (bucket, prefix); the prefix may be empty (the whole bucket)."""
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    if not uri.startswith("s3://") or not bucket:
        raise fail(f"not an s3://bucket/prefix address: {uri}")
    return bucket, prefix


def _clock(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"
