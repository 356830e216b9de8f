"""rows_insert: the sending pipeline's bulk writes of timelines and the delivery log (COPY on PostgreSQL)."""

import pytest
from django.utils import timezone

from messaging.models import MessageStatus, MessageStatusEvent, ProviderCall
from messaging.sending import rows_insert
from tests.factories import ContactFactory, SenderFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def message():
    from messaging.models import Message

    return Message.objects.create(
        contact=ContactFactory(),
        sender=SenderFactory(),
        kind="text",
        content={"body": "hi"},
        status="sending",
    )


def test_rows_are_written_whole_with_their_creation_times(message):
    before = timezone.now()
    rows_insert(
        MessageStatusEvent,
        [
            MessageStatusEvent(
                message=message, status=MessageStatus.SENT, source="worker", detail="Ünïcode, tabs\tand\nlines",
                occurred_at=before,
            )
        ],
    )  # fmt: skip
    rows_insert(
        ProviderCall,
        [
            ProviderCall(
                message=message, backend="cloud", method="POST", url="https://graph.example/v23.0/1/messages",
                http_status=None, elapsed_ms=52, request_body='{"to": "\\\\N"}', response_body="", error="",
            )
        ],
    )  # fmt: skip
    rows_insert(ProviderCall, [])  # nothing to write is not an error

    event = MessageStatusEvent.objects.get(message=message)
    assert (event.status, event.source, event.detail) == ("sent", "worker", "Ünïcode, tabs\tand\nlines")
    assert event.occurred_at == before and event.recorded_at >= before
    call = ProviderCall.objects.get(message=message)
    assert call.http_status is None  # NULL stays NULL
    assert call.request_body == '{"to": "\\\\N"}'  # COPY's escape characters arrive as written
    assert call.elapsed_ms == 52 and call.created_at >= before


@pytest.mark.postgres
def test_on_postgresql_the_same_rows_arrive_through_copy(message):
    test_rows_are_written_whole_with_their_creation_times(message)


def test_json_values_arrive_as_json(message):
    from messaging.models import Message

    content = {"name": "summer_sale", "language": {"code": "en_US"}, "note": "tab\there, “quotes”, \\N"}
    rows_insert(
        Message,
        [
            Message(
                contact=message.contact, sender=message.sender, kind="template", content=content,
                status="queued", preview="Hi",
            )
        ],
    )  # fmt: skip
    written = Message.objects.exclude(pk=message.pk).get()
    assert written.content == content
    assert written.content["language"]["code"] == "en_US"  # a JSON object, not a string of one
    assert Message.objects.filter(content__language__code="en_US").count() == 1


@pytest.mark.postgres
def test_on_postgresql_json_arrives_through_copy(message):
    test_json_values_arrive_as_json(message)
