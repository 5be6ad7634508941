"""A run of CloudTrail records: cut and checked together, encoded in one loop. Its byte contract.

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

from forwarder.formats.jsonhead import Head
from forwarder.model import RawEvent

RUN_FIRST_KEY = b'{"eventVersion"'
"""How every record of a `RecordRun` begins."""
INTERIOR_PREFIX = RUN_FIRST_KEY[1:]


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
