"""HTTP compression of answers (``Accept-Encoding``), by Flask-Compress.

Flask-Compress (1.21 and later) compresses a streamed body on the fly, one
chunk at a time, so an export stays a stream with constant memory; that is
why it is used rather than a hand-written hook. What it is told here:

* zstd, br, gzip and deflate, for whole and streamed bodies alike, chosen
  by the request's ``Accept-Encoding`` and its q-values (equal q: zstd
  first, the cheapest per byte saved); none acceptable, identity.
* Only our own representations (JSON, CSV, NDJSON, problem+json) of
  successful answers (2xx); answers under ``COMPRESS_MIN_SIZE`` (1 KiB)
  are left alone: a product or a token costs more to compress than to send.
* Fast levels (gzip/deflate 1, br 1, zstd 1): most of the saving for a
  small part of the CPU, which a server mostly spends on the requests.
* ``Vary: Accept-Encoding`` on every answer, compressed or not.
* A strong ETag names its encoding (``"v7:gzip"``, distinct per encoding as
  RFC 9110 §8.8.3 asks); ``If-None-Match`` and ``If-Match`` read such tags
  as the version they name (common/etags.py, common/inputs.if_match).
  Flask-Compress's own conditional handling is off: the pipeline answers
  304 itself and serves no ranges.

``MYAPI_COMPRESSION=false`` turns it off (a proxy in front that compresses).

Flask-Compress 1.25 reads a coding with ``q=0`` as acceptable, where RFC
9110 §12.5.3 says "not acceptable": such codings are taken out of the
request's ``Accept-Encoding`` before it looks (:func:`drop_refused_codings`).
"""

from __future__ import annotations

import re

from flask import Flask, request
from flask_compress import Compress

from .etags import CONTENT_CODINGS
from .media import CSV, JSON, NDJSON, PROBLEM

ALGORITHMS = list(CONTENT_CODINGS)
SETTINGS = {
    "COMPRESS_MIMETYPES": [JSON, CSV, NDJSON, PROBLEM],
    "COMPRESS_ALGORITHM": ALGORITHMS,
    "COMPRESS_ALGORITHM_STREAMING": ALGORITHMS,
    "COMPRESS_STREAMS": True,
    "COMPRESS_MIN_SIZE": 1024,
    "COMPRESS_LEVEL": 1,
    "COMPRESS_DEFLATE_LEVEL": 1,
    "COMPRESS_BR_LEVEL": 1,
    "COMPRESS_ZSTD_LEVEL": 1,
    "COMPRESS_EVALUATE_CONDITIONAL_REQUEST": False,
    "COMPRESS_REGISTER": True,
}


_REFUSED = re.compile(r";\s*q\s*=\s*0(?:\.0{0,3})?\s*$")


def init_app(app: Flask) -> None:
    if not app.config["COMPRESSION"]:
        return
    for name, value in SETTINGS.items():
        app.config.setdefault(name, value)  # a test may lower COMPRESS_MIN_SIZE
    app.before_request(drop_refused_codings)
    Compress(app)


def drop_refused_codings() -> None:
    """Remove ``coding;q=0`` entries from ``Accept-Encoding`` (see the module's docstring)."""
    header = request.environ.get("HTTP_ACCEPT_ENCODING")
    if header and "q" in header:
        kept = [part for part in header.split(",") if not _REFUSED.search(part)]
        request.environ["HTTP_ACCEPT_ENCODING"] = ",".join(kept)
