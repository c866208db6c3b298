"""Schemathesis hooks for tools/fuzz.py (loaded through SCHEMATHESIS_HOOKS).

* The signed-in phases must not lock themselves out: a generated
  ``DELETE /users/<own id>`` or ``PATCH /users/<own id> {"role": "customer"}``
  would turn the rest of the run into a string of 401s or 403s, which pass
  but test nothing. Requests aimed at the fuzzing account's own id
  (FUZZ_PROTECTED_USER_ID) go to the next id instead; ``/users/me`` writes and
  ``DELETE /tokens/current`` are excluded by the runner.
* Schemathesis draws the same few ``Idempotency-Key`` values again and again,
  so most POSTs would only ever meet "key used with another body" (422), and
  the gate, which fails when an operation's valid cases are all refused with
  400/422, would fail on the fuzzer's own repeats. Every valid key gets a
  unique suffix (replays and 422s are tested in tests/test_idempotency.py).
* Some values are valid only against the server's current state, which no
  schema can say. An ``If-Match`` must name the item's current ETag, which a
  generator cannot know: it is always sent as ``*`` (the 412s are tested in
  tests/). A new username, email or sku must not exist yet (409), an ordered
  product must exist (400 otherwise), an API key's ``expires_at`` must be in
  the future (400): valid values are made to fit (a unique suffix, an id of
  the demo catalogue — a different one per order line, since lines naming
  one product are merged and may not pass 10000 units together —, a far-off
  date); invalid ones are sent as drawn. The
  items of a ``PATCH /products`` name distinct demo products and carry no
  ``version`` (which only the server's state can make right).
* ``Prefer: return=minimal`` on a POST answers 201 with no body (DESIGN
  §8.2), which OpenAPI cannot say of a response it documents with a body, so
  the conformance checks would call it a failure. Generated POSTs ask for
  the representation instead; tests/test_contract.py covers the minimal
  answers (PUT and PATCH document their 204 and keep the preference here).
* A webhook's ``url`` must resolve to an address the server may reach, and
  the fuzz server has no network: a valid ``url`` of ``POST``/``PATCH
  /webhooks`` is made a closed port on 127.0.0.1 (the server runs with
  MYAPI_WEBHOOK_ALLOW_PRIVATE=true and no worker, so nothing is sent; the
  refusals of private and unresolvable targets are tested in
  tests/test_webhooks.py). Invalid ones are sent as drawn.
* CPython 3.11.7's ``ast`` keeps its recursion counter in module state, so a
  parse can fail with "SystemError: AST constructor recursion depth mismatch"
  when another parse runs at the same time; Hypothesis parses source files to
  describe the lambdas schemathesis filters with, and the error became a
  schemathesis "Runtime Error" now and then. Those descriptions are only
  labels: they are made one at a time here, and an unlucky one reads
  ``lambda: <unknown>``.
"""

from __future__ import annotations

import copy
import itertools
import os
import threading

import schemathesis
from hypothesis.internal import lambda_sources

from myapi.common import inputs
from myapi.seed import CATALOGUE, DEMO_PRODUCT_COUNT

PROTECTED = os.environ.get("FUZZ_PROTECTED_USER_ID")
IDEMPOTENCY_KEY = "Idempotency-Key"
_calls = itertools.count(1)

_describe_lambda = getattr(lambda_sources, "_lambda_description", None)
_ast_lock = threading.RLock()


def _lambda_description(f, *args, **kwargs):
    with _ast_lock:
        try:
            return _describe_lambda(f, *args, **kwargs)
        except SystemError:
            return "lambda: <unknown>"


if _describe_lambda is not None:
    lambda_sources._lambda_description = _lambda_description


def _unique_key(key: str, number: int) -> str | None:
    try:
        inputs.idempotency_key(key)
    except ValueError:
        return None  # an invalid key stays as drawn: it tests the 400
    suffix = f"-{number}"
    return key[: 255 - len(suffix)].rstrip() + suffix


UNIQUE_FIELDS = {"username": (inputs.username, 32, "_"), "email": (inputs.email, 254, ""),
                 "sku": (inputs.sku, 64, "-")}


def _unique_body(body, number: int) -> None:
    """Give the body's username, email and sku a unique suffix, if they are valid as drawn."""
    if not isinstance(body, dict):
        return
    for name, (check, max_length, separator) in UNIQUE_FIELDS.items():
        value = body.get(name)
        try:
            check(value)
        except (ValueError, TypeError):
            continue  # an invalid value stays as drawn: it tests the 400
        if name == "email":
            local, domain = value.strip().split("@", 1)
            body[name] = f"{local[:40]}.{number}@{domain}"
        else:
            suffix = f"{separator}{number}"
            body[name] = value.strip()[: max_length - len(suffix)] + suffix


def _future_expiry(body) -> None:
    """A key's ``expires_at`` must be in the future (a rule of the clock, not of the schema)."""
    if not isinstance(body, dict) or not isinstance(body.get("expires_at"), str):
        return
    try:
        inputs.iso8601_datetime(body["expires_at"])
    except ValueError:
        return  # an invalid value stays as drawn: it tests the 400
    body["expires_at"] = "2999-01-01T00:00:00Z"


def _demo_sku(number: int) -> str:
    """The sku of demo product ``number`` (myapi.seed: the prefix of its category, then the number)."""
    categories = list(CATALOGUE)
    return f"{CATALOGUE[categories[number % len(categories)]][0]}-{number:04d}"


def _bulk_items(body: list, number: int) -> None:
    """PATCH /products: valid items name distinct demo products, with no ``version`` (a rule of the state).

    A valid sku or id is moved onto a demo product (a different one per
    item, so two items never name one product); the ``version`` an item was
    made from cannot be known to a generator, so it is left out (the 412s
    are tested in tests/test_bulk.py). Invalid items stay as drawn.
    """
    for index, item in enumerate(body):
        if not isinstance(item, dict):
            continue
        item.pop("version", None)
        target = 1 + (number * 7 + index) % DEMO_PRODUCT_COUNT
        if "sku" in item and "id" not in item:
            try:
                inputs.sku(item["sku"])
            except (ValueError, TypeError):
                continue
            item["sku"] = _demo_sku(target)
        elif ("id" in item and "sku" not in item and isinstance(item["id"], int)
              and not isinstance(item["id"], bool) and item["id"] >= 1):
            item["id"] = target


def _webhook_target(case, number: int) -> None:
    """A valid webhook ``url`` is moved to a closed local port (see above)."""
    if not case.path.startswith("/webhooks") or not isinstance(case.body.get("url"), str):
        return
    try:
        inputs.web_url(case.body["url"])
    except ValueError:
        return  # an invalid value stays as drawn: it tests the 400
    case.body["url"] = f"http://127.0.0.1:9/fuzz/{number}"


def _existing_products(body) -> None:
    """Order lines name distinct products of the demo catalogue (ids 1 to DEMO_PRODUCT_COUNT), if valid as drawn.

    Distinct: lines naming one product are merged, and their quantities
    together may not pass 10000 (a rule across lines, which no schema says).
    """
    items = body.get("items") if isinstance(body, dict) else None
    used: set[int] = set()
    for line in items if isinstance(items, list) else ():
        product_id = line.get("product_id") if isinstance(line, dict) else None
        if isinstance(product_id, int) and not isinstance(product_id, bool) and product_id >= 1:
            target = 1 + (product_id - 1) % DEMO_PRODUCT_COUNT
            while target in used and len(used) < DEMO_PRODUCT_COUNT:
                target = 1 + target % DEMO_PRODUCT_COUNT
            used.add(target)
            line["product_id"] = target


@schemathesis.hook
def before_call(context, case, kwargs):
    if PROTECTED and case.path_parameters and str(case.path_parameters.get("user_id")) == PROTECTED:
        case.path_parameters["user_id"] = int(PROTECTED) + 1
    if case.method.upper() == "POST" and case.headers and case.headers.get("Prefer") == "return=minimal":
        case.headers["Prefer"] = "return=representation"
    if case.headers and "If-Match" in case.headers:
        case.headers["If-Match"] = "*"
    number = next(_calls)
    if case.headers and isinstance(case.headers.get(IDEMPOTENCY_KEY), str):
        key = _unique_key(case.headers[IDEMPOTENCY_KEY], number)
        if key is not None:
            case.headers[IDEMPOTENCY_KEY] = key
    if isinstance(case.body, list):
        case.body = copy.deepcopy(case.body)  # schemathesis may send the same body object again
        _bulk_items(case.body, number)
    if isinstance(case.body, dict):
        case.body = copy.deepcopy(case.body)  # schemathesis may send the same body object again
        _unique_body(case.body, number)
        _existing_products(case.body)
        _future_expiry(case.body)
        _webhook_target(case, number)
