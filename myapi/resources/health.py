"""GET /health: is the process up and does the database answer?"""

from __future__ import annotations

from flask_restful import fields

from .. import __version__, problems
from ..common.contract import documented, marshal_with
from ..common.errors import Problem
from ..common.fields import Nullable
from ..common.representations import JSON
from ..common.resource import Resource
from ..db import get_session
from ..services import health as health_service

health_fields = {"status": fields.String, "database": fields.String, "version": fields.String,
                 # DESIGN §11: how long the oldest event still owed to a webhook has waited (null: none is).
                 "webhooks_oldest_undelivered_seconds": Nullable(
                     "number", description="Seconds the oldest undelivered webhook event has waited; null: none.")}


class Health(Resource):
    media_types = (JSON,)

    @documented(summary="Is the process up and does the database answer?")
    @marshal_with(health_fields)
    def get(self):
        if not health_service.database_answers(get_session()):
            raise Problem.of(problems.UNAVAILABLE, "The database is not answering.", headers={"Retry-After": "5"},
                             extra={"database": "unavailable", "version": __version__})
        return {"status": "ok", "database": "ok", "version": __version__,
                "webhooks_oldest_undelivered_seconds": health_service.oldest_undelivered_age(get_session())}
