"""The delivery threads: several requests in flight, each batch yielded once with its outcome."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from forwarder.errors import DeliveryError
from forwarder.model import Deadline
from forwarder.outputs.batch import Batch


def deliver(
    send: Callable[[Batch, Deadline], None], batches: Iterable[Batch], deadline: Deadline, max_in_flight: int
) -> Iterator[tuple[Batch, DeliveryError | None]]:
    """Send batches concurrently and yield each with its outcome (None when delivered) as it completes.

    Batches are pulled lazily and only while fewer than `max_in_flight` are being sent, so at most
    max_in_flight + 1 batches exist at once. Each batch given is yielded exactly once. When producing
    the batches raises (the handler turns bad input into a normal end of its entries, so this is a
    bug upstream), the batches already sent are still awaited and yielded first, so the events read
    before it are delivered and accounted; then the error is raised.
    """
    if max_in_flight < 1:
        raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
    pool = _senders(max_in_flight)
    source = iter(batches)
    upstream_error: Exception | None = None
    exhausted = False
    in_flight: dict[Future[None], Batch] = {}
    try:
        while True:
            while not exhausted and len(in_flight) < max_in_flight:
                try:
                    batch = next(source)
                except StopIteration:
                    exhausted = True
                except Exception as exc:  # re-raised below, once the batches in flight are accounted
                    upstream_error, exhausted = exc, True
                else:
                    in_flight[pool.submit(send, batch, deadline)] = batch
            if not in_flight:
                break
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in done:
                yield in_flight.pop(future), _outcome(future)
    finally:
        wait(in_flight)  # closed early: no send outlives the call that started it
    if upstream_error is not None:
        raise upstream_error


@functools.cache
def _senders(threads: int) -> ThreadPoolExecutor:
    """The delivery threads, kept for the container's life (one pool per size; the handler uses one).

    Starting a pool per call cost about 1.5 ms of CPU per invocation, most of it gzip's first
    buffers in each new thread: a seventh of an EKS audit payload's whole cost. Idle threads wait on
    the pool's queue between invocations, and no more than `threads` exist. A forked child has none
    of its parent's threads, so it starts its own pools.
    """
    return ThreadPoolExecutor(max_workers=threads, thread_name_prefix="deliver")


os.register_at_fork(after_in_child=_senders.cache_clear)


def _outcome(future: Future[None]) -> DeliveryError | None:
    """The send's failure; an unexpected exception still fails its batch so no event goes unaccounted."""
    exc = future.exception()
    if exc is None or isinstance(exc, DeliveryError):
        return exc
    error = DeliveryError(f"unexpected error while sending ({type(exc).__name__})")
    error.__cause__ = exc
    return error
