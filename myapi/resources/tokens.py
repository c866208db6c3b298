"""Tokens: sign in (POST /tokens) and sign out (DELETE /tokens/current).

Credentials come as HTTP Basic or as ``username`` + ``password`` in the body.
An unknown user, a wrong password and a deactivated account all answer the
same 401 after the same password-hash work, so the answer tells an attacker
nothing about which usernames exist.
"""

from __future__ import annotations

from ..common.auth import current_token, revoke_token, sign_in
from ..common.contract import documented, marshal_with, parses, requires
from ..common.fields import API_PREFIX, token_fields
from ..common.parsing import RequestParser
from ..common.representations import JSON
from ..common.resource import Resource
from ..db import get_session

# The body is optional (HTTP Basic credentials may come instead, common/auth.sign_in);
# a body holds both.
credentials_parser = RequestParser(location="body", body_optional=True)
credentials_parser.add_argument("username", type=str, required=True)
credentials_parser.add_argument("password", type=str, required=True)


class TokenList(Resource):
    media_types = (JSON,)
    idempotent_post = False  # a sign-in creates a fresh secret every time, by design

    @documented(summary="Sign in: HTTP Basic credentials, or username and password in the body")
    @marshal_with(token_fields, status=201, location=lambda _: f"{API_PREFIX}/tokens/current", minimal=False)
    @parses(credentials_parser)
    @requires("password")
    def post(self, args):
        return sign_in(get_session(), args)


class CurrentToken(Resource):
    media_types = (JSON,)

    @documented(summary="Sign out: revoke the token of this request")
    @requires("user")
    def delete(self):
        revoke_token(get_session(), current_token().id)
