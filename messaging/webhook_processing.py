"""Apply a stored webhook delivery: normalize its body, then hand each item to the service that owns it.

    WebhookEvent (raw, stored before the 200) → webhook_normalize → for each item, in its own
    transaction: statuses → messaging.statuses, inbound messages and preferences → messaging.inbound,
    template updates → templates_app, notices → ProviderAlert rows.

Every handler is idempotent, so processing a delivery twice (a redelivered task, a staff replay, the
sweeper racing the task) changes nothing the first run did not. One item failing does not stop the
others: the event ends `failed` with the errors listed, and a replay retries it.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable
from datetime import timedelta

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from config.logging import redact
from messaging.models import ProviderAlert, WebhookEvent
from messaging.services import sender_for_webhook
from messaging.webhook_events import (
    InboundMessage,
    ProviderNotice,
    StatusUpdate,
    TemplateUpdate,
    UserPreference,
    WebhookItem,
    storable,
    webhook_normalize,
)

logger = logging.getLogger(__name__)

#: How long a delivery may wait for its task before the sweeper processes it.
STUCK_AFTER = timedelta(seconds=60)
ERROR_LIMIT = 4000


def _apply_status(item: StatusUpdate, event: WebhookEvent) -> None:
    from messaging.statuses import status_apply

    status_apply(item, webhook_event=event)


def _apply_inbound(item: InboundMessage, event: WebhookEvent) -> None:
    from messaging.inbound import inbound_message_receive

    inbound_message_receive(item, webhook_event=event)


def _apply_preference(item: UserPreference, event: WebhookEvent) -> None:
    from messaging.inbound import user_preference_apply

    user_preference_apply(item, webhook_event=event)


def _apply_template(item: TemplateUpdate, event: WebhookEvent) -> None:
    from templates_app.services import template_apply_webhook

    template_apply_webhook(field=item.field, value=item.value)


def provider_notice_record(item: ProviderNotice, *, webhook_event: WebhookEvent | None) -> ProviderAlert:
    """One alert row per notice per delivery (a replay finds the row it made the first time)."""
    sender = sender_for_webhook(
        phone_number_id=item.meta.phone_number_id,
        display_phone_number=item.meta.display_phone_number,
        waba_id=item.meta.waba_id,
    )
    alert, _ = ProviderAlert.objects.get_or_create(
        webhook_event=webhook_event,
        kind=storable(item.kind)[:64],
        code=storable(item.code)[:32],
        title=storable(item.title)[:255],
        defaults={
            "severity": item.severity,
            "details": storable(item.details),
            "sender": sender,
            "payload": storable(item.raw),
        },
    )
    if item.severity == "error":
        logger.warning("Meta reported %s %s: %s", item.kind, item.code, redact(item.title))
    return alert


def _apply_notice(item: ProviderNotice, event: WebhookEvent) -> None:
    provider_notice_record(item, webhook_event=event)


HANDLERS: dict[type, Callable[[WebhookItem, WebhookEvent], None]] = {
    StatusUpdate: _apply_status,
    InboundMessage: _apply_inbound,
    UserPreference: _apply_preference,
    TemplateUpdate: _apply_template,
    ProviderNotice: _apply_notice,
}

SUMMARY_KEYS = {
    StatusUpdate: "status",
    InboundMessage: "message",
    UserPreference: "user_preference",
    TemplateUpdate: "template",
    ProviderNotice: "notice",
}


def webhook_event_process(event_id: int) -> WebhookEvent:
    """Apply one stored delivery. Safe to call any number of times, from any number of processes."""
    WebhookEvent.objects.filter(pk=event_id).update(attempts=F("attempts") + 1)
    event = WebhookEvent.objects.get(pk=event_id)
    try:
        body = json.loads(event.raw_body)
    except ValueError:
        body = None  # the view only stores JSON; a hand-made row may not be
    items = webhook_normalize(body)
    summary: Counter[str] = Counter()
    errors: list[str] = []
    for index, item in enumerate(items):
        summary[SUMMARY_KEYS[type(item)]] += 1
        try:
            with transaction.atomic():
                HANDLERS[type(item)](item, event)
        except Exception as exc:  # one bad item must not lose the rest of the batch
            logger.exception("Webhook %s item %s (%s) failed", event.pk, index, type(item).__name__)
            errors.append(f"item {index} ({type(item).__name__}): {type(exc).__name__}: {redact(str(exc))}")
    event.state = WebhookEvent.State.FAILED if errors else WebhookEvent.State.PROCESSED
    event.error = "\n".join(errors)[:ERROR_LIMIT]
    event.summary = dict(summary)
    event.processed_at = timezone.now()
    event.save(update_fields=["state", "error", "summary", "processed_at"])
    return event


def webhook_events_stuck(*, limit: int = 500) -> list[int]:
    """Deliveries still waiting for processing long after they arrived (their task was lost)."""
    cutoff = timezone.now() - STUCK_AFTER
    return list(
        WebhookEvent.objects.filter(state=WebhookEvent.State.RECEIVED, received_at__lte=cutoff)
        .order_by("received_at")
        .values_list("pk", flat=True)[:limit]
    )
