"""A stream's next items produced in a thread while the caller works on the previous one.

Two streams use it, each pairing Python work with work that releases the GIL:

* a PostgreSQL import (services/catalog_import.py): validating the next
  batch (Python) while the database writes this one (the driver waits for
  the server without the GIL);
* a CSV export (services/catalog_export.py): the database formatting the
  next rows (SQLite's step and the PostgreSQL driver's COPY read run
  without the GIL) while the server compresses and sends the previous
  chunk (zlib and the socket write release it too). Compression had been
  a fifth of a gzip export's time, all of it spent while the database
  waited.

A SQLite import does not use it: ``executemany`` takes the GIL back after
every row, and a validating thread then makes it wait for the GIL's switch
interval, over and over (measured slower than one thread).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator


def read_ahead(items: Iterator, *, depth: int = 1, name: str = "read-ahead") -> Iterator:
    """``items``, produced in a thread named ``name`` while the caller works on the previous one.

    The first item is produced in the caller's thread, and the thread starts
    when the caller asks for the second: an export's first bytes leave at
    once (a thread started at once would hold the GIL while it builds the
    query, and the caller would wait for the switch interval to send them).
    At most ``depth`` items wait in the queue, so memory stays bounded; an
    exception in the producer is raised in the caller; when the caller stops
    (or is closed), the producer stops and closes ``items`` (a generator's
    ``finally`` and ``with`` blocks run, in the producer's thread) before
    this returns.
    """
    items = iter(items)
    try:
        first = next(items)
    except StopIteration:
        return
    try:
        yield first
    except BaseException:
        _close(items)
        raise
    handoff: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                handoff.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((done, None))
        except BaseException as error:  # handed to the caller, raised there
            put((done, error))
        finally:
            _close(items)

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item, error = handoff.get()
            if error is not None:
                raise error
            if item is done:
                return
            yield item
    finally:
        stop.set()
        thread.join()


def _close(items: Iterator) -> None:
    close = getattr(items, "close", None)
    if close is not None:
        close()
