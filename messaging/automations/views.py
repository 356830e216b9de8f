"""`POST /integrations/<slug>/`: an outside system's signed events.

Order of work: find the integration (404 unknown_integration) → verify its signature over the raw
bytes (401 invalid_signature, also for a stale timestamp; 400 invalid_content_length, 413
payload_too_large before reading it) → parse (400 invalid_json, or a code saying
what the delivery lacks) → store the event once per event id (a redelivery: 200 duplicate, nothing sent
again) → answer 202 and process it on commit in a Celery task. Stored before acknowledged: an accepted
event is never lost. No session or CSRF: the signature is the authentication.
"""

import hashlib
import json
import logging

from django.db import transaction
from django.http import JsonResponse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from messaging.automations.deliveries import DeliveryUnreadable, delivery_read
from messaging.automations.models import Integration
from messaging.automations.services import event_store, integration_secret
from messaging.automations.signatures import SignatureInvalid, signature_verify

MAX_BODY_BYTES = 1024 * 1024  # Shopify's largest order payloads are far below this

logger = logging.getLogger(__name__)


def _answer(code: str, detail: str, status: int, **extra) -> JsonResponse:
    return JsonResponse({"code": code, "detail": detail, **extra}, status=status)


def _request_processing(event_pk: int) -> None:
    from messaging.automations.tasks import process_event

    try:
        process_event.delay(event_pk)
    except Exception:
        # The event is stored: an operator can reprocess it; the sender must not retry into a duplicate.
        logger.exception("Automation event %s stored but not queued for processing", event_pk)


@method_decorator(csrf_exempt, name="dispatch")
class IntegrationEndpoint(View):
    http_method_names = ["post"]

    def http_method_not_allowed(self, request, *args, **kwargs):
        return _answer("method_not_allowed", "Send events with POST.", 405)

    def post(self, request, slug: str):
        integration = Integration.objects.filter(slug=slug, is_active=True).first()
        if integration is None:
            return _answer("unknown_integration", "No active integration has this address.", 404)
        declared_length = (request.META.get("CONTENT_LENGTH") or "0").strip()
        if not declared_length.isdigit():
            return _answer("invalid_content_length", "Content-Length must be a number of bytes.", 400)
        if int(declared_length) > MAX_BODY_BYTES:
            return _answer("payload_too_large", "Events are limited to 1 MB.", 413)
        raw = request.body
        try:
            signature_verify(
                integration.kind,
                secret=integration_secret(integration),
                headers=request.headers,
                body=raw,
                now=timezone.now(),
            )
        except SignatureInvalid as exc:
            logger.warning("Automation delivery refused for integration %s: %s", integration.pk, exc)
            return _answer("invalid_signature", str(exc), 401)
        try:
            text = raw.decode("utf-8")
            payload = json.loads(text)
        except ValueError:
            return _answer("invalid_json", "The body is not UTF-8 JSON.", 400)
        digest = hashlib.sha256(raw).hexdigest()
        try:
            delivery = delivery_read(
                integration.kind, headers=request.headers, payload=payload, body_sha256=digest
            )
        except DeliveryUnreadable as exc:
            return _answer(exc.code, exc.detail, 400)
        event, created = event_store(
            integration=integration, delivery=delivery, raw_body=text, body_sha256=digest
        )
        if not created:
            return _answer(
                "duplicate",
                "This event was received before; nothing is sent again.",
                200,
                event_id=event.event_id,
            )
        transaction.on_commit(lambda: _request_processing(event.pk))
        return _answer("accepted", "Stored; the rules run shortly.", 202, event_id=event.event_id)
