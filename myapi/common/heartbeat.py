"""Tell gunicorn's arbiter that a worker is alive while it serves one long request.

A sync worker beats only between requests, so an export or import longer
than ``--timeout`` would be killed mid-stream; that was the one reason the
default was once gthread. The sync worker registers its ``notify`` here
when it starts (myapi.serving.SyncProblemWorker); the loops of a long
request — each chunk of a streamed answer, each read of a request body —
call :func:`beat`, which notifies at most once a second. Outside gunicorn
(tests, the threaded workers, which beat on their own) nothing is registered
and :func:`beat` does nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator

EVERY = 1.0  # seconds between beats: gunicorn's timeout is whole seconds, at least 1

_notify: Callable[[], None] | None = None
_last = 0.0


def register(notify: Callable[[], None]) -> None:
    """This process's worker beats by calling ``notify`` (gunicorn's ``Worker.notify``)."""
    global _notify
    _notify = notify


def beat() -> None:
    global _last
    if _notify is None:
        return
    now = time.monotonic()
    if now - _last >= EVERY:
        _last = now
        _notify()


def beating(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """``chunks``, beating as each one is produced."""
    for chunk in chunks:
        beat()
        yield chunk
