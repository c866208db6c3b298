"""GET /health: is the process up and does the database answer?"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from .. import __version__
from ..common.errors import UNAVAILABLE, Problem
from ..common.representations import JSON
from ..common.resource import Resource
from ..db import get_session


class Health(Resource):
    media_types = (JSON,)

    def get(self):
        try:
            get_session().execute(text("SELECT 1"))
        except SQLAlchemyError:
            raise Problem(
                503,
                "The database is not answering.",
                type=UNAVAILABLE,
                headers={"Retry-After": "5"},
                extra={"database": "unavailable", "version": __version__},
            ) from None
        return {"status": "ok", "database": "ok", "version": __version__}
