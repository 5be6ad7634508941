"""A run of CloudTrail records: cut and checked together (`RunCutter`), encoded in one loop. Its byte contract.

Every record of a run begins with `RUN_FIRST_KEY` (CloudTrail writes `eventVersion` first). A run
holds, for record i, `members[i]`: the record's bytes after `{"eventVersion"` and before its closing
`}`. So record i is `{` + INTERIOR_PREFIX + members[i] + `}`, and its interior (the record less its
braces, what an encoder splices after its own members) is INTERIOR_PREFIX + members[i]. The records
were separated by one comma in the document, and the last ends `end_offset` decompressed bytes
into the object.
"""

from __future__ import annotations

from collections.abc import Iterator

import msgspec
import simdjson

from forwarder.formats.jsonhead import Head, HeadReader
from forwarder.model import RawEvent

RUN_FIRST_KEY = b'{"eventVersion"'
"""How every record of a `RecordRun` begins."""
INTERIOR_PREFIX = RUN_FIRST_KEY[1:]
RUN_LITERAL = b"}," + RUN_FIRST_KEY
"""Where a run is cut: between two records, as CloudTrail writes them."""
RUN_SEPARATOR = b"}],[" + RUN_FIRST_KEY


class RecordRun(msgspec.Struct, gc=False):
    """Consecutive records at `position`...; `heads[i]` is record i's head as its run checked it."""

    position: int
    members: list[bytes]
    heads: list[Head]
    end_offset: int
    record_head: type[Head]
    """The head type of a record alone (`jsonhead.head_types`), which `heads` are given as."""

    @classmethod
    def from_cut(
        cls, position: int, pieces: list[bytes], heads: list[Head], end_offset: int, record_head: type[Head]
    ) -> RecordRun:
        """The run from `b"[" + span + b"]"` split at `},{"eventVersion"`, with the first piece's `[[`
        and the last one's `]]` added for checking: trimmed here to the members."""
        pieces[0] = pieces[0][2 + len(RUN_FIRST_KEY) :]
        pieces[-1] = pieces[-1][:-3]
        return cls(position, pieces, heads, end_offset, record_head)

    def __len__(self) -> int:
        return len(self.members)

    def record(self, index: int) -> bytes:
        return RUN_FIRST_KEY + self.members[index] + b"}"

    def event(self, index: int) -> RawEvent:
        """Record `index` as a `RawEvent`, for the rare record an encoder handles on its own."""
        return RawEvent.structured(self.position + index, self.record(index), self._record_head(self.heads[index]))

    def events(self) -> Iterator[RawEvent]:
        """The run as the `RawEvent`s cutting record by record gives, end offsets included."""
        end = self.end_offset - sum(len(member) + len(RUN_FIRST_KEY) + 2 for member in self.members) + 1
        for index, head in enumerate(self.heads):
            record = self.record(index)
            end += len(record) + 1 if index else len(record)
            yield RawEvent.structured(self.position + index, record, self._record_head(head), end)

    def _record_head(self, run_head: Head) -> Head:
        return self.record_head(*msgspec.structs.astuple(run_head))

    def last(self) -> RawEvent:
        """A marker for the run's last record: where a continuation would start after it."""
        return RawEvent.marker(self.position + len(self.members) - 1, self.end_offset)


class RunCutter:
    """Cuts a run of records and proves the cuts, for one reader (its simdjson parser is its own).

    `refused` counts the runs whose cuts could not be proved, for the reader to stop trying.
    """

    def __init__(self, heads: HeadReader, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.refused = 0
        self._record_head = heads.record_head
        self._validator = simdjson.Parser(max_capacity=max_bytes + 2)
        self._decode_heads = msgspec.json.Decoder(list[tuple[heads.run_head]]).decode  # type: ignore[name-defined]

    def cut(self, data: bytes, start: int, index: int, base: int) -> RecordRun | None:
        """The records from `data[start]` (record `index`, `base` the offset of `data`) up to the last
        literal within `max_bytes`, cut and checked at once.

        simdjson validates the span as the JSON array `[span]` in one call, as `HeadReader.read` does
        each record. Then each cut `},{"eventVersion"` becomes `}],[{"eventVersion"`, and msgspec decodes
        the whole `[[...]]`, one array per proposed record, as a list of 1-tuples of `RunHead` in one
        more call. The cuts are exactly the records when there is one tuple per cut plus one: the
        added brackets cancel out, and inside the valid `[span]` no byte of it is at the top level,
        so only cuts between records can separate top-level tuples; a boundary between records that
        is not a cut leaves two records in one tuple, which a 1-tuple refuses. None when any of it
        fails (a nested object that starts with the key, a span past the end of the array, a reserved
        name, a number or a depth simdjson refuses...): those records go one by one.
        """
        if not data.startswith(RUN_FIRST_KEY, start):
            return None
        at = data.rfind(RUN_LITERAL, start + 1, start + self.max_bytes)
        if at < 0:
            return None
        end = at + 1
        array = b"".join((b"[", memoryview(data)[start:end], b"]"))
        members = array.split(RUN_LITERAL)  # the first and last keep a bracket and their key until trimmed
        members[0] = b"[" + members[0]
        members[-1] += b"]"
        try:
            checked = self._validator.parse(array)
            del checked  # the parser refuses another document while a result of it is alive
            tuples = self._decode_heads(RUN_SEPARATOR.join(members))
        except (ValueError, RuntimeError, RecursionError, msgspec.DecodeError):
            tuples = []
        if len(tuples) != len(members):
            self.refused += 1
            return None
        return RecordRun.from_cut(index, members, [head for (head,) in tuples], base + end, self._record_head)
