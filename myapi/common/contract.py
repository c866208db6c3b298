"""What a Resource method reads, who may call it and what it answers, said once.

Flask-RESTful's idiom, made the single source of truth (DESIGN §8)::

    class ProductList(Resource):
        @marshal_with(product_fields, status=201, etag=True, location=product_location)
        @parses(create_parser)
        @requires("admin")
        def post(self, args):
            return products.create_product(get_session(), args)

The decorators do not wrap the method: each records its part of the
method's :class:`Contract`, and the base Resource (common/resource.py) runs
every request through one pipeline in a fixed order, whatever the order of
the decorators: negotiate the representation, authorise (``requires``),
parse (``parses``, the result passed as the first argument), call the method,
marshal what it returns (``marshal_with``), commit. The OpenAPI document
(common/openapi/) is read from the same contracts, so what is documented is
what runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ..models import API_KEY_SCOPES

ATTRIBUTE = "__contract__"
AUTH_LEVELS = ("none", "user", "admin", "password")


@dataclass(frozen=True)
class Alternate:
    """A media type whose answer is a stream the method's object makes, not the field dict's rows.

    ``render(obj)`` gives the body's chunks (bytes); ``description`` says
    what it holds (the OpenAPI document shows it).
    """

    description: str
    render: Callable[[Any], Iterable[bytes]]


@dataclass(frozen=True)
class JsonArray:
    """A body that is a JSON array of 1 to ``max_items`` objects, each read by ``item_parser``.

    ``one_of``: each item gives exactly one of these fields (how it names
    its target). The method finds the parsed items in ``args.entries``.
    """

    item_parser: Any
    max_items: int
    one_of: tuple[str, ...] = ()


@dataclass
class Output:
    """How a method's return value becomes the answer (see :func:`marshal_with`)."""

    fields: dict
    envelope: str | None = None
    status: int = 200
    etag: bool = False
    location: Callable[[Any], str] | None = None
    paged: bool = False
    export: bool = False
    minimal: bool = True
    feed: bool = False
    #: A nested group ``fields=`` selects within (a feed's ``item``); the other members stay.
    select_within: str | None = None
    #: Media types answered by a stream of the object's own (``Alternate``), not by the field dict.
    alternates: dict[str, Alternate] | None = None


@dataclass
class Contract:
    output: Output | None = None
    parsers: tuple = ()
    csv_upload: Any = None
    json_array: JsonArray | None = None
    auth: str = "none"
    scope: str | None = None
    summary: str | None = None
    description: str | None = None
    errors: tuple[int, ...] = ()
    produces: dict | None = None
    hidden: bool = False
    headers: tuple[str, ...] = ()

    @property
    def status(self) -> int:
        """The success status: the output's, 200 for a page of its own, else 204 (no body)."""
        if self.output is not None:
            return self.output.status
        return 200 if self.produces is not None else 204

    @property
    def reads_body(self) -> bool:
        return self.csv_upload is not None or self.json_array is not None or any(
            argument.location in ("body", "files") for parser in self.parsers for argument in parser.args)


def contract_of_function(function) -> Contract:
    contract = getattr(function, ATTRIBUTE, None)
    if contract is None:
        contract = Contract()
        setattr(function, ATTRIBUTE, contract)
    return contract


def contract_of(resource: type, method: str) -> Contract | None:
    """The contract of ``resource.method``, inherited along the MRO.

    A subclass that overrides a method only to call its parent's (``/users/me``
    over ``/users/<id>``) keeps the parent's contract.
    """
    for klass in resource.__mro__:
        function = klass.__dict__.get(method)
        if function is not None and hasattr(function, ATTRIBUTE):
            return getattr(function, ATTRIBUTE)
    return None


def marshal_with(fields: dict, envelope: str | None = None, *, status: int = 200, etag: bool = False,
                 location: Callable[[Any], str] | None = None, paged: bool = False,
                 export: bool = False, minimal: bool = True, feed: bool = False,
                 select_within: str | None = None, alternates: dict[str, Alternate] | None = None) -> Callable:
    """flask_restful.marshal_with's name and meaning, plus what this API adds.

    The method returns an object (a model row, a mapping) or
    ``(obj, status, headers)``; it is marshalled with ``fields`` (inside
    ``{envelope: ...}`` when an envelope is named), in the negotiated
    representation, honouring ``fields=`` (§8.1) and, on writes,
    ``Prefer: return=minimal`` (§8.2). Also:

    * ``status``: the success status (201 for a creation);
    * ``etag``: the answer's ETag is the object's ``version`` (GET answers
      304 to an ``If-None-Match`` naming it);
    * ``location``: a function of the object giving the ``Location`` header;
    * ``paged``: the method returns a ``Page``, answered as ``{"data",
      "pagination"}`` with ``X-Total-Count`` and ``Link``;
    * ``export``: the method returns an ``Export``, streamed as a download
      (JSON array, NDJSON or CSV);
    * ``minimal=False``: the answer is the point of the request (a sign-in's
      token), so ``Prefer: return=minimal`` is not honoured (RFC 7240 lets a
      server ignore a preference);
    * ``feed``: the method returns a change feed's ``FeedPage``, answered as
      ``{"data": [...], "next_since": W}`` with ``X-Next-Since`` (DESIGN §9);
      ``select_within``: the nested group (``"item"``) that ``fields=`` names
      fields of;
    * ``alternates``: ``{media type: Alternate}``, representations that are
      not the field dict's rows but a stream the object makes (an import's
      rejected rows as CSV, its plan's diff as NDJSON).
    """
    output = Output(fields, envelope, status, etag, location, paged, export, minimal, feed, select_within,
                    alternates)

    def decorate(method):
        contract_of_function(method).output = output
        return method

    return decorate


def parses(*parsers, csv_upload=None, json_array: JsonArray | None = None) -> Callable:
    """Parse the request with these reqparse parsers; the method gets the result first.

    Every error of every parser comes back in one 400. ``csv_upload``: the
    parser whose arguments are the columns of a CSV upload (text/csv or a
    multipart ``file``); the method then finds the upload, as a text stream,
    in ``args.upload``. ``json_array``: the body is a JSON array whose items
    the JsonArray's parser reads, every error of every item in one 400; the
    method finds the items in ``args.entries``.
    """

    def decorate(method):
        contract = contract_of_function(method)
        contract.parsers = tuple(parsers)
        contract.csv_upload = csv_upload
        contract.json_array = json_array
        return method

    return decorate


def requires(level: str, scope: str | None = None) -> Callable:
    """Who may call the method: ``"none"`` (anyone), ``"user"`` (a valid token or key), ``"admin"``.

    ``scope``: what an API key must hold to call it (DESIGN §10), e.g.
    ``"orders:read"``; sign-in tokens have their user's full rights. An
    authenticated route with no scope takes sign-in tokens only. Credentials
    that are sent must be valid even where ``"none"`` is required (401).
    ``"password"`` documents a sign-in: HTTP Basic credentials (or the body),
    which the method checks itself.
    """
    if level not in AUTH_LEVELS:
        raise ValueError(f"requires() takes one of {AUTH_LEVELS}")
    if scope is not None and scope not in API_KEY_SCOPES:
        raise ValueError(f"unknown scope {scope!r}; the scopes are {API_KEY_SCOPES}")

    def decorate(method):
        contract = contract_of_function(method)
        contract.auth = level
        contract.scope = scope
        return method

    return decorate


def documented(*, summary: str | None = None, description: str | None = None, errors: Iterable[int] = (),
               produces: dict | None = None, hidden: bool = False, headers: Iterable[str] = ()) -> Callable:
    """What no other decorator says: the summary, extra error statuses, non-field answers.

    * ``errors``: statuses the method's services raise beyond those the
      document infers (400 from parsers, 401/403 from ``requires``, 404 from
      path ids, 412 from If-Match, 409/422 from idempotent POSTs...);
    * ``produces``: ``{media type: schema}`` for an answer that is not a
      field dict (the docs page);
    * ``hidden``: leave the route out of the document (static assets);
    * ``headers``: headers of the success answer beyond those the document
      infers (``X-Import-Id``), each described in the components.
    """

    def decorate(method):
        contract = contract_of_function(method)
        contract.summary = summary
        contract.description = description
        contract.errors = tuple(errors)
        contract.produces = produces
        contract.hidden = hidden
        contract.headers = tuple(headers)
        return method

    return decorate
