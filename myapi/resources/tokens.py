"""Tokens: sign in (POST /tokens) and sign out (DELETE /tokens/current).

Credentials come as HTTP Basic or as ``username`` + ``password`` in the body.
An unknown user, a wrong password and a deactivated account all answer the
same 401 after the same password-hash work, so the answer tells an attacker
nothing about which usernames exist.
"""

from __future__ import annotations

from flask import g, request

from ..common import inputs
from ..common.auth import check_password, current_token, issue_token, require_user, revoke_token, unauthorized
from ..common.fields import API_PREFIX, marshal, token_fields
from ..common.openapi import documented
from ..common.parsing import RequestParser, request_body
from ..common.representations import JSON
from ..common.resource import Resource, no_content
from ..db import get_session
from ..services import users as users_service

credentials_parser = RequestParser(location="body")
credentials_parser.add_argument("username", type=str, required=True)
credentials_parser.add_argument("password", type=str, required=True)

BAD_CREDENTIALS = "Unknown username or wrong password."


def is_username(name: str) -> bool:
    try:
        inputs.username(name)
    except ValueError:
        return False
    return True


def credentials() -> tuple[str, str]:
    basic = request.authorization
    if basic is not None and basic.type == "basic":
        return basic.username or "", basic.password or ""
    if request.headers.get("Authorization"):
        raise unauthorized("Send HTTP Basic credentials or a JSON body with username and password.", "Basic")
    if not request_body():
        raise unauthorized("Send HTTP Basic credentials or a JSON body with username and password.", "Basic")
    args = credentials_parser.parse_args()
    return args.username, args.password


class TokenList(Resource):
    media_types = (JSON,)
    idempotent_post = False  # a sign-in creates a fresh secret every time, by design

    @documented(parser=credentials_parser, fields=token_fields, status=201, auth="basic", body_required=False,
                summary="Sign in: HTTP Basic credentials, or username and password in the body")
    def post(self):
        username, password = credentials()
        session = get_session()
        # A name that cannot be a username (NUL, too long...) is not looked
        # up at all, but still costs a password check, like any unknown user.
        user = users_service.find_by_username(session, username) if is_username(username) else None
        matches, new_hash = check_password(password[:1024], user.password_hash if user else None)
        if not (matches and user.is_active):
            raise unauthorized(BAD_CREDENTIALS, "Basic")
        if new_hash:  # the stored hash used an outdated scheme or cost
            user.password_hash = new_hash
        g.user_id = user.id  # for the access log line
        secret, token = issue_token(session, user)

        body = marshal({"token": secret, "token_type": "Bearer", "expires_at": token.expires_at}, token_fields)
        return body, 201, {"Location": f"{API_PREFIX}/tokens/current"}


class CurrentToken(Resource):
    media_types = (JSON,)

    @documented(status=204, auth="user", summary="Sign out: revoke the token of this request")
    def delete(self):
        require_user()
        session = get_session()
        revoke_token(session, current_token().id)
        return no_content()
