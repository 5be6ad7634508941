"""The bench's own checks: its intake counts only JSON arrays of objects, and repeats keep the best run."""

from __future__ import annotations

import pytest

from bench.intake import entry_count
from bench.measure import best_in_both_modes, best_of


def test_the_intake_counts_an_array_of_objects() -> None:
    assert entry_count(b'[{"a":1},{"b":[1,2,{"c":"\xc3\xa9"}]},{}]') == 3
    assert entry_count(b"[]") == 0
    assert entry_count(b'[{"a":1}]') == 1  # the parser is free again for the next request
    assert entry_count(b'[{"n":18446744073709551616},{"m":-9223372036854775809}]') == 2  # orjson's call


@pytest.mark.parametrize(
    "body",
    [
        b'[{"a":1},2]',  # not all objects
        b'{"a":1}',  # not an array
        b'[{"a":1}',  # cut short
        b'[{"a":"\xff"}]',  # not UTF-8
        b'[{"a":1e999}]',  # past the double range
        b'[{"n":18446744073709551616},3]',  # refused by simdjson, then not all objects
        b"",
    ],
)
def test_the_intake_refuses_anything_else(body: bytes) -> None:
    with pytest.raises(ValueError):
        entry_count(body)
    assert entry_count(b'[{"a":1}]') == 1


def test_repeats_keep_the_fastest_times_and_the_largest_memory() -> None:
    runs = [
        {"seconds": 2.0, "cpu_seconds": 1.0, "peak_mb": 90.0, "read": 5},
        {"seconds": 1.5, "cpu_seconds": 1.2, "peak_mb": 95.0, "read": 5},
    ]
    assert best_of(runs) == {"seconds": 1.5, "cpu_seconds": 1.0, "peak_mb": 95.0, "read": 5}


def test_both_modes_are_run_checked_and_their_least_cpu_kept() -> None:
    measured = iter([(3.0, 2.0), (2.0, 2.5), (1.0, 1.5), (1.2, 1.1)])
    calls: list[tuple[str, bool]] = []

    def run_once(decode: bool) -> dict[str, float]:
        seconds, cpu = next(measured)
        calls.append(("run", decode))
        return {"seconds": seconds, "cpu_seconds": cpu}

    def check(run: dict[str, float], decode: bool) -> None:
        calls.append(("check", decode))

    decoding, reading_only = best_in_both_modes(run_once, check, repeat=2)
    assert calls == [("run", True), ("check", True)] * 2 + [("run", False), ("check", False)] * 2
    assert decoding == {"seconds": 2.0, "cpu_seconds": 1.1}
    assert reading_only == {"seconds": 1.0, "cpu_seconds": 1.1}
