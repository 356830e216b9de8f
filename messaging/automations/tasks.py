"""Automations' Celery task: process one stored event (runs its matching rules). Idempotent: the event
is processed once (messaging.automations.services.event_process), so a redelivered task does nothing."""

from celery import shared_task


@shared_task(name="automations.tasks.process_event", acks_late=True, ignore_result=True)
def process_event(event_pk: int) -> int:
    from messaging.automations.services import event_process

    return len(event_process(event_pk=event_pk))
