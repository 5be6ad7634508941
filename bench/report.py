"""The results as Markdown tables, their place in docs/performance.md, and py-spy profiles summarised."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from bench import MB, ROOT
from bench.processes import IMPORT_RUNS

if TYPE_CHECKING:
    from bench.measure import Row
    from bench.processing import Processed

DOC = ROOT / "docs" / "performance.md"
TABLE_START = "<!-- bench:start -->"
TABLE_END = "<!-- bench:end -->"


def render(
    rows: list[Row],
    import_ms: float,
    baseline: tuple[str, float] | None = None,
    processing: tuple[list[Processed], list[Processed]] | None = None,
) -> str:
    """The table of every row, the cold start, and the side-by-side tables: the baseline's (`baseline` is its
    label and cold start) and the Datadog Forwarder's, when they ran; then the processing tables (the rules'
    rows and the audit policy's), when measured."""
    lines = _main_table(rows)
    lines.append("")
    lines.append(f"Cold start, `import forwarder.handler` in a fresh interpreter: {import_ms:.0f} ms")
    if baseline is not None:
        lines[-1] += f", the baseline's {baseline[1]:.0f} ms"
    lines[-1] += f" (median of {IMPORT_RUNS})."
    if baseline is not None:
        lines += _baseline_table(rows, baseline[0])
    lines += _datadog_table(rows)
    if processing is not None:
        lines += _processing_tables(*processing, current_only=baseline is not None)
    return "\n".join(lines)


def _main_table(rows: list[Row]) -> list[str]:
    lines = [
        "| input | size MB | events | raw limit MB/s | forwarder MB/s | ratio to raw limit "
        "| MB/s, reading-only intake | ratio, reading-only intake "
        "| forwarder MB per CPU-s | CPU ratio to raw limit | RSS after imports MB | peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        for shown in (row, row.baseline):
            if shown is not None:
                lines.append(
                    f"| {shown.input} | {shown.size_mb:.0f} | {shown.events:,} | {shown.raw_mbps:.1f} "
                    f"| {shown.mbps:.1f} | {shown.ratio:.2f} | {shown.quiet_mbps:.1f} | {shown.quiet_ratio:.2f} "
                    f"| {shown.cpu_mbps:.1f} | {shown.cpu_ratio:.2f} | {shown.imports_mb:.0f} | {shown.peak_mb:.0f} |"
                )
    return lines


def _baseline_table(rows: list[Row], label: str) -> list[str]:
    lines = [
        "",
        f"Current vs baseline (`BENCH_BASELINE`, {label}): the same inputs, interpreter, moto and intake in the "
        "same run; a ratio above 1 is the current forwarder faster (for CPU, cheaper).",
        "",
        "| input | current MB/s | baseline MB/s | current vs baseline "
        "| reading-only intake: current MB/s | baseline MB/s | current vs baseline "
        "| current MB per CPU-s | baseline MB per CPU-s | current vs baseline "
        "| current peak RSS MB | baseline peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        if (old := row.baseline) is not None:
            lines.append(
                f"| {row.input} | {row.mbps:.1f} | {old.mbps:.1f} | {row.mbps / old.mbps:.2f} "
                f"| {row.quiet_mbps:.1f} | {old.quiet_mbps:.1f} | {row.quiet_mbps / old.quiet_mbps:.2f} "
                f"| {row.cpu_mbps:.1f} | {old.cpu_mbps:.1f} | {row.cpu_mbps / old.cpu_mbps:.2f} "
                f"| {row.peak_mb:.0f} | {old.peak_mb:.0f} |"
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


def _processing_tables(rules: list[Processed], policies: list[Processed], current_only: bool) -> list[str]:
    """The rules against the plain run on each input, and the audit policies against none."""
    lead = (
        "Processing, in-process (`bench.processing`: reading, processors, entries and request bodies, without "
        "gzip or HTTP"
        + ("; the current code only, not the baseline" if current_only else "")
        + "). MB out is the request bodies' bytes, uncompressed, metadata included."
    )
    rule_columns = ("MB per CPU-s", "µs per event", "of which processors", "CPU vs plain")
    policy_columns = (
        "events out vs none",
        "bytes out vs none",
        "µs per event",
        "µs per event applying the policy",
        "CPU ms",
    )
    return [
        "",
        lead,
        *_compared(rules, "rules", rule_columns, _rule_cells),
        *_compared(policies, "audit policy", policy_columns, _policy_cells),
    ]


def _compared(
    rows: list[Processed],
    setting: str,
    columns: tuple[str, ...],
    cells: Callable[[Processed, Processed], tuple[str, ...]],
) -> list[str]:
    """A table of processing rows, each beside its input's first row (plain, no policy)."""
    head = ("input", setting, "events in", "events out", "MB in", "MB out", *columns)
    lines = ["", f"| {' | '.join(head)} |", "|---|---|" + "---:|" * (len(head) - 2)]
    first: dict[str, Processed] = {}
    for row in rows:
        base = first.setdefault(row.input, row)
        flow = (f"{row.events_in:,}", f"{row.events_out:,}", f"{row.bytes_in / MB:.2f}", f"{row.bytes_out / MB:.2f}")
        lines.append(f"| {' | '.join((row.input, row.setting, *flow, *cells(row, base)))} |")
    return lines


def _rule_cells(row: Processed, plain: Processed) -> tuple[str, ...]:
    return (
        f"{row.mb_per_cpu_second:.1f}",
        f"{row.us_per_event(row.cpu_seconds):.1f}",
        f"{row.us_per_event(row.processors_cpu_seconds):.1f}",
        f"{row.cpu_seconds / plain.cpu_seconds:.2f}",
    )


def _policy_cells(row: Processed, none: Processed) -> tuple[str, ...]:
    return (
        f"{row.events_out / none.events_out:.2f}",
        f"{row.bytes_out / none.bytes_out:.2f}",
        f"{row.us_per_event(row.cpu_seconds):.1f}",
        f"{row.us_per_event(row.processors_cpu_seconds):.1f}",
        f"{row.cpu_seconds * 1000:.0f}",
    )


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
        forwarding = "forward (handler.py)" in frames and "client (runtime.py)" not in frames
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
