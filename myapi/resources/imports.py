"""The audit trail of bulk changes (DESIGN §12): ``GET /imports`` and ``GET /imports/<id>`` (admin).

One record per import, dry run or plan of ``POST /products/import`` and per
``PATCH /products`` (services/import_audit.py): who, when, the options, the
counts and the plan of what changed (a file's first 100 changes,
``changes_truncated`` when it made more; a PATCH's every change). The field
dicts of an import's own answer live here too: a record shows what its
answer said.
"""

from __future__ import annotations

from flask_restful import fields

from ..common import inputs
from ..common.contract import documented, marshal_with, parses, requires
from ..common.fields import DateTime, Diff, Entries, Nullable, links
from ..common.pagination import add_pagination_args
from ..common.parsing import RequestParser
from ..common.representations import JSON
from ..common.resource import Resource
from ..db import get_session
from ..services import import_audit


def _object(properties: dict, required: tuple[str, ...]) -> dict:
    return {"type": "object", "properties": properties, "required": list(required), "additionalProperties": False}


POSITION = {"row": {"type": "integer", "description": "The file's row (the header is row 1): an import's."},
            "index": {"type": "integer", "description": "The item's index (from 0): a PATCH /products'."}}
ROW_ERROR = _object({"row": {"type": "integer"}, "field": {"type": "string"}, "message": {"type": "string"}},
                    ("row", "field", "message"))
CHANGE = _object({**POSITION, "sku": {"type": "string"}, "action": {"type": "string", "enum": ["created", "updated"]},
                  "changes": Diff.schema}, ("sku", "action", "changes"))
PRICE_MOVE = _object({**POSITION, "sku": {"type": "string"}, "field": {"type": "string", "enum": ["price"]},
                      "before": {"type": "string"}, "after": {"type": "string"},
                      "change_percent": {"type": "string", "description": "Signed, two places: -12.50."},
                      "message": {"type": "string"}}, ("sku", "before", "after", "change_percent"))

# What every import answers (an import, a dry run, a plan): the counts, and the plan of what changed.
import_result_fields = {
    "import_id": fields.Integer,  # GET /imports/<import_id> shows it again
    "rows": fields.Integer,
    "created": fields.Integer,
    "updated": fields.Integer,
    "unchanged": fields.Integer,  # rows equal to the stored product: not written, same version
    "rejected": fields.Integer,  # rows refused (skip_rows: not written; a plan: would be refused)
    "dry_run": fields.Boolean,
    "plan": fields.Boolean,
    "on_error": fields.String,
    "max_price_change": Nullable("string"),
    "error_count": fields.Integer,
    "errors": Entries(ROW_ERROR),  # the first 100
    "changes": Entries(CHANGE),  # the first 100 changes, in file order
    "changes_truncated": fields.Boolean,  # more rows changed (or would) than `changes` lists
    "price_guardrail": Entries(PRICE_MOVE),  # a plan's offences of max_price_change
    "largest_price_changes": Entries(PRICE_MOVE, attribute=lambda result: (
        result.largest_price_changes or [])),  # a plan's ten largest price moves
    "refused": Nullable("string", description="A plan's: why the import would write nothing (null: it would "
                                              "write)."),
}

# One record of the trail, in a list: who, when, the options and the counts.
import_summary_fields = {
    "id": fields.Integer,
    "user_id": fields.Integer,
    "api_key_id": Nullable("integer", description="The API key used, if any."),
    "source": fields.String,  # "file" (POST /products/import) | "patch" (PATCH /products)
    "dry_run": fields.Boolean,
    "plan": fields.Boolean,
    "on_error": Nullable("string"),
    "max_price_change": Nullable("string"),
    "columns": fields.List(fields.String, attribute="column_list"),
    "rows": fields.Integer,
    "created": fields.Integer,
    "updated": fields.Integer,
    "unchanged": fields.Integer,
    "rejected": fields.Integer,
    "error_count": fields.Integer,
    "date_created": DateTime,
    "links": links(self="/imports/{id}", user="/users/{user_id}"),
}


def _detail(name: str, default=None):
    return lambda record: record.details.get(name, default)


# A record in full: the summary and the lists of its answer.
import_fields = {
    **import_summary_fields,
    "errors": Entries(ROW_ERROR, attribute=_detail("errors", [])),
    "changes": Entries(CHANGE, attribute=_detail("changes", [])),
    "changes_truncated": fields.Boolean,
    "price_guardrail": Entries(PRICE_MOVE, attribute=_detail("price_guardrail", [])),
    "largest_price_changes": Entries(PRICE_MOVE,
                                     attribute=lambda record: record.details.get("largest_price_changes") or []),
    "refused": Nullable("string", attribute=_detail("refused")),
}

list_parser = add_pagination_args(RequestParser(location="args"))
list_parser.add_argument("user_id", type=inputs.positive_int)
list_parser.add_argument("source", type=inputs.choice("file", "patch"))
list_parser.add_argument("sort", type=inputs.sort_spec(import_audit.SORT_KEYS))


class ImportList(Resource):
    media_types = (JSON,)

    @documented(summary="The audit trail of bulk changes: every import, plan, dry run and PATCH /products")
    @marshal_with(import_summary_fields, paged=True)
    @parses(list_parser)
    @requires("admin", "products:write")
    def get(self, args):
        return import_audit.list_imports(get_session(), **args)


class Import(Resource):
    media_types = (JSON,)

    @documented(summary="What one bulk change did: who, when, the options, the counts and the changes")
    @marshal_with(import_fields)
    @requires("admin", "products:write")
    def get(self, import_id: int):
        return import_audit.get_import(get_session(), import_id)
