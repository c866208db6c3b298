"""Passwords, bearer tokens, sign-in, and the check behind ``requires``.

Passwords: a passlib CryptContext with argon2 first; bcrypt hashes are still
accepted and re-hashed with argon2 at the next sign-in. An unknown username is
checked against a dummy hash, so it costs what a wrong password costs.

Tokens: 32 random bytes given to the client once; the database keeps only
their SHA-256, an expiry and a revocation time. One indexed lookup (token
joined to its user) authenticates a request.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from flask import Flask, current_app, g, request
from passlib.context import CryptContext
from sqlalchemy import select, update
from sqlalchemy.orm import Session, contains_eager

from ..db import get_session
from ..models import Token, User, utcnow
from ..services import users as users_service
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
    return Problem(401, detail, headers={"WWW-Authenticate": f"{scheme} {REALM}"})


def _bearer_secret() -> str | None:
    header = request.headers.get("Authorization")
    if not header:
        return None
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip() or len(secret) > 200:
        raise unauthorized("Send a bearer token: 'Authorization: Bearer <token>'.")
    return secret.strip()


def current_token() -> Token | None:
    """The request's valid token (with its user), or None when none was sent.

    A token that was sent but is unknown, expired, revoked, or whose user is
    deactivated is a 401, never an anonymous request.
    """
    if "auth_token" in g:
        return g.auth_token
    secret = _bearer_secret()
    token = None
    if secret is not None:
        session = get_session()
        token = session.scalars(
            select(Token)
            .join(Token.user)
            .options(contains_eager(Token.user))
            .where(Token.token_hash == token_digest(secret))
        ).first()
        if token is None or token.revoked_at is not None:
            raise unauthorized("The token is not valid.")
        if token.expires_at <= utcnow():
            raise unauthorized("The token has expired; sign in again.")
        if not token.user.is_active:
            raise unauthorized("The account is deactivated.")
    g.auth_token = token
    g.user_id = token.user_id if token else None
    return token


def current_user() -> User | None:
    token = current_token()
    return token.user if token else None


def require_user() -> User:
    user = current_user()
    if user is None:
        raise unauthorized("Sign in: send 'Authorization: Bearer <token>' (POST /api/v1/tokens gives one).")
    return user


def require_admin() -> User:
    user = require_user()
    if not user.is_admin:
        raise Problem(403, "Only an admin may do this.")
    return user


def authorise(level: str) -> None:
    """Enforce a method's ``requires(level)``: ``"user"``, ``"admin"``; the others check nothing here.

    ``"none"``: anyone; ``"password"``: a sign-in, whose credentials the
    method itself verifies (:func:`sign_in`).
    """
    if level == "user":
        require_user()
    elif level == "admin":
        require_admin()


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
