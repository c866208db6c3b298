"""API keys (DESIGN §10): ApiKeyList (create, list) and ApiKey (read, revoke).

Keys are managed with a sign-in token only: a key cannot mint, list or
revoke keys (no scope allows it), so a leaked key cannot make itself
another. The secret is in the creation answer and nowhere else; the
creation is not idempotent-replayable for the same reason (a stored replay
would keep the secret in the database).
"""

from __future__ import annotations

from ..common import inputs
from ..common.auth import current_user
from ..common.contract import documented, marshal_with, parses, requires
from ..common.fields import API_PREFIX, api_key_fields, created_api_key_fields
from ..common.pagination import add_pagination_args
from ..common.parsing import RequestParser
from ..common.resource import Resource
from ..db import get_session
from ..models import API_KEY_SCOPES
from ..services import api_keys as api_keys_service

scope_list = inputs.name_list("scope", API_KEY_SCOPES)

list_parser = add_pagination_args(RequestParser(location="args"))
list_parser.add_argument("user_id", type=inputs.positive_int)
list_parser.add_argument("revoked", type=inputs.boolean)
list_parser.add_argument("sort", type=inputs.sort_spec(api_keys_service.SORT_KEYS))

create_parser = RequestParser(location="body")
create_parser.add_argument("name", type=inputs.text(100, 1), required=True)
create_parser.add_argument("scopes", type=scope_list, required=True)
create_parser.add_argument("expires_at", type=inputs.iso8601_datetime)


def api_key_location(key) -> str:
    return f"{API_PREFIX}/api-keys/{key.id}"


class ApiKeyList(Resource):
    idempotent_post = False  # a replay would have to store the secret

    @documented(summary="List your API keys (an admin: everyone's); never their secrets", errors=(403,))
    @marshal_with(api_key_fields, paged=True)
    @parses(list_parser)
    @requires("user")
    def get(self, args):
        return api_keys_service.list_keys(get_session(), current_user(), **args)

    @documented(summary="Create an API key: the secret is in this answer only", errors=(403,))
    @marshal_with(created_api_key_fields, status=201, location=api_key_location, minimal=False)
    @parses(create_parser)
    @requires("user")
    def post(self, args):
        return api_keys_service.create_key(get_session(), current_user(), name=args.name, scopes=args.scopes,
                                           expires_at=args.expires_at)


class ApiKey(Resource):
    @documented(summary="Read an API key (never its secret)")
    @marshal_with(api_key_fields)
    @requires("user")
    def get(self, key_id: int):
        return api_keys_service.visible_key(get_session(), current_user(), key_id)

    @documented(summary="Revoke an API key, at once")
    @requires("user")
    def delete(self, key_id: int):
        api_keys_service.revoke_key(get_session(), current_user(), key_id)
