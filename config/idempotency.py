"""`Idempotency-Key` for POST endpoints that create something, shared by every API.

A client that is unsure whether its request arrived (a timeout, a dropped connection) repeats it with
the same key: within 24 hours the original success response comes back (marked
`Idempotent-Replayed: true`) and nothing is created twice. Keys are per user and per endpoint scope.

    the same key, the same body, done          → the stored response, replayed
    the same key, the same body, still running → 409 idempotency_in_progress
    the same key, another body                 → 409 idempotency_conflict
    an empty or over-long key                  → 400 invalid_idempotency_key

Only successes are stored: a refused or failed request releases its key, so it can be retried once
the cause is fixed. The body's fingerprint ignores key order.
"""

import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.cache import cache
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import ErrorDetail

IDEMPOTENCY_HEADER = "Idempotency-Key"
IDEMPOTENCY_TTL = 24 * 60 * 60
#: How long a key stays claimed by a request still being processed (it is released on failure).
IDEMPOTENCY_IN_PROGRESS_TTL = 60
IDEMPOTENCY_KEY_MAX_LENGTH = 255


def cache_key(scope: str, user_id: int, key: str) -> str:
    """Keys are per user: two integrators choosing the same key never see each other's responses."""
    return f"{scope}:idempotency:{user_id}:{hashlib.sha256(key.encode()).hexdigest()}"


def fingerprint(data: Any) -> str:
    if hasattr(data, "lists"):  # a form-encoded QueryDict
        data = dict(data.lists())
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    # Keyed: a plain hash of a small body holding a phone number is reversed by trying numbers.
    key = hashlib.sha256(f"idempotency-fingerprint:{settings.SECRET_KEY}".encode()).digest()
    return hmac.new(key, canonical.encode(), hashlib.sha256).hexdigest()


def _refusal(code: str, detail: str, status_code: int, errors: dict | None = None) -> Response:
    body: dict[str, Any] = {"code": code, "detail": detail}
    if errors is not None:
        body["errors"] = errors
    return Response(body, status=status_code)


def idempotent(
    request: Request, *, scope: str, handler: Callable[[], Any], status_code: int, headers: dict | None = None
) -> Response:
    """Answer `handler()`'s body with `status_code`, at most once per (user, Idempotency-Key).

    `handler` returns the response body (JSON-serialisable) or raises; without the header it simply
    runs. `headers` are added to fresh and replayed responses alike (e.g. a `Location` computed from the
    body can be given as a callable receiving the body)."""
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is None:
        body = handler()
        return Response(body, status=status_code, headers=_headers(headers, body))
    if not key.strip() or len(key) > IDEMPOTENCY_KEY_MAX_LENGTH:
        return _refusal(
            "invalid_idempotency_key",
            f"{IDEMPOTENCY_HEADER}: Use 1 to {IDEMPOTENCY_KEY_MAX_LENGTH} characters.",
            status.HTTP_400_BAD_REQUEST,
            {
                IDEMPOTENCY_HEADER: [
                    ErrorDetail(
                        f"Use 1 to {IDEMPOTENCY_KEY_MAX_LENGTH} characters.", code="invalid_idempotency_key"
                    )
                ]
            },
        )
    stored_key = cache_key(scope, request.user.pk, key)
    body_print = fingerprint(request.data)
    claim = {"fingerprint": body_print, "body": None}
    if not cache.add(stored_key, claim, timeout=IDEMPOTENCY_IN_PROGRESS_TTL):
        stored = cache.get(stored_key) or claim
        if stored["fingerprint"] != body_print:
            return _refusal(
                "idempotency_conflict",
                f"This {IDEMPOTENCY_HEADER} was already used with a different body.",
                status.HTTP_409_CONFLICT,
            )
        if stored["body"] is None:
            return _refusal(
                "idempotency_in_progress",
                f"A request with this {IDEMPOTENCY_HEADER} is still being processed.",
                status.HTTP_409_CONFLICT,
            )
        return Response(
            stored["body"],
            status=status_code,
            headers={**_headers(headers, stored["body"]), "Idempotent-Replayed": "true"},
        )
    try:
        body = handler()
    except BaseException:
        cache.delete(stored_key)
        raise
    cache.set(stored_key, {"fingerprint": body_print, "body": body}, timeout=IDEMPOTENCY_TTL)
    return Response(body, status=status_code, headers=_headers(headers, body))


def _headers(headers: dict | None, body: Any) -> dict:
    return {name: value(body) if callable(value) else value for name, value in (headers or {}).items()}
