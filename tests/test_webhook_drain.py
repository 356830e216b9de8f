"""How stored webhook deliveries reach processing: one queued drain at a time instead of a task per
delivery, claims so no delivery is processed twice, and the sweeper for anything left behind."""

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone

from messaging import tasks
from messaging.models import WebhookEvent
from messaging.webhook_processing import (
    DRAIN_SCHEDULED_KEY,
    webhook_event_claim,
    webhook_events_drain,
    webhook_events_recover,
)
from messaging.whatsapp import webhook_payloads
from messaging.whatsapp.base import SenderRef
from tests.webhook_client import post_webhook

pytestmark = pytest.mark.django_db

SENDER = SenderRef("100200300400500", "+15550100000", "900800700600500")


def status_body(n: int) -> dict:
    value = webhook_payloads.status_value(
        wamid=f"wamid.DRAIN{n}", status="sent", recipient_wa_id="15550123456"
    )
    return webhook_payloads.envelope(SENDER, value)


@pytest.fixture
def queued_drains(monkeypatch):
    """Replace the broker: record drains queued instead of running them in-process."""
    cache.delete(DRAIN_SCHEDULED_KEY)
    queued = []
    monkeypatch.setattr(tasks.drain_webhook_events, "delay", lambda: queued.append(True))
    yield queued
    cache.delete(DRAIN_SCHEDULED_KEY)


def test_a_burst_of_deliveries_queues_one_drain_which_processes_them_all(client, queued_drains):
    for n in range(5):
        assert post_webhook(client, status_body(n)).status_code == 200
    assert len(queued_drains) == 1
    assert WebhookEvent.objects.filter(state=WebhookEvent.State.RECEIVED).count() == 5

    tasks.drain_webhook_events.run()
    assert WebhookEvent.objects.filter(state=WebhookEvent.State.PROCESSED).count() == 5


def test_a_delivery_stored_once_the_drain_started_queues_the_next_drain(client, queued_drains):
    post_webhook(client, status_body(1))
    assert len(queued_drains) == 1
    tasks.drain_webhook_events.run()  # starts by clearing the flag
    post_webhook(client, status_body(2))
    assert len(queued_drains) == 2
    assert WebhookEvent.objects.get(state=WebhookEvent.State.RECEIVED).raw_body.count("wamid.DRAIN2") == 1


def test_a_delivery_is_claimed_by_one_worker_only():
    event = WebhookEvent.objects.create(body_sha256="a" * 64, raw_body="{}")
    assert webhook_event_claim(event.pk) is True
    assert webhook_event_claim(event.pk) is False
    event.refresh_from_db()
    assert event.state == WebhookEvent.State.PROCESSING and event.claimed_at is not None
    # A drain skips what another worker holds.
    assert webhook_events_drain() == 0


def test_the_sweeper_finds_lost_and_abandoned_deliveries_but_not_fresh_ones():
    now = timezone.now()
    fresh = WebhookEvent.objects.create(body_sha256="1" * 64, raw_body="{}")
    lost = WebhookEvent.objects.create(body_sha256="2" * 64, raw_body="{}")
    abandoned = WebhookEvent.objects.create(body_sha256="3" * 64, raw_body="{}")
    busy = WebhookEvent.objects.create(body_sha256="4" * 64, raw_body="{}")
    WebhookEvent.objects.filter(pk=lost.pk).update(received_at=now - timedelta(minutes=2))
    WebhookEvent.objects.filter(pk=abandoned.pk).update(
        state="processing", claimed_at=now - timedelta(minutes=6)
    )
    WebhookEvent.objects.filter(pk=busy.pk).update(state="processing", claimed_at=now - timedelta(seconds=5))
    assert webhook_events_recover() == 2  # the lost one and the abandoned one, handed back
    assert WebhookEvent.objects.get(pk=abandoned.pk).state == WebhookEvent.State.RECEIVED

    tasks.dispatch_due_messages()  # the periodic safety net queues a drain (in-process in tests)
    states = dict(WebhookEvent.objects.values_list("pk", "state"))
    assert states[lost.pk] == states[abandoned.pk] == states[fresh.pk] == WebhookEvent.State.PROCESSED
    assert states[busy.pk] == WebhookEvent.State.PROCESSING  # still held by a live worker


def test_a_drain_stops_at_its_batch_and_leaves_the_rest_waiting():
    for n in range(5):
        WebhookEvent.objects.create(body_sha256=f"{n}" * 64, raw_body="{}")
    assert webhook_events_drain(limit=3) == 3
    assert WebhookEvent.objects.filter(state=WebhookEvent.State.RECEIVED).count() == 2


# --- With a broker: the per-process scheduler thread -----------------------------------------------


def _wait_until(predicate, timeout=2.0):
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def test_the_scheduler_queues_at_once_when_idle_and_coalesces_a_burst_without_missing_its_end():
    import threading
    import time

    from messaging.webhook_processing import DrainScheduler

    calls: list[float] = []
    scheduler = DrainScheduler(lambda: calls.append(time.monotonic()), coalesce_seconds=0.02)

    nudged = time.monotonic()
    scheduler.nudge()
    assert _wait_until(lambda: len(calls) == 1)
    assert calls[0] - nudged < 0.5  # idle: no waiting for a batch to build up

    time.sleep(0.05)
    calls.clear()
    last_nudge = 0.0

    def burst():
        nonlocal last_nudge
        for _ in range(400):
            scheduler.nudge()
            last_nudge = time.monotonic()
            time.sleep(0.0005)

    senders = [threading.Thread(target=burst) for _ in range(4)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()
    assert _wait_until(lambda: calls and calls[-1] >= last_nudge)  # the last delivery is covered too
    time.sleep(0.05)
    assert 1 <= len(calls) < 200  # 1,600 deliveries, a few dozen checks at most


def test_a_failing_check_does_not_stop_the_scheduler():
    from messaging.webhook_processing import DrainScheduler

    attempts = []

    def flaky():
        attempts.append(True)
        if len(attempts) == 1:
            raise ConnectionError("redis restarting")

    scheduler = DrainScheduler(flaky, coalesce_seconds=0.0)
    scheduler.nudge()
    assert _wait_until(lambda: len(attempts) == 1)
    scheduler.nudge()
    assert _wait_until(lambda: len(attempts) == 2)
