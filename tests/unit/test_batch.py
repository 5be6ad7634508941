"""batch: entries packed in order into batches within the intake's count and byte limits."""

from __future__ import annotations

import itertools

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from forwarder.model import Entry
from forwarder.outputs.batch import Batch, batches, json_array


def entry(size: int, tag: int = 0) -> Entry:
    """A JSON string entry of exactly `size` bytes (size >= 2), starting with `tag`'s last digit when it fits."""
    filler = (str(tag % 10).encode() + b"x" * size)[: size - 2]
    return Entry(b'"' + filler + b'"')


json_values = st.one_of(st.integers(-(2**63), 2**63 - 1), st.text(max_size=40))  # orjson: 64-bit integers only
json_entries = st.lists(
    st.dictionaries(st.text(max_size=5), json_values, max_size=4).map(lambda value: Entry(orjson.dumps(value))),
    max_size=60,
)


@given(entries=json_entries, max_entries=st.integers(1, 12), slack=st.integers(0, 300))
def test_batches_keep_every_entry_in_order_within_both_limits(
    entries: list[Entry], max_entries: int, slack: int
) -> None:
    max_bytes = max((len(e.body) for e in entries), default=0) + 2 + slack
    out = list(batches(entries, max_entries, max_bytes))
    assert [e for b in out for e in b.entries] == entries
    for batch in out:
        assert 1 <= len(batch.entries) <= max_entries
        assert batch.size == len(json_array(batch.entries)) <= max_bytes
        assert len(orjson.loads(json_array(batch.entries))) == len(batch.entries)


@given(sizes=st.lists(st.integers(2, 50), max_size=40), max_entries=st.integers(1, 5), slack=st.integers(0, 60))
def test_each_batch_is_full_before_the_next_starts(sizes: list[int], max_entries: int, slack: int) -> None:
    """Greedy packing: the next batch's first entry did not fit in the previous batch."""
    entries = [entry(size, tag=i) for i, size in enumerate(sizes)]
    max_bytes = 52 + slack
    out = list(batches(entries, max_entries, max_bytes))
    for previous, following in itertools.pairwise(out):
        first = following.entries[0]
        assert len(previous.entries) == max_entries or previous.size + 1 + len(first.body) > max_bytes


def test_no_entries_no_batches() -> None:
    assert list(batches([], 10, 100)) == []


def test_exact_byte_fit_is_allowed() -> None:
    # [aa,bb] is 7 bytes: two 2-byte entries, a comma and brackets.
    out = list(batches([entry(2), entry(2), entry(2)], 10, 7))
    assert [len(b.entries) for b in out] == [2, 1]
    assert out[0].size == 7


def test_count_limit_splits_batches() -> None:
    out = list(batches([entry(3) for _ in range(5)], 2, 1000))
    assert [len(b.entries) for b in out] == [2, 2, 1]


def test_entry_alone_too_large_is_a_bug_upstream() -> None:
    with pytest.raises(ValueError, match="12 bytes"):
        list(batches([entry(5), entry(12)], 10, 13))


def test_lazy_yields_a_full_batch_before_reading_further() -> None:
    """A full batch is handed on before the next entry is read, so delivery starts early."""
    read: list[int] = []

    def source():
        for i in range(5):
            read.append(i)
            yield entry(4, tag=i)

    stream = batches(source(), 2, 1000)
    first = next(stream)
    assert [e.body for e in first.entries] == [b'"0x"', b'"1x"']
    assert read == [0, 1]


def test_batch_full_by_bytes_is_yielded_without_waiting() -> None:
    read: list[int] = []

    def source():
        for i in range(3):
            read.append(i)
            yield entry(8, tag=i)

    first = next(batches(source(), 10, 10))
    assert first.size == 10
    assert read == [0]


def test_invalid_max_entries() -> None:
    with pytest.raises(ValueError):
        list(batches([entry(3)], 0, 100))


def test_batch_body_is_a_json_array() -> None:
    out = next(batches([Entry(b'{"a":1}'), Entry(b'{"b":2}')], 10, 100))
    assert isinstance(out, Batch)
    assert orjson.loads(json_array(out.entries)) == [{"a": 1}, {"b": 2}]
