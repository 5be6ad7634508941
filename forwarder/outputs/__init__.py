"""Outputs: an encoder (events → entries in a wire format) and a transport (entries → the intake).

An output is chosen once per container: `encoder` labels and encodes the events of one container,
`send` frames a batch of entries as one request body and hands it to the transport, which owns the
session, TLS, proxies, compression, retries and the deadline (`outputs.http`). Batching keeps each
request within the intake's limits (`outputs.batch`). `entry_time` reads back the time an entry
carries, for the lag from each event's own time to its delivery.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from forwarder.formats import Block
from forwarder.metrics import EntryTime, TransportStats, entry_time_ms
from forwarder.model import Container, Deadline, Entry, Invoker, Source
from forwarder.outputs.batch import Batch


class Encoder(Protocol):
    """Encodes one container's blocks; `watched` names the top-level record fields it must know of."""

    watched: frozenset[str]

    @property
    def unmappable(self) -> int:
        """Events so far of a kind the format maps that could not be mapped (delivered marked); 0
        for a format that represents every event as it is."""
        ...

    def entries(self, block: Block) -> list[Entry]: ...


class Transport(Protocol):
    """Sends one request body, retrying within the deadline; raises DeliveryError when it cannot."""

    def send(self, body: bytes, deadline: Deadline, stats: TransportStats | None = None) -> None: ...

    def close(self) -> None: ...


class Output:
    """An encoder per container, a framing of entries into a request body, a transport, and where
    its entries carry their time (a Datadog entry's `timestamp` unless given)."""

    def __init__(
        self,
        encoder: Callable[[Source, Container, Invoker], Encoder],
        watched: frozenset[str],
        frame: Callable[[list[Entry]], bytes],
        transport: Transport,
        entry_time: EntryTime = entry_time_ms,
    ) -> None:
        self.encoder = encoder
        self.watched = watched
        self._frame = frame
        self.transport = transport
        self.entry_time = entry_time

    def send(self, batch: Batch, deadline: Deadline, stats: TransportStats | None = None) -> None:
        self.transport.send(self._frame(batch.entries), deadline, stats)

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> Output:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
