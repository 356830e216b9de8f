"""Periodic compliance jobs (scheduled in settings.CELERY_BEAT_SCHEDULE)."""

from celery import shared_task

from compliance.privacy import privacy_deadline_reminders_send


@shared_task
def remind_privacy_deadlines() -> int:
    """The daily digest of privacy requests that are overdue, due soon or still unacknowledged."""
    return privacy_deadline_reminders_send()


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def erase_privacy_request(request_id: int, user_id: int | None, outcome: str, summary: str) -> str:
    """Run a deletion request's erasure (queued by privacy_request_fulfil). Safe to run again after a
    lost worker: the erasure is one transaction, and a closed request is refused, not erased twice."""
    import logging

    from django.contrib.auth import get_user_model
    from django.core.exceptions import ValidationError

    from compliance.models import PrivacyRequest
    from compliance.privacy import privacy_request_fulfil

    request = PrivacyRequest.objects.get(pk=request_id)
    user = get_user_model().objects.filter(pk=user_id).first() if user_id else None
    try:
        privacy_request_fulfil(
            request=request, user=user, outcome=outcome, summary=summary, in_background=False
        )
    except ValidationError as exc:  # closed meanwhile (superseded, denied): nothing to erase
        logging.getLogger(__name__).info("Erasure of %s not run: %s", request.reference, exc.messages)
        return "skipped"
    return "erased"
