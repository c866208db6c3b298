"""Query helpers shared by the services: whitelisted sorting, pages, exports, If-Match."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from .errors import PreconditionFailed


def apply_sort(stmt: Select, spec: Sequence[tuple[str, bool]] | None, columns: Mapping, tiebreak) -> Select:
    """ORDER BY the whitelisted ``columns`` named in ``spec`` (key, descending).

    The parser already refused unknown keys; looking them up in ``columns``
    here is the second lock on the door. ``tiebreak`` (the primary key) comes
    last so pages never overlap or skip rows.
    """
    order = []
    for key, descending in spec or ():
        column = columns[key]
        order.append(column.desc() if descending else column.asc())
    order.append(tiebreak)
    return stmt.order_by(*order)


def like_pattern(text: str) -> str:
    """A LIKE pattern matching ``text`` anywhere, its own wildcards escaped (ESCAPE '\\')."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


@dataclass
class Page:
    items: list
    page: int
    per_page: int
    total_items: int

    @property
    def total_pages(self) -> int:
        return math.ceil(self.total_items / self.per_page)


def count_rows(session: Session, stmt: Select) -> int:
    """How many rows ``stmt`` selects: one COUNT statement."""
    return session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0


def paginate(session: Session, stmt: Select, page: int, per_page: int) -> Page:
    """One page of ``stmt`` plus a COUNT of every matching row: two statements."""
    total = count_rows(session, stmt)
    rows = session.scalars(stmt.limit(per_page).offset((page - 1) * per_page)).all()
    return Page(items=list(rows), page=page, per_page=per_page, total_items=total or 0)


@dataclass
class Export:
    """Every row of a query, for a streamed download; read when the body is read.

    ``rows(session)`` gives the objects to marshal (JSON, NDJSON and the
    generic CSV). ``csv(session, columns)``, when given, gives ready CSV
    bytes (header included) for those output columns, formatted by the
    database. ``session`` belongs to the response body, not to the request.
    ``count(session)``, when given, counts the items before the download
    starts (the ``X-Total-Count`` a progress bar shows); it runs in the
    request's session.
    """

    name: str
    rows: Callable[[Session], Iterable]
    csv: Callable[[Session, Sequence[str]], Iterable[bytes]] | None = None
    count: Callable[[Session], int] | None = None


@dataclass(frozen=True)
class IfMatch:
    """What an ``If-Match`` header accepts: some versions of the item, or any (``*``)."""

    versions: frozenset[int] = frozenset()
    any: bool = False

    def check(self, version: int) -> None:
        """PreconditionFailed unless ``version`` is acceptable."""
        if not (self.any or version in self.versions):
            raise PreconditionFailed(version)


def check_version(version: int, if_match: IfMatch | None) -> None:
    """The If-Match rule of every conditional write; no header, no condition."""
    if if_match is not None:
        if_match.check(version)
