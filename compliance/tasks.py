"""Periodic compliance jobs (scheduled in settings.CELERY_BEAT_SCHEDULE)."""

from celery import shared_task

from compliance.privacy import privacy_deadline_reminders_send


@shared_task
def remind_privacy_deadlines() -> int:
    """The daily digest of privacy requests that are overdue, due soon or still unacknowledged."""
    return privacy_deadline_reminders_send()
