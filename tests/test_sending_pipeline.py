"""The sending pipeline: claim once, ask the gate again, respect the sender's limit, record Meta's
answer, and never send twice."""

import threading
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.contrib.auth.models import Permission
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from compliance.services import Evidence, consent_opt_out_everywhere, consent_record, consent_text_create
from messaging import sending
from messaging.models import Message, MessageStatus, PendingStatus, ProviderCall, Sender
from messaging.outbound import MessageRefused, message_approve, message_compose, message_reject
from messaging.sending import SendOutcome, message_send, messages_due, messages_send, messages_unstick
from messaging.services import sender_get_default
from messaging.whatsapp import WhatsAppApiError, WhatsAppTransportError
from messaging.whatsapp.memory import MemoryBackend
from templates_app.models import MessageTemplate, TemplateStatus
from tests.factories import ContactFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def contact():
    # Wrote to us an hour ago: the 24-hour window is open for free-form messages.
    return ContactFactory(phone_number="+15550123456", last_inbound_at=timezone.now() - timedelta(hours=1))


@pytest.fixture
def composer():
    return UserFactory(username="composer")


@pytest.fixture
def approver():
    user = UserFactory(username="approver")
    user.user_permissions.add(Permission.objects.get(codename="approve_message"))
    return user


def compose(composer, text="Your order shipped.", to="+1 (555) 012-3456"):
    return message_compose(to_number=to, message_type="text", data={"text": text}, created_by=composer)


def test_a_message_waits_for_a_second_person_then_sends(
    contact, composer, approver, django_capture_on_commit_callbacks
):
    message = compose(composer)
    assert message.status == MessageStatus.PENDING_APPROVAL
    assert MemoryBackend.outbox == []
    with pytest.raises(PermissionDenied):
        message_approve(message=message, approver=composer)

    with django_capture_on_commit_callbacks(execute=True):
        message_approve(message=message, approver=approver)  # eager Celery: sent on commit
    message.refresh_from_db()
    assert message.status == MessageStatus.SENT
    assert message.provider_message_id.startswith("wamid.")
    assert message.approved_by == approver
    (sent,) = MemoryBackend.outbox
    assert sent["payload"] == {
        "messaging_product": "whatsapp", "recipient_type": "individual", "to": "15550123456", "type": "text",
        "text": {"body": "Your order shipped.", "preview_url": False}, "biz_opaque_callback_data": str(message.pk),
    }  # fmt: skip
    assert [e.status for e in message.status_events.all()] == [
        "draft",
        "pending_approval",
        "queued",
        "sending",
        "sent",
    ]
    call = ProviderCall.objects.get(message=message)
    assert call.http_status == 200 and "5550123456" not in call.request_body


def test_trusted_composers_skip_approval(contact, composer, django_capture_on_commit_callbacks):
    composer.user_permissions.add(Permission.objects.get(codename="send_without_approval"))
    composer = type(composer).objects.get(pk=composer.pk)  # fresh permission cache
    with django_capture_on_commit_callbacks(execute=True):
        message = compose(composer)
    message.refresh_from_db()
    assert message.status == MessageStatus.SENT


def test_rejection_needs_a_reason_and_sends_nothing(contact, composer, approver):
    message = compose(composer)
    message_reject(message=message, approver=approver, reason="Wrong order number")
    message.refresh_from_db()
    assert (message.status, message.rejection_reason) == (MessageStatus.REJECTED, "Wrong order number")
    assert MemoryBackend.outbox == []


def test_free_form_outside_the_window_is_refused_at_compose(composer):
    ContactFactory(phone_number="+15550123456", last_inbound_at=timezone.now() - timedelta(hours=30))
    with pytest.raises(MessageRefused) as excinfo:
        compose(composer)
    assert excinfo.value.code == "window_closed"
    assert not Message.objects.exists()


def test_the_gate_is_asked_again_right_before_sending(
    contact, composer, approver, django_capture_on_commit_callbacks
):
    message = compose(composer)
    # Between approval and sending, the person texts STOP and never writes again.
    consent_opt_out_everywhere(
        contact_id=contact.id,
        phone_number=contact.phone_number,
        source="whatsapp_keyword",
        evidence=Evidence(message_id="wamid.STOP"),
    )
    with django_capture_on_commit_callbacks(execute=True):
        message_approve(message=message, approver=approver)
    message.refresh_from_db()
    assert (message.status, message.error_code) == (MessageStatus.BLOCKED, "opted_out")
    assert MemoryBackend.outbox == []


def _queued(contact, composer):
    message = compose(composer)
    Message.objects.filter(pk=message.pk).update(status=MessageStatus.QUEUED)
    return message


@pytest.mark.django_db(transaction=True)
@pytest.mark.postgres
def test_concurrent_workers_send_a_message_exactly_once(contact, composer):
    message = _queued(contact, composer)
    outcomes = []
    barrier = threading.Barrier(4)

    def worker():
        barrier.wait()
        try:
            outcomes.append(message_send(message.pk).status)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["not_claimed"] * 3 + ["sent"]
    assert len(MemoryBackend.outbox) == 1


def test_a_redelivered_task_after_success_does_nothing(contact, composer):
    message = _queued(contact, composer)
    assert message_send(message.pk).status == "sent"
    assert message_send(message.pk).status == "not_claimed"
    assert len(MemoryBackend.outbox) == 1


def test_retryable_meta_errors_back_off_then_succeed(contact, composer):
    message = _queued(contact, composer)
    MemoryBackend.script(
        WhatsAppApiError(message="(#131000) Something went wrong", code=131000, http_status=500)
    )
    outcome = message_send(message.pk)
    message.refresh_from_db()
    assert outcome.status == MessageStatus.QUEUED and outcome.retry_at > timezone.now()
    assert (message.error_code, message.attempts) == ("131000", 1)
    assert message_send(message.pk).status == "not_claimed"  # not due yet
    Message.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now())
    assert message_send(message.pk).status == MessageStatus.SENT
    assert len(MemoryBackend.outbox) == 2


@pytest.mark.parametrize(
    ("code", "status", "error_code"),
    [
        (131026, MessageStatus.FAILED, "131026"),
        (131047, MessageStatus.FAILED, "window_closed"),
        (131049, MessageStatus.DEFERRED, "131049"),
    ],
)
def test_meta_errors_are_classified(contact, composer, code, status, error_code):
    message = _queued(contact, composer)
    MemoryBackend.script(WhatsAppApiError(message=f"(#{code})", code=code, http_status=400))
    message_send(message.pk)
    message.refresh_from_db()
    assert (message.status, message.error_code) == (status, error_code)


def test_an_auth_error_pauses_the_sender_and_keeps_the_message(contact, composer):
    message = _queued(contact, composer)
    MemoryBackend.script(WhatsAppApiError(message="Error validating access token", code=190, http_status=401))
    message_send(message.pk)
    message.refresh_from_db()
    assert message.status == MessageStatus.QUEUED
    sender = Sender.objects.get(pk=message.sender_id)
    assert sender.paused_at is not None and "credentials" in sender.pause_reason
    Message.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now())
    assert message_send(message.pk).status == MessageStatus.QUEUED  # still paused: nothing sent
    assert len(MemoryBackend.outbox) == 1


def test_a_timeout_after_the_request_left_is_never_resent_blindly(contact, composer):
    message = _queued(contact, composer)
    MemoryBackend.script(WhatsAppTransportError("read timed out", may_have_been_sent=True))
    assert message_send(message.pk).status == MessageStatus.UNCONFIRMED
    assert message.pk not in messages_due()


def test_a_worker_dying_mid_send_leaves_the_message_unconfirmed(contact, composer):
    message = _queued(contact, composer)
    Message.objects.filter(pk=message.pk).update(
        status=MessageStatus.SENDING, claimed_at=timezone.now() - timedelta(minutes=10)
    )
    assert messages_unstick() == 1
    message.refresh_from_db()
    assert message.status == MessageStatus.UNCONFIRMED
    assert message_send(message.pk).status == "not_claimed"


def test_meta_error_131050_records_a_marketing_opt_out(composer):
    contact = ContactFactory(phone_number="+15550123456")
    consent_text_create(version="v1", business_name="Acme", body="Offers on WhatsApp. Reply STOP to stop.")
    consent_record(
        contact_id=contact.id,
        phone_number=contact.phone_number,
        purpose="marketing",
        action="opt_in",
        source="api",
        evidence=Evidence(ip_address="203.0.113.9"),
        text_version="v1",
    )
    message = Message.objects.create(
        contact=contact,
        sender=Sender.objects.get_or_create(
            phone_number_id="p1",
            defaults={"display_phone_number": "+15550100009", "waba_id": "w", "label": "x"},
        )[0],
        kind="text",
        content={"body": "x"},
        status=MessageStatus.QUEUED,
    )
    Message.objects.filter(pk=message.pk).update(contact=contact)
    contact.last_inbound_at = timezone.now()
    contact.save()
    MemoryBackend.script(
        WhatsAppApiError(message="(#131050) Unable to deliver the message", code=131050, http_status=400)
    )
    message_send(message.pk)
    from compliance.services import consent_status

    assert consent_status(contact_id=contact.id, purpose="marketing") == "revoked"


def test_a_batch_sends_what_is_due_and_allowed_each_once(composer):
    sender = sender_get_default()
    window_open = ContactFactory(last_inbound_at=timezone.now() - timedelta(hours=1))
    window_closed = ContactFactory(last_inbound_at=timezone.now() - timedelta(days=2))

    def queued(contact, text, **fields):
        return Message.objects.create(
            contact=contact,
            sender=sender,
            kind="text",
            content={"body": text},
            status=MessageStatus.QUEUED,
            **fields,
        )

    first, second = queued(window_open, "first"), queued(window_open, "second")
    closed = queued(window_closed, "too late")
    later = queued(window_open, "later", next_attempt_at=timezone.now() + timedelta(hours=1))
    ids = [first.pk, second.pk, closed.pk, later.pk, first.pk]  # a repeated id is claimed once

    outcomes = messages_send(ids)

    assert {pk: o.status for pk, o in outcomes.items()} == {
        first.pk: "sent", second.pk: "sent", closed.pk: "blocked", later.pk: "not_claimed",
    }  # fmt: skip
    assert sorted(m["payload"]["text"]["body"] for m in MemoryBackend.outbox) == ["first", "second"]
    for message in (first, second):
        message.refresh_from_db()
        assert message.provider_message_id.startswith("wamid.") and message.attempts == 1
        assert list(message.status_events.values_list("status", flat=True)) == ["sending", "sent"]
        assert message.provider_calls.get().http_status == 200
    closed.refresh_from_db()
    assert (closed.status, closed.error_code) == (MessageStatus.BLOCKED, "window_closed")
    assert messages_send(ids) == {pk: SendOutcome("not_claimed") for pk in ids}  # a redelivered batch
    assert len(MemoryBackend.outbox) == 2


def test_a_sent_message_applies_the_statuses_that_arrived_before_it(contact, composer, monkeypatch):
    applied = []
    monkeypatch.setattr("messaging.statuses.pending_statuses_apply", applied.append)
    PendingStatus.objects.create(provider_message_id="wamid.EARLY", status="delivered", payload={})
    quiet, raced = _queued(contact, composer), _queued(contact, composer)
    accepted = {"messaging_product": "whatsapp", "messages": [{"id": "wamid.EARLY"}]}
    MemoryBackend.script({"messaging_product": "whatsapp", "messages": [{"id": "wamid.QUIET"}]}, accepted)

    message_send(quiet.pk)
    assert applied == []  # nothing waited for this wamid
    message_send(raced.pk)
    assert applied == ["wamid.EARLY"]  # the status Meta sent before our send recorded its wamid


def test_a_batch_beyond_its_senders_limit_sends_at_the_rate_and_queues_the_rest(monkeypatch):
    """A batch's slots are granted together; those further away than RATE_LIMIT_MAX_WAIT are not
    taken, and their messages go back to the queue unsent, their attempt not spent."""
    monkeypatch.setattr("messaging.sending.RATE_LIMIT_MAX_WAIT", 1.0)
    sender = sender_get_default()
    sender.messages_per_second = 2  # slots ~0.5 s apart: two within the second's wait
    sender.save()
    contact = ContactFactory(last_inbound_at=timezone.now() - timedelta(hours=1))
    messages = [
        Message.objects.create(
            contact=contact,
            sender=sender,
            kind="text",
            content={"body": f"m{n}"},
            status=MessageStatus.QUEUED,
        )
        for n in range(6)
    ]

    outcomes = messages_send([m.pk for m in messages])

    assert sorted(o.status for o in outcomes.values()) == ["queued"] * 4 + ["sent"] * 2
    assert sorted(m["payload"]["text"]["body"] for m in MemoryBackend.outbox) == ["m0", "m1"]
    for message in messages[2:]:
        message.refresh_from_db()
        assert (message.status, message.attempts) == (MessageStatus.QUEUED, 0)
        assert message.next_attempt_at > timezone.now()
        assert message.status_events.last().detail == "rate limit: waiting for a send slot"


def test_the_marketing_frequency_cap_is_checked_at_send_time_with_one_query_per_batch(settings):
    """Each person's marketing messages of the last days are counted again right before sending (one
    sent meanwhile, by another campaign, counts), for the whole batch in one query, not one per message."""
    settings.CONSENT_MARKETING_FREQUENCY_CAP = 2
    noon_in_new_york = datetime(2025, 6, 10, 16, 0, tzinfo=UTC)
    consent_text_create(version="v1", business_name="Acme", body="Acme offers. Reply STOP to stop.")
    template = MessageTemplate.objects.create(
        waba_id="900800700600500",
        name="summer_sale",
        language="en_US",
        category="MARKETING",
        status=TemplateStatus.APPROVED,
        components=[{"type": "BODY", "text": "20% off everything"}],
    )
    sender = sender_get_default()
    with time_machine.travel(noon_in_new_york, tick=False):
        capped, once, never = (ContactFactory(timezone="America/New_York") for _ in range(3))
        for person in (capped, once, never):
            consent_record(
                contact_id=person.pk,
                phone_number=person.phone_number,
                purpose="marketing",
                action="opt_in",
                source="web_form",
                evidence=Evidence(
                    ip_address="203.0.113.7", user_agent="Mozilla/5.0", page_url="https://x.example/"
                ),
                text_version="v1",
                occurred_at=noon_in_new_york - timedelta(days=30),
            )

        def marketing(person, **fields) -> Message:
            return Message.objects.create(
                contact=person,
                sender=sender,
                kind="template",
                template=template,
                template_category="MARKETING",
                content={"name": "summer_sale", "language": {"code": "en_US"}},
                **fields,
            )

        yesterday = noon_in_new_york - timedelta(days=1)
        for person, already in ((capped, 2), (once, 1)):
            for _ in range(already):
                marketing(person, status=MessageStatus.SENT, sent_at=yesterday)
        batch = [marketing(person, status=MessageStatus.QUEUED) for person in (capped, once, never)]

        with CaptureQueriesContext(connection) as queries:
            outcomes = messages_send([m.pk for m in batch])

    assert [outcomes[m.pk].status for m in batch] == ["blocked", "sent", "sent"]
    batch[0].refresh_from_db()
    assert batch[0].error_code == "frequency_cap"
    counts = [
        q["sql"] for q in queries.captured_queries if "COUNT" in q["sql"] and "template_category" in q["sql"]
    ]
    assert len(counts) == 1


@pytest.mark.parametrize("kind", ["text", "template"])
def test_a_batch_costs_the_same_queries_whatever_its_size(kind):
    """A batch reads its messages once, with only the fields sending needs: a field it forgot would be
    loaded one query per message, and a batch of 8 would cost more queries than a batch of 2."""
    sender = sender_get_default()
    template = MessageTemplate.objects.create(
        waba_id="900800700600500",
        name="shipped",
        language="en_US",
        category="UTILITY",
        status=TemplateStatus.APPROVED,
        components=[{"type": "BODY", "text": "Your order shipped."}],
    )
    if kind == "template":
        consent_text_create(version="v1", business_name="Acme", body="Acme updates. Reply STOP to stop.")

    def batch(size: int) -> list[int]:
        ids = []
        for _ in range(size):
            person = ContactFactory(last_inbound_at=timezone.now() - timedelta(hours=1))
            if kind == "template":
                consent_record(
                    contact_id=person.pk,
                    phone_number=person.phone_number,
                    purpose="utility",
                    action="opt_in",
                    source="web_form",
                    evidence=Evidence(
                        ip_address="203.0.113.7", user_agent="Mozilla/5.0", page_url="https://x.example/"
                    ),
                    text_version="v1",
                )
            fields = (
                {
                    "kind": "template",
                    "template": template,
                    "template_category": "UTILITY",
                    "content": {"name": "shipped"},
                }
                if kind == "template"
                else {"kind": "text", "content": {"body": "Your order shipped."}}
            )
            ids.append(
                Message.objects.create(
                    contact=person, sender=sender, status=MessageStatus.QUEUED, **fields
                ).pk
            )
        return ids

    counts = []
    for size in (2, 8):
        ids = batch(size)
        with CaptureQueriesContext(connection) as queries:
            outcomes = messages_send(ids)
        assert {o.status for o in outcomes.values()} == {"sent"}
        counts.append(len(queries))
    assert counts[0] == counts[1]


def test_an_answer_that_comes_after_the_sweeper_gave_up_still_records_the_send(monkeypatch):
    """Meta accepted a message whose answer was so slow that the sweeper moved it to `unconfirmed`
    meanwhile: Meta's id settles it (sent, the log says so); the rest of the batch is recorded as usual."""
    sender = sender_get_default()
    people = [ContactFactory(last_inbound_at=timezone.now() - timedelta(hours=1)) for _ in range(3)]
    batch = [
        Message.objects.create(
            contact=person, sender=sender, kind="text", content={"body": "hi"}, status=MessageStatus.QUEUED
        )
        for person in people
    ]
    slow = batch[1]
    real_send_all = sending._send_all

    def send_all_while_the_sweeper_runs(cleared):
        attempts = real_send_all(cleared)
        Message.objects.filter(pk=slow.pk).update(status=MessageStatus.UNCONFIRMED)
        return attempts

    monkeypatch.setattr(sending, "_send_all", send_all_while_the_sweeper_runs)

    outcomes = messages_send([m.pk for m in batch])

    assert {o.status for o in outcomes.values()} == {"sent"}
    for message in batch:
        message.refresh_from_db()
        assert message.status == MessageStatus.SENT and message.provider_message_id.startswith("wamid.")
    assert "after a slow answer" in slow.status_events.last().detail
    assert batch[0].status_events.last().detail.startswith("accepted by Meta")
