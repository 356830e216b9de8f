from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from messaging.models import Message, MessageStatus
from messaging.services import sender_get_default
from messaging.whatsapp.memory import MemoryBackend
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db


def test_the_dispatcher_sends_what_is_due_and_leaves_the_rest():
    contact = ContactFactory(last_inbound_at=timezone.now())
    sender = sender_get_default()
    due = Message.objects.create(
        contact=contact,
        sender=sender,
        kind="text",
        content={"body": "due"},
        status=MessageStatus.DEFERRED,
        next_attempt_at=timezone.now() - timedelta(seconds=1),
    )
    later = Message.objects.create(
        contact=contact,
        sender=sender,
        kind="text",
        content={"body": "later"},
        status=MessageStatus.DEFERRED,
        next_attempt_at=timezone.now() + timedelta(hours=1),
    )
    out = StringIO()
    call_command("run_dispatcher", "--once", stdout=out)
    assert "dispatched 1" in out.getvalue()
    due.refresh_from_db()
    later.refresh_from_db()
    assert (due.status, later.status) == (MessageStatus.SENT, MessageStatus.DEFERRED)
    assert [m["payload"]["text"]["body"] for m in MemoryBackend.outbox] == ["due"]
