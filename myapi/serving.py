"""gunicorn worker classes whose own error answers are problem+json, as the app's are.

gunicorn answers some requests itself, before (or instead of) calling the
app: a request line over ``limit_request_line`` (414), headers over its
limits (431), a request line, method, version, header name or header value
it cannot parse, a ``Content-Length`` that is not a number, ``Content-Length``
together with ``Transfer-Encoding`` (the request-smuggling probe), an
unsupported transfer coding, an ``Expect`` it cannot meet (417), and a 500
if the app itself fails. ``Worker.handle_error`` writes those as a small
HTML page (``gunicorn.util.write_error``), and DESIGN says no answer is ever
an HTML page.

The workers here keep gunicorn's decision and change only its bytes:
``handle_error`` runs gunicorn's own (which picks the status, logs the
refusal and writes the page) on a stand-in socket that keeps what it
writes; then the same status line goes out with an ``application/problem+json``
body (``about:blank``, gunicorn's reason as the title and its message as the
detail, a fresh ``request_id``), and ``Connection: close`` as before: the
connection is never reused after a protocol error, and nothing reaches the
app. Should the page ever not be the one gunicorn writes today, it is sent
as it is (an HTML answer, still a refusal) rather than guessed at.

``myapi serve`` uses :class:`SyncProblemWorker` (``--threads 1``, the
default) or :class:`ThreadProblemWorker` (``--threads`` > 1). With gunicorn
run by hand, pass ``--worker-class myapi.serving.SyncProblemWorker``.

Both workers also freeze the heap they start with (:class:`FrozenStartup`).
"""

from __future__ import annotations

import gc
import html
import logging
import re
import uuid

import orjson
from gunicorn import util
from gunicorn.workers.gthread import ThreadWorker
from gunicorn.workers.sync import SyncWorker

from .common import heartbeat
from .common.media import PROBLEM
from .problems import BLANK

log = logging.getLogger("myapi.access")

STATUS_LINE = re.compile(rb"^HTTP/1\.[01] (\d{3}) ([^\r\n]*)\r\n")
PAGE_MESSAGE = re.compile(r"</h1>\s*(.*?)\s*</body>", re.DOTALL)
MAX_DETAIL = 300


class _KeptWrites:
    """A stand-in for the client socket that keeps what is sent to it (and sends nothing)."""

    def __init__(self, sock):
        self._sock = sock
        self.data = b""

    def sendall(self, data: bytes) -> None:
        self.data += data

    def send(self, data: bytes) -> int:
        self.data += data
        return len(data)

    def gettimeout(self) -> float:
        return 0.0  # util.write_nonblock then writes at once, without touching the real socket's mode

    def __getattr__(self, name):  # getsockname() and the like, for gunicorn's access log
        return getattr(self._sock, name)


def problem_answer(page: bytes) -> bytes | None:
    """The problem+json answer with the status of gunicorn's error ``page``, or None if it is not one."""
    match = STATUS_LINE.match(page)
    if match is None:
        return None
    status = int(match.group(1))
    reason = match.group(2).decode("latin-1").strip()
    body_text = page.partition(b"\r\n\r\n")[2].decode("latin-1")
    found = PAGE_MESSAGE.search(body_text)
    detail = html.unescape(found.group(1)).strip() if found else ""
    request_id = uuid.uuid4().hex
    body = orjson.dumps({
        "type": BLANK,
        "title": reason,
        "status": status,
        "detail": (detail or reason)[:MAX_DETAIL],
        "request_id": request_id,
    })
    log.info("request refused by the HTTP parser",
             extra={"fields": {"status": status, "detail": detail[:MAX_DETAIL], "request_id": request_id}})
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        "Connection: close\r\n"
        f"Content-Type: {PROBLEM}\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"X-Request-ID: {request_id}\r\n"
        "X-Content-Type-Options: nosniff\r\n"
        "\r\n"
    )
    return head.encode("latin-1") + body


class ProblemErrors:
    """Mixin for a gunicorn worker: its own error answers in problem+json (see the module doc)."""

    def handle_error(self, req, client, addr, exc):
        kept = _KeptWrites(client)
        super().handle_error(req, kept, addr, exc)
        if not kept.data:
            return
        answer = problem_answer(kept.data) or kept.data
        try:
            util.write_nonblock(client, answer)
        except Exception:
            self.log.debug("Failed to send error message.")


class FrozenStartup:
    """Mixin for a gunicorn worker: what the worker holds once the app is loaded is frozen (``gc.freeze``).

    Flask, SQLAlchemy, the compiled statements and marshallers are a few
    hundred thousand objects that live as long as the worker. Left to the
    cyclic garbage collector, each of its full collections walks all of them
    again; a request that allocates a lot (an import of 100k rows: a list per
    record, a tuple per row) triggers many, and they were a tenth of its
    time (benchmarks/ANALYSIS.md). Frozen, they are never walked; what
    requests create is collected as before.
    """

    def load_wsgi(self):
        super().load_wsgi()
        gc.collect()
        gc.freeze()


class ThreadProblemWorker(FrozenStartup, ProblemErrors, ThreadWorker):
    """gunicorn's gthread worker, answering protocol errors in problem+json."""


class SyncProblemWorker(FrozenStartup, ProblemErrors, SyncWorker):
    """gunicorn's sync worker (``--threads 1``), answering protocol errors in problem+json.

    It beats during long requests too (common/heartbeat.py), so ``--timeout``
    ends a hung request, never a long export or import that is moving.
    """

    def init_process(self):
        heartbeat.register(self.notify)
        super().init_process()  # runs the worker's loop: it returns only when the worker stops


def serve_defaults() -> tuple[int, int]:
    """(workers, threads) of ``myapi serve`` without options: MYAPI_WORKERS and MYAPI_THREADS, else the defaults.

    The benchmark starts its baselines with the same process model.
    """
    from .config import default_workers, from_environment

    return from_environment("WORKERS") or default_workers(), from_environment("THREADS")
