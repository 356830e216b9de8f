"""Apply Meta's status webhooks to our outbound messages (placeholder: being implemented)."""

from messaging.models import WebhookEvent
from messaging.webhook_events import StatusUpdate


def status_apply(update: StatusUpdate, *, webhook_event: WebhookEvent | None = None) -> None:
    raise NotImplementedError


def pending_statuses_apply(provider_message_id: str) -> int:
    """Apply statuses that arrived before our send recorded this wamid; returns how many."""
    return 0
