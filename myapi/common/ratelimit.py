"""Rate limits (Flask-Limiter): tight on sign-in and sign-up, generous elsewhere.

Each app gets its own Limiter (``init_app``), configured from the app config:
``RATELIMIT_ENABLED``, ``RATELIMIT_STORAGE_URI`` (``redis://`` makes every
process and host count against the same limits), ``RATELIMIT_DEFAULT`` for
every route, and ``RATELIMIT_SIGNIN`` / ``RATELIMIT_SIGNUP``, which app.py
attaches to those routes next to the route table. A breach is a 429 problem
with ``Retry-After``.

Sign-in is limited twice: per client address, and per username, so neither
one address spraying many accounts nor many addresses hammering one account
gets far.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from flask import Flask, current_app, request
from flask_limiter import Limit, Limiter
from flask_limiter.util import get_remote_address

EXTENSION = "myapi.limiter"


def init_app(app: Flask) -> Limiter:
    app.config.setdefault("RATELIMIT_HEADERS_ENABLED", True)
    # The default limit counts per client address and, separately, per bearer
    # credential (API key or token): a script cannot dodge its key's budget
    # by spreading over addresses, nor one address's clients share one budget.
    limiter = Limiter(key_func=get_remote_address, app=app, default_limits=[
        Limit(setting("RATELIMIT_DEFAULT")),
        Limit(setting("RATELIMIT_DEFAULT"), key_function=credential_key, scope="credential",
              exempt_when=lambda: credential_key() == ""),
    ])
    app.extensions[EXTENSION] = limiter
    return limiter


def setting(name: str) -> Callable[[], str]:
    """A limit read from the config at request time."""
    return lambda: current_app.config[name]


def credential_key() -> str:
    """The bearer credential of the request, hashed (never the secret itself): "" without one."""
    scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        return ""
    return "credential:" + hashlib.sha256(secret.strip().encode()).hexdigest()[:32]


def signin_username() -> str:
    """The username a sign-in names (HTTP Basic or body), for the per-account limit."""
    auth = request.authorization
    name = auth.username if auth is not None and auth.type == "basic" else None
    if name is None:
        body = request.get_json(silent=True) if request.is_json else request.form
        name = body.get("username") if isinstance(body, dict) or hasattr(body, "getlist") else None
    return "signin-user:" + str(name or "")[:64].lower()


def limit_signin(limiter: Limiter, view):
    view = limiter.limit(setting("RATELIMIT_SIGNIN"), methods=["POST"], scope="signin-ip")(view)
    return limiter.limit(setting("RATELIMIT_SIGNIN"), methods=["POST"], key_func=signin_username,
                         scope="signin-user")(view)


def limit_signup(limiter: Limiter, view):
    return limiter.limit(setting("RATELIMIT_SIGNUP"), methods=["POST"], scope="signup")(view)
