"""Whatever order Meta's statuses arrive in, and however often, a message ends where the rules say.

The rules (messaging/statuses.py):
- without a failure, the message ends at the furthest status Meta sent (sent < delivered < read <
  played), whatever the order and duplication;
- `failed` is terminal and never overrides delivered/read/played: it counts only when it arrives
  before any of them, and then nothing moves the message afterwards;
and the timeline holds each distinct status Meta sent exactly once. Statuses are applied partly by
calling the service and partly through the signed endpoint, to a message that starts either sent (we
have its wamid) or unconfirmed (no wamid; the statuses carry our callback data).
"""

import itertools

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from messaging.models import Message, MessageStatus, MessageStatusEvent, PendingStatus
from messaging.services import sender_get_default
from messaging.statuses import status_apply
from messaging.webhook_events import webhook_normalize
from messaging.whatsapp import webhook_payloads
from tests.factories import ContactFactory
from tests.webhook_client import post_webhook

pytestmark = pytest.mark.django_db

STATUSES = ("sent", "delivered", "read", "played", "failed")
RANK = {"delivered": 2, "read": 3, "played": 4}
BASE_TIME = 1767261600
_wamids = itertools.count(1)


def expected_status(arrived: list[str]) -> str:
    """The rules as a plain fold over the arrival order: the reference the service must match."""
    status = "sent"
    for new in arrived:
        if status == "failed":
            break  # terminal
        if new == "failed":
            status = "failed" if status == "sent" else status
        elif RANK.get(new, 0) > RANK.get(status, 0):
            status = new
    return status


def status_body(message: Message, status: str, *, wamid: str, callback: bool) -> dict:
    value = webhook_payloads.status_value(
        wamid=wamid,
        status=status,
        recipient_wa_id=message.contact.wa_id,
        timestamp=BASE_TIME + STATUSES.index(status),
        callback_data=str(message.pk) if callback else None,
    )
    if status == "failed":
        value["statuses"][0]["errors"] = [{"code": 131026, "title": "Message undeliverable"}]
    return webhook_payloads.envelope(message.sender.ref, value)


arrivals = st.lists(
    st.tuples(st.sampled_from(STATUSES), st.booleans()),  # (status, through the endpoint?)
    min_size=1,
    max_size=10,
)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(arrivals=arrivals, starts_unconfirmed=st.booleans())
# The orders that matter most, tried on every run besides the generated ones:
@example(arrivals=[("delivered", False), ("failed", False)], starts_unconfirmed=False)
@example(arrivals=[("failed", True), ("delivered", False), ("failed", False)], starts_unconfirmed=True)
@example(arrivals=[("read", True), ("delivered", True), ("sent", False)], starts_unconfirmed=False)
def test_any_order_with_duplicates_ends_where_the_rules_say(client, arrivals, starts_unconfirmed):
    wamid = f"wamid.PROPERTY{next(_wamids):06d}"
    message = Message.objects.create(
        contact=ContactFactory(),
        sender=sender_get_default(),
        kind="text",
        content={"body": "hi"},
        status=MessageStatus.UNCONFIRMED if starts_unconfirmed else MessageStatus.SENT,
        provider_message_id=None if starts_unconfirmed else wamid,
    )
    for status, through_endpoint in arrivals:
        body = status_body(message, status, wamid=wamid, callback=starts_unconfirmed)
        if through_endpoint:
            assert post_webhook(client, body).status_code == 200
        else:
            (update,) = webhook_normalize(body)
            status_apply(update)

    received = {status for status, _ in arrivals}
    message.refresh_from_db()
    assert message.status == expected_status([status for status, _ in arrivals])
    if "failed" not in received:
        assert message.status == max(received | {"sent"}, key=lambda status: RANK.get(status, 1))
    assert message.provider_message_id == wamid
    assert (message.error_code == "131026") == (message.status == "failed")
    assert (message.delivered_at is not None) == bool(received & set(RANK))
    assert (message.read_at is not None) == ("read" in received)
    timeline = list(
        MessageStatusEvent.objects.filter(message=message, source="webhook").values_list("status", flat=True)
    )
    assert sorted(timeline) == sorted(received)
    assert not PendingStatus.objects.filter(provider_message_id=wamid).exists()
