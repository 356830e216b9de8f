"""Replaying webhook deliveries through the real endpoint, signed as Meta signs them.

Fixtures live in tests/fixtures/webhooks/<name>.json (our own, written from Meta's documentation).
`post_webhook` signs the exact bytes it sends; in the test settings Celery runs in-process, so the
delivery is applied by the time the response returns.
"""

import json
from pathlib import Path
from typing import Any

from messaging.whatsapp.signatures import webhook_signature

WEBHOOK_URL = "/webhooks/whatsapp/"
APP_SECRET = "test-app-secret"  # config/test_settings.py
FIXTURES = Path(__file__).parent / "fixtures" / "webhooks"


def load_fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def post_webhook(client, body: dict[str, Any] | bytes, *, secret: str = APP_SECRET, **headers):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(
        WEBHOOK_URL,
        data=raw,
        content_type="application/json",
        HTTP_X_HUB_SIGNATURE_256=webhook_signature(raw, secret),
        **headers,
    )
