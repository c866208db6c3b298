"""Passwords, bearer tokens, sign-in, and the check behind ``requires``.

Passwords: a passlib CryptContext with argon2 first; bcrypt hashes are still
accepted and re-hashed with argon2 at the next sign-in. An unknown username is
checked against a dummy hash, so it costs what a wrong password costs.

Tokens: 32 random bytes given to the client once; the database keeps only
their SHA-256, an expiry and a revocation time. One indexed lookup (token
joined to its user) authenticates a request. API keys (``myapi_…``, DESIGN
§10) are bearer credentials too, found the same way (services/api_keys.py),
and carry scopes: a key may do only what its scopes and its owner's role
allow, a token whatever its user may.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from flask import Flask, current_app, g, request
from passlib.context import CryptContext
from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session, contains_eager

from .. import problems
from ..db import SAFE_METHODS, get_db, get_session
from ..models import ApiKey, Token, User, utcnow
from ..services import api_keys
from ..services import users as users_service
from ..services.import_audit import Actor
from . import inputs
from .errors import Problem

EXTENSION = "myapi.passwords"
REALM = 'realm="myapi"'


def init_app(app: Flask) -> None:
    context = CryptContext(
        schemes=["argon2", "bcrypt"],
        deprecated="auto",
        argon2__memory_cost=app.config["ARGON2_MEMORY_COST"],
        argon2__time_cost=app.config["ARGON2_TIME_COST"],
        argon2__parallelism=1,
    )
    app.extensions[EXTENSION] = {"context": context, "dummy": context.hash(secrets.token_hex(16))}


def _passwords() -> dict:
    return current_app.extensions[EXTENSION]


def hash_password(password: str) -> str:
    return _passwords()["context"].hash(password)


def check_password(password: str, password_hash: str | None) -> tuple[bool, str | None]:
    """``(matches, new_hash)``; ``new_hash`` is set when the stored hash is outdated.

    With no stored hash (unknown user) the dummy hash is verified instead, so
    the answer takes as long as a real failed sign-in.
    """
    passwords = _passwords()
    if password_hash is None:
        passwords["context"].verify(password, passwords["dummy"])
        return False, None
    try:
        return passwords["context"].verify_and_update(password, password_hash)
    except ValueError:  # a malformed stored hash: treat as a mismatch
        return False, None


# -- tokens -----------------------------------------------------------------


def token_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def issue_token(session: Session, user: User) -> tuple[str, Token]:
    secret = secrets.token_urlsafe(32)
    token = Token(
        user=user,
        token_hash=token_digest(secret),
        expires_at=utcnow() + dt.timedelta(seconds=current_app.config["TOKEN_TTL"]),
    )
    session.add(token)
    return secret, token


def revoke_token(session: Session, token_id: int) -> None:
    session.execute(update(Token).where(Token.id == token_id).values(revoked_at=utcnow()))


def unauthorized(detail: str, scheme: str = "Bearer") -> Problem:
    """401 for a request that sent no credentials (or a sign-in that failed)."""
    return Problem(401, detail, headers={"WWW-Authenticate": f"{scheme} {REALM}"})


def invalid_credential(detail: str) -> Problem:
    """401 for credentials that were sent and are not valid (RFC 6750 ``invalid_token``)."""
    return Problem.of(problems.INVALID_TOKEN, detail,
                      headers={"WWW-Authenticate": f'Bearer {REALM}, error="invalid_token"'})


@dataclass
class Caller:
    """Who sent the request: a user, by a sign-in token or by an API key."""

    user: User
    token: Token | None = None
    api_key: ApiKey | None = None

    def lacks(self, scope: str | None) -> bool:
        """Whether a key falls short: a token has its user's full rights, a key only its scopes."""
        if self.api_key is None:
            return False
        return scope is None or scope not in self.api_key.scope_set


def _bearer_secret() -> str | None:
    header = request.headers.get("Authorization")
    if not header:
        return None
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip() or len(secret) > 200:
        raise invalid_credential("Send a bearer token or API key: 'Authorization: Bearer <token>'.")
    return secret.strip()


# Built once: constructing a joined ORM statement costs as much as running it.
_TOKEN_BY_DIGEST = (select(Token).join(Token.user).options(contains_eager(Token.user))
                    .where(Token.token_hash == bindparam("digest")))


def _token_caller(session: Session, secret: str) -> Caller:
    token = session.scalars(_TOKEN_BY_DIGEST, {"digest": token_digest(secret)}).first()
    if token is None or token.revoked_at is not None:
        raise invalid_credential("The token is not valid.")
    if token.expires_at <= utcnow():
        raise invalid_credential("The token has expired; sign in again.")
    if not token.user.is_active:
        raise invalid_credential("The account is deactivated.")
    return Caller(token.user, token=token)


def _key_caller(session: Session, secret: str) -> Caller:
    # An unknown and a revoked key cost the same: one indexed lookup, then the 401.
    key = api_keys.find_by_secret(session, secret)
    now = utcnow()
    if key is None or key.revoked_at is not None:
        raise invalid_credential("The API key is not valid.")
    if key.expires_at is not None and key.expires_at <= now:
        raise invalid_credential("The API key has expired.")
    if not key.user.is_active:
        raise invalid_credential("The account is deactivated.")
    if api_keys.needs_touch(key, now):
        _record_use(session, key.id, now)
    return Caller(key.user, api_key=key)


def _record_use(session: Session, key_id: int, now: dt.datetime) -> None:
    """``last_used_at``, at most once a minute: in the request's own transaction when it writes
    (on SQLite it holds the write lock), else in a short one of its own (a read is never committed)."""
    if request.method in SAFE_METHODS:
        with get_db().session(write=True) as own, own.begin():
            api_keys.touch(own, key_id, now)
    else:
        api_keys.touch(session, key_id, now)


def current_caller() -> Caller | None:
    """The request's caller, or None when no credentials were sent.

    Credentials that were sent but are unknown, expired, revoked, or whose
    user is deactivated are a 401, never an anonymous request.
    """
    if "caller" in g:
        return g.caller
    secret = _bearer_secret()
    caller = None
    if secret is not None:
        session = get_session()
        caller = _key_caller(session, secret) if api_keys.is_key_secret(secret) else _token_caller(session, secret)
    g.caller = caller
    g.user_id = caller.user.id if caller else None
    return caller


def current_token() -> Token | None:
    caller = current_caller()
    return caller.token if caller else None


def current_user() -> User | None:
    caller = current_caller()
    return caller.user if caller else None


def current_actor() -> Actor:
    """Who makes a bulk change, for its audit record: the signed-in user and the API key used, if any."""
    caller = current_caller()
    return Actor(caller.user.id, caller.api_key.id if caller.api_key is not None else None)


def require_user() -> User:
    user = current_user()
    if user is None:
        raise unauthorized("Sign in: send 'Authorization: Bearer <token>' (POST /api/v1/tokens gives one) "
                           "or an API key.")
    return user


def require_admin() -> User:
    user = require_user()
    if not user.is_admin:
        raise Problem(403, "Only an admin may do this.")
    return user


def authorise(level: str, scope: str | None = None) -> None:
    """Enforce a method's ``requires(level, scope)``.

    ``"none"``: anyone, but credentials that are sent must be valid (401
    otherwise); ``"user"``, ``"admin"``: a valid token or key of such a user;
    ``"password"``: a sign-in, whose credentials the method itself verifies
    (:func:`sign_in`). An API key must also hold ``scope``; a route that names
    none takes sign-in tokens only (a key cannot mint keys or sign out).
    """
    if level == "password":
        return
    caller = current_caller()
    if level == "user":
        require_user()
    elif level == "admin":
        require_admin()
    if caller is not None and caller.lacks(scope) and (scope is not None or level != "none"):
        raise insufficient_scope(scope)


def insufficient_scope(scope: str | None) -> Problem:
    if scope is None:
        return Problem.of(problems.INSUFFICIENT_SCOPE, "API keys cannot do this; use a sign-in token.",
                          errors={"scope": "Sign-in tokens only."})
    return Problem.of(problems.INSUFFICIENT_SCOPE, f"This API key lacks the scope {scope}.",
                      errors={"scope": scope},
                      headers={"WWW-Authenticate": f'Bearer {REALM}, error="insufficient_scope", scope="{scope}"'})


# -- signing in ----------------------------------------------------------------

BAD_CREDENTIALS = "Unknown username or wrong password."


@dataclass
class SignIn:
    """What POST /tokens answers: the secret, shown this once."""

    token: str
    expires_at: dt.datetime
    token_type: str = "Bearer"  # noqa: S105 (a scheme name, not a secret)


def sign_in(session: Session, body: Mapping) -> SignIn:
    """A fresh token for the credentials (HTTP Basic, else the body's username and password).

    Unknown user, wrong password and deactivated account answer the same
    401 after the same password-hash work. A name that cannot be a username
    (NUL, too long...) is not looked up at all, but still costs a password
    check. A hash in an outdated scheme or cost is replaced.
    """
    username, password = _credentials(body)
    user = None
    if _is_username(username):
        user = users_service.find_by_username(session, username)
    matches, new_hash = check_password(password[:1024], user.password_hash if user else None)
    if not (matches and user.is_active):
        raise unauthorized(BAD_CREDENTIALS, "Basic")
    if new_hash:
        user.password_hash = new_hash
    g.user_id = user.id  # for the access log line
    secret, token = issue_token(session, user)
    return SignIn(token=secret, expires_at=token.expires_at)


def _credentials(body: Mapping) -> tuple[str, str]:
    basic = request.authorization
    if basic is not None and basic.type == "basic":
        return basic.username or "", basic.password or ""
    if request.headers.get("Authorization") or not body:
        raise unauthorized("Send HTTP Basic credentials or a JSON body with username and password.", "Basic")
    return body["username"], body["password"]  # the parser requires both in a body


def _is_username(name: str) -> bool:
    try:
        inputs.username(name)
    except ValueError:
        return False
    return True
