"""The results as Markdown tables, their place in docs/performance.md, and py-spy profiles summarised."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from bench import ROOT
from bench.processes import IMPORT_RUNS

if TYPE_CHECKING:
    from bench.measure import Row

DOC = ROOT / "docs" / "performance.md"
TABLE_START = "<!-- bench:start -->"
TABLE_END = "<!-- bench:end -->"


def render(rows: list[Row], import_ms: float) -> str:
    """The table of every row, the cold start, and the Datadog Forwarder's side by side when it ran."""
    lines = _main_table(rows)
    lines.append("")
    lines.append(f"Cold start, `import forwarder.handler` in a fresh interpreter: {import_ms:.0f} ms")
    lines[-1] += f" (median of {IMPORT_RUNS})."
    lines += _datadog_table(rows)
    return "\n".join(lines)


def _main_table(rows: list[Row]) -> list[str]:
    lines = [
        "| input | size MB | events | raw limit MB/s | forwarder MB/s | ratio to raw limit "
        "| MB/s, reading-only intake | ratio, reading-only intake "
        "| forwarder MB per CPU-s | CPU ratio to raw limit | RSS after imports MB | peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row.input} | {row.size_mb:.0f} | {row.events:,} | {row.raw_mbps:.1f} | {row.mbps:.1f} "
            f"| {row.ratio:.2f} | {row.quiet_mbps:.1f} | {row.quiet_ratio:.2f} | {row.cpu_mbps:.1f} "
            f"| {row.cpu_ratio:.2f} | {row.imports_mb:.0f} | {row.peak_mb:.0f} |"
        )
    return lines


def _datadog_table(rows: list[Row]) -> list[str]:
    compared = [(row, row.datadog) for row in rows if row.datadog is not None]
    if not compared:
        return []
    lines = [
        "",
        "Side by side with the Datadog Forwarder (`BENCH_DATADOG_FORWARDER`): the same inputs, moto and "
        "intake, decoding unless said.",
        "",
        "| input | Datadog Forwarder MB/s | this forwarder MB/s | times "
        "| reading-only intake: Datadog MB/s | this MB/s | times "
        "| Datadog MB per CPU-s | this MB per CPU-s | times | Datadog peak RSS MB | this peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row, datadog in compared:
        theirs = row.size_mb / datadog["seconds"]
        their_quiet = row.size_mb / datadog["quiet_seconds"]
        their_cpu = row.size_mb / datadog["cpu_seconds"]
        lines.append(
            f"| {row.input} | {theirs:.1f} | {row.mbps:.1f} | {row.mbps / theirs:.1f} "
            f"| {their_quiet:.1f} | {row.quiet_mbps:.1f} | {row.quiet_mbps / their_quiet:.1f} | {their_cpu:.1f} "
            f"| {row.cpu_mbps:.1f} | {row.cpu_mbps / their_cpu:.1f} | {datadog['peak_mb']:.0f} "
            f"| {row.peak_mb:.0f} |"
        )
    return lines


def write_table(table: str, sizes: list[int], repeat: int, machine: str) -> None:
    """Replace the table between the bench markers in docs/performance.md (the prose is kept)."""
    stamp = time.strftime("%Y-%m-%d", time.gmtime())
    block = (
        f"{TABLE_START}\n"
        f"Measured {stamp} by `make bench` (sizes {','.join(map(str, sizes))} MB, best of {repeat} runs of each) "
        f"on: {machine}.\n\n"
        f"{table}\n{TABLE_END}"
    )
    text = DOC.read_text() if DOC.exists() else f"# Performance\n\n{TABLE_START}\n{TABLE_END}\n"
    if TABLE_START not in text:
        text += f"\n{TABLE_START}\n{TABLE_END}\n"
    head, _, rest = text.partition(TABLE_START)
    _, _, tail = rest.partition(TABLE_END)
    DOC.write_text(head + block + tail)
    print(f"\nwritten to {DOC.relative_to(ROOT)}")


def summarise_profile(path: Path, top: int = 18) -> str:
    """py-spy's raw samples as the share of the timed run's thread-samples per function: self, inclusive."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    by_thread: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [_frame(frame) for frame in stack.split(";")[1:]]
        delivering = "_worker (thread.py)" in frames
        forwarding = "forward (handler.py)" in frames and "_client (handler.py)" not in frames
        if not count.isdigit() or not (delivering or forwarding):
            continue  # imports, settings, the warm-up's S3 client: not the pipeline
        samples = int(count)
        total += samples
        by_thread["delivery threads" if delivering else "main thread"] += samples
        own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    lines = [f"profile {path.name}: {total} samples at 250 Hz, " + ", ".join(f"{k} {v}" for k, v in by_thread.items())]
    lines.append("self time:")
    lines.extend(f"  {100 * n / total:5.1f}%  {name}" for name, n in own.most_common(top))
    lines.append("inclusive:")
    lines.extend(f"  {100 * n / total:5.1f}%  {name}" for name, n in inclusive.most_common(top + 12))
    return "\n".join(lines)


def _frame(frame: str) -> str:
    name, _, where = frame.partition(" (")
    return f"{name} ({where.split(':')[0].rsplit('/', 1)[-1]})" if where else name
