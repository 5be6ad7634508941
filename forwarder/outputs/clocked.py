"""Answers read on the request's clock: a socket timeout alone applies to each read afresh, so an
intake dripping one byte at a time could hold a request far past its timeout.

The thread making a request sets `request_clock.ends`; the connections of a `ClockedAdapter` then
read the status line, headers and body within what is left of it.
"""

from __future__ import annotations

import functools
import http.client
import io
import socket
import threading
import time
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3 import HTTPConnectionPool, PoolManager

request_clock = threading.local()
"""`ends`: the monotonic time by which the request this thread is making must have its answer."""


class _ClockedReader(io.RawIOBase):
    """A socket reader whose every read waits no longer than the time left until `ends`, and which
    refuses to read once it has passed: a socket timeout alone applies to each read afresh."""

    def __init__(self, raw: io.RawIOBase, sock: socket.socket, ends: float) -> None:
        super().__init__()
        self._raw = raw
        self._sock = sock
        self._ends = ends

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        left = self._ends - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request's time is up")
        self._sock.settimeout(left)
        return self._raw.readinto(buffer)

    def close(self) -> None:
        self._raw.close()
        super().close()


class _ClockedResponse(http.client.HTTPResponse):
    """http.client's response, reading its status line, headers and body through a `_ClockedReader`
    when this thread's request has an end (`request_clock`)."""

    def __init__(self, sock: socket.socket, *args: Any, **kwargs: Any) -> None:
        super().__init__(sock, *args, **kwargs)
        ends = getattr(request_clock, "ends", None)
        if ends is not None and isinstance(self.fp, io.BufferedReader):
            self.fp = io.BufferedReader(_ClockedReader(self.fp.detach(), sock, ends))


@functools.cache
def _clocked_pool(pool: type[HTTPConnectionPool]) -> type[HTTPConnectionPool]:
    """The pool class whose connections answer with `_ClockedResponse` (plain, TLS or SOCKS alike)."""
    base = pool.ConnectionCls
    if getattr(base, "response_class", None) is _ClockedResponse:
        return pool
    connection = type(f"Clocked{base.__name__}", (base,), {"response_class": _ClockedResponse})
    return type(f"Clocked{pool.__name__}", (pool,), {"ConnectionCls": connection})


def _clock_pools(manager: PoolManager) -> PoolManager:
    """The manager, its pools made clocked (idempotent: requests asks for a proxy's manager per request)."""
    classes = manager.pool_classes_by_scheme
    manager.pool_classes_by_scheme = {scheme: _clocked_pool(pool) for scheme, pool in classes.items()}
    return manager


class ClockedAdapter(HTTPAdapter):
    """requests' adapter, its connections (direct or through a proxy) reading answers on the clock."""

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        _clock_pools(self.poolmanager)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        return _clock_pools(super().proxy_manager_for(proxy, **proxy_kwargs))
