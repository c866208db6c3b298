"""A Python client for the myapi HTTP API, on ``requests`` alone.

The shortest integration script::

    from myapi.client import Client
    api = Client.login("http://127.0.0.1:5000", "admin", "demo-admin-pass")
    api.export_products("products.csv")

What the client does so that scripts do not have to:

* **One session, sane defaults.** One ``requests.Session`` (keep-alive), a
  ``User-Agent: myapi-client/<version>``, ``Accept: application/json`` and a
  timeout on every request (``timeout=`` seconds, or a ``(connect, read)``
  pair).
* **Retries that are safe.** Connection errors, 429 (honouring
  ``Retry-After``) and 502/503/504 are retried with exponential backoff
  (urllib3 ``Retry``) for GET, PUT, PATCH, DELETE *and* POST. Retrying a POST
  is safe only because every POST except ``/tokens`` carries an automatic
  ``Idempotency-Key`` (a uuid4, the same on every retry of one call): the
  server answers a retry with the first answer and creates nothing twice.
  ``POST /tokens`` (sign-in) goes through an adapter that never retries a
  request the server may have received. A retry that finds its first attempt
  still running (409 ``idempotency-key-in-progress``) waits and asks again.
* **Typed errors.** Every error answer is ``application/problem+json``; it is
  raised as :class:`ApiError` (``status``, ``title``, ``detail``,
  ``errors``, ``request_id``, ``type``) or its subclass for the status:
  :class:`ValidationFailed` 400, :class:`Unauthorized` 401,
  :class:`Forbidden` 403, :class:`NotFound` 404, :class:`Conflict` 409,
  :class:`PreconditionFailed` 412, :class:`UnprocessableEntity` 422,
  :class:`RateLimited` 429 (with ``retry_after``); :class:`WriteConflict`
  is the 503 of a write that met a concurrent one (nothing written; retried
  first, like every 503). A server that cannot be
  reached at all raises ``requests.ConnectionError`` after the retries.
* **Items and ETags.** Single items come back as :class:`Item`, a ``dict``
  with an ``etag`` attribute. Pass the item you read to
  ``update_product(item, changes)`` and the write carries ``If-Match``: a
  stale copy raises :class:`PreconditionFailed` instead of overwriting
  someone else's change. Pages of a list are :class:`Page` (``list_*``);
  ``iter_products``, ``iter_orders``, ``iter_users``, ``iter_api_keys``,
  ``iter_webhooks`` and ``iter_deliveries`` walk the whole list by cursor (``next_cursor``): every row that exists,
  unchanged in its sort key, for the whole walk comes exactly once, whatever
  is inserted, changed or deleted meanwhile.
* **Streams.** ``export_products`` / ``export_orders`` write to a file while
  they download, and ``import_products`` uploads a file as a stream: memory
  stays flat whatever the size. ``progress=True`` shows a tqdm bar: rows
  of an export (out of the server's ``X-Total-Count``), bytes of an upload.
"""

from __future__ import annotations

import csv
import io
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError
from urllib3.util.retry import Retry

from . import __version__, problems
from .csvcells import LINE_END, csv_cell, flatten

__all__ = [
    "ApiError", "Client", "SyncResult", "ConcurrentUpdate", "Conflict", "Forbidden", "IdempotencyKeyInProgress",
    "InsufficientStock", "Item", "NotFound", "Page", "PreconditionFailed", "PriceChangeRefused", "RateLimited",
    "Unauthorized",
    "UnprocessableEntity", "ValidationFailed", "WriteConflict",
]

API_PREFIX = "/api/v1"
USER_AGENT = f"myapi-client/{__version__}"
DEFAULT_TIMEOUT = (10.0, 60.0)  # connect, read (seconds between bytes)
CHUNK = 64 * 1024
ITER_PER_PAGE = 100
IN_PROGRESS = problems.IDEMPOTENCY_KEY_IN_PROGRESS.uri
RETRY_STATUSES = (429, 502, 503, 504)
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "PATCH", "DELETE"})


# -- errors -----------------------------------------------------------------------


class ApiError(Exception):
    """An error answer of the API (``application/problem+json``, RFC 9457)."""

    def __init__(self, status: int, title: str, detail: str | None = None, errors: Any = None,
                 request_id: str | None = None, type: str = "about:blank", body: dict | None = None):
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors
        self.request_id = request_id
        self.type = type
        #: The kind from the server's catalogue (myapi/problems.py), None for about:blank.
        self.problem = problems.CATALOGUE.get(type)
        self.body = body or {}
        super().__init__(f"{status} {title}: {detail}" if detail and detail != title else f"{status} {title}")

    def error_lines(self) -> list[str]:
        """The field errors, one readable line each (``field: message`` or ``row 3, price: ...``)."""
        errors = self.errors
        if isinstance(errors, Mapping):
            return [f"{name}: {message}" for name, message in errors.items()]
        lines = []
        for entry in errors or []:
            if isinstance(entry, Mapping):
                where = ", ".join(f"{key} {entry[key]}" for key in ("row", "index", "product_id", "sku")
                                  if entry.get(key) is not None)
                name = entry.get("field", "")
                prefix = f"{where}, {name}" if where and name else (where or name)
                lines.append(f"{prefix}: {entry.get('message', '')}" if prefix else str(entry.get("message", "")))
            else:
                lines.append(str(entry))
        return lines


class ValidationFailed(ApiError):
    """400: invalid fields, or rows of an import (``errors``)."""


class Unauthorized(ApiError):
    """401: no token, an expired or revoked token, or wrong credentials."""


class Forbidden(ApiError):
    """403: signed in, but not allowed (an admin-only action...)."""


class NotFound(ApiError):
    """404: no such item, or not yours to see."""


class Conflict(ApiError):
    """409: duplicate, insufficient stock, illegal transition, concurrent update."""


class PreconditionFailed(ApiError):
    """412: the item changed since you read it (``If-Match``); read it again."""


class UnprocessableEntity(ApiError):
    """422: an Idempotency-Key used before with another request."""


class RateLimited(ApiError):
    """429: too many requests; ``retry_after`` is the server's advice in seconds (or None)."""

    retry_after: float | None = None


class InsufficientStock(Conflict):
    """409: not enough stock for some lines; ``errors`` lists requested and available per product."""


class ConcurrentUpdate(Conflict):
    """409: another request changed the item meanwhile; read it and try again."""


class IdempotencyKeyInProgress(Conflict):
    """409: a request with this Idempotency-Key is still running; retry shortly."""


class PriceChangeRefused(Conflict):
    """409: ``max_price_change`` refused the whole import or PATCH; ``errors`` lists each product's move."""


class WriteConflict(ApiError):
    """503: the write met a concurrent one (a deadlock, a serialization failure) and nothing was written.

    The client retries it like every 503 (``retries``); this is raised once they are spent.
    """


ERRORS: dict[int, type[ApiError]] = {
    400: ValidationFailed, 401: Unauthorized, 403: Forbidden, 404: NotFound, 409: Conflict,
    412: PreconditionFailed, 422: UnprocessableEntity, 429: RateLimited,
}

#: Problem types (the server's catalogue) with an exception more precise than their status's.
TYPED_ERRORS: dict[str, type[ApiError]] = {
    problems.INSUFFICIENT_STOCK.uri: InsufficientStock,
    problems.CONCURRENT_UPDATE.uri: ConcurrentUpdate,
    problems.IDEMPOTENCY_KEY_IN_PROGRESS.uri: IdempotencyKeyInProgress,
    problems.PRICE_CHANGE_REFUSED.uri: PriceChangeRefused,
    problems.WRITE_CONFLICT.uri: WriteConflict,
}


def error_from_response(response: requests.Response) -> ApiError:
    """The typed exception for an error answer (problem+json, or anything else)."""
    body: dict = {}
    try:
        parsed = response.json()
        if isinstance(parsed, dict):
            body = parsed
    except ValueError:
        pass
    status = response.status_code
    title = str(body.get("title") or response.reason or f"HTTP {status}")
    detail = body.get("detail")
    if detail is None and not body:
        detail = response.text[:500].strip() or None
    kind = str(body.get("type", problems.BLANK))
    error = TYPED_ERRORS.get(kind, ERRORS.get(status, ApiError))(
        status, title, detail, body.get("errors"),
        body.get("request_id") or response.headers.get("X-Request-ID"),
        kind, body,
    )
    if isinstance(error, RateLimited):
        try:
            error.retry_after = float(response.headers["Retry-After"])
        except (KeyError, ValueError):
            error.retry_after = None
    return error


# -- results ----------------------------------------------------------------------


class Item(dict):
    """One item (a product, an order, a user): a dict, plus its ``etag`` for ``if_match``."""

    def __init__(self, data: Mapping, etag: str | None = None):
        super().__init__(data)
        self.etag = etag

    def __repr__(self) -> str:
        return f"Item({dict.__repr__(self)}, etag={self.etag!r})"


@dataclass
class Page:
    """One page of a list: ``items`` and the members of ``pagination``; iterable.

    ``page`` and ``total_pages`` are None for a page read by cursor,
    ``total_items`` and ``total_pages`` with ``count="none"``;
    ``total_is_estimate`` is set with ``count="estimated"``. ``next_cursor``
    (None on the last page) gives the rows after this page:
    ``list_products(cursor=page.next_cursor)`` with the same filters.
    """

    items: list[dict]
    page: int | None
    per_page: int
    total_items: int | None
    total_pages: int | None
    next_url: str | None = field(default=None, repr=False)
    next_cursor: str | None = None
    total_is_estimate: bool | None = None

    def __iter__(self) -> Iterator[dict]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


@dataclass
class SyncResult:
    """What a :meth:`Client.sync` run did: a fresh export, or the feed's counts; ``since`` is kept."""

    exported: bool = False
    created: int = 0
    updated: int = 0
    deleted: int = 0
    since: str = ""

    def __str__(self) -> str:
        if self.exported:
            return f"exported {self.created} (a fresh copy)"
        return f"{self.created} created, {self.updated} updated, {self.deleted} deleted"


def _write_atomically(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".part")
    with partial.open("w", encoding="utf-8", newline="") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())  # on disk before the rename: a crash leaves the old file or the new one
    os.replace(partial, path)


# -- retries ----------------------------------------------------------------------


class _Retry(Retry):
    """urllib3's Retry, with the server's ``Retry-After`` capped (a script should not sleep for an hour),
    and told before it waits to retry a failed connection (``on_connection_retry(error, seconds)``)."""

    retry_after_max: float = 120.0
    on_connection_retry: Callable[[BaseException, float], None] | None = None

    def new(self, **kw):
        new = super().new(**kw)
        new.retry_after_max = self.retry_after_max
        new.on_connection_retry = self.on_connection_retry
        return new

    def get_retry_after(self, response):
        value = super().get_retry_after(response)
        return None if value is None else min(value, self.retry_after_max)

    def sleep(self, response=None) -> None:
        error = self.history[-1].error if self.history else None
        if response is None and error is not None and self.on_connection_retry is not None:
            self.on_connection_retry(error, self.get_backoff_time())
        super().sleep(response)


def make_retry(total: int, methods: Iterable[str], backoff_factor: float, retry_after_max: float,
               connect: int | None = None) -> Retry:
    retry = _Retry(
        total=total,
        connect=total if connect is None else connect,
        read=total,
        status=total,
        other=0,
        allowed_methods=frozenset(methods),
        status_forcelist=RETRY_STATUSES,
        backoff_factor=backoff_factor,
        respect_retry_after_header=True,
        raise_on_status=False,  # the last answer becomes a typed error, not a MaxRetryError
        raise_on_redirect=False,
    )
    retry.retry_after_max = retry_after_max
    return retry


def connection_reason(error: BaseException) -> str:
    """Why a connection failed, in a few words: "connection refused", "name or service not known"..."""
    current: BaseException | None = error
    for _ in range(10):  # down the chain: requests' error, urllib3's MaxRetryError, its reason, the OSError
        if current is None:
            break
        if isinstance(current, OSError) and current.strerror:
            return current.strerror[:1].lower() + current.strerror[1:]
        if isinstance(current, MaxRetryError):
            following = current.reason
        elif current.args and isinstance(current.args[0], BaseException):
            following = current.args[0]
        else:
            following = current.__cause__ or current.__context__
        if following is None and isinstance(current, (TimeoutError, ConnectTimeoutError)):
            return "timed out"
        current = following
    return str(error)


def unreachable(server: str, error: BaseException) -> str:
    """``cannot reach http://127.0.0.1:5000: connection refused``: one line for a failed connection."""
    parts = urlsplit(server)
    return f"cannot reach {parts.scheme}://{parts.netloc}: {connection_reason(error)}"


# -- streams ----------------------------------------------------------------------


class _ProgressReader:
    """A binary file, read by requests/urllib3 in blocks, that moves a progress bar.

    It keeps ``seek``/``tell`` so urllib3 can rewind it for a retry, and a
    ``__len__`` so requests sends a Content-Length instead of chunks (requests
    takes ``len() - tell()`` as the bytes left, so ``len`` is the end offset).
    """

    def __init__(self, raw: IO[bytes], start: int, size: int, bar):
        self.raw = raw
        self.start = start
        self.size = size
        self.bar = bar

    def __len__(self) -> int:
        return self.start + self.size

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        if self.bar is not None:
            self.bar.update(len(data))
        return data

    def tell(self) -> int:
        return self.raw.tell()

    def seek(self, offset: int, whence: int = 0) -> int:
        position = self.raw.seek(offset, whence)
        if self.bar is not None:
            self.bar.reset(total=self.size)
            self.bar.update(position - self.start)
        return position


def _progress_bar(enabled: bool, total: int | None, description: str, unit: str = "B"):
    if not enabled:
        return None
    from tqdm import tqdm

    if unit != "B":
        return tqdm(total=total, unit=f" {unit}", desc=description, leave=True)
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=description, leave=True)


class _RowCounter:
    """Counts the rows of a CSV (its header left out) or NDJSON download as its chunks arrive.

    A CSV line break inside a quoted cell ends no row: the quotes seen so far
    say whether a chunk starts inside one (a doubled quote toggles twice).
    """

    def __init__(self, csv: bool):
        self.csv = csv
        self.quoted = False
        self.header = csv

    def __call__(self, chunk: bytes) -> int:
        if not self.csv:
            return chunk.count(b"\n")
        if not self.quoted and b'"' not in chunk:
            lines = chunk.count(b"\n")
        else:
            lines = 0
            pieces = chunk.split(b'"')
            for index, piece in enumerate(pieces):
                if not self.quoted:
                    lines += piece.count(b"\n")
                if index < len(pieces) - 1:
                    self.quoted = not self.quoted
        if self.header and lines:
            lines, self.header = lines - 1, False
        return lines


# -- the client -------------------------------------------------------------------


class Client:
    """The myapi API from Python: ``Client(base_url, api_key="myapi_…")`` (or ``MYAPI_API_KEY`` in the
    environment), ``Client(base_url, token)``, or ``Client.login(base_url, user, password)``.

    ``base_url`` is the server (``http://127.0.0.1:5000``); ``/api/v1`` is
    added unless given. ``retries`` is the number of retries per request (0
    turns them off), ``backoff_factor`` the base of the exponential backoff,
    ``retry_after_max`` the longest ``Retry-After`` the client will honour.
    ``connect_retries`` caps the retries of a connection that fails
    (default: ``retries``; with 5 an unreachable server is given ~15 s), and
    ``on_retry(message)`` is told before each such retry waits
    (``myapi remote`` prints it).
    """

    def __init__(self, base_url: str, token: str | None = None, *, api_key: str | None = None,
                 timeout: float | tuple = DEFAULT_TIMEOUT, retries: int = 5, backoff_factor: float = 0.5,
                 retry_after_max: float = 120.0, session: requests.Session | None = None,
                 connect_retries: int | None = None, on_retry: Callable[[str], None] | None = None):
        base = base_url.rstrip("/")
        if not base.endswith(API_PREFIX):
            base += API_PREFIX
        self.base_url = base
        self.timeout = timeout
        self.retries = retries
        self.backoff_factor = backoff_factor
        self.session = session or requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT
        self.session.headers["Accept"] = "application/json"
        every_method = IDEMPOTENT_METHODS | {"POST"}

        def retry(methods) -> Retry:
            policy = make_retry(retries, methods, backoff_factor, retry_after_max, connect_retries)
            if on_retry is not None:
                policy.on_connection_retry = lambda error, wait: on_retry(
                    f"{unreachable(self.base_url, error)}; retrying " + (f"in {wait:g} s" if wait else "now"))
            return policy

        self.session.mount("http://", HTTPAdapter(max_retries=retry(every_method)))
        self.session.mount("https://", HTTPAdapter(max_retries=retry(every_method)))
        # A sign-in has no Idempotency-Key: a POST that may have reached the
        # server is never sent twice (the longest mounted prefix wins).
        self.session.mount(f"{self.base_url}/tokens", HTTPAdapter(max_retries=retry(IDEMPOTENT_METHODS)))
        # An API key (``myapi_…``, from POST /api-keys) is a bearer credential like a token; without
        # either, MYAPI_API_KEY from the environment is used.
        self.token = token or api_key or (os.environ.get("MYAPI_API_KEY") or None)

    @classmethod
    def login(cls, base_url: str, username: str, password: str, **options) -> Client:
        """Sign in (``POST /tokens`` with HTTP Basic) and return a client holding the token."""
        client = cls(base_url, **options)
        client.sign_in(username, password)
        return client

    # -- plumbing ---------------------------------------------------------------

    @property
    def token(self) -> str | None:
        return self._token

    @token.setter
    def token(self, value: str | None) -> None:
        self._token = value
        if value:
            self.session.headers["Authorization"] = f"Bearer {value}"
        else:
            self.session.headers.pop("Authorization", None)

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else self.base_url + path

    def request(self, method: str, path: str, *, params: Mapping | None = None, json: Any = None,
                headers: Mapping | None = None, idempotency_key: str | None = None,
                **kwargs) -> requests.Response:
        """One request (after the transport's retries); a status >= 400 raises the typed :class:`ApiError`.

        Every POST but ``/tokens`` gets an ``Idempotency-Key`` (``idempotency_key``
        or a fresh uuid4), kept for every retry of this call.
        """
        headers = dict(headers or {})
        if method == "POST" and not path.startswith("/tokens"):
            headers.setdefault("Idempotency-Key", idempotency_key or str(uuid.uuid4()))
        kwargs.setdefault("timeout", self.timeout)
        url = self.url(path)
        params = _clean(params)
        body = kwargs.get("data")
        start = body.tell() if hasattr(body, "tell") and hasattr(body, "seek") else None
        delay = max(self.backoff_factor, 0.1)
        for attempt in range(self.retries + 1):
            response = self.session.request(method, url, params=params, json=json, headers=headers, **kwargs)
            if response.status_code < 400:
                return response
            error = error_from_response(response)
            response.close()
            # Our own retry of this very call still runs on the server: wait for its answer.
            retry_in_progress = (method == "POST" and error.type == IN_PROGRESS and attempt < self.retries
                                 and (body is None or start is not None))
            if not retry_in_progress:
                raise error
            if start is not None:
                body.seek(start)
            time.sleep(delay)
            delay = min(delay * 2, 10.0)
        raise error  # pragma: no cover (the loop always returns or raises)

    def _json(self, method: str, path: str, **kwargs) -> Any:
        response = self.request(method, path, **kwargs)
        return response.json() if response.content else None

    def _item(self, method: str, path: str, **kwargs) -> Item:
        response = self.request(method, path, **kwargs)
        return Item(response.json(), response.headers.get("ETag"))

    def _page(self, path: str, params: Mapping) -> Page:
        response = self.request("GET", path, params=params)
        return _page_of(response)

    def _iterate(self, path: str, filters: Mapping) -> Iterator[dict]:
        """Every item of a list, walked by cursor (DESIGN §9).

        The first request has no cursor; each next one sends the page's
        ``next_cursor`` with the same filters and sort (a cursor is bound to
        them), until it is null. Rows inserted, changed or deleted meanwhile
        shift nothing: every row that exists, unchanged in its sort key, for
        the whole walk comes exactly once. Pages are not counted
        (``count=none``) unless ``filters`` ask.
        """
        params = {"per_page": ITER_PER_PAGE, "count": "none", **filters}
        page = self._page(path, params)
        yield from page.items
        params.pop("page", None)  # a walk may start at a page; it goes on by cursor
        while page.next_cursor:
            page = self._page(path, {**params, "cursor": page.next_cursor})
            yield from page.items

    @staticmethod
    def _if_match(item: Any, if_match: str | None) -> tuple[Any, dict]:
        if isinstance(item, Item):
            return item["id"], ({"If-Match": if_match or item.etag} if (if_match or item.etag) else {})
        return item, ({"If-Match": if_match} if if_match else {})

    # -- health and tokens -------------------------------------------------------

    def health(self) -> dict:
        """``GET /health``: ``{"status", "database", "version", "webhooks_oldest_undelivered_seconds"}``."""
        return self._json("GET", "/health")

    def sign_in(self, username: str, password: str) -> dict:
        """``POST /tokens``: sign in and keep the token; returns ``{token, token_type, expires_at}``."""
        response = self.request("POST", "/tokens", auth=(username, password))
        body = response.json()
        self.token = body["token"]
        return body

    def logout(self) -> None:
        """``DELETE /tokens/current``: revoke the token at once, and forget it."""
        self.request("DELETE", "/tokens/current")
        self.token = None

    # -- API keys (with a sign-in token: a key cannot manage keys) -----------------

    def create_api_key(self, name: str, scopes: Iterable[str], *, expires_at: str | None = None) -> Item:
        """``POST /api-keys``: a new key; its ``secret`` is in this answer only."""
        body: dict[str, Any] = {"name": name, "scopes": list(scopes)}
        if expires_at is not None:
            body["expires_at"] = expires_at
        return self._item("POST", "/api-keys", json=body)

    def list_api_keys(self, **params) -> Page:
        """``GET /api-keys``: your keys (an admin: everyone's), never their secrets."""
        return self._page("/api-keys", params)

    def iter_api_keys(self, **filters) -> Iterator[dict]:
        """Every key you may see (an admin: everyone's) matching ``filters``, walked by cursor."""
        return self._iterate("/api-keys", filters)

    def revoke_api_key(self, key: int | Mapping) -> None:
        """``DELETE /api-keys/<id>``: the key stops working at once."""
        key_id = key["id"] if isinstance(key, Mapping) else key
        self.request("DELETE", f"/api-keys/{key_id}")

    # -- webhooks and events (admin, or a key with webhooks:manage; DESIGN §11) -----

    def create_webhook(self, url: str, events: Iterable[str], description: str | None = None, *,
                       is_active: bool | None = None) -> Item:
        """``POST /webhooks``: subscribe ``url`` to ``events`` (``order.created``...); the signing
        ``secret`` (``whsec_…``) is in this answer only: keep it, a list or a read never shows it."""
        body: dict[str, Any] = {"url": url, "events": list(events)}
        if description is not None:
            body["description"] = description
        if is_active is not None:
            body["is_active"] = is_active
        return self._item("POST", "/webhooks", json=body)

    def list_webhooks(self, **params) -> Page:
        """``GET /webhooks``: one page of subscriptions (never their secrets). Filters: is_active, sort."""
        return self._page("/webhooks", params)

    def webhooks(self, **filters) -> list[dict]:
        """Every subscription matching ``filters`` (``is_active``, ``sort``), as a list."""
        return list(self.iter_webhooks(**filters))

    def iter_webhooks(self, **filters) -> Iterator[dict]:
        """Every subscription matching ``filters``, walked by cursor."""
        return self._iterate("/webhooks", filters)

    def webhook(self, webhook_id: int) -> Item:
        """``GET /webhooks/<id>``: one subscription, with its ``etag`` (never its secret)."""
        return self._item("GET", f"/webhooks/{webhook_id}")

    get_webhook = webhook

    def update_webhook(self, webhook: int | Item, *, if_match: str | None = None, **changes) -> Item:
        """``PATCH /webhooks/<id>``: change ``url``, ``events``, ``description`` or ``is_active``.

        Give the :class:`Item` you read (or ``if_match=``) to send its ETag: a stale one raises
        :class:`PreconditionFailed`.
        """
        webhook_id, headers = self._if_match(webhook, if_match)
        if "events" in changes and changes["events"] is not None:
            changes["events"] = list(changes["events"])
        return self._item("PATCH", f"/webhooks/{webhook_id}", json=changes, headers=headers)

    def delete_webhook(self, webhook: int | Item, *, if_match: str | None = None) -> None:
        """``DELETE /webhooks/<id>``: the subscription goes, with its delivery log and pending deliveries."""
        webhook_id, headers = self._if_match(webhook, if_match)
        self.request("DELETE", f"/webhooks/{webhook_id}", headers=headers)

    def rotate_webhook_secret(self, webhook: int | Mapping) -> Item:
        """``POST /webhooks/<id>/rotate-secret``: a new ``secret``, in this answer only; the previous one
        keeps signing until ``previous_secret_expires_at`` (24 h)."""
        webhook_id = webhook["id"] if isinstance(webhook, Mapping) else webhook
        return self._item("POST", f"/webhooks/{webhook_id}/rotate-secret")

    def list_deliveries(self, webhook_id: int, **params) -> Page:
        """``GET /webhooks/<id>/deliveries``: one page of the delivery log. Filters: status
        (pending, delivering, succeeded, failed), sort (id, next_attempt_at)."""
        return self._page(f"/webhooks/{webhook_id}/deliveries", params)

    def deliveries(self, webhook_id: int, **filters) -> list[dict]:
        """A subscription's every delivery matching ``filters`` (``status``, ``sort``), as a list."""
        return list(self.iter_deliveries(webhook_id, **filters))

    def iter_deliveries(self, webhook_id: int, **filters) -> Iterator[dict]:
        """A subscription's every delivery matching ``filters``, walked by cursor."""
        return self._iterate(f"/webhooks/{webhook_id}/deliveries", filters)

    def retry_delivery(self, webhook_id: int, delivery_id: int) -> Item:
        """``POST /webhooks/<id>/deliveries/<id>/retry``: send it again now (a failed one gets one more
        attempt); :class:`Conflict` while it is being sent."""
        return self._item("POST", f"/webhooks/{webhook_id}/deliveries/{delivery_id}/retry")

    def events(self, since: str, types: Iterable[str] | str | None = None, *, limit: int = 100) -> dict:
        """``GET /events``: ``{"data": [{id, type, created, data, seq}], "next_since"}``, every event after
        the watermark ``since`` ("0": from the oldest kept) in commit order; ``types`` keeps only those."""
        if types is not None and not isinstance(types, str):
            types = ",".join(types)
        return self._json("GET", "/events", params={"since": since, "types": types, "limit": limit})

    def iter_events(self, since: str, types: Iterable[str] | str | None = None, *,
                    limit: int = 100) -> Iterator[dict]:
        """Every event after ``since`` up to the end of the feed as it is now (the first short page);
        each event's ``seq`` is the watermark to resume after it."""
        if types is not None and not isinstance(types, str):
            types = ",".join(types)
        while True:
            page = self.events(since, types, limit=limit)
            yield from page["data"]
            if len(page["data"]) < limit:
                return
            since = page["next_since"]

    # -- users -------------------------------------------------------------------

    def create_user(self, username: str, email: str, password: str, *, user_priority: int | None = None,
                    idempotency_key: str | None = None) -> Item:
        """``POST /users``: sign up (anyone)."""
        body = {"username": username, "email": email, "password": password}
        if user_priority is not None:
            body["user_priority"] = user_priority
        return self._item("POST", "/users", json=body, idempotency_key=idempotency_key)

    def me(self) -> Item:
        """``GET /users/me``."""
        return self._item("GET", "/users/me")

    def get_user(self, user_id: int | str = "me") -> Item:
        """``GET /users/<id>`` (yourself, or anyone for an admin)."""
        return self._item("GET", f"/users/{user_id}")

    def update_user(self, user: int | str | Item, changes: Mapping, *, if_match: str | None = None,
                    replace: bool = False) -> Item:
        """``PATCH /users/<id>`` (``replace=True``: ``PUT``). Give the :class:`Item` you read to send its ETag."""
        user_id, headers = self._if_match(user, if_match)
        return self._item("PUT" if replace else "PATCH", f"/users/{user_id}", json=dict(changes), headers=headers)

    def deactivate_user(self, user: int | Item, *, if_match: str | None = None) -> None:
        """``DELETE /users/<id>`` (admin): deactivate, keep the history."""
        user_id, headers = self._if_match(user, if_match)
        self.request("DELETE", f"/users/{user_id}", headers=headers)

    def list_users(self, **params) -> Page:
        """``GET /users`` (admin): one page. Filters: q, role, is_active, sort; page or cursor, per_page, count."""
        return self._page("/users", params)

    def iter_users(self, **filters) -> Iterator[dict]:
        """Every user matching ``filters`` (admin), walked by cursor."""
        return self._iterate("/users", filters)

    # -- products ----------------------------------------------------------------

    def list_products(self, **params) -> Page:
        """``GET /products``: one page. Filters: category, q, min_price, max_price, in_stock,
        is_available, updated_since, sort; page or cursor, per_page, count (exact, estimated, none)."""
        return self._page("/products", params)

    def iter_products(self, **filters) -> Iterator[dict]:
        """Every product matching ``filters``, walked by cursor: each one unchanged meanwhile exactly once."""
        return self._iterate("/products", filters)

    def get_product(self, product_id: int) -> Item:
        """``GET /products/<id>``: the product, with its ``etag``."""
        return self._item("GET", f"/products/{product_id}")

    def create_product(self, product: Mapping | None = None, *, idempotency_key: str | None = None,
                       **fields) -> Item:
        """``POST /products`` (admin): sku, name, category, price required; description, stock, is_available."""
        return self._item("POST", "/products", json={**(product or {}), **fields}, idempotency_key=idempotency_key)

    def update_product(self, product: int | Item, changes: Mapping, *, if_match: str | None = None,
                       replace: bool = False) -> Item:
        """``PATCH /products/<id>`` (``replace=True``: ``PUT``, a full replacement) (admin).

        ``if_match`` is the ETag you read; giving the :class:`Item` itself
        sends its ``etag``. A stale one raises :class:`PreconditionFailed`.
        """
        product_id, headers = self._if_match(product, if_match)
        return self._item("PUT" if replace else "PATCH", f"/products/{product_id}", json=dict(changes),
                          headers=headers)

    def delete_product(self, product: int | Item, *, if_match: str | None = None) -> None:
        """``DELETE /products/<id>`` (admin; 409 once it is in an order: retire it with is_available=False)."""
        product_id, headers = self._if_match(product, if_match)
        self.request("DELETE", f"/products/{product_id}", headers=headers)

    def export_products(self, path: str | os.PathLike | IO[bytes], format: str = "csv", *, progress: bool = False,
                        timeout: float | tuple | None = None, **filters) -> int:
        """``GET /products/export``, written to ``path`` as it downloads; returns the bytes written.

        ``format`` is csv, json or ndjson; ``filters`` are the list filters and ``sort``.
        ``progress=True`` shows a bar of products out of the server's count (of bytes for json).
        """
        return self._download("/products/export", path, format, progress, timeout, filters, "products")

    def import_products(self, path: str | os.PathLike | IO[bytes], dry_run: bool = False, *, plan: bool = False,
                        on_error: str | None = None, max_price_change: float | str | None = None,
                        save_to: str | os.PathLike | IO[bytes] | None = None, progress: bool = False,
                        timeout: float | tuple | None = None, idempotency_key: str | None = None) -> dict:
        """``POST /products/import`` (admin): upload a CSV file as a stream.

        ``path`` is a file name or a binary file object (sent from its current
        position, which must be seekable so that a retry can rewind it).

        Returns the answer: ``import_id``, the counts (``created``, ``updated``,
        ``unchanged``: rows equal to the stored product, not written;
        ``rejected``), the first ``changes`` (each changed column's ``before``
        and ``after``) and ``errors``. ``plan=True`` writes nothing and answers
        what would change (``refused`` says why it would write nothing);
        ``on_error="skip_rows"`` writes the valid rows and answers the
        rejected ones (the default, ``"reject_file"``, writes all or
        nothing); ``max_price_change=P`` refuses the whole file when a price
        moves more than P % (:class:`PriceChangeRefused`). Bad rows under
        ``reject_file`` raise :class:`ValidationFailed` whose ``errors`` list
        ``{row, field, message}`` (nothing was written).

        ``save_to`` (a path or a binary file) streams the answer's rows there
        instead, in constant memory: a plan's full diff, or an import's
        rejected rows exactly as uploaded plus an ``error`` column (ready to
        fix and upload again); NDJSON when the path ends in ``.ndjson``, else
        CSV. The method then returns the import's audit record
        (:meth:`get_import`: the counts, the first changes and errors).
        ``timeout`` defaults to a 10-minute read timeout: the answer comes once
        the whole file has been checked.
        """
        params = {"dry_run": dry_run or None, "plan": plan or None, "on_error": on_error,
                  "max_price_change": _two_places(max_price_change, "max_price_change")}
        accept = "application/json"
        if save_to is not None:
            accept = "application/x-ndjson" if os.fspath(getattr(save_to, "name", save_to) or "").endswith(
                ".ndjson") else "text/csv"
        owned = not hasattr(path, "read")
        raw = open(path, "rb") if owned else path  # noqa: SIM115 (closed below)
        bar = None
        try:
            start = raw.tell()
            size = raw.seek(0, os.SEEK_END) - start  # no read: the file is never in memory
            raw.seek(start)
            bar = _progress_bar(progress, size, "upload")
            body = _ProgressReader(raw, start, size, bar)
            response = self.request("POST", "/products/import", params=params, data=body,
                                    headers={"Content-Type": "text/csv", "Accept": accept},
                                    idempotency_key=idempotency_key, stream=save_to is not None,
                                    timeout=timeout or (_connect_timeout(self.timeout), 600.0))
        finally:
            if bar is not None:
                bar.close()
            if owned:
                raw.close()
        if save_to is None:
            return response.json()
        import_id = int(response.headers["X-Import-Id"])
        _save_stream(response, save_to)
        return {"import_id": import_id, **self.get_import(import_id)}

    def update_products(self, changes: Iterable[Mapping], *, max_price_change: float | str | None = None) -> list:
        """``PATCH /products`` (admin): up to 1000 ``{"sku"|"id", ...changes, "version"?}``, all or nothing.

        Returns the changed products as they are now, in the order given (an
        item equal to its stored product is no change and not listed; a list
        whose ``import_id`` names the audit record). A float ``price`` or
        ``max_price_change`` is sent rounded to two places (a str, int or
        Decimal as it is). A stale ``version``
        raises :class:`PreconditionFailed`; ``max_price_change``, as for the
        import, :class:`PriceChangeRefused`.
        """
        params = {"max_price_change": _two_places(max_price_change, "max_price_change")}
        items = [dict(change) for change in changes]
        for item in items:
            if isinstance(item.get("price"), (float, Decimal)):
                item["price"] = _two_places(item["price"], "price")
        response = self.request("PATCH", "/products", params=params, json=items)
        products = _Changed(Item(item) for item in response.json()["data"])
        products.import_id = _int_or_none(response.headers.get("X-Import-Id"))
        return products

    def get_import(self, import_id: int) -> Item:
        """``GET /imports/<id>`` (admin): who, when, the options, the counts and the changes of a bulk change."""
        return self._item("GET", f"/imports/{import_id}")

    def list_imports(self, **params) -> Page:
        """``GET /imports`` (admin): the audit trail of imports, plans, dry runs and PATCH /products."""
        return self._page("/imports", params)

    def iter_imports(self, **filters) -> Iterator[dict]:
        """Every record of the audit trail matching ``filters`` (``user_id``, ``source``, ``sort``)."""
        return self._iterate("/imports", filters)

    # -- orders ------------------------------------------------------------------

    def place_order(self, items: Iterable[Mapping | tuple[int, int]] | Mapping[int, int], shipping_address: str, *,
                    idempotency_key: str | None = None) -> Item:
        """``POST /orders``: ``items`` as ``[{"product_id", "quantity"}]``, ``[(id, qty)]`` or ``{id: qty}``.

        Safe to retry: the Idempotency-Key is the same on every attempt, so a
        retried order is never placed twice.
        """
        if isinstance(items, Mapping):
            items = items.items()
        lines = [dict(line) if isinstance(line, Mapping) else {"product_id": line[0], "quantity": line[1]}
                 for line in items]
        return self._item("POST", "/orders", json={"items": lines, "shipping_address": shipping_address},
                          idempotency_key=idempotency_key)

    def get_order(self, order_id: int) -> Item:
        """``GET /orders/<id>`` (owner or admin)."""
        return self._item("GET", f"/orders/{order_id}")

    def set_order_status(self, order: int | Item, status: str, *, if_match: str | None = None) -> Item:
        """``PATCH /orders/<id>`` ``{"status"}``: paid, shipped, completed (admin) or cancelled."""
        order_id, headers = self._if_match(order, if_match)
        return self._item("PATCH", f"/orders/{order_id}", json={"status": status}, headers=headers)

    def cancel_order(self, order: int | Item, *, if_match: str | None = None) -> Item:
        """Cancel a pending or paid order (owner or admin); the stock comes back."""
        return self.set_order_status(order, "cancelled", if_match=if_match)

    def list_orders(self, **params) -> Page:
        """``GET /orders``: one page of your orders (admin: all). Filters: status, user_id, created, sort."""
        return self._page("/orders", params)

    def iter_orders(self, **filters) -> Iterator[dict]:
        """Every order matching ``filters``, walked by cursor. ``created="2026-11-20"`` is that whole day."""
        return self._iterate("/orders", filters)

    def export_orders(self, path: str | os.PathLike | IO[bytes], format: str = "csv", *, progress: bool = False,
                      timeout: float | tuple | None = None, **filters) -> int:
        """``GET /orders/export`` written to ``path`` as it downloads (CSV: one row per order line).

        ``progress=True`` shows a bar of orders out of the server's count (CSV: of rows, without a
        total; json: of bytes).
        """
        return self._download("/orders/export", path, format, progress, timeout, filters,
                              "rows" if format == "csv" else "orders")

    # -- change feeds and local copies (DESIGN §9) ---------------------------------

    def changes(self, entity: str, since: str, *, limit: int = 1000, **params) -> dict:
        """``GET /<entity>/changes``: ``{"data": [{seq, op, id, version, item}], "next_since"}``."""
        return self._json("GET", f"/{entity}/changes", params={"since": since, "limit": limit, **params})

    def iter_changes(self, entity: str, since: str, *, limit: int = 1000) -> Iterator[dict]:
        """Every change after ``since`` up to the end of the feed; each entry's ``seq`` resumes after it."""
        for page in self.iter_change_pages(entity, since, limit=limit):
            yield from page["data"]

    def iter_change_pages(self, entity: str, since: str, *, limit: int = 1000) -> Iterator[dict]:
        """The feed's pages after ``since``, up to the first short page (the end of the feed as it was
        then: the walk ends even while writes go on). Resume from the last page's ``next_since``, which
        can be ahead of its last entry (a quiet feed's watermark moves on: DESIGN §9)."""
        while True:
            page = self.changes(entity, since, limit=limit)
            yield page
            if len(page["data"]) < limit:
                return
            since = page["next_since"]

    def sync_products(self, path: str | os.PathLike, *, progress: bool = False) -> SyncResult:
        """Keep the CSV file ``path`` equal to the catalogue (see :meth:`sync`)."""
        return self.sync("products", path, progress=progress)

    def sync_orders(self, path: str | os.PathLike, *, progress: bool = False) -> SyncResult:
        """Keep the CSV file ``path`` equal to the orders you may see (one row per order line)."""
        return self.sync("orders", path, progress=progress)

    def sync(self, entity: str, path: str | os.PathLike, *, progress: bool = False) -> SyncResult:
        """Keep a local CSV copy of ``entity`` ("products", "orders") equal to the server's.

        The first run exports the file and keeps the export's watermark in
        ``<path>.since``; later runs apply the change feed from it to the file
        (rewritten as ``<path>.part`` and renamed: never half-written) and
        keep the new watermark. A watermark the server no longer keeps (410)
        means a fresh export. Applying a change twice is harmless, so a run
        that stops anywhere can simply run again.
        """
        target = Path(path)
        state = target.with_name(target.name + ".since")
        if target.exists() and state.exists():
            try:
                return self._apply_feed(entity, target, state, progress)
            except ApiError as error:
                if error.status != 410:
                    raise
        return self._sync_export(entity, target, state, progress)

    def _sync_export(self, entity: str, target: Path, state: Path, progress: bool) -> SyncResult:
        headers: dict = {}
        self._download(f"/{entity}/export", target, "csv", progress, None, {}, "rows", received=headers)
        since = headers["X-Changes-Since"]
        _write_atomically(state, since + "\n")
        with target.open(newline="", encoding="utf-8") as handle:
            count = len({row["id"] for row in csv.DictReader(handle)})
        return SyncResult(exported=True, created=count, since=since)

    def _apply_feed(self, entity: str, target: Path, state: Path, progress: bool) -> SyncResult:
        since = state.read_text().strip()
        with target.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            columns = list(reader.fieldnames or ())
            rows: dict[str, list[dict]] = {}
            for row in reader:
                rows.setdefault(row["id"], []).append(row)
        result = SyncResult(since=since)
        before, touched = set(rows), set()
        bar = _progress_bar(progress, None, "sync", "changes")
        try:
            for page in self.iter_change_pages(entity, since):
                for entry in page["data"]:
                    key = str(entry["id"])
                    touched.add(key)
                    if entry["op"] == "delete":
                        rows.pop(key, None)
                    else:
                        rows[key] = [{column: csv_cell(row.get(column)) for column in columns}
                                     for row in flatten(entry["item"])]
                    if bar is not None:
                        bar.update(1)
                result.since = page["next_since"]
        finally:
            if bar is not None:
                bar.close()
        # Counted per item, however many changes it had: new, gone, or there before and after.
        result.created, result.deleted = len(set(rows) - before), len(before - set(rows))
        result.updated = len(touched & before & set(rows))
        lines = io.StringIO()
        writer = csv.DictWriter(lines, columns, lineterminator=LINE_END, extrasaction="ignore")
        writer.writeheader()
        for key in sorted(rows, key=int):  # the export's order: by id
            writer.writerows(rows[key])
        _write_atomically(target, lines.getvalue())
        _write_atomically(state, result.since + "\n")  # after the file: a crash between re-applies, harmlessly
        return result

    # -- reports (admin) ---------------------------------------------------------

    def top_customers(self, limit: int | None = None, interval: str | None = None) -> list[dict]:
        """``GET /reports/top-customers``: ``[{username, email, order_count, total_spent}]``."""
        return self._json("GET", "/reports/top-customers", params={"limit": limit, "interval": interval})["data"]

    def revenue_by_category(self, interval: str | None = None) -> list[dict]:
        """``GET /reports/revenue-by-category``: ``[{category, revenue, units_sold}]``."""
        return self._json("GET", "/reports/revenue-by-category", params={"interval": interval})["data"]

    def monthly_revenue(self, year: int | None = None) -> list[dict]:
        """``GET /reports/monthly-revenue``: twelve months of
        ``{month, order_count, unique_customers, revenue, running_total}``."""
        return self._json("GET", "/reports/monthly-revenue", params={"year": year})["data"]

    # -- downloads ---------------------------------------------------------------

    def _download(self, path: str, target, format: str, progress: bool, timeout, filters: Mapping,
                  items: str = "rows", received: dict | None = None) -> int:
        """Stream ``path`` into ``target`` (a path or a binary file); returns the bytes written.

        A path is written as ``<path>.part`` and renamed when the download is
        complete, so a broken download never leaves a file that looks whole.
        The progress bar counts CSV and NDJSON rows, out of the server's
        ``X-Total-Count`` when a row is one of its ``items`` (bytes for JSON).
        """
        params = {**filters, "format": format}
        response = self.request("GET", path, params=params, stream=True, headers={"Accept": "*/*"},
                                timeout=timeout or self.timeout)
        if received is not None:  # the caller wants the answer's headers (an export's X-Changes-Since)
            received.update(response.headers)
        rows = _RowCounter(csv=format == "csv") if format in ("csv", "ndjson") else None
        if rows is None:
            bar = _progress_bar(progress, _int_or_none(response.headers.get("Content-Length")), "download")
        else:
            total = _int_or_none(response.headers.get("X-Total-Count")) if items != "rows" else None
            bar = _progress_bar(progress, total, "download", items)

        def advance(chunk: bytes) -> None:
            bar.update(len(chunk) if rows is None else rows(chunk))

        try:
            return _save_stream(response, target, advance if bar is not None else None)
        finally:
            if bar is not None:
                bar.close()


def _two_places(value: str | int | float | Decimal | None, name: str) -> str | None:
    """An amount or a percentage as the server reads it (at most two places), or None.

    A float becomes its nearest cent (0.1 + 0.2 is "0.30", not the
    "0.30000000000000004" that ``str`` gives and the server refuses); a str,
    int or Decimal is sent as it is (the server checks it).
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal)):
        raise TypeError(f"{name} must be a str, int, Decimal or float, not {type(value).__name__}")
    if isinstance(value, float):
        try:
            return str(Decimal(str(value)).quantize(Decimal("0.01")))
        except InvalidOperation:
            raise ValueError(f"{name} must be a finite number, not {value!r}") from None
    return str(value)


class _Changed(list):
    """The products a PATCH /products answered; ``import_id`` names its audit record."""

    import_id: int | None = None


def _save_stream(response: requests.Response, target, on_chunk: Callable[[bytes], None] | None = None) -> int:
    """Write a streamed answer to ``target`` (a path: via ``<path>.part``, on disk and renamed when whole,
    so a broken download never leaves a file that looks whole); the bytes written."""
    owned = not hasattr(target, "write")
    partial = f"{os.fspath(target)}.part" if owned else None
    written = 0
    try:
        out = open(partial, "wb") if owned else target  # noqa: SIM115 (closed below)
        try:
            for chunk in response.iter_content(CHUNK):
                out.write(chunk)
                written += len(chunk)
                if on_chunk is not None:
                    on_chunk(chunk)
            if owned:
                out.flush()
                os.fsync(out.fileno())
        finally:
            if owned:
                out.close()
        if owned:
            os.replace(partial, target)
    except BaseException:
        if owned and os.path.exists(partial):
            os.unlink(partial)
        raise
    finally:
        response.close()
    return written


def _page_of(response: requests.Response) -> Page:
    body = response.json()
    pagination = body.get("pagination", {})
    return Page(
        items=body.get("data", []),
        page=pagination.get("page"),
        per_page=pagination.get("per_page", len(body.get("data", []))),
        total_items=pagination.get("total_items", _int_or_none(response.headers.get("X-Total-Count"))),
        total_pages=pagination.get("total_pages"),
        next_url=response.links.get("next", {}).get("url"),
        next_cursor=pagination.get("next_cursor"),
        total_is_estimate=pagination.get("total_is_estimate"),
    )


def _clean(params: Mapping | None) -> dict | None:
    """Drop ``None`` values; booleans as ``true``/``false`` (what the API reads)."""
    if params is None:
        return None
    return {key: (str(value).lower() if isinstance(value, bool) else value)
            for key, value in params.items() if value is not None}


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _connect_timeout(timeout: float | tuple | None) -> float | None:
    return timeout[0] if isinstance(timeout, tuple) else timeout
