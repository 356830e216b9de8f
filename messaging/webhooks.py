"""`/webhooks/whatsapp/`: Meta's subscription handshake and signed event deliveries.

Order of work for a POST: verify the signature over the raw bytes → store the raw body durably →
answer 200. Nothing is parsed into statuses or messages before the row is committed, so an
acknowledged delivery is never lost; if storing fails the 5xx makes Meta retry.
"""

import hashlib
import hmac
import json
import logging

from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from messaging.webhook_processing import webhook_event_store, webhook_processing_request
from messaging.whatsapp.signatures import SIGNATURE_HEADER, webhook_signature_is_valid

# Meta's payloads are at most 3 MB; anything far beyond that is not Meta.
MAX_WEBHOOK_BODY_BYTES = 3 * 1024 * 1024 + 512 * 1024
STORED_HEADERS = ("Content-Type", SIGNATURE_HEADER, "User-Agent")

logger = logging.getLogger(__name__)

# The acknowledgement, prebuilt: this is the hot path Meta waits on (bench/webhook_ingest.py), and
# DRF's negotiation and rendering of a constant would cost more than storing the delivery.
RECEIVED_BODY = b'{"status":"received"}'


class _JsonOnly(BaseContentNegotiation):
    """Meta sends no Accept header worth negotiating: every answer of this endpoint is JSON."""

    def select_parser(self, request, parsers):
        return None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


def _received() -> HttpResponse:
    return HttpResponse(RECEIVED_BODY, content_type="application/json")


def _error(code: str, detail: str, http_status: int) -> Response:
    return Response({"code": code, "detail": detail}, status=http_status)


@extend_schema(exclude=True)  # Meta's contract, not part of our public API
class WhatsAppWebhookView(APIView):
    # Meta authenticates by signature (checked in post()), not by user: no DRF authentication,
    # throttling or parsing (the body is read raw, as the signature covers the raw bytes).
    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes: list = []
    parser_classes: list = []
    renderer_classes = [JSONRenderer]
    content_negotiation_class = _JsonOnly

    def get(self, request):
        params = request.query_params
        expected = settings.WHATSAPP["VERIFY_TOKEN"]
        token = params.get("hub.verify_token", "")
        if (
            params.get("hub.mode") == "subscribe"
            and expected
            and hmac.compare_digest(token.encode(), expected.encode())
        ):
            # Meta expects the challenge echoed back byte for byte as plain text.
            return HttpResponse(params.get("hub.challenge", ""), content_type="text/plain")
        return _error("verification_failed", "Unknown mode or wrong verify token.", status.HTTP_403_FORBIDDEN)

    def post(self, request):
        length = int(request.META.get("CONTENT_LENGTH") or 0)
        if length > MAX_WEBHOOK_BODY_BYTES:
            return _error(
                "payload_too_large",
                "Webhook bodies are limited to 3 MB.",
                status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
            )
        # Read the stream directly: `request.body` would refuse Meta's legitimate 3 MB batches
        # (DATA_UPLOAD_MAX_MEMORY_SIZE is 2.5 MB, and rightly so for every other endpoint).
        raw = request._request.read(MAX_WEBHOOK_BODY_BYTES + 1)
        if len(raw) > MAX_WEBHOOK_BODY_BYTES:
            return _error(
                "payload_too_large",
                "Webhook bodies are limited to 3 MB.",
                status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
            )
        if not webhook_signature_is_valid(
            raw, request.headers.get(SIGNATURE_HEADER), settings.WHATSAPP["APP_SECRET"]
        ):
            return _error(
                "invalid_signature", f"Missing or wrong {SIGNATURE_HEADER}.", status.HTTP_401_UNAUTHORIZED
            )
        try:
            # Decode strictly first: json.loads(bytes) would also accept UTF-16/32 and lone surrogates,
            # which the stored text (and PostgreSQL) cannot hold.
            text = raw.decode("utf-8")
            body = json.loads(text)
        except ValueError:  # UnicodeDecodeError and JSONDecodeError are both ValueErrors
            return _error("invalid_json", "The body is not UTF-8 JSON.", status.HTTP_400_BAD_REQUEST)
        if (
            not isinstance(body, dict)
            or body.get("object") != "whatsapp_business_account"
            or not isinstance(body.get("entry"), list)
        ):
            return _error(
                "not_a_whatsapp_event",
                "Expected a whatsapp_business_account envelope.",
                status.HTTP_400_BAD_REQUEST,
            )
        digest = hashlib.sha256(raw).hexdigest()
        headers = {name: request.headers[name] for name in STORED_HEADERS if name in request.headers}
        if not webhook_event_store(raw_body=text, body_sha256=digest, headers=headers):
            # Meta redelivered a body we already stored: acknowledge it again (it is processed once).
            return _received()
        _request_processing()
        return _received()


def _request_processing() -> None:
    """Make sure a drain will process the stored delivery. The row is committed already, so a broker
    or Redis hiccup here loses nothing: the periodic sweeper (dispatch_due_messages) processes it a
    minute later. In the embedded default (no broker) the drain runs in-process before the answer."""
    try:
        webhook_processing_request()
    except Exception:
        logger.exception("Webhook stored but no drain queued; the sweeper will process it")
