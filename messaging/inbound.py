"""Inbound messages and customer preferences from Meta's webhooks (placeholder: being implemented)."""

from messaging.models import WebhookEvent
from messaging.webhook_events import InboundMessage, UserPreference


def inbound_message_receive(item: InboundMessage, *, webhook_event: WebhookEvent | None = None) -> None:
    raise NotImplementedError


def user_preference_apply(item: UserPreference, *, webhook_event: WebhookEvent | None = None) -> None:
    raise NotImplementedError
