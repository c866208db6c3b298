"""The application factory and THE route table.

Every ``api.add_resource`` line of the API lives in :func:`register_routes`,
read top to bottom. Nothing is created at import time: no app, no engine.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

import orjson
from flask import Flask, g, request
from flask_cors import CORS
from flask_restful import Api
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter

from .common import auth, compression, ratelimit
from .common.bodies import BoundedRequest
from .common.errors import handle_exception, request_id
from .common.fields import API_PREFIX
from .common.representations import render
from .config import load_config
from .db import init_app as init_db
from .resources.api_keys import ApiKey, ApiKeyList
from .resources.docs import ApiIndex, Docs, DocsAsset, OpenApiDocument
from .resources.events import EventList
from .resources.health import Health
from .resources.imports import Import, ImportList
from .resources.orders import Order, OrderChanges, OrderExport, OrderList
from .resources.products import Product, ProductChanges, ProductExport, ProductImport, ProductList
from .resources.reports import MonthlyRevenue, RevenueByCategory, TopCustomers
from .resources.tokens import CurrentToken, TokenList
from .resources.users import CurrentUser, User, UserList
from .resources.webhooks import Webhook, WebhookDeliveryList, WebhookDeliveryRetry, WebhookList, WebhookSecret

REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

access_log = logging.getLogger("myapi.access")


class IdConverter(IntegerConverter):
    """``<id:name>``: a row id, 1 to 2**31-1 (the INTEGER column's range).

    Anything else is not a route (404), rather than a database error.
    """

    def __init__(self, url_map):
        super().__init__(url_map, min=1, max=2**31 - 1)


class MyApi(Api):
    """flask-restful's Api with one error path and our own representations."""

    def handle_error(self, e):
        # flask-restful would re-raise in testing mode and answer JSON of its
        # own shape otherwise; every error here becomes problem+json instead.
        return handle_exception(e)

    def make_response(self, data, *args, **kwargs):
        # The media type was chosen (or 406 raised) before the resource ran.
        return render(data, *args, **kwargs)


def register_rate_limits(app: Flask) -> None:
    """The routes with limits of their own (the rest get RATELIMIT_DEFAULT)."""
    limiter = app.extensions[ratelimit.EXTENSION]
    views = app.view_functions
    views["tokenlist"] = ratelimit.limit_signin(limiter, views["tokenlist"])  # POST /tokens
    views["userlist"] = ratelimit.limit_signup(limiter, views["userlist"])  # POST /users
    views["health"] = limiter.exempt(views["health"])  # load balancers poll it


def register_routes(api: Api) -> None:
    api.add_resource(Health, "/health")

    api.add_resource(TokenList, "/tokens")
    api.add_resource(CurrentToken, "/tokens/current")

    api.add_resource(ApiKeyList, "/api-keys")
    api.add_resource(ApiKey, "/api-keys/<id:key_id>")

    api.add_resource(UserList, "/users")
    api.add_resource(CurrentUser, "/users/me")
    api.add_resource(User, "/users/<id:user_id>")

    api.add_resource(ProductList, "/products")
    api.add_resource(ProductImport, "/products/import")
    api.add_resource(ProductExport, "/products/export")
    api.add_resource(ProductChanges, "/products/changes")
    api.add_resource(Product, "/products/<id:product_id>")

    api.add_resource(ImportList, "/imports")
    api.add_resource(Import, "/imports/<id:import_id>")

    api.add_resource(OrderList, "/orders")
    api.add_resource(OrderExport, "/orders/export")
    api.add_resource(OrderChanges, "/orders/changes")
    api.add_resource(Order, "/orders/<id:order_id>")

    api.add_resource(EventList, "/events")
    api.add_resource(WebhookList, "/webhooks")
    api.add_resource(Webhook, "/webhooks/<id:webhook_id>")
    api.add_resource(WebhookSecret, "/webhooks/<id:webhook_id>/rotate-secret")
    api.add_resource(WebhookDeliveryList, "/webhooks/<id:webhook_id>/deliveries")
    api.add_resource(WebhookDeliveryRetry, "/webhooks/<id:webhook_id>/deliveries/<id:delivery_id>/retry")

    api.add_resource(TopCustomers, "/reports/top-customers")
    api.add_resource(RevenueByCategory, "/reports/revenue-by-category")
    api.add_resource(MonthlyRevenue, "/reports/monthly-revenue")

    api.add_resource(ApiIndex, "/")  # /api/v1/ (also at / and /api/v1: create_app)
    api.add_resource(OpenApiDocument, "/openapi.json")
    api.add_resource(Docs, "/docs")
    api.add_resource(DocsAsset, "/docs/<filename>")


def create_app(config: dict | None = None) -> Flask:
    app = Flask(__name__, instance_relative_config=True)
    app.request_class = BoundedRequest  # 413 past the body limit, chunked or not (common/bodies.py)
    app.config.update(load_config(app.instance_path, config))
    app.config["PROPAGATE_EXCEPTIONS"] = False
    app.json.sort_keys = False
    configure_logging(app)

    # Registered first so finish_request runs last, after the extensions'
    # after_request hooks (Flask runs them in reverse order).
    app.before_request(start_request)
    app.after_request(finish_request)

    init_db(app)
    auth.init_app(app)
    ratelimit.init_app(app)
    init_cors(app)
    compression.init_app(app)

    app.url_map.converters["id"] = IdConverter
    api = MyApi(prefix=API_PREFIX, catch_all_404s=True)
    register_routes(api)
    api.init_app(app)
    # The index of links also answers where a person first knocks: the server's root, and the
    # prefix without its slash (Werkzeug would otherwise redirect with an HTML page).
    for url, endpoint in (("/", "root"), (API_PREFIX, "api_root")):
        app.add_url_rule(url, endpoint=endpoint, view_func=ApiIndex.as_view(endpoint))
    register_rate_limits(app)
    # Errors outside flask-restful's routes take the same path.
    app.register_error_handler(Exception, handle_exception)
    if app.config["PROXY_HOPS"]:
        hops = app.config["PROXY_HOPS"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)
    return app


def init_cors(app: Flask) -> None:
    """CORS for the configured origins only; none configured, no CORS headers."""
    origins = [origin.strip() for origin in app.config["CORS_ORIGINS"].split(",") if origin.strip()]
    if origins:
        CORS(
            app,
            resources={f"{API_PREFIX}/*": {"origins": origins}},
            allow_headers=["Authorization", "Content-Type", "If-Match", "If-None-Match", "Idempotency-Key",
                           "X-Request-ID"],
            expose_headers=["ETag", "Link", "Location", "X-Total-Count", "X-Request-ID", "Idempotent-Replayed",
                            "Retry-After"],
            max_age=600,
        )


def start_request() -> None:
    g.started = time.perf_counter()
    incoming = request.headers.get("X-Request-ID", "")
    g.request_id = incoming if REQUEST_ID.match(incoming) else uuid.uuid4().hex


def finish_request(response):
    response.headers["X-Request-ID"] = request_id()
    response.headers["X-Content-Type-Options"] = "nosniff"
    if response.status_code not in (429, 503):
        response.headers.pop("Retry-After", None)  # Flask-Limiter adds it to every answer
    if request.headers.get("Authorization"):
        # Answers to signed-in callers are personal: no cache may keep them.
        response.headers["Cache-Control"] = "no-store"
    if not access_log.isEnabledFor(logging.INFO):
        return response  # LOG_LEVEL=WARNING: skip building the line at all
    started = g.get("started")
    access_log.info(
        "request",
        extra={
            "fields": {
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "ms": round((time.perf_counter() - started) * 1000, 2) if started else None,
                "request_id": request_id(),
                "user_id": g.get("user_id"),
            }
        },
    )
    return response


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure_logging(app: Flask) -> None:
    logger = logging.getLogger("myapi")
    logger.setLevel(app.config["LOG_LEVEL"].upper())
    if not any(getattr(h, "myapi", False) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter())
        handler.myapi = True
        logger.addHandler(handler)
