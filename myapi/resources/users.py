"""Users: sign-up and the admin's list (UserList), one user (User), and /users/me.

Who sees what: a customer sees and changes only their own record; anyone
else's answers 404, as if it did not exist. Only an admin may change ``role``
or ``is_active`` (a customer who tries gets 403), list users, or deactivate one.
"""

from __future__ import annotations

from ..common import inputs
from ..common.auth import current_user, hash_password
from ..common.contract import documented, marshal_with, parses, requires
from ..common.fields import API_PREFIX, user_fields
from ..common.pagination import add_pagination_args
from ..common.parsing import RequestParser, conditional_parser
from ..common.resource import Resource
from ..db import get_session
from ..models import ROLES
from ..services import users as users_service

list_parser = add_pagination_args(RequestParser(location="args"))
list_parser.add_argument("q", type=inputs.text(100))
list_parser.add_argument("role", type=inputs.choice(*ROLES))
list_parser.add_argument("is_active", type=inputs.boolean)
list_parser.add_argument("sort", type=inputs.sort_spec(users_service.SORT_KEYS))

signup_parser = RequestParser(location="body")
signup_parser.add_argument("username", type=inputs.username, required=True)
signup_parser.add_argument("email", type=inputs.email, required=True)
signup_parser.add_argument("password", type=inputs.password, required=True)
signup_parser.add_argument("user_priority", type=inputs.user_priority, default=1)

# PUT replaces the editable fields: username, email and user_priority are
# required; password, role and is_active change only when given.
put_parser = signup_parser.copy()
put_parser.replace_argument("password", type=inputs.password, store_missing=False)
put_parser.replace_argument("user_priority", type=inputs.user_priority, required=True)
put_parser.add_argument("role", type=inputs.choice(*ROLES), store_missing=False)
put_parser.add_argument("is_active", type=inputs.boolean, store_missing=False)

# PATCH: every field optional, and only the given ones change.
patch_parser = put_parser.partial()


def user_location(user) -> str:
    return f"{API_PREFIX}/users/{user.id}"


class UserList(Resource):
    @documented(summary="List users")
    @marshal_with(user_fields, paged=True)
    @parses(list_parser)
    @requires("admin", "users:read")
    def get(self, args):
        return users_service.list_users(get_session(), **args)

    @documented(summary="Sign up", errors=(409,))
    @marshal_with(user_fields, status=201, etag=True, location=user_location)
    @parses(signup_parser)
    def post(self, args):
        return users_service.create_user(get_session(), username=args.username, email=args.email,
                                         password_hash=hash_password(args.password),
                                         user_priority=args.user_priority)


class User(Resource):
    """/users/<id>: a customer sees only themself (anyone else is 404); an admin anyone."""

    @documented(summary="Read a user (yourself, or anyone as an admin)")
    @marshal_with(user_fields, etag=True)
    @requires("user", "users:read")
    def get(self, user_id: int):
        return users_service.visible_user(get_session(), current_user(), user_id)

    @documented(summary="Replace a user's editable fields", errors=(403, 409))
    @marshal_with(user_fields, etag=True)
    @parses(put_parser, conditional_parser)
    @requires("user")
    def put(self, args, user_id: int):
        return self.change(args, user_id)

    @documented(summary="Change some of a user's fields", errors=(403, 409))
    @marshal_with(user_fields, etag=True)
    @parses(patch_parser, conditional_parser)
    @requires("user")
    def patch(self, args, user_id: int):
        return self.change(args, user_id)

    @documented(summary="Deactivate a user", errors=(409,))
    @parses(conditional_parser)
    @requires("admin")
    def delete(self, args, user_id: int):
        users_service.deactivate(get_session(), current_user(), user_id, if_match=args.if_match)

    @staticmethod
    def change(args, user_id: int):
        if_match = args.pop("if_match")
        return users_service.change_user(get_session(), current_user(), user_id, args, if_match=if_match,
                                         hash_password=hash_password)


class CurrentUser(User):
    """/users/me: the signed-in user, whoever that is (the contracts are User's)."""

    def get(self):
        return super().get(current_user().id)

    def put(self, args):
        return super().put(args, current_user().id)

    def patch(self, args):
        return super().patch(args, current_user().id)

    def delete(self, args):
        return super().delete(args, current_user().id)
