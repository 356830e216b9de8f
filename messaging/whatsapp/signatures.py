"""Meta signs every webhook with `X-Hub-Signature-256: sha256=<hex>`: HMAC-SHA256 of the raw body,
keyed with the app secret. The same helpers sign (simulator, tests) and verify (webhook endpoint)."""

import hashlib
import hmac

SIGNATURE_HEADER = "X-Hub-Signature-256"


def webhook_signature(body: bytes, app_secret: str) -> str:
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def webhook_signature_is_valid(body: bytes, header_value: str | None, app_secret: str) -> bool:
    """Constant-time comparison of the header against the signature of the exact bytes received."""
    if not app_secret or not header_value:
        return False
    return hmac.compare_digest(webhook_signature(body, app_secret).encode(), header_value.strip().encode())
