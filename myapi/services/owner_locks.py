"""Owner locks: whether the request that claimed an Idempotency-Key is still alive, seen at once.

A claim row says *that* a request took a key, not whether that request still
runs. The owner therefore holds a lock for the key from before its claim is
written until its work has committed or its claim is released, and the lock
is one the system drops by itself the moment the owner dies:

* PostgreSQL: ``pg_try_advisory_xact_lock`` taken in the owner's work
  transaction (the request's session). It ends with that transaction, and
  the server ends the transaction when the owner's connection goes (a
  killed worker's socket closes; the backend, waiting for the client's next
  statement, sees it at once). It works through PgBouncer's transaction
  pooling (it never outlives a transaction).
* SQLite: an exclusive POSIX record lock (``fcntl``) on one byte of a lock
  file next to the database (``<database>-idempotency-locks``), at an
  offset given by the key. The kernel drops a process's record locks when
  the process dies. Record locks belong to a process, not to a thread, so
  each process also keeps the set of keys its own threads hold. One file
  descriptor per process stays open for good (closing any descriptor of the
  file would drop all of the process's locks on it). An in-memory database
  (one process) uses the set alone.

A request tries the lock, and if it is taken tries again for a short while
(``acquire(wait=...)``, polling: nothing ever blocks on it), then knows a
live request holds the key.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import threading
import time
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.orm import Session

LOCK_FILE_SUFFIX = "-idempotency-locks"
POLL_INTERVAL = 0.01  # seconds between tries while waiting for a lock


def lock_id(scope: str, key: str) -> int:
    """The key's lock number: 62 bits of a hash of (scope, key), a positive PostgreSQL bigint and file offset."""
    digest = hashlib.blake2b(f"idempotency\0{scope}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 2


class OwnerLock:
    """The interface: take the key's lock if it is free (now, or within ``wait`` seconds); release it."""

    def acquire(self, wait: float = 0.0) -> bool:
        deadline = time.monotonic() + wait
        while not self.try_acquire():
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL_INTERVAL)
        return True

    def try_acquire(self) -> bool:
        raise NotImplementedError

    def release(self) -> None:
        raise NotImplementedError


class AdvisoryXactLock(OwnerLock):
    """PostgreSQL: an advisory lock of ``session``'s transaction (released when it ends)."""

    def __init__(self, session: Session, number: int):
        self.session = session
        self.number = number

    def try_acquire(self) -> bool:
        return bool(self.session.execute(text("SELECT pg_try_advisory_xact_lock(:n)"), {"n": self.number}).scalar())

    def release(self) -> None:
        """Nothing to do: the transaction's commit or rollback released it."""


class _ProcessLocks:
    """This process's record locks on one lock file, and the numbers its threads hold."""

    def __init__(self, path: Path | None):
        self.pid = os.getpid()
        self.path = path
        self.fd: int | None = None
        self.held: set[int] = set()
        self.mutex = threading.Lock()

    def try_lock(self, number: int) -> bool:
        with self.mutex:
            if number in self.held:
                return False
            if self.path is not None:
                if self.fd is None:
                    self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
                try:
                    fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, number)
                except OSError as error:
                    if error.errno in (errno.EACCES, errno.EAGAIN):  # another process holds it
                        return False
                    raise
            self.held.add(number)
            return True

    def unlock(self, number: int) -> None:
        with self.mutex:
            if number not in self.held:
                return
            if self.fd is not None:
                fcntl.lockf(self.fd, fcntl.LOCK_UN, 1, number)
            self.held.discard(number)


_processes: dict[str | None, _ProcessLocks] = {}
_processes_mutex = threading.Lock()


def _locks_of(path: Path | None) -> _ProcessLocks:
    name = str(path) if path else None
    with _processes_mutex:
        locks = _processes.get(name)
        if locks is None or locks.pid != os.getpid():  # a forked child holds none of its parent's locks
            locks = _processes[name] = _ProcessLocks(path)
        return locks


class FileRecordLock(OwnerLock):
    """SQLite: a record lock on byte ``number`` of the database's lock file (see the module doc)."""

    def __init__(self, database: str | None, number: int):
        path = None
        if database and database.startswith("file:"):  # a URI filename
            database = database[len("file:"):].split("?", 1)[0]
        if database and database != ":memory:":
            path = Path(os.path.realpath(database + LOCK_FILE_SUFFIX))
        self.locks = _locks_of(path)
        self.number = number
        self.held = False

    def try_acquire(self) -> bool:
        self.held = self.locks.try_lock(self.number)
        return self.held

    def release(self) -> None:
        if self.held:
            self.locks.unlock(self.number)
            self.held = False
