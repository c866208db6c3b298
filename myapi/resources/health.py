"""GET /health: is the process up and does the database answer?"""

from __future__ import annotations

from flask_restful import fields
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from .. import __version__
from ..common.errors import UNAVAILABLE, Problem
from ..common.fields import marshal
from ..common.openapi import documented
from ..common.representations import JSON
from ..common.resource import Resource
from ..db import get_session

health_fields = {"status": fields.String, "database": fields.String, "version": fields.String}


class Health(Resource):
    media_types = (JSON,)

    @documented(fields=health_fields, summary="Is the process up and does the database answer?")
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
        return marshal({"status": "ok", "database": "ok", "version": __version__}, health_fields)
