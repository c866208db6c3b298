"""Request bodies are never larger than their limit, whatever their framing.

Every body reader (JSON and form bodies in common/parsing.py, the multipart
parser, the CSV import's stream, the Idempotency-Key digest) reads
``request.stream``. Werkzeug bounds that stream by ``max_content_length``
two ways: a ``Content-Length`` over the limit is a 413 before anything is
read, but a body without one (``Transfer-Encoding: chunked``) is wrapped in
a ``LimitedStream`` whose ``readall()`` stops *at* the limit without
raising, so ``request.get_data()`` and a urlencoded form silently returned
the first MAX_CONTENT_LENGTH bytes of a larger body (a sign-up followed by
2 MiB of spaces was accepted).

:class:`BoundedRequest` (the app's ``request_class``) gives every reader a
:class:`BoundedStream` instead: when a read reaches the limit it looks one
byte further, and if the body goes on it raises 413 (a body of exactly the
limit is accepted, one byte more is refused, chunked or not). The limit is
``request.max_content_length``: MAX_CONTENT_LENGTH, or the resource's own
(``Resource.max_body_setting``: MAX_IMPORT_BYTES for the CSV import).
A urlencoded form has the same limit as any other body: Werkzeug's
500,000-byte form check only ever applied to a ``Content-Length`` form, so
it depended on the framing. (A multipart body keeps Werkzeug's per-field
memory limit for its non-file fields, which does not.)

A body the server's HTTP parser cannot read (gunicorn raises its own
exceptions for a malformed chunk size or terminator, which Werkzeug lets
through as a 500) is a 400.
"""

from __future__ import annotations

import typing as t

from flask import Request
from werkzeug.exceptions import BadRequest, HTTPException, RequestEntityTooLarge
from werkzeug.utils import cached_property
from werkzeug.wsgi import LimitedStream, get_content_length

from .errors import body_too_large_detail
from .heartbeat import beat

FORM_URLENCODED = "application/x-www-form-urlencoded"


def too_large(limit: int) -> RequestEntityTooLarge:
    # "… larger than 1 MiB (1048576 bytes), the limit set by MYAPI_MAX_CONTENT_LENGTH." (issue 18)
    return RequestEntityTooLarge(body_too_large_detail(limit))


class BoundedStream(LimitedStream):
    """The body, up to ``limit`` bytes; reading past the limit with more to come is a 413."""

    def __init__(self, stream: t.IO[bytes], limit: int) -> None:
        super().__init__(stream, limit, is_max=True)

    def on_exhausted(self) -> None:
        # Called when a read starts at the limit: the body is too large if
        # it goes on, and was exactly the limit if it ends here.
        if self._read_raw(1):
            raise too_large(self.limit)

    def readall(self) -> bytes:
        data = super().readall()  # stops at the limit without a further read
        if self.is_exhausted:
            self.on_exhausted()
        return data

    def readinto(self, b: bytearray) -> int | None:  # type: ignore[override]
        beat()  # a long upload (an import) keeps a sync worker alive (common/heartbeat.py)
        try:
            return super().readinto(b)
        except HTTPException:
            raise
        except Exception as error:  # the server's parser refused the framing
            raise malformed_body(error) from None

    def _read_raw(self, size: int) -> bytes:
        try:
            return self._stream.read(size)
        except Exception as error:
            raise malformed_body(error) from None


def malformed_body(error: Exception) -> BadRequest:
    return BadRequest(f"The request body could not be read: {str(error)[:200]}.")


class BoundedRequest(Request):
    """Flask's request, whose ``stream`` is a :class:`BoundedStream` (see the module doc)."""

    @property
    def max_form_memory_size(self) -> int | None:
        if self.mimetype == FORM_URLENCODED:
            return None  # bounded by max_content_length, like every other body
        return super().max_form_memory_size

    @max_form_memory_size.setter
    def max_form_memory_size(self, value: int | None) -> None:
        self._max_form_memory_size = value

    @cached_property
    def stream(self) -> t.IO[bytes]:
        limit = self.max_content_length
        if self.shallow or limit is None:
            return super().stream
        content_length = get_content_length(self.environ)
        if content_length is not None and content_length > limit:
            raise too_large(limit)  # before reading anything
        if "wsgi.input_terminated" not in self.environ:
            # A server that only frames by Content-Length (Werkzeug's test
            # client): Werkzeug's stream never reads past it.
            return super().stream
        return BoundedStream(self.environ["wsgi.input"], limit)
