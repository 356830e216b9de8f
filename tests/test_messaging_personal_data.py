"""Messaging's part of privacy requests (messaging.personal_data, messaging.directory): what a person
gets back when they ask what we hold, what erasing them removes (and what it must leave of other
people), corrections, the WhatsApp notices about their request, and that an erased number cannot come
back unless the person writes to us themselves."""

import io
import json
from datetime import timedelta

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.utils import timezone

from compliance.contacts import directory
from compliance.personal_data import Person, holders, phone_formats
from compliance.privacy import privacy_request_file
from compliance.suppression import suppression_add
from messaging.contact_csv import contact_csv_import
from messaging.models import (
    Contact,
    Message,
    MessageStatus,
    MessageStatusEvent,
    PendingStatus,
    ProviderAlert,
    ProviderCall,
    Tag,
    WebhookEvent,
)
from messaging.outbound import message_compose
from messaging.personal_data import MessagingPersonalData
from messaging.services import contact_create, contact_update
from messaging.webhook_processing import webhook_event_process
from messaging.whatsapp import webhook_payloads
from messaging.whatsapp.base import SenderRef
from templates_app.models import MessageTemplate, TemplateStatus
from tests.factories import ContactFactory, UserFactory
from tests.webhook_client import post_webhook

pytestmark = pytest.mark.django_db

SENDER = SenderRef("100200300400500", "+15550100000", "900800700600500")  # config/test_settings.py
AVA = "+15550123456"
BEN = "+15550987654"
AVA_ASKS = "Do you have the Trail 500 in size 42 for my brother?"
BEN_ASKS = "Is the Flatiron shop open on Sunday afternoon?"

holder = MessagingPersonalData()


def deliver(client, value: dict, *, field: str = "messages") -> WebhookEvent:
    response = post_webhook(client, webhook_payloads.envelope(SENDER, value, field=field))
    assert response.status_code == 200
    event = WebhookEvent.objects.order_by("-id").first()
    assert (event.state, event.error) == (WebhookEvent.State.PROCESSED, "")
    return event


def inbound(wa_id: str, wamid: str, text: str, name: str) -> dict:
    return webhook_payloads.inbound_text_value(wamid=wamid, from_wa_id=wa_id, text=text, profile_name=name)


def batched(*values: dict) -> dict:
    """Several people's items in one delivery, as Meta batches them."""
    merged: dict = {}
    for value in values:
        for key, items in value.items():
            merged.setdefault(key, []).extend(items)
    return merged


def send_text(contact: Contact, text: str, capture) -> Message:
    """Compose and send through the whole pipeline (memory backend), as a trusted staff member."""
    user = UserFactory(username="trusted")
    user.user_permissions.add(Permission.objects.get(codename="send_without_approval"))
    user = type(user).objects.get(pk=user.pk)
    with capture(execute=True):
        message = message_compose(
            to_number=contact.phone_number, message_type="text", data={"text": text}, created_by=user
        )
    message.refresh_from_db()
    assert message.status == MessageStatus.SENT
    return message


def statuses(client, message: Message, *names: str) -> None:
    for step, name in enumerate(names):
        deliver(
            client,
            webhook_payloads.status_value(
                wamid=message.provider_message_id,
                status=name,
                recipient_wa_id=message.contact.phone_number.lstrip("+"),
                timestamp=int(timezone.now().timestamp()) + 1 + step,
            ),
        )


@pytest.fixture
def ava(client):
    """Ava wrote to us (the window is open) and has tags staff gave her."""
    deliver(client, inbound("15550123456", "wamid.AVA-IN-1", AVA_ASKS, "Ava Jones"))
    contact = Contact.objects.get(phone_number=AVA)
    return contact_update(contact=contact, tags=["VIP", "bikes"], locale="en_US", timezone="America/New_York")


@pytest.fixture
def ben(client):
    deliver(client, inbound("15550987654", "wamid.BEN-IN-1", BEN_ASKS, "Ben Okafor"))
    return Contact.objects.get(phone_number=BEN)


def test_the_messaging_holder_is_registered_at_startup():
    assert "messaging" in [h.name for h in holders()]
    assert [f.name for f in holder.correctable_fields()] == ["name", "locale", "timezone"]


# --- Right to know ----------------------------------------------------------------------------------


def test_collect_lists_categories_and_every_message_without_our_secrets(
    client, ava, django_capture_on_commit_callbacks
):
    reply = send_text(
        ava, "Yes Ava, the Trail 500 in size 42 is in stock.", django_capture_on_commit_callbacks
    )
    statuses(client, reply, "delivered", "read")

    held = holder.personal_data_collect(Person(phone_number=AVA, contact_id=ava.pk))

    by_category = {c.category: c for c in held.categories}
    assert by_category["Identifiers"].count == 1
    assert "phone number" in by_category["Identifiers"].pieces
    assert "WhatsApp profile name" in by_category["Identifiers"].pieces
    assert by_category["Commercial information"].count == 2
    assert "sent us (1)" in by_category["Commercial information"].pieces
    assert by_category["Internet or other electronic network activity"].count == 2  # delivered, read
    (contact,) = held.pieces["contacts"]
    assert (contact["phone_number"], contact["profile_name"], contact["tags"]) == (
        AVA,
        "Ava Jones",
        ["bikes", "vip"],
    )
    written, answered = held.pieces["messages"]
    assert (written["direction"], written["text"], written["status"]) == ("from you", AVA_ASKS, "received")
    assert written["content"]["text"]["body"] == AVA_ASKS
    assert answered["direction"] == "to you"
    assert answered["text"] == "Yes Ava, the Trail 500 in size 42 is in stock."
    assert answered["status"] == "read"
    assert [s["status"] for s in answered["status_history"]][-2:] == ["delivered", "read"]
    assert answered["pricing"]["billable"] is True
    package = json.dumps(held.pieces)
    assert ProviderCall.objects.filter(message=reply).exists()
    assert "test-access-token" not in package  # no delivery log, no credentials
    assert "trusted" not in package  # no staff names


def test_collect_for_someone_we_do_not_know_is_empty():
    held = holder.personal_data_collect(Person(phone_number="+15550111111"))
    assert (held.categories, held.pieces) == ([], {})


# --- Erasure ---------------------------------------------------------------------------------------


def test_erase_deletes_the_person_and_counts_every_store(
    client, ava, ben, django_capture_on_commit_callbacks
):
    reply = send_text(
        ava, "Yes Ava, the Trail 500 in size 42 is in stock.", django_capture_on_commit_callbacks
    )
    statuses(client, reply, "delivered", "read")
    ben_reply = send_text(ben, "We open at noon on Sundays, Ben.", django_capture_on_commit_callbacks)
    ava_events = MessageStatusEvent.objects.filter(message__contact=ava).count()

    counts = holder.personal_data_erase(Person(phone_number=AVA, contact_id=ava.pk, names=("Ava Jones",)))

    assert counts["contacts deleted"] == 1
    assert counts["messages deleted"] == 2
    assert counts["status events deleted"] == ava_events
    assert counts["provider calls deleted"] == 1
    assert counts["webhook events redacted"] == 3  # her message and the two statuses
    assert counts["pending statuses deleted"] == 0
    assert not Contact.objects.filter(phone_number=AVA).exists()
    assert not Message.objects.filter(provider_message_id__in=["wamid.AVA-IN-1", reply.provider_message_id])
    # Ben is untouched.
    assert Contact.objects.get(phone_number=BEN).profile_name == "Ben Okafor"
    assert Message.objects.filter(contact=ben).count() == 2
    assert ProviderCall.objects.filter(message=ben_reply).count() == 1
    ben_event = WebhookEvent.objects.get(raw_body__contains="wamid.BEN-IN-1")
    assert "erased" not in ben_event.summary and BEN_ASKS in ben_event.raw_body


def test_a_batched_webhook_loses_only_the_erased_persons_items(client):
    body = batched(
        inbound("15550123456", "wamid.AVA-IN-1", AVA_ASKS, "Ava Jones"),
        inbound("15550987654", "wamid.BEN-IN-1", "Ava's number is (555) 012-3456, call her", "Ben Okafor"),
        inbound("15550987654", "wamid.BEN-IN-2", BEN_ASKS, "Ben Okafor"),
    )
    event = deliver(client, body)
    ava = Contact.objects.get(phone_number=AVA)

    counts = holder.personal_data_erase(Person(phone_number=AVA, contact_id=ava.pk, names=("Ava Jones",)))

    event.refresh_from_db()
    value = json.loads(event.raw_body)["entry"][0]["changes"][0]["value"]
    assert [c["wa_id"] for c in value["contacts"]] == ["15550987654", "15550987654"]
    assert [m["id"] for m in value["messages"]] == ["wamid.BEN-IN-1", "wamid.BEN-IN-2"]
    # Ben's message quoting her number keeps his words, not her number.
    assert value["messages"][0]["text"]["body"] == "Ava's number is [erased], call her"
    assert value["messages"][1]["text"]["body"] == BEN_ASKS
    assert value["metadata"]["phone_number_id"] == SENDER.phone_number_id
    for trace in [*phone_formats(AVA), "Ava Jones", AVA_ASKS]:
        assert trace not in event.raw_body
    assert event.summary["erased"] == 2  # her contacts entry and her message
    assert event.summary["message"] == 3  # what processing recorded stays
    assert counts["webhook events redacted"] == 1
    assert counts["other people's messages redacted"] == 1
    quoting = Message.objects.get(provider_message_id="wamid.BEN-IN-1")
    assert quoting.preview == "Ava's number is [erased], call her"
    assert quoting.content["text"]["body"] == "Ava's number is [erased], call her"

    # Replaying the stored delivery (staff, the sweeper) cannot bring her back.
    webhook_event_process(event.pk)
    assert not Contact.objects.filter(phone_number=AVA).exists()
    assert Message.objects.filter(contact__phone_number=BEN).count() == 2


def test_erase_removes_pending_statuses_and_redacts_alerts_about_the_person(client, ava):
    deliver(
        client,
        webhook_payloads.status_value(
            wamid="wamid.NOT-YET-OURS", status="sent", recipient_wa_id="15550123456"
        ),
    )
    deliver(
        client,
        webhook_payloads.status_value(
            wamid="wamid.BENS-PENDING", status="sent", recipient_wa_id="15550987654"
        ),
    )
    assert PendingStatus.objects.count() == 2
    about_her = ProviderAlert.objects.create(
        kind="inbound_unmatched",
        title="Inbound message from +1 555-012-3456 not stored",
        details="Ava Jones wrote while no sender was configured",
        payload={"from": "15550123456", "text": {"body": AVA_ASKS}},
    )
    unrelated = ProviderAlert.objects.create(
        kind="account_alerts", title="Throughput limit reached", payload={"code": 130429}
    )

    counts = holder.personal_data_erase(Person(phone_number=AVA, contact_id=ava.pk))

    assert counts["pending statuses deleted"] == 1
    assert list(PendingStatus.objects.values_list("provider_message_id", flat=True)) == ["wamid.BENS-PENDING"]
    assert counts["alerts redacted"] == 1
    about_her.refresh_from_db()
    assert about_her.title == "Inbound message from [erased] not stored"
    assert about_her.details == "[erased] wrote while no sender was configured"
    assert about_her.payload == {"erased": "[erased]"}
    unrelated.refresh_from_db()
    assert unrelated.payload == {"code": 130429}


def test_a_number_inside_a_longer_number_is_someone_elses(client):
    # The review's case: erasing +4930123456 must not touch Greta, whose WhatsApp id 49301234567
    # begins with those digits, nor an order number that contains them.
    hans, greta_wa = "+4930123456", "49301234567"
    quoting = "Hans gave me his number, 030 123456. Is order 30123456789 ready?"
    order_only = "Order 30123456789 and 4930123456789 please"
    ContactFactory(phone_number=hans, wa_id="4930123456")  # (a wa_id without "+" reads as a US number)
    event = deliver(
        client,
        batched(
            inbound("4930123456", "wamid.HANS-IN-1", "Guten Tag, ich möchte bestellen", "Hans Weber"),
            inbound(greta_wa, "wamid.GRETA-IN-1", quoting, "Greta Braun"),
            inbound(greta_wa, "wamid.GRETA-IN-2", order_only, "Greta Braun"),
        ),
    )
    greta = Contact.objects.get(wa_id=greta_wa)

    counts = holder.personal_data_erase(Person(phone_number=hans, names=("Hans Weber",)))

    assert counts["contacts deleted"] == 1
    assert counts["other people's messages redacted"] == 1  # the one quoting his number, not the order
    event.refresh_from_db()
    value = json.loads(event.raw_body)["entry"][0]["changes"][0]["value"]
    assert [c["wa_id"] for c in value["contacts"]] == [greta_wa, greta_wa]
    assert [m["from"] for m in value["messages"]] == [greta_wa, greta_wa]
    assert [m["text"]["body"] for m in value["messages"]] == [
        "Hans gave me his number, [erased]. Is order 30123456789 ready?",
        order_only,
    ]
    greta.refresh_from_db()
    assert (greta.phone_number, greta.wa_id) == ("+49301234567", greta_wa)
    untouched = Message.objects.get(provider_message_id="wamid.GRETA-IN-2")
    assert (untouched.preview, untouched.content["text"]["body"]) == (order_only, order_only)
    assert Message.objects.get(provider_message_id="wamid.GRETA-IN-1").preview == (
        "Hans gave me his number, [erased]. Is order 30123456789 ready?"
    )


def test_other_peoples_items_and_alerts_keep_the_words_that_name_the_person(client):
    bens_words = "Ava Jones told me about you. Is the Flatiron shop open on Sunday?"
    event = deliver(
        client,
        batched(
            inbound("15550123456", "wamid.AVA-IN-1", AVA_ASKS, "Ava Jones"),
            inbound("15550987654", "wamid.BEN-IN-1", bens_words, "Ben Okafor"),
        ),
    )
    ava = Contact.objects.get(phone_number=AVA)
    # Alerts from the same delivery and elsewhere that are about Ben, or no one, and share her name.
    about_ben = ProviderAlert.objects.create(
        kind="inbound_unmatched",
        webhook_event=event,
        title="Inbound message from +1 555-098-7654 not stored",
        details="Ben Okafor asked about Ava Jones",
        payload={"from": "15550987654", "text": {"body": bens_words}},
    )
    about_no_one = ProviderAlert.objects.create(
        kind="account_alerts", title="Campaign “Ava Jones picks” paused", payload={"code": 131049}
    )

    counts = holder.personal_data_erase(Person(phone_number=AVA, contact_id=ava.pk, names=("Ava Jones",)))

    event.refresh_from_db()
    value = json.loads(event.raw_body)["entry"][0]["changes"][0]["value"]
    assert [m["text"]["body"] for m in value["messages"]] == [bens_words]
    assert value["contacts"] == [{"profile": {"name": "Ben Okafor"}, "wa_id": "15550987654"}]
    assert AVA_ASKS not in event.raw_body and "15550123456" not in event.raw_body
    assert Message.objects.get(provider_message_id="wamid.BEN-IN-1").preview == bens_words
    assert counts["alerts redacted"] == 0
    for alert, before in ((about_ben, "Ben Okafor asked about Ava Jones"), (about_no_one, "")):
        alert.refresh_from_db()
        assert alert.details == before
    assert about_ben.payload["text"]["body"] == bens_words
    assert about_no_one.title == "Campaign “Ava Jones picks” paused"


def test_admin_history_of_the_persons_contact_and_messages_is_redacted(ava, ben):
    staff = UserFactory(username="staff")
    contact_type, message_type, tag_type = (
        ContentType.objects.get_for_model(model) for model in (Contact, Message, Tag)
    )
    namesake = ContactFactory(phone_number="+15550111111", profile_name="Ava Jones")
    her_message = Message.objects.get(contact=ava)

    def logged(content_type, object_id, repr_, message="[]") -> LogEntry:
        return LogEntry.objects.create(
            user=staff,
            content_type=content_type,
            object_id=str(object_id),
            object_repr=repr_,
            action_flag=CHANGE,
            change_message=message,
        )

    hers = [
        logged(contact_type, ava.pk, str(ava), '[{"changed": {"fields": ["Time zone"]}}]'),
        logged(message_type, her_message.pk, "Do you have the Trail 500…"),
        logged(tag_type, 1, "bikes", "Added for the customer at (555) 012-3456"),
    ]
    others = [
        logged(contact_type, namesake.pk, str(namesake), '[{"changed": {"fields": ["Locale"]}}]'),
        logged(contact_type, ben.pk, str(ben), "Ben asked about Ava Jones"),
        logged(tag_type, 2, "orders", "Order 5550123456789 tagged"),
    ]

    counts = holder.personal_data_erase(Person(phone_number=AVA, contact_id=ava.pk, names=("Ava Jones",)))

    assert counts["admin history entries redacted"] == 3
    for entry in hers:
        entry.refresh_from_db()
        assert (entry.object_repr, entry.change_message) == ("[erased]", "")
    for entry in others:
        before = (entry.object_repr, entry.change_message)
        entry.refresh_from_db()
        assert (entry.object_repr, entry.change_message) == before
    assert others[0].object_repr == "Ava Jones (+15550111111)"


def test_contact_ids_for_person_finds_every_contact_that_is_the_person():
    current = ContactFactory(phone_number=AVA, wa_id="15550123456", user_id="US.1234567890123456789")
    # Staff filed her under her landline; her WhatsApp messages then came to that contact (by wa_id).
    same_wa_id = ContactFactory(phone_number="+15550111111", wa_id="15550123456")
    same_user_id = ContactFactory(phone_number="+15550122222", wa_id="", user_id="US.1234567890123456789")
    ben = ContactFactory(phone_number=BEN)

    ids = directory().contact_ids_for_person(AVA)

    assert ids == sorted([current.pk, same_wa_id.pk, same_user_id.pk])
    # A contact compliance knows is her (Person.contact_ids) is erased with the others.
    stray = ContactFactory(phone_number="+15550133333", wa_id="")
    counts = holder.personal_data_erase(Person(phone_number=AVA, contact_ids=(*ids, stray.pk)))
    assert counts["contacts deleted"] == 4
    assert list(Contact.objects.values_list("pk", flat=True)) == [ben.pk]


# --- Correction ------------------------------------------------------------------------------------


def test_corrections_change_the_contact_and_name_the_changed_fields(ava):
    person = Person(phone_number=AVA, contact_id=ava.pk)

    changed = holder.personal_data_correct(
        person,
        {"name": "Ava Jones-Smith", "locale": "es-mx", "timezone": "america/los_angeles", "email": "x@y.z"},
    )

    assert changed == ["locale", "name", "timezone"]
    ava.refresh_from_db()
    assert (ava.profile_name, ava.locale, ava.timezone) == ("Ava Jones-Smith", "es_MX", "America/Los_Angeles")
    # The same values again change nothing.
    assert (
        holder.personal_data_correct(person, {"name": "Ava Jones-Smith", "timezone": "America/Los_Angeles"})
        == []
    )


def test_a_corrected_name_outlasts_the_whatsapp_profile_name_of_later_messages(client, ava, ben):
    holder.personal_data_correct(Person(phone_number=AVA, contact_id=ava.pk), {"name": "Ava Jones-Smith"})
    ava.refresh_from_db()
    assert ava.name_corrected_at is not None

    deliver(client, inbound("15550123456", "wamid.AVA-IN-2", "Any news on the helmet?", "Ava Jones"))
    deliver(client, inbound("15550987654", "wamid.BEN-IN-2", "Thanks!", "Ben O."))

    ava.refresh_from_db()
    assert ava.profile_name == "Ava Jones-Smith"
    assert Message.objects.get(provider_message_id="wamid.AVA-IN-2").contact == ava
    ben.refresh_from_db()
    assert ben.profile_name == "Ben O."  # without a correction, WhatsApp's name still wins
    # Staff can still change it; a later message does not undo that either.
    contact_update(contact=ava, profile_name="Ava J. Smith")
    deliver(client, inbound("15550123456", "wamid.AVA-IN-3", "Hello?", "Ava Jones"))
    ava.refresh_from_db()
    assert ava.profile_name == "Ava J. Smith"


def test_bad_corrections_are_refused_field_by_field_and_change_nothing(ava):
    with pytest.raises(ValidationError) as excinfo:
        holder.personal_data_correct(
            Person(phone_number=AVA),
            {"name": "Ava J", "locale": "English please", "timezone": "Mars/Olympus"},
        )
    codes = {field: [e.code for e in errors] for field, errors in excinfo.value.error_dict.items()}
    assert codes == {"locale": ["invalid_locale"], "timezone": ["invalid_timezone"]}
    ava.refresh_from_db()
    assert (ava.profile_name, ava.timezone) == ("Ava Jones", "America/New_York")

    with pytest.raises(ValidationError) as excinfo:
        holder.personal_data_correct(Person(phone_number=AVA), {"name": "   "})
    assert excinfo.value.error_dict["name"][0].code == "required"


# --- Notices about the request ----------------------------------------------------------------------


@pytest.fixture
def notice_template():
    return MessageTemplate.objects.create(
        waba_id=SENDER.waba_id,
        name="privacy_notice",
        language="en_US",
        category="UTILITY",
        status=TemplateStatus.APPROVED,
        components=[
            {
                "type": "BODY",
                "text": "Your privacy request {{1}} was received.",
                "example": {"body_text": [["PR-1234"]]},
            }
        ],
    )


def test_person_notify_queues_the_approved_template_with_its_parameters(notice_template):
    # Last wrote two days ago: only a template can reach her, and this one may.
    contact = ContactFactory(phone_number=AVA, last_inbound_at=timezone.now() - timedelta(days=2))

    queued = directory().person_notify(
        contact_id=contact.pk, text="unused", template="privacy_notice", parameters=["PR-9XK2"]
    )

    assert queued is True
    message = Message.objects.get(contact=contact)
    assert (message.kind, message.template, message.purpose) == (
        "template",
        notice_template,
        "privacy_request",
    )
    assert message.preview == "Your privacy request PR-9XK2 was received."
    assert message.status == MessageStatus.QUEUED
    assert "unused" not in message.status_events.get().detail


def test_person_notify_sends_text_inside_the_window_and_reports_a_refusal():
    inside = ContactFactory(phone_number=AVA, last_inbound_at=timezone.now() - timedelta(hours=1))
    outside = ContactFactory(phone_number=BEN, last_inbound_at=timezone.now() - timedelta(days=2))
    code_text = "Your verification code is 481516."

    assert directory().person_notify(contact_id=inside.pk, text=code_text, template="no_such_template")
    message = Message.objects.get(contact=inside)
    assert (message.kind, message.preview, message.purpose) == ("text", code_text, "privacy_request")
    assert "481516" not in message.status_events.get().detail  # the code stays out of the timeline

    # Outside the 24-hour window the gate refuses free-form text: nothing queued, and the caller knows.
    assert directory().person_notify(contact_id=outside.pk, text=code_text) is False
    assert not Message.objects.filter(contact=outside).exists()
    assert directory().person_notify(contact_id=999_999, text=code_text) is False


def test_phone_number_normalize_goes_through_messagings_rules():
    assert directory().phone_number_normalize("(555) 012-3456") == AVA
    with pytest.raises(ValidationError) as excinfo:
        directory().phone_number_normalize("call me")
    assert excinfo.value.code == "invalid_phone_number"


# --- An erased number cannot come back (unless the person writes to us) -----------------------------


@pytest.fixture
def suppressed():
    return suppression_add(e164=AVA, reason="test: erased")


def test_contact_create_refuses_a_suppressed_number_in_any_format(suppressed):
    with pytest.raises(ValidationError) as excinfo:
        contact_create(phone_number="(555) 012-3456")
    (error,) = excinfo.value.error_dict["phone_number"]
    assert error.code == "suppressed"
    assert "suppression list" in error.message % error.params
    assert not Contact.objects.exists()

    with pytest.raises(ValidationError) as excinfo:
        directory().contact_for_phone(phone_number=AVA, create=True)  # compliance's opt-in path
    assert excinfo.value.error_dict["phone_number"][0].code == "suppressed"


def test_csv_import_reports_a_suppressed_number_as_a_row_error(suppressed):
    report = contact_csv_import(
        file=io.BytesIO(b"phone_number,name\n+1 555 012 3456,Ava\n+15550987654,Ben\n")
    )

    assert (report.created, report.failed) == (1, 1)
    (error,) = report.errors
    assert (error.line, error.column) == (2, "phone_number")
    assert "suppression list" in error.message
    assert list(Contact.objects.values_list("phone_number", flat=True)) == [BEN]


def test_the_contacts_api_refuses_a_suppressed_number_with_its_code(authed_client, suppressed):
    response = authed_client.post("/api/v1/contacts/", {"phone_number": "+1-555-012-3456"}, format="json")

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "suppressed"
    assert "suppression list" in body["errors"]["phone_number"][0]
    assert not Contact.objects.exists()


def test_staff_cannot_add_a_suppressed_number_in_the_admin_nor_change_a_contact_to_it(suppressed):
    from messaging.roles import COMPOSER
    from tests.staff import logged_in, user_in

    staff = logged_in(user_in(COMPOSER, username="composer"))
    response = staff.post("/admin/messaging/contact/add/", {"phone_number": "(555) 012-3456"})
    assert response.status_code == 200  # the form again, with the reason on the number
    assert "suppression list" in response.context["adminform"].form.errors["phone_number"][0]
    assert not Contact.objects.exists()

    ben = ContactFactory(phone_number=BEN)
    with pytest.raises(ValidationError) as excinfo:
        contact_update(contact=ben, phone_number=AVA)
    assert excinfo.value.error_dict["phone_number"][0].code == "suppressed"
    ben.refresh_from_db()
    assert ben.phone_number == BEN
    contact_update(contact=ben, phone_number=BEN, profile_name="Ben")  # an unrelated edit still works


def test_a_message_from_a_suppressed_number_is_still_stored(client, suppressed):
    deliver(client, inbound("15550123456", "wamid.AVA-AGAIN", "Hello again, it's me", "Ava Jones"))

    message = Message.objects.get(provider_message_id="wamid.AVA-AGAIN")
    assert message.contact.phone_number == AVA
    assert message.preview == "Hello again, it's me"


@pytest.fixture
def erased():
    """Ava's number, suppressed because she was erased at her request."""
    request = privacy_request_file(kind="delete", channel="email", phone_number=AVA)
    return suppression_add(e164=AVA, reason=f"erased ({request.reference})", privacy_request=request)


def late_statuses(client) -> WebhookEvent:
    return deliver(
        client,
        batched(
            webhook_payloads.status_value(
                wamid="wamid.AVA-GONE", status="read", recipient_wa_id="15550123456"
            ),
            webhook_payloads.status_value(
                wamid="wamid.BEN-SOON", status="sent", recipient_wa_id="15550987654"
            ),
        ),
    )


def test_a_late_status_for_an_erased_person_is_not_kept(client, erased):
    event = late_statuses(client)

    # Ben's status waits for its wamid as always; hers is dropped, and her number leaves the delivery.
    assert list(PendingStatus.objects.values_list("provider_message_id", flat=True)) == ["wamid.BEN-SOON"]
    event.refresh_from_db()
    value = json.loads(event.raw_body)["entry"][0]["changes"][0]["value"]
    assert [s["recipient_id"] for s in value["statuses"]] == ["15550987654"]
    assert not any(shape in event.raw_body for shape in phone_formats(AVA))


def test_a_late_status_for_a_number_suppressed_for_another_reason_waits_as_usual(client, suppressed):
    late_statuses(client)  # a complaint or a legal hold: nothing is erased, the status is kept

    assert PendingStatus.objects.count() == 2
