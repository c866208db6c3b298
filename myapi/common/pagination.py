"""Pages for every list: arguments, the body envelope and the headers.

A list answers ``{"data": [...], "pagination": {page, per_page, total_items,
total_pages}}`` in JSON, and in every representation the headers
``X-Total-Count`` and an RFC 8288 ``Link`` with first/prev/next/last. A page
past the end is an empty 200 page (its ``prev``/``first``/``last`` links still
lead back). A list costs two statements, a COUNT and the page, whatever its
size.
"""

from __future__ import annotations

from urllib.parse import urlencode

from flask import request

from ..services.query import Page
from . import inputs
from .representations import Collection

DEFAULT_PER_PAGE = 20


def add_pagination_args(parser):
    parser.add_argument("page", type=inputs.page, default=1, location="args")
    parser.add_argument("per_page", type=inputs.per_page, default=DEFAULT_PER_PAGE, location="args")
    return parser


def link_header(page: Page) -> str:
    last = max(page.total_pages, 1)
    targets = {"first": 1, "last": last}
    if page.page > 1:
        targets["prev"] = min(page.page - 1, last)
    if page.page < page.total_pages:
        targets["next"] = page.page + 1
    query = [(k, v) for k, v in request.args.items(multi=True) if k != "page"]
    links = []
    for rel in ("first", "prev", "next", "last"):
        if rel in targets:
            url = f"{request.base_url}?{urlencode(query + [('page', targets[rel])])}"
            links.append(f'<{url}>; rel="{rel}"')
    return ", ".join(links)


def page_body(page: Page, to_dict, columns: list[str]) -> Collection:
    """The list envelope of ``page``, its items marshalled by ``to_dict``."""
    return Collection(
        data=[to_dict(item) for item in page.items],
        pagination={
            "page": page.page,
            "per_page": page.per_page,
            "total_items": page.total_items,
            "total_pages": page.total_pages,
        },
        columns=columns,
    )


def page_headers(page: Page) -> dict[str, str]:
    """``X-Total-Count`` and ``Link``, sent in every representation."""
    return {"X-Total-Count": str(page.total_items), "Link": link_header(page)}
