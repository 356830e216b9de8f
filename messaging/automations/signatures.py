"""How each outside system signs its deliveries, as small pure functions (no Django, no database).

Shopify    X-Shopify-Hmac-Sha256 = base64(HMAC-SHA256(secret, raw body)). No timestamp is signed, and
           neither are X-Shopify-Webhook-Id nor X-Shopify-Topic: replays are stopped by the body itself
           (a body an integration already received is a duplicate, whatever its id or topic;
           services.event_store) and by the webhook id.
Zendesk    X-Zendesk-Webhook-Signature = base64(HMAC-SHA256(secret, timestamp + raw body)), with the
           timestamp in X-Zendesk-Webhook-Signature-Timestamp (ISO 8601, e.g. 2025-06-10T16:00:00Z).
BambooHR   X-BambooHR-Signature = hex(HMAC-SHA256(secret, raw body + timestamp)), with the timestamp in
           X-BambooHR-Timestamp (Unix seconds). The webhook's "private key" is the secret.
Generic    X-Signature: sha256=<hex(HMAC-SHA256(secret, "<timestamp>.<raw body>"))>, with
           X-Timestamp (Unix seconds). The event's id and type are read only from the signed JSON
           body ("event_id", "event_type"), never from headers: an unsigned X-Event-Id would let a
           replay within the 5 minutes pass as a new event, and an unsigned X-Event-Type would let it
           run another rule. (Signing them as "<timestamp>.<id>.<type>.<body>" was the alternative;
           event types contain dots, so "a.b" + "c" and "a" + "b.c" would sign alike.) In Python:
               hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()

Where a scheme signs a timestamp, one further than `MAX_SKEW` from our clock is refused: a captured
delivery cannot be replayed later (and within the window, the event id makes a replay a no-op).
Every comparison is constant-time (hmac.compare_digest).
"""

import base64
import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

MAX_SKEW = timedelta(minutes=5)

SHOPIFY_SIGNATURE = "X-Shopify-Hmac-Sha256"
SHOPIFY_TOPIC = "X-Shopify-Topic"
SHOPIFY_WEBHOOK_ID = "X-Shopify-Webhook-Id"
ZENDESK_SIGNATURE = "X-Zendesk-Webhook-Signature"
ZENDESK_TIMESTAMP = "X-Zendesk-Webhook-Signature-Timestamp"
BAMBOOHR_SIGNATURE = "X-BambooHR-Signature"
BAMBOOHR_TIMESTAMP = "X-BambooHR-Timestamp"
GENERIC_SIGNATURE = "X-Signature"
GENERIC_TIMESTAMP = "X-Timestamp"

#: The headers each kind of integration must send, for the admin's set-up help.
HEADERS_BY_KIND = {
    "shopify": (SHOPIFY_SIGNATURE, SHOPIFY_TOPIC, SHOPIFY_WEBHOOK_ID),
    "zendesk": (ZENDESK_SIGNATURE, ZENDESK_TIMESTAMP),
    "bamboohr": (BAMBOOHR_SIGNATURE, BAMBOOHR_TIMESTAMP),
    "generic": (GENERIC_SIGNATURE, GENERIC_TIMESTAMP),
}


class SignatureInvalid(Exception):
    """The delivery is not signed with this integration's secret, or its timestamp is stale."""


def _hmac_sha256(secret: str, message: bytes) -> bytes:
    return hmac.new(secret.encode(), message, hashlib.sha256).digest()


def _same(expected: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(expected.encode(), given.strip().encode())


def parse_timestamp(value: str | None) -> datetime:
    """Unix seconds ("1718035200") or ISO 8601 ("2025-06-10T16:00:00Z"), as an aware datetime."""
    text = (value or "").strip()
    if not text:
        raise SignatureInvalid("The timestamp header is missing.")
    try:
        if text.isdigit():
            return datetime.fromtimestamp(int(text), tz=UTC)
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError) as exc:
        raise SignatureInvalid(f"Unreadable timestamp {text[:40]!r}.") from exc
    if parsed.tzinfo is None:
        raise SignatureInvalid("The timestamp has no time zone.")
    return parsed


def check_fresh(timestamp: str | None, *, now: datetime) -> None:
    if abs(now - parse_timestamp(timestamp)) > MAX_SKEW:
        raise SignatureInvalid("The timestamp is more than 5 minutes away from our clock (replayed?).")


def shopify_signature(secret: str, body: bytes) -> str:
    return base64.b64encode(_hmac_sha256(secret, body)).decode()


def zendesk_signature(secret: str, timestamp: str, body: bytes) -> str:
    return base64.b64encode(_hmac_sha256(secret, timestamp.encode() + body)).decode()


def bamboohr_signature(secret: str, timestamp: str, body: bytes) -> str:
    return _hmac_sha256(secret, body + timestamp.encode()).hex()


def generic_signature(secret: str, timestamp: str, body: bytes) -> str:
    return "sha256=" + _hmac_sha256(secret, timestamp.encode() + b"." + body).hex()


def signature_verify(
    kind: str, *, secret: str, headers: Mapping[str, str], body: bytes, now: datetime
) -> None:
    """Raise SignatureInvalid unless `body` carries a valid, fresh signature of `kind` under `secret`.
    `headers` is case-insensitive (Django's request.headers)."""
    if not secret:
        raise SignatureInvalid("This integration has no secret.")
    if kind == "shopify":
        if not _same(shopify_signature(secret, body), headers.get(SHOPIFY_SIGNATURE)):
            raise SignatureInvalid(f"Missing or wrong {SHOPIFY_SIGNATURE}.")
        return
    stamp_header, signature_header, sign = {
        "zendesk": (ZENDESK_TIMESTAMP, ZENDESK_SIGNATURE, zendesk_signature),
        "bamboohr": (BAMBOOHR_TIMESTAMP, BAMBOOHR_SIGNATURE, bamboohr_signature),
        "generic": (GENERIC_TIMESTAMP, GENERIC_SIGNATURE, generic_signature),
    }.get(kind, (None, None, None))
    if sign is None:
        raise SignatureInvalid(f"Unknown integration kind {kind!r}.")
    timestamp = (headers.get(stamp_header) or "").strip()
    # The signature first: an unsigned request learns nothing about our clock.
    if not timestamp or not _same(sign(secret, timestamp, body), headers.get(signature_header)):
        raise SignatureInvalid(f"Missing or wrong {signature_header} (or {stamp_header}).")
    check_fresh(timestamp, now=now)
