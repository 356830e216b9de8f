"""Apply a stored webhook delivery: normalize its body, then hand each item to the service that owns it.

How deliveries reach processing: the endpoint stores the row and calls `webhook_processing_request`,
which makes sure one `drain_webhook_events` task is queued unless one is already waiting (a Redis
flag, SET NX, instead of publishing a task per delivery, which cost the endpoint half its time). With
a broker that check runs in a per-process scheduler thread, coalesced across a burst of deliveries
(DrainScheduler), so the answer to Meta never waits for it.
The drain clears the flag first, then claims and processes every waiting delivery, oldest first, so
a delivery stored after the flag was cleared queues a drain of its own and none waits unnoticed.
Deliveries are claimed one by one with a conditional UPDATE (received → processing), so several
drains on several machines never process one twice; the periodic sweeper retries deliveries left
`processing` by a worker that died, and any the drain never reached.

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
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache
from django.db import InterfaceError, OperationalError, connection, transaction
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

#: How long a delivery may wait for its drain before the sweeper processes it.
STUCK_AFTER = timedelta(seconds=60)
#: A delivery claimed longer ago than this belongs to a worker that died (processing takes ms).
CLAIM_EXPIRES_AFTER = timedelta(minutes=5)
DRAIN_SCHEDULED_KEY = "webhooks:drain-scheduled"
#: If a queued drain is lost, deliveries wait at most this long before the next request queues one.
DRAIN_SCHEDULED_TTL_SECONDS = 15
#: One drain stops after this many deliveries and queues the next, so a backlog never pins a worker.
DRAIN_BATCH = 2000
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


def webhook_event_claim(event_id: int) -> bool:
    """Take a waiting delivery for processing; False if another worker has it already."""
    return bool(
        WebhookEvent.objects.filter(pk=event_id, state=WebhookEvent.State.RECEIVED).update(
            state=WebhookEvent.State.PROCESSING, claimed_at=timezone.now()
        )
    )


def webhook_events_drain(*, limit: int = DRAIN_BATCH) -> int:
    """Claim and process waiting deliveries, oldest first, up to `limit`; returns how many."""
    done = 0
    while done < limit:
        waiting = list(
            WebhookEvent.objects.filter(state=WebhookEvent.State.RECEIVED)
            .order_by("id")
            .values_list("pk", flat=True)[: min(100, limit - done)]
        )
        if not waiting:
            break
        for event_id in waiting:
            if webhook_event_claim(event_id):
                webhook_event_process(event_id)
                done += 1
    return done


def webhook_event_store(*, raw_body: str, body_sha256: str, headers: dict[str, str]) -> bool:
    """Store one delivery durably (committed when this returns, unless inside an outer transaction);
    False if this exact body was stored before (Meta redelivers).

    One hand-written `INSERT ... ON CONFLICT DO NOTHING` rather than the ORM's create(): this is the
    hot path Meta waits on, and the ORM's statement building and the duplicate's IntegrityError
    (which needs a savepoint around it) cost more than the insert itself (bench/webhook_ingest.py).
    Every column is listed, so a new NOT NULL column without a default fails loudly in the tests."""
    values = {
        "provider": "whatsapp",
        "body_sha256": body_sha256,
        "raw_body": raw_body,
        "headers": headers,
        "received_at": timezone.now(),
        "state": WebhookEvent.State.RECEIVED,
        "attempts": 0,
        "summary": {},
        "error": "",
    }
    meta = WebhookEvent._meta
    fields = [meta.get_field(name) for name in values]
    params = [field.get_db_prep_save(values[field.name], connection) for field in fields]
    quote = connection.ops.quote_name
    columns = ", ".join(quote(field.column) for field in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    # Names from the model's own metadata; every value is a parameter.
    sql = f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES ({placeholders}) "  # noqa: S608
    sql += f"ON CONFLICT ({quote('body_sha256')}) DO NOTHING"
    try:
        return _insert_optimistically(sql, params)
    except (OperationalError, InterfaceError):
        if connection.in_atomic_block:
            raise
        # The kept-alive connection had died (database restart, failover, idle timeout): once more on
        # a fresh one. Safe to repeat: ON CONFLICT makes a second insert of the same body a no-op.
        logger.warning("Webhook insert failed on a stale database connection; retrying on a new one")
        connection.close()
        return _insert_optimistically(sql, params)


def _insert_optimistically(sql: str, params: list) -> bool:
    # With CONN_HEALTH_CHECKS on, Django spends a "SELECT 1" round trip per request checking a
    # persistent connection before its first query. Here the insert is the request's only query and
    # its failure is handled above, so it serves as its own health check: one round trip, not two.
    if connection.connection is not None:
        connection.health_check_done = True
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount == 1


def _drain_flag_set() -> bool:
    """SET NX of the "drain queued" flag. On Redis through one client kept per process: Django's
    RedisCache builds a new client object for every call, a third of this request's CPU."""
    global _redis_client
    backend = caches["default"]
    if not isinstance(backend, RedisCache):
        return backend.add(DRAIN_SCHEDULED_KEY, True, timeout=DRAIN_SCHEDULED_TTL_SECONDS)
    if _redis_client is None:
        _redis_client = backend._cache.get_client(write=True)
    key = backend.make_and_validate_key(DRAIN_SCHEDULED_KEY)
    return bool(_redis_client.set(key, b"1", nx=True, ex=DRAIN_SCHEDULED_TTL_SECONDS))


_redis_client = None


def webhook_processing_request() -> None:
    """Make sure a drain will see a delivery just stored (called by the endpoint after the insert).

    In-process (no broker) the drain runs now, before the answer. With a broker, the request only
    wakes this process's drain scheduler (a thread): Meta's answer does not wait for Redis, and a
    burst of deliveries costs one SET NX per COALESCE_SECONDS instead of one per request."""
    if settings.CELERY_TASK_ALWAYS_EAGER:
        webhook_drain_ensure_queued()
    else:
        _drain_scheduler.nudge()


class DrainScheduler:
    """Runs `ensure_queued` in a background thread whenever nudged: at once when idle, then at most
    once per `coalesce_seconds` while nudges keep coming.

    Nothing can be missed: a nudge comes after its delivery is committed, and the thread clears its
    wake-up flag before calling `ensure_queued`, so a nudge during a call causes one more call. That
    call's SET NX either wins (a drain is queued, and will see the delivery) or finds the flag set,
    meaning a queued drain has not started yet (it clears the flag first thing) and will see it too.
    If the process dies between the insert and the call, the sweeper processes the delivery."""

    def __init__(self, ensure_queued: Callable[[], None], *, coalesce_seconds: float) -> None:
        self.ensure_queued = ensure_queued
        self.coalesce_seconds = coalesce_seconds
        self._wanted = threading.Event()
        self._lock = threading.Lock()
        self._pid: int | None = None

    def nudge(self) -> None:
        if self._pid != os.getpid():  # first use in this process (threads do not survive a fork)
            with self._lock:
                if self._pid != os.getpid():
                    self._wanted = threading.Event()
                    threading.Thread(target=self._run, name="webhook-drain-scheduler", daemon=True).start()
                    self._pid = os.getpid()
        self._wanted.set()

    def _run(self) -> None:
        wanted = self._wanted
        while True:
            wanted.wait()
            wanted.clear()
            try:
                self.ensure_queued()
            except Exception:
                logger.exception("No drain queued for stored webhooks; the sweeper will process them")
            time.sleep(self.coalesce_seconds)


def webhook_drain_ensure_queued() -> None:
    """Queue a drain unless one is queued and not started yet (the Redis flag)."""
    from messaging.tasks import drain_webhook_events

    if not _drain_flag_set():
        return  # a drain is queued and has not started: it will see this delivery
    try:
        drain_webhook_events.delay()
    except Exception:
        cache.delete(DRAIN_SCHEDULED_KEY)  # let the next delivery try again
        raise


#: How often, at most, one process asks Redis whether a drain is queued while deliveries pour in.
COALESCE_SECONDS = 0.02
_drain_scheduler = DrainScheduler(webhook_drain_ensure_queued, coalesce_seconds=COALESCE_SECONDS)


def webhook_drain_started() -> None:
    """Called first thing by the drain: deliveries stored from now on queue a drain of their own."""
    cache.delete(DRAIN_SCHEDULED_KEY)


def webhook_events_recover() -> int:
    """For the periodic sweeper: hand deliveries claimed by a worker that died back to the queue, and
    return how many deliveries have waited too long (their drain was lost), so the caller queues one."""
    now = timezone.now()
    handed_back = WebhookEvent.objects.filter(
        state=WebhookEvent.State.PROCESSING, claimed_at__lte=now - CLAIM_EXPIRES_AFTER
    ).update(state=WebhookEvent.State.RECEIVED)
    waited = WebhookEvent.objects.filter(
        state=WebhookEvent.State.RECEIVED, received_at__lte=now - STUCK_AFTER
    ).count()
    return handed_back + waited
