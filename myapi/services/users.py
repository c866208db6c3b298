"""Users: sign-up, listing, changes and deactivation."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Select, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..models import Token, User, utcnow
from . import api_keys
from .errors import Conflict, NotFound, PermissionDenied
from .query import FIRST_PAGE, IfMatch, Page, Window, apply_sort, check_version, like_pattern, paginate, sort_keys

#: Fields only an admin may change (a customer who tries gets 403).
ADMIN_ONLY_FIELDS = ("role", "is_active")

SORT_KEYS = {
    "id": User.id,
    "username": User.username,
    "email": User.email,
    "user_priority": User.user_priority,
    "date_created": User.date_created,
}


def _duplicates(session: Session, username: str | None, email: str | None, exclude_id: int | None) -> dict:
    """Field errors for a username or email that another user already has."""
    conditions = []
    if username is not None:
        conditions.append(User.username == username)
    if email is not None:
        conditions.append(User.email == email)
    if not conditions:
        return {}
    stmt = select(User.username, User.email).where(or_(*conditions))
    if exclude_id is not None:
        stmt = stmt.where(User.id != exclude_id)
    errors = {}
    with session.no_autoflush:  # look before the pending change is written
        taken = session.execute(stmt).all()
    for taken_username, taken_email in taken:
        if username is not None and taken_username == username:
            errors["username"] = "This username is taken."
        if email is not None and taken_email == email:
            errors["email"] = "An account with this email exists."
    return errors


def _write_unique(session: Session, user: User, username, email, apply: Callable[[], object]) -> None:
    """Make the change (``apply``) and flush it, turning a unique-constraint race into the pre-check's 409.

    The SELECT before the write gives the friendly answer; the constraint is
    what makes it true when two requests race (the loser lands here). The
    change is made inside a savepoint, so after a lost race the request's
    transaction is still usable to ask which value was taken (a savepoint
    begun after the change would flush it, and lose the race, outside).
    """
    errors = _duplicates(session, username, email, user.id)
    if errors:
        raise Conflict("A user with these details exists.", errors)
    try:
        with session.begin_nested():
            apply()
            session.flush()
    except IntegrityError:
        errors = _duplicates(session, username, email, user.id) or {"username": "This username is taken."}
        raise Conflict("A user with these details exists.", errors) from None


def create_user(session: Session, *, username: str, email: str, password_hash: str,
                user_priority: int = 1, role: str = "customer") -> User:
    user = User(username=username, email=email, password_hash=password_hash,
                user_priority=user_priority, role=role, is_active=True)
    _write_unique(session, user, username, email, lambda: session.add(user))
    return user


def get_user(session: Session, user_id: int) -> User | None:
    return session.get(User, user_id)


def visible_user(session: Session, caller: User, user_id: int) -> User:
    """The user if ``caller`` may see it (themself; anyone, for an admin); NotFound otherwise.

    NotFound rather than PermissionDenied: a customer learns nothing about
    which other ids exist.
    """
    if caller.id == user_id:
        return caller
    user = get_user(session, user_id) if caller.is_admin else None
    if user is None:
        raise NotFound(f"No user {user_id}.")
    return user


def find_by_username(session: Session, username: str) -> User | None:
    return session.scalars(select(User).where(User.username == username)).first()


def list_users(session: Session, *, q: str | None = None, role: str | None = None,
               is_active: bool | None = None, sort=None, window: Window = FIRST_PAGE) -> Page:
    stmt: Select = select(User)
    if q:
        pattern = like_pattern(q)
        stmt = stmt.where(or_(User.username.ilike(pattern, escape="\\"), User.email.ilike(pattern, escape="\\")))
    if role is not None:
        stmt = stmt.where(User.role == role)
    if is_active is not None:
        stmt = stmt.where(User.is_active.is_(is_active))
    stmt = apply_sort(stmt, sort, SORT_KEYS, User.id.asc())
    return paginate(session, stmt, window, sort_keys(sort, SORT_KEYS, User.id))


def change_user(session: Session, caller: User, user_id: int, changes: dict, *,
                if_match: IfMatch | None = None, hash_password: Callable[[str], str]) -> User:
    """Apply validated ``changes`` to a user ``caller`` may see, if ``caller`` may make them.

    Only an admin changes role or is_active (PermissionDenied, naming them);
    nobody deactivates themself (Conflict); a stale If-Match changes nothing.
    A new password is stored as ``hash_password(password)``.
    """
    user = visible_user(session, caller, user_id)
    forbidden = [name for name in ADMIN_ONLY_FIELDS if name in changes and not caller.is_admin]
    if forbidden:
        raise PermissionDenied("Only an admin may change " + " or ".join(forbidden) + ".",
                               {name: "Only an admin may change this field." for name in forbidden})
    if caller.id == user.id and changes.get("is_active") is False:
        raise Conflict("You cannot deactivate your own account.")
    check_version(user.version, if_match)
    changes = dict(changes)
    if "password" in changes:
        changes["password_hash"] = hash_password(changes.pop("password"))
    return update_user(session, user, changes)


def update_user(session: Session, user: User, changes: dict) -> User:
    """Apply ``changes`` (already validated and authorised) to ``user``."""
    def apply() -> None:
        for name, value in changes.items():
            setattr(user, name, value)

    _write_unique(session, user, changes.get("username"), changes.get("email"), apply)
    if changes.get("is_active") is False:
        revoke_tokens(session, user.id)
    return user


def deactivate(session: Session, caller: User, user_id: int, *, if_match: IfMatch | None = None) -> None:
    """An admin deactivates a user other than themself, keeping the row and its history."""
    if not caller.is_admin:
        raise PermissionDenied("Only an admin may do this.")
    user = visible_user(session, caller, user_id)
    if user.id == caller.id:
        raise Conflict("You cannot deactivate your own account.")
    check_version(user.version, if_match)
    deactivate_user(session, user)


def deactivate_user(session: Session, user: User) -> None:
    """Deactivate, keeping the row and its history; its tokens stop working."""
    if user.is_active:
        user.is_active = False
        session.flush()
    revoke_tokens(session, user.id)


def revoke_tokens(session: Session, user_id: int) -> None:
    """Every sign-in token and API key of the user stops working at once."""
    session.execute(
        update(Token).where(Token.user_id == user_id, Token.revoked_at.is_(None)).values(revoked_at=utcnow())
    )
    api_keys.revoke_user_keys(session, user_id)
