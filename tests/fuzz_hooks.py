"""Schemathesis hooks for tests/fuzz.py (loaded through SCHEMATHESIS_HOOKS).

* The signed-in phases must not lock themselves out: a generated
  ``DELETE /users/<own id>`` or ``PATCH /users/<own id> {"role": "customer"}``
  would turn the rest of the run into a string of 401s or 403s, which pass
  but test nothing. Requests aimed at the fuzzing account's own id
  (FUZZ_PROTECTED_USER_ID) go to the next id instead; ``/users/me`` writes and
  ``DELETE /tokens/current`` are excluded by the runner.
* Schemathesis draws the same few ``Idempotency-Key`` values again and again,
  so most POSTs would only ever meet "key used with another body" (422). Three
  valid keys in four get a unique suffix; the fourth is sent as drawn and
  keeps exercising replays and 422s.
* ``Prefer: return=minimal`` on a POST answers 201 with no body (DESIGN
  §8.2), which OpenAPI cannot say of a response it documents with a body, so
  the conformance checks would call it a failure. Generated POSTs ask for
  the representation instead; tests/test_contract.py covers the minimal
  answers (PUT and PATCH document their 204 and keep the preference here).
* CPython 3.11.7's ``ast`` keeps its recursion counter in module state, so a
  parse can fail with "SystemError: AST constructor recursion depth mismatch"
  when another parse runs at the same time; Hypothesis parses source files to
  describe the lambdas schemathesis filters with, and the error became a
  schemathesis "Runtime Error" now and then. Those descriptions are only
  labels: they are made one at a time here, and an unlucky one reads
  ``lambda: <unknown>``.
"""

from __future__ import annotations

import itertools
import os
import threading

import schemathesis
from hypothesis.internal import lambda_sources

from myapi.common import inputs

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


@schemathesis.hook
def before_call(context, case, kwargs):
    if PROTECTED and case.path_parameters and str(case.path_parameters.get("user_id")) == PROTECTED:
        case.path_parameters["user_id"] = int(PROTECTED) + 1
    if case.method.upper() == "POST" and case.headers and case.headers.get("Prefer") == "return=minimal":
        case.headers["Prefer"] = "return=representation"
    number = next(_calls)
    if case.headers and isinstance(case.headers.get(IDEMPOTENCY_KEY), str) and number % 4:
        key = _unique_key(case.headers[IDEMPOTENCY_KEY], number)
        if key is not None:
            case.headers[IDEMPOTENCY_KEY] = key
