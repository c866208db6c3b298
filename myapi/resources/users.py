"""Users: sign-up and the admin's list (UserList), one user (User), and /users/me.

Who sees what: a customer sees and changes only their own record; anyone
else's answers 404, as if it did not exist. Only an admin may change ``role``
or ``is_active`` (a customer who tries gets 403), list users, or deactivate one.
"""

from __future__ import annotations

from ..common import inputs
from ..common.auth import current_user, hash_password, require_admin, require_user
from ..common.errors import Problem
from ..common.fields import API_PREFIX, marshal, user_fields
from ..common.openapi import documented
from ..common.pagination import add_pagination_args, page_response
from ..common.parsing import RequestParser
from ..common.resource import Resource, check_if_match, item, no_content, not_modified
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

ADMIN_ONLY_FIELDS = ("role", "is_active")


def user_location(user) -> str:
    return f"{API_PREFIX}/users/{user.id}"


def visible_user(user_id: int):
    """The user if the caller may see it; 404 otherwise (no existence leak)."""
    caller = require_user()
    if caller.id == user_id:
        return caller
    user = users_service.get_user(get_session(), user_id) if caller.is_admin else None
    if user is None:
        raise Problem(404, f"No user {user_id}.")
    return user


class UserList(Resource):
    @documented(parser=list_parser, fields=user_fields, collection="page", auth="admin", summary="List users")
    def get(self):
        require_admin()
        args = list_parser.parse_args()
        page = users_service.list_users(get_session(), **args)
        return page_response(page, user_fields)

    @documented(parser=signup_parser, fields=user_fields, status=201, etag=True, auth="optional", errors=(409,),
                summary="Sign up")
    def post(self):
        args = signup_parser.parse_args()
        session = get_session()
        user = users_service.create_user(
            session,
            username=args.username,
            email=args.email,
            password_hash=hash_password(args.password),
            user_priority=args.user_priority,
        )

        return item(marshal(user, user_fields), user.version, 201, {"Location": user_location(user)})


class User(Resource):
    @documented(fields=user_fields, etag=True, auth="user", summary="Read a user (yourself, or anyone as an admin)")
    def get(self, user_id: int):
        user = visible_user(user_id)
        return not_modified(user.version) or item(marshal(user, user_fields), user.version)

    @documented(parser=put_parser, fields=user_fields, etag=True, auth="user", errors=(403, 409),
                summary="Replace a user's editable fields")
    def put(self, user_id: int):
        return self._update(visible_user(user_id), put_parser)

    @documented(parser=patch_parser, fields=user_fields, etag=True, auth="user", errors=(403, 409),
                summary="Change some of a user's fields")
    def patch(self, user_id: int):
        return self._update(visible_user(user_id), patch_parser)

    @documented(status=204, etag=True, auth="admin", summary="Deactivate a user")
    def delete(self, user_id: int):
        require_admin()
        user = visible_user(user_id)
        if user.id == current_user().id:
            raise Problem(409, "You cannot deactivate your own account.")
        check_if_match(user.version)
        session = get_session()
        users_service.deactivate_user(session, user)
        return no_content()

    @staticmethod
    def _update(user, parser):
        changes = dict(parser.parse_args())
        caller = current_user()
        forbidden = [name for name in ADMIN_ONLY_FIELDS if name in changes and not caller.is_admin]
        if forbidden:
            raise Problem(403, "Only an admin may change " + " or ".join(forbidden) + ".",
                          errors={name: "Only an admin may change this field." for name in forbidden})
        if caller.id == user.id and changes.get("is_active") is False:
            raise Problem(409, "You cannot deactivate your own account.")
        check_if_match(user.version)
        if "password" in changes:
            changes["password_hash"] = hash_password(changes.pop("password"))
        session = get_session()
        users_service.update_user(session, user, changes)
        return item(marshal(user, user_fields), user.version)


class CurrentUser(User):
    """/users/me: the signed-in user, whoever that is."""

    def get(self):
        return super().get(require_user().id)

    def put(self):
        return super().put(require_user().id)

    def patch(self):
        return super().patch(require_user().id)

    def delete(self):
        return super().delete(require_user().id)
