"""Celery tasks of the messaging app.

`worker_ping` is a diagnostic task: it does no work and touches neither the database nor the WhatsApp
API, it only reports which worker process executed it. The integration test in
tests/test_celery_worker.py sends it to a real worker to prove that the project's Celery app, its task
discovery and the broker/result backend fit together; operators can use it the same way to check that
a deployment's workers consume the queue:

    celery -A config call messaging.tasks.worker_ping   # prints a task id
    celery -A config result <task id>                   # {'pong': True, 'hostname': ..., 'pid': ...}
"""

import os
import socket
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta

from celery import shared_task


@shared_task(name="messaging.tasks.worker_ping")
def worker_ping() -> dict:
    """Return proof of execution: which host and process ran this task."""
    return {"pong": True, "hostname": socket.gethostname(), "pid": os.getpid()}


@shared_task(
    name="messaging.tasks.send_message", acks_late=True, reject_on_worker_lost=True, ignore_result=True
)
def send_message(message_id: int) -> str:
    """Send one message. Safe to run twice or concurrently (the claim lets one run through), and safe
    to redeliver after a crash (acks_late): the pipeline never repeats a request that may have left.
    The returned status shows in the worker's log; nothing reads it, so it is not stored."""
    from messaging.sending import message_send

    outcome = message_send(message_id)
    if outcome.retry_at is not None and not send_message.app.conf.task_always_eager:
        send_message.apply_async((message_id,), eta=outcome.retry_at)
    return outcome.status


@shared_task(
    name="messaging.tasks.send_messages", acks_late=True, reject_on_worker_lost=True, ignore_result=True
)
def send_messages(message_ids: list[int]) -> dict[str, int]:
    """Send a batch of messages (messaging.sending.messages_send: one claim, one read, one write, the
    requests concurrently); the same guarantees as send_message for every id in it. Messages that
    must wait (rate limit, circuit, paused sender) come back as batches due at the same second."""
    from messaging.sending import messages_send

    outcomes = messages_send(message_ids)
    if not send_messages.app.conf.task_always_eager:
        later: dict[datetime, list[int]] = defaultdict(list)
        for message_id, outcome in outcomes.items():
            if outcome.retry_at is not None:
                later[outcome.retry_at.replace(microsecond=0) + timedelta(seconds=1)].append(message_id)
        for eta, ids in sorted(later.items()):
            send_messages.apply_async((ids,), eta=eta)
    return dict(Counter(outcome.status for outcome in outcomes.values()))


def messages_enqueue(message_ids: Sequence[int]) -> int:
    """Hand messages to the workers in batches of SEND_BATCH_SIZE (bulk sends, the dispatcher);
    returns how many tasks were enqueued."""
    from messaging.sending import SEND_BATCH_SIZE

    ids = list(message_ids)
    batches = [ids[start : start + SEND_BATCH_SIZE] for start in range(0, len(ids), SEND_BATCH_SIZE)]
    for batch in batches:
        send_messages.delay(batch)
    return len(batches)


@shared_task(name="messaging.tasks.advance_campaign", ignore_result=True)
def advance_campaign(campaign_id: int, chain: str | None = None) -> dict:
    """One dispatch step of a running campaign (messaging.campaign_dispatch), then the next one a tick
    later while it runs and this chain is the campaign's current one. A step run twice does no harm
    (each locks the campaign and takes only pending recipients); a lost chain is restarted by
    dispatch_due_messages."""
    from messaging.campaign_dispatch import (
        DISPATCH_IDLE_TICK_SECONDS,
        DISPATCH_TICK_SECONDS,
        campaign_advance,
    )

    result = campaign_advance(campaign_id, chain=chain)
    if result.running and not advance_campaign.app.conf.task_always_eager:
        # A full batch: a fast sender may be waiting for more; otherwise let the messages in flight go.
        countdown = 0 if result.full else DISPATCH_IDLE_TICK_SECONDS if result.idle else DISPATCH_TICK_SECONDS
        advance_campaign.apply_async((campaign_id, chain), countdown=countdown)
    return {"status": result.status, "created": result.created, "excluded": result.excluded}


@shared_task(name="messaging.tasks.campaign_dry_run_report", ignore_result=True)
def campaign_dry_run_report(report_id: int) -> str:
    """Work out a campaign's requested dry run (messaging.campaigns.campaign_dry_run_report)."""
    from messaging.campaigns import campaign_dry_run_report as work_out

    return work_out(report_id).status


@shared_task(name="messaging.tasks.start_campaign", ignore_result=True)
def start_campaign(campaign_id: int) -> bool:
    """Start an approved campaign whose time has come (fan-out, then its dispatch steps)."""
    from messaging.campaign_dispatch import campaign_start

    return campaign_start(campaign_id)


@shared_task(name="messaging.tasks.dispatch_due_messages")
def dispatch_due_messages() -> int:
    """Periodic safety net: enqueue every due message (a lost task, a deferred message whose time has
    come, a paused sender back in service), settle sends abandoned by dead workers, and process webhook
    deliveries whose processing task was lost, and statuses held for a wamid that is now known; start
    scheduled campaigns whose time has come, restart a running campaign's lost chain of steps, and process
    automation events whose task was lost."""
    from messaging.automations.services import events_recover
    from messaging.campaign_dispatch import campaigns_tick
    from messaging.sending import messages_due, messages_unstick
    from messaging.statuses import pending_statuses_sweep
    from messaging.webhook_processing import webhook_drain_started, webhook_events_recover

    messages_unstick()
    campaigns_tick()  # scheduled campaigns whose time has come; running ones whose steps stopped
    events_recover()  # outside systems' events whose processing task was lost
    pending_statuses_sweep()  # statuses that raced a send which ended unconfirmed, or were missed
    due = messages_due()
    messages_enqueue(due)
    if webhook_events_recover():
        webhook_drain_started()  # a lost drain's flag must not hold the new one back
        drain_webhook_events.delay()
    return len(due)


@shared_task(
    name="messaging.tasks.drain_webhook_events",
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
)
def drain_webhook_events() -> int:
    """Process every stored webhook delivery waiting (see messaging.webhook_processing)."""
    from messaging.webhook_processing import (
        DRAIN_BATCH,
        webhook_drain_ensure_queued,
        webhook_drain_started,
        webhook_events_drain,
    )

    webhook_drain_started()
    done = webhook_events_drain(limit=DRAIN_BATCH)
    if done >= DRAIN_BATCH and not drain_webhook_events.app.conf.task_always_eager:
        webhook_drain_ensure_queued()  # a backlog: continue in a fresh task
    return done


@shared_task(name="messaging.tasks.refresh_dashboard", ignore_result=True)
def refresh_dashboard() -> int:
    """Periodic: compute the admin dashboard's stored days again while their messages may still move
    (today and yesterday every minute, older days hourly), so that the index page reads them instead of
    scanning the period's messages. Returns the number of days computed."""
    from messaging.dashboard import dashboard_refresh_due

    return dashboard_refresh_due()
