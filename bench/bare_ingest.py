"""The webhook ingest benchmark's baseline: a bare WSGI endpoint that stores each delivery with psycopg
and nothing else (no Django, no DRF, no middleware, no JSON parsing, no queue).

It does what any honest webhook endpoint must do, in the least code: read the raw body, check Meta's
HMAC signature over it (a few microseconds; an endpoint that skipped it could not be deployed, so
leaving it out would flatter the baseline for nothing), and INSERT the body into the very table the
app writes (`messaging_webhookevent`, with its unique `body_sha256`, its indexes and its NOT NULL
columns filled the way the model's defaults fill them), one autocommitted statement on a connection
each worker keeps open. What separates the two endpoints in the benchmark is then only what the app
adds on top of storing: the framework, the envelope check, the transaction and the enqueue.

Served by the same gunicorn command as the app: `gunicorn bench.bare_ingest:application`, configured by
BARE_INGEST_DATABASE_URL and BARE_INGEST_APP_SECRET.
"""

import hashlib
import hmac
import json
import os

import psycopg

SIGNATURE_ENVIRON_KEY = "HTTP_X_HUB_SIGNATURE_256"
STORED_HEADERS = (("Content-Type", "CONTENT_TYPE"), ("X-Hub-Signature-256", SIGNATURE_ENVIRON_KEY))
INSERT = (
    "INSERT INTO messaging_webhookevent "
    "(provider, body_sha256, raw_body, headers, received_at, state, attempts, summary, error) "
    "VALUES ('whatsapp', %s, %s, %s, now(), 'received', 0, '{}', '') "
    "ON CONFLICT (body_sha256) DO NOTHING"
)

_APP_SECRET = os.environ.get("BARE_INGEST_APP_SECRET", "").encode()
_connection: psycopg.Connection | None = None  # one per worker process (gunicorn forks before requests)


def _connect() -> psycopg.Connection:
    global _connection
    if _connection is None or _connection.closed:
        _connection = psycopg.connect(os.environ["BARE_INGEST_DATABASE_URL"], autocommit=True)
    return _connection


def _answer(start_response, status: str, body: bytes) -> list[bytes]:
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def application(environ, start_response):
    length = int(environ.get("CONTENT_LENGTH") or 0)
    raw = environ["wsgi.input"].read(length)
    expected = "sha256=" + hmac.new(_APP_SECRET, raw, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), environ.get(SIGNATURE_ENVIRON_KEY, "").encode()):
        return _answer(start_response, "401 Unauthorized", b'{"code": "invalid_signature"}')
    headers = {name: environ[key] for name, key in STORED_HEADERS if key in environ}
    _connect().execute(INSERT, (hashlib.sha256(raw).hexdigest(), raw.decode(), json.dumps(headers)))
    return _answer(start_response, "200 OK", b'{"status": "received"}')
