"""API keys (DESIGN §10): long-lived, revocable credentials limited to scopes.

A key's secret is ``myapi_`` + 32 random bytes (URL-safe base64), given to
its owner once; the database keeps its SHA-256, like a sign-in token's, and
its first characters (``prefix``) so lists can tell keys apart. A key never
exceeds its owner's role: the scopes a role may hold are ``ROLE_SCOPES``,
checked when the key is made, and each request is still checked against the
owner's current role. Deactivating the owner revokes every key at once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from sqlalchemy import Select, bindparam, or_, select, update
from sqlalchemy.orm import Session, contains_eager

from ..models import API_KEY_SCOPES, ApiKey, User, utcnow
from .errors import Invalid, NotFound, PermissionDenied
from .issued import Issued
from .query import FIRST_PAGE, Page, Window, apply_sort, paginate, sort_keys

SECRET_PREFIX = "myapi_"  # noqa: S105 (marks a bearer secret as a key, not a secret itself)
SHOWN_PREFIX_LENGTH = 14  # "myapi_" and 8 characters of the secret
TOUCH_EVERY = dt.timedelta(minutes=1)  # last_used_at is written at most this often per key

CUSTOMER_SCOPES = ("products:read", "orders:read", "orders:write", "users:read")
ROLE_SCOPES = {"customer": frozenset(CUSTOMER_SCOPES), "admin": frozenset(API_KEY_SCOPES)}

SORT_KEYS = {"id": ApiKey.id, "name": ApiKey.name, "date_created": ApiKey.date_created,
             "last_used_at": ApiKey.last_used_at}


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def is_key_secret(secret: str) -> bool:
    """Whether a bearer credential is an API key (rather than a sign-in token)."""
    return secret.startswith(SECRET_PREFIX)


def create_key(session: Session, owner: User, *, name: str, scopes: list[str],
               expires_at: dt.datetime | None = None) -> Issued:
    """A new key of ``owner`` with ``scopes``; the secret is returned once, never stored.

    PermissionDenied (naming the scopes) when the owner's role may not hold
    them; Invalid when ``expires_at`` is not in the future.
    """
    beyond = [scope for scope in scopes if scope not in ROLE_SCOPES[owner.role]]
    if beyond:
        raise PermissionDenied(f"A {owner.role}'s key cannot hold " + ", ".join(beyond) + ".",
                               {"scopes": "Not allowed for your role: " + ", ".join(beyond)})
    if expires_at is not None and expires_at <= utcnow():
        raise Invalid("The key would be expired already.", {"expires_at": "must be in the future"})
    ordered = [scope for scope in API_KEY_SCOPES if scope in set(scopes)]
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(user_id=owner.id, name=name, prefix=secret[:SHOWN_PREFIX_LENGTH], key_hash=digest(secret),
                 scopes=" ".join(ordered), expires_at=expires_at)
    session.add(key)
    session.flush()
    return Issued(key, secret)


def find_by_secret(session: Session, secret: str) -> ApiKey | None:
    """The key (with its owner) whose secret this is, revoked and expired ones included: one indexed lookup."""
    return session.scalars(_KEY_BY_DIGEST, {"digest": digest(secret)}).first()


# Built once: constructing a joined ORM statement costs as much as running it.
_KEY_BY_DIGEST = (select(ApiKey).join(ApiKey.user).options(contains_eager(ApiKey.user))
                  .where(ApiKey.key_hash == bindparam("digest")))


def needs_touch(key: ApiKey, now: dt.datetime) -> bool:
    return key.last_used_at is None or key.last_used_at <= now - TOUCH_EVERY


def touch(session: Session, key_id: int, now: dt.datetime) -> None:
    """Record a use, unless another request did in the last minute (one UPDATE, no read)."""
    session.execute(
        update(ApiKey)
        .where(ApiKey.id == key_id, or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at <= now - TOUCH_EVERY))
        .values(last_used_at=now)
    )


def _visible(caller: User) -> Select:
    stmt = select(ApiKey)
    return stmt if caller.is_admin else stmt.where(ApiKey.user_id == caller.id)


def list_keys(session: Session, caller: User, *, user_id: int | None = None, revoked: bool | None = None,
              sort=None, window: Window = FIRST_PAGE) -> Page:
    """The caller's keys (an admin: everyone's, optionally one user's)."""
    if user_id not in (None, caller.id) and not caller.is_admin:
        raise PermissionDenied("Only an admin may list another user's keys.",
                               {"user_id": "Leave it out to list your own keys."})
    stmt = _visible(caller)
    if user_id is not None:
        stmt = stmt.where(ApiKey.user_id == user_id)
    if revoked is not None:
        stmt = stmt.where(ApiKey.revoked_at.is_not(None) if revoked else ApiKey.revoked_at.is_(None))
    return paginate(session, apply_sort(stmt, sort, SORT_KEYS, ApiKey.id.asc()), window,
                    sort_keys(sort, SORT_KEYS, ApiKey.id))


def visible_key(session: Session, caller: User, key_id: int) -> ApiKey:
    """A key the caller may see (their own; any, for an admin); NotFound otherwise (no existence leak)."""
    key = session.scalars(_visible(caller).where(ApiKey.id == key_id)).first()
    if key is None:
        raise NotFound(f"No API key {key_id}.")
    return key


def revoke_key(session: Session, caller: User, key_id: int) -> None:
    """Revoke at once (idempotent: revoking a revoked key changes nothing)."""
    key = visible_key(session, caller, key_id)
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        session.flush()


def revoke_user_keys(session: Session, user_id: int) -> None:
    session.execute(update(ApiKey).where(ApiKey.user_id == user_id, ApiKey.revoked_at.is_(None))
                    .values(revoked_at=utcnow()))
