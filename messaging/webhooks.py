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
from django.db import IntegrityError, transaction
from django.http import HttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from messaging.models import WebhookEvent
from messaging.tasks import process_webhook_event
from messaging.whatsapp.signatures import SIGNATURE_HEADER, webhook_signature_is_valid

# Meta's payloads are at most 3 MB; anything far beyond that is not Meta.
MAX_WEBHOOK_BODY_BYTES = 3 * 1024 * 1024 + 512 * 1024
STORED_HEADERS = ("Content-Type", SIGNATURE_HEADER, "User-Agent")

logger = logging.getLogger(__name__)


def _error(code: str, detail: str, http_status: int) -> Response:
    return Response({"code": code, "detail": detail}, status=http_status)


@extend_schema(exclude=True)  # Meta's contract, not part of our public API
class WhatsAppWebhookView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]

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
        try:
            with transaction.atomic():
                event = WebhookEvent.objects.create(body_sha256=digest, raw_body=text, headers=headers)
        except IntegrityError:
            # Meta redelivered a body we already stored: acknowledge it again (it was queued then).
            return Response({"status": "received"})
        _enqueue_processing(event.pk)
        return Response({"status": "received"})


def _enqueue_processing(event_id: int) -> None:
    """Queue the stored delivery for processing. The row is committed already, so a broker hiccup here
    loses nothing: the periodic sweeper (dispatch_due_messages) processes it a minute later. In the
    embedded default (no broker) the task runs in-process before the answer goes out."""
    try:
        process_webhook_event.delay(event_id)
    except Exception:
        logger.exception("Webhook %s stored but not queued; the sweeper will process it", event_id)
