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

from celery import shared_task


@shared_task(name="messaging.tasks.worker_ping")
def worker_ping() -> dict:
    """Return proof of execution: which host and process ran this task."""
    return {"pong": True, "hostname": socket.gethostname(), "pid": os.getpid()}


@shared_task(name="messaging.tasks.send_message", acks_late=True, reject_on_worker_lost=True)
def send_message(message_id: int) -> str:
    """Send one message. Safe to run twice or concurrently (the claim lets one run through), and safe
    to redeliver after a crash (acks_late): the pipeline never repeats a request that may have left."""
    from messaging.sending import message_send

    outcome = message_send(message_id)
    if outcome.retry_at is not None and not send_message.app.conf.task_always_eager:
        send_message.apply_async((message_id,), eta=outcome.retry_at)
    return outcome.status


@shared_task(name="messaging.tasks.dispatch_due_messages")
def dispatch_due_messages() -> int:
    """Periodic safety net: enqueue every due message (a lost task, a deferred message whose time has
    come, a paused sender back in service), settle sends abandoned by dead workers, and process webhook
    deliveries whose processing task was lost."""
    from messaging.sending import messages_due, messages_unstick
    from messaging.webhook_processing import webhook_events_stuck

    messages_unstick()
    due = messages_due()
    for message_id in due:
        send_message.delay(message_id)
    for event_id in webhook_events_stuck():
        process_webhook_event.delay(event_id)
    return len(due)


@shared_task(
    name="messaging.tasks.process_webhook_event",
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
)
def process_webhook_event(event_id: int) -> None:
    """Apply one stored webhook delivery; idempotent, so redelivery after a crash is harmless."""
    from messaging.webhook_processing import webhook_event_process

    webhook_event_process(event_id)
