"""The HTTP side of ``Idempotency-Key`` (the protocol is in services/idempotency.py).

Every POST that creates data honours the header (``Resource.idempotent_post``;
POST /tokens opts out). The request's digest covers the method, path, query,
content type and the raw body; the body is spooled through a temporary file
while it is hashed (in memory up to 1 MiB), so a large CSV import stays
streamed.
"""

from __future__ import annotations

import hashlib
import hmac
import tempfile
from collections.abc import Callable

from flask import Response, current_app, request

from ..db import get_db, get_session
from ..services import idempotency
from . import inputs
from .auth import current_user
from .errors import validation_problem

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
STORED_HEADERS = ("Content-Type", "Location", "ETag", "Preference-Applied", "X-Import-Id")
CHUNK = 64 * 1024
# How long a request waits for a key's owner lock before answering 409: the
# moment a database takes to end a killed owner's transaction (a retry sent
# right after the kill still takes the key over), and time enough for a
# duplicate of a quick request to get its answer instead of a 409.
OWNER_WAIT = 0.25


def idempotency_key() -> str:
    try:
        return inputs.idempotency_key(request.headers.get(HEADER, ""))
    except ValueError as error:
        raise validation_problem({HEADER: str(error)}) from None


def request_digest() -> str:
    # Keyed with the app's secret: a sign-up body holds a password, and a
    # plain SHA-256 of it in the database could be guessed at offline.
    digest = hmac.new(current_app.config["SECRET_KEY"].encode("utf-8"), digestmod=hashlib.sha256)
    for part in (request.method, request.path, request.query_string.decode("latin-1"), request.mimetype or ""):
        digest.update(part.encode("utf-8", "replace") + b"\0")
    spool = tempfile.SpooledTemporaryFile(max_size=1024 * 1024)  # noqa: SIM115 (handed to the request)
    stream = request.stream  # bounded by max_content_length: 413 past it
    while chunk := stream.read(CHUNK):
        digest.update(chunk)
        spool.write(chunk)
    spool.seek(0)
    request.stream = spool  # the resource reads the same bytes again
    return digest.hexdigest()


def replay(stored: idempotency.StoredResponse) -> Response:
    response = Response(stored.body, status=stored.status)
    if "Content-Type" not in stored.headers:  # a bodiless answer (Prefer: return=minimal) stays bodiless
        del response.headers["Content-Type"]
    for name, value in stored.headers.items():
        response.headers[name] = value
    response.headers[REPLAYED] = "true"
    return response


def run_idempotent(produce: Callable[[], Response]) -> Response:
    """Run ``produce`` (the resource method, not committed) at most once per key."""
    key = idempotency_key()
    user = current_user()  # an invalid token is a 401 before anything is claimed
    scope = f"user:{user.id}" if user else "anonymous"
    digest = request_digest()
    session = get_session()
    session.commit()  # end the auth read: on SQLite it holds the write lock the claim needs
    # Held from before the claim until the request is over (PostgreSQL: the
    # work transaction's lock; see services/idempotency.py).
    owner = idempotency.owner_lock(session, scope=scope, key=key)
    try:
        return _run_owned(produce, owner, scope=scope, key=key, digest=digest)
    finally:
        owner.release()


def _run_owned(produce: Callable[[], Response], owner, *, scope: str, key: str, digest: str) -> Response:
    session = get_session()
    database = get_db()
    if not owner.acquire(wait=OWNER_WAIT):  # a live request holds the key
        with database.session() as read_session:  # no write lock: on SQLite the owner may hold it
            claim = idempotency.busy(read_session, scope=scope, key=key, digest=digest)
        return replay(claim.replay)
    with database.session(write=True) as claim_session:
        claim = idempotency.claim(claim_session, scope=scope, key=key, method=request.method,
                                  path=request.path, digest=digest)
    if claim.replay is not None:
        return replay(claim.replay)

    def give_back() -> None:
        with database.session(write=True) as release_session:
            idempotency.release(release_session, claim.id)

    try:
        response = produce()
        if response.status_code >= 400:
            session.rollback()
            give_back()
            return response
        if response.is_streamed:
            # A streamed answer (an import's rejected rows or plan as CSV or NDJSON) may be any size: it
            # is not stored. The work commits and the key is freed: a retry runs again (an import's
            # second run finds its rows unchanged).
            session.commit()
            give_back()
            return response
        stored = idempotency.StoredResponse(
            status=response.status_code,
            headers={name: response.headers[name] for name in STORED_HEADERS if name in response.headers},
            body=response.get_data(as_text=True),
        )
        idempotency.record(session, claim.id, stored)
        session.commit()  # the work and its stored answer, together
    except BaseException:
        session.rollback()
        give_back()
        raise
    return response
