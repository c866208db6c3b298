"""Pages for every list (DESIGN §3, §9): arguments, cursors, the body envelope and the headers.

A list takes ``page`` *or* ``cursor`` (both: 400), ``per_page`` and
``count=exact|estimated|none``, and answers ``{"data": [...],
"pagination": {...}}`` in JSON and, in every representation, the headers
``X-Total-Count`` (when counted) and an RFC 8288 ``Link``. The members of
``pagination`` (:func:`pagination_of`):

* by page: ``page``, ``per_page``, ``total_items`` and ``total_pages``
  (not with ``count=none``), ``total_is_estimate`` (only with
  ``count=estimated``), ``next_cursor``;
* by cursor: the same without ``page`` and ``total_pages``.

``next_cursor`` (null when no row follows) is made from the page's last
row: following it continues after that row whatever was inserted, changed
or deleted meanwhile (services/query.py), and ``Link: rel="next"`` carries
it. By page, the other links are ``first``/``prev``/``last`` by number
(``last`` only when counted); by cursor, ``first`` (a new walk). A page
past the end is an empty 200 page (its ``prev``/``first``/``last`` links
still lead back). A cursor is bound to the list's filters and sort
(common/cursors.py): sent with others, it is a 400 naming ``cursor``.

The watermark of the change feed that continues a list (products, orders)
is taken when a walk starts (a request without ``cursor``) and travels in
the cursor; the last page of a walk (``next_cursor`` null, reached through
a cursor or the first page itself) answers it as ``X-Changes-Since``.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from flask import g, request

from ..services.query import Page, Window
from . import cursors, inputs
from .errors import validation_problem
from .representations import Collection

DEFAULT_PER_PAGE = 20
#: The arguments add_pagination_args adds; the others of a list's parser are its filters and sort.
PAGINATION_ARGS = ("page", "per_page", "cursor", "count")
CHANGES_SINCE = "X-Changes-Since"

FORGED = "is not a cursor this API gave out, or it was changed: use next_cursor as it came, or start again without it."
OTHER_FILTERS = ("was made for other filters: send the filters of the request it came from (or start a new walk "
                 "without it).")


def add_pagination_args(parser):
    parser.add_argument("page", type=inputs.page, default=1, location="args")
    parser.add_argument("per_page", type=inputs.per_page, default=DEFAULT_PER_PAGE, location="args")
    parser.add_argument("cursor", type=inputs.cursor, location="args")
    parser.add_argument("count", type=inputs.count_mode, default="exact", location="args")
    return parser


@dataclass(frozen=True)
class Walk:
    """What a list request's cursors are bound to, kept on ``g`` for the answer."""

    sort: tuple[tuple[str, bool], ...]
    filters: str
    by_cursor: bool = False
    watermark: str | None = None  # the walk's, from its cursor


def window_of(args) -> Window:
    """Take the pagination arguments out of ``args`` (what stays are the list's filters and sort).

    A cursor must be sealed by this server and made for these filters and
    this sort; otherwise, or next to ``page``, a 400 naming ``cursor``.
    """
    page, per_page, token, count = (args.pop(name, None) for name in PAGINATION_ARGS)
    sort = cursors.normal_sort(args.get("sort"))
    filters = cursors.filters_digest(request.path, {name: value for name, value in args.items() if name != "sort"})
    if token is None:
        g.list_walk = Walk(sort, filters)
        return Window(per_page=per_page, page=page, count=count)
    if "page" in request.args:
        raise validation_problem({"cursor": "Give page or cursor, not both.",
                                  "page": "Leave it out when you send a cursor."})
    try:
        cursor = cursors.decode(token)
    except cursors.CursorError:
        raise validation_problem({"cursor": FORGED}) from None
    if cursor.sort != sort:
        made_for = ",".join(("-" if descending else "") + name for name, descending in cursor.sort) or "id"
        raise validation_problem({"cursor": f"was made for sort={made_for}: send that sort with it (or start a "
                                            "new walk without it)."})
    if cursor.filters != filters:
        raise validation_problem({"cursor": OTHER_FILTERS})
    g.list_walk = Walk(sort, filters, by_cursor=True, watermark=cursor.watermark)
    return Window(per_page=per_page, page=None, after=cursor.keys, count=count)


def _walk() -> Walk:
    walk = g.get("list_walk")
    return walk if walk is not None else Walk((), "")


def next_cursor(page: Page) -> str | None:
    """The cursor of the rows after ``page`` (None when none follows)."""
    if page.next_key is None:
        return None
    walk = _walk()
    # A walk that starts at page N > 1 never read the rows before it: its end answers no X-Changes-Since.
    watermark = walk.watermark if walk.by_cursor else (
        str(page.watermark) if page.watermark is not None and page.page == 1 else None)
    return cursors.encode(cursors.Cursor(walk.sort, walk.filters, page.next_key, watermark))


def pagination_of(page: Page, cursor: str | None) -> dict:
    """The ``pagination`` member: which members appear depends on the mode and ``count=`` (module doc)."""
    body: dict = {}
    if page.page is not None:
        body["page"] = page.page
    body["per_page"] = page.per_page
    if page.total_items is not None:
        body["total_items"] = page.total_items
        if page.page is not None:
            body["total_pages"] = page.total_pages
        if page.total_is_estimate is not None:
            body["total_is_estimate"] = page.total_is_estimate
    body["next_cursor"] = cursor
    return body


def link_header(page: Page, cursor: str | None) -> str:
    # The request's other parameters are encoded once, for every link.
    kept = urlencode([(k, v) for k, v in request.args.items(multi=True) if k not in ("page", "cursor")])
    url = request.base_url
    links = []

    def link(rel: str, extra: list) -> None:
        query = "&".join(filter(None, (kept, urlencode(extra))))
        links.append(f'<{url}{"?" + query if query else ""}>; rel="{rel}"')

    if page.page is None:  # by cursor: a new walk, and the rest of this one
        link("first", [])
        if cursor is not None:
            link("next", [("cursor", cursor)])
        return ", ".join(links)
    last = max(page.total_pages, 1) if page.total_pages is not None else None
    link("first", [("page", 1)])
    if page.page > 1:
        link("prev", [("page", min(page.page - 1, last) if last is not None else page.page - 1)])
    if cursor is not None:
        link("next", [("cursor", cursor)])
    if last is not None:
        link("last", [("page", last)])
    return ", ".join(links)


def page_body(page: Page, to_dict, columns: list[str]) -> Collection:
    """The list envelope of ``page``, its items marshalled by ``to_dict``."""
    return Collection(
        data=[to_dict(item) for item in page.items],
        pagination=pagination_of(page, _next_cursor_of(page)),
        columns=columns,
    )


def page_headers(page: Page) -> dict[str, str]:
    """``X-Total-Count`` (when counted), ``Link``, and ``X-Changes-Since`` on a walk's last page."""
    cursor = _next_cursor_of(page)
    headers = {"Link": link_header(page, cursor)}
    if page.total_items is not None:
        headers["X-Total-Count"] = str(page.total_items)
    if cursor is None:
        walk = _walk()
        watermark = walk.watermark if walk.by_cursor else (
            str(page.watermark) if page.watermark is not None and page.page == 1 else None)
        if watermark is not None:
            headers[CHANGES_SINCE] = watermark
    return headers


def _next_cursor_of(page: Page) -> str | None:
    """``next_cursor(page)``, made once per answer (the body and the Link header share it)."""
    made = g.get("list_next_cursor")
    if made is not None and made[0] is page:
        return made[1]
    cursor = next_cursor(page)
    g.list_next_cursor = (page, cursor)
    return cursor
