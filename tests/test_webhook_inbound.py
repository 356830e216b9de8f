"""Inbound messages, Meta's user preferences and template updates, replayed through the real webhook
endpoint with Meta's signature: what staff then see (the message row, its preview, the contact, the
24-hour window) and what must never happen twice."""

import json
from datetime import UTC, datetime, timedelta

import pytest

from compliance.models import ConsentEvent, ConsentSource, ConsentStatus
from compliance.services import (
    Evidence,
    consent_evidence,
    consent_record,
    consent_status,
    consent_text_create,
)
from messaging.models import Contact, Message, MessageStatus, ProviderAlert, WebhookEvent
from messaging.webhook_processing import webhook_event_process
from templates_app.models import MessageTemplate, QualityRating, TemplateStatus, TemplateStatusChange
from tests.factories import ContactFactory, SenderFactory
from tests.webhook_client import load_fixture, post_webhook

pytestmark = pytest.mark.django_db

FIXTURE_TIME = datetime(2025, 6, 10, 13, 0, tzinfo=UTC)  # every fixture's "timestamp": "1749560400"
AVA_PHONE = "+15550123456"


def deliver(client, name_or_body) -> WebhookEvent:
    body = load_fixture(name_or_body) if isinstance(name_or_body, str) else name_or_body
    response = post_webhook(client, body)
    assert response.status_code == 200
    event = WebhookEvent.objects.order_by("-id").first()
    assert event.state == WebhookEvent.State.PROCESSED, event.error
    return event


def meta_message(name: str) -> dict:
    return load_fixture(name)["entry"][0]["changes"][0]["value"]["messages"][0]


def inbound() -> Message:
    return Message.objects.get(direction=Message.Direction.INBOUND)


@pytest.fixture
def our_order_message():
    """The outbound message several fixtures reply or react to."""
    contact = ContactFactory(phone_number=AVA_PHONE, wa_id="15550123456", profile_name="Ava")
    return Message.objects.create(
        contact=contact,
        sender=SenderFactory(phone_number_id="100200300400500"),
        kind=Message.Kind.TEXT,
        content={"body": "Your order has shipped"},
        preview="Your order has shipped",
        status=MessageStatus.DELIVERED,
        provider_message_id="wamid.OUT-ORDER-0001",
    )


# --- One fixture per inbound type --------------------------------------------------------------------

CASES = {
    "inbound_text": (Message.Kind.TEXT, "Do you have the Trail 500 in size 42?"),
    "inbound_image": (Message.Kind.IMAGE, "📷 Photo: Is this the right brake pad?"),
    "inbound_video": (Message.Kind.VIDEO, "🎥 Video: The noise my chain makes"),
    "inbound_audio_voice": (Message.Kind.AUDIO, "🎤 Voice message"),
    "inbound_document_forwarded": (Message.Kind.DOCUMENT, "📄 Document: receipt-2025-06.pdf — My receipt"),
    "inbound_sticker": (Message.Kind.STICKER, "💟 Sticker (animated)"),
    "inbound_location": (
        Message.Kind.LOCATION,
        "📍 Location: Acme Bikes Flatiron, 10 W 23rd St, New York, NY",
    ),
    "inbound_contacts": (Message.Kind.CONTACTS, "👤 2 contacts: Ben Okafor, Chen"),
    "inbound_interactive_button_reply": (Message.Kind.INTERACTIVE, "Tapped “Tuesday 10:00”"),
    "inbound_interactive_list_reply": (Message.Kind.INTERACTIVE, "Chose “Size 42” (In stock in Flatiron)"),
    "inbound_interactive_nfm_reply": (Message.Kind.INTERACTIVE, "📝 Form sent: Sent"),
    "inbound_button_quick_reply": (Message.Kind.INTERACTIVE, "Tapped “Track my order”"),
    "inbound_text_referral": (Message.Kind.TEXT, "I saw your ad, tell me more"),
    "inbound_unsupported": (
        Message.Kind.UNSUPPORTED,
        "⚠️ Unsupported message (poll): Message type unknown Message type is currently not supported.",
    ),
}


@pytest.mark.parametrize(("fixture", "expected"), CASES.items(), ids=list(CASES))
def test_each_inbound_type_becomes_a_message_staff_can_read(client, fixture, expected):
    kind, preview = expected

    deliver(client, fixture)

    message = inbound()
    assert (message.kind, message.preview) == (kind, preview)
    assert message.status == MessageStatus.RECEIVED
    assert message.content == meta_message(fixture)  # Meta's object, whole: media ids, flags, referral
    assert message.provider_timestamp == FIXTURE_TIME
    assert message.sender.phone_number_id == "100200300400500"
    contact = message.contact
    assert (contact.phone_number, contact.wa_id, contact.profile_name) == (
        AVA_PHONE,
        "15550123456",
        "Ava Jones",
    )
    assert contact.user_id == "US.1234567890123456789"
    assert contact.last_inbound_at == FIXTURE_TIME  # the 24-hour window runs from the message's time
    assert list(message.status_events.values_list("status", "source")) == [("received", "webhook")]


def test_media_details_and_forwarding_flags_are_kept(client):
    deliver(client, "inbound_document_forwarded")

    content = inbound().content
    assert content["document"]["id"] == "8642097531864209"
    assert content["document"]["mime_type"] == "application/pdf"
    assert content["document"]["sha256"].startswith("IDRPH0")
    assert content["context"] == {"forwarded": True, "frequently_forwarded": True}


def test_the_ad_that_brought_the_person_is_kept(client):
    deliver(client, "inbound_text_referral")

    assert inbound().content["referral"]["headline"] == "Spring sale: 20% off trail bikes"


def test_messages_carrying_errors_show_them(client):
    deliver(client, "inbound_unsupported")

    message = inbound()
    assert (message.error_code, message.error_title) == ("131051", "Message type unknown")
    assert message.error_details == "Message type is currently not supported."


def test_a_reply_points_at_our_message(client, our_order_message):
    deliver(client, "inbound_text_reply_context")

    message = inbound()
    assert message.reply_to == "wamid.OUT-ORDER-0001"
    assert message.in_reply_to == our_order_message
    assert list(our_order_message.replies.all()) == [message]


def test_a_reply_to_a_message_we_do_not_have_keeps_its_wamid(client):
    deliver(client, "inbound_text_reply_context")

    message = inbound()
    assert (message.reply_to, message.in_reply_to) == ("wamid.OUT-ORDER-0001", None)


def test_a_reaction_names_the_message_it_reacts_to(client, our_order_message):
    deliver(client, "inbound_reaction")

    message = inbound()
    assert message.kind == Message.Kind.REACTION
    assert message.preview == "Reacted 👍 to “Your order has shipped”"
    assert message.in_reply_to == our_order_message


def test_a_removed_reaction_says_so(client, our_order_message):
    deliver(client, "inbound_reaction_removed")

    assert inbound().preview == "Removed their reaction to “Your order has shipped”"


def test_an_existing_contact_is_found_by_wa_id_and_brought_up_to_date(client):
    existing = ContactFactory(
        phone_number=AVA_PHONE, wa_id="15550123456", profile_name="A. Jones", user_id=""
    )

    deliver(client, "inbound_text")

    existing.refresh_from_db()
    assert Contact.objects.count() == 1
    assert inbound().contact == existing
    assert (existing.profile_name, existing.user_id) == ("Ava Jones", "US.1234567890123456789")


def test_an_existing_contact_without_wa_id_is_found_by_phone_number(client):
    existing = ContactFactory(phone_number=AVA_PHONE, wa_id="")

    deliver(client, "inbound_text")

    existing.refresh_from_db()
    assert inbound().contact == existing and existing.wa_id == "15550123456"


# --- Username-only users (2026: no phone number in the webhook) --------------------------------------


def test_a_username_only_user_we_know_is_matched_by_user_id(client):
    known = ContactFactory(user_id="US.7777777777777777777", username="")

    deliver(client, "inbound_text_username_only")

    known.refresh_from_db()
    message = inbound()
    assert message.contact == known and message.preview == "Hi, is the shop open on Sunday?"
    assert known.username == "@kai.rides"
    assert known.last_inbound_at == FIXTURE_TIME


def test_a_username_only_user_we_do_not_know_becomes_an_alert_not_a_crash(client):
    deliver(client, "inbound_text_username_only")

    assert not Message.objects.exists() and not Contact.objects.exists()
    alert = ProviderAlert.objects.get(kind="inbound_unmatched")
    assert "without a phone number" in alert.title
    assert alert.payload["from_user_id"] == "US.7777777777777777777"


# --- Changed numbers ---------------------------------------------------------------------------------


def test_a_changed_number_moves_the_contact_to_it(client):
    contact = ContactFactory(phone_number=AVA_PHONE, wa_id="15550123456")

    deliver(client, "inbound_system_user_changed_number")

    contact.refresh_from_db()
    assert (contact.phone_number, contact.wa_id) == ("+15550129999", "15550129999")
    message = inbound()
    assert message.kind == Message.Kind.UNSUPPORTED and message.content["type"] == "system"
    assert message.preview == "🔔 User changed number: User Ava Jones changed from 15550123456 to 15550129999"
    # Meta's notice is not the person writing: it opens no customer-service window.
    assert contact.last_inbound_at is None


def test_a_changed_number_another_contact_already_has_is_reported_not_applied(client):
    contact = ContactFactory(phone_number=AVA_PHONE, wa_id="15550123456")
    other = ContactFactory(phone_number="+15550129999", wa_id="15550129999")

    event = deliver(client, "inbound_system_user_changed_number")

    contact.refresh_from_db()
    other.refresh_from_db()
    assert contact.phone_number == AVA_PHONE and other.phone_number == "+15550129999"
    alert = ProviderAlert.objects.get(kind="contact_number_conflict")
    assert alert.webhook_event == event and f"contact {other.pk}" in alert.title
    assert inbound().contact == contact  # the notice itself is still on record


# --- Deduplication and the window --------------------------------------------------------------------


def test_a_replayed_delivery_creates_nothing_new(client):
    event = deliver(client, "inbound_text")

    webhook_event_process(event.pk)
    post_webhook(client, load_fixture("inbound_text"))  # Meta redelivers the same bytes

    assert Message.objects.count() == 1 and Contact.objects.count() == 1


def test_the_same_wamid_in_another_delivery_creates_nothing_new(client):
    deliver(client, "inbound_text")
    body = load_fixture("inbound_text")
    body["entry"][0]["changes"][0]["value"]["messages"][0]["text"]["body"] = "edited on the way"

    deliver(client, body)

    assert Message.objects.count() == 1
    assert inbound().preview == "Do you have the Trail 500 in size 42?"


def test_a_late_redelivery_does_not_move_the_window_back(client):
    later = load_fixture("inbound_text")
    message = later["entry"][0]["changes"][0]["value"]["messages"][0]
    message["id"], message["timestamp"] = (
        "wamid.IN-LATER",
        str(int((FIXTURE_TIME + timedelta(hours=5)).timestamp())),
    )
    deliver(client, later)

    deliver(client, "inbound_text")  # older, arriving after

    assert Contact.objects.get().last_inbound_at == FIXTURE_TIME + timedelta(hours=5)
    assert Message.objects.count() == 2


def test_a_batch_with_several_messages_stores_each(client):
    body = load_fixture("inbound_text")
    value = body["entry"][0]["changes"][0]["value"]
    value["messages"] += [meta_message("inbound_image"), meta_message("inbound_location")]

    event = deliver(client, body)

    assert event.summary == {"message": 3}
    assert Message.objects.filter(direction="inbound").count() == 3


# --- Meta's user preferences -------------------------------------------------------------------------


@pytest.fixture
def ava_with_marketing():
    text = consent_text_create(version="v1", business_name="Acme Bikes", body="Offers. Reply STOP to stop.")
    contact = ContactFactory(phone_number=AVA_PHONE, wa_id="15550123456")
    for purpose in ("marketing", "utility"):
        consent_record(
            contact_id=contact.pk,
            phone_number=contact.phone_number,
            purpose=purpose,
            action="opt_in",
            source="import",
            evidence=Evidence(reason="CRM import"),
            text_version=text.version,
            occurred_at=FIXTURE_TIME - timedelta(days=30),
        )
    return contact


def test_meta_stop_opts_out_of_marketing_only_with_metas_evidence(client, ava_with_marketing):
    contact = ava_with_marketing

    deliver(client, "user_preferences_stop")

    assert consent_status(contact_id=contact.pk, purpose="marketing") == ConsentStatus.REVOKED
    assert consent_status(contact_id=contact.pk, purpose="utility") == ConsentStatus.GRANTED
    event = ConsentEvent.objects.get(source=ConsentSource.META_USER_PREFERENCES)
    assert event.occurred_at == FIXTURE_TIME
    evidence = consent_evidence(event)
    assert "User requested to stop marketing messages" in evidence["reason"]
    assert evidence["message_id"].startswith("user_preferences:15550123456:stop:")


def test_meta_stop_replayed_records_once(client, ava_with_marketing):
    event = deliver(client, "user_preferences_stop")

    webhook_event_process(event.pk)

    assert ConsentEvent.objects.filter(source=ConsentSource.META_USER_PREFERENCES).count() == 1


def test_meta_resume_restores_the_marketing_consent_it_stopped(client, ava_with_marketing):
    contact = ava_with_marketing
    deliver(client, "user_preferences_stop")

    event = deliver(client, "user_preferences_resume")
    webhook_event_process(event.pk)  # and a replay changes nothing more

    assert consent_status(contact_id=contact.pk, purpose="marketing") == ConsentStatus.GRANTED
    restored = ConsentEvent.objects.filter(source=ConsentSource.META_USER_PREFERENCES).order_by("sequence")
    assert [e.action for e in restored] == ["opt_out", "opt_in"]
    assert restored.last().text_version == "v1"  # the wording the person originally agreed to


def test_meta_resume_grants_nothing_to_someone_who_never_consented(client):
    deliver(client, "user_preferences_stop")
    deliver(client, "user_preferences_resume")

    contact = Contact.objects.get(phone_number=AVA_PHONE)
    assert consent_status(contact_id=contact.pk, purpose="marketing") == ConsentStatus.REVOKED


def test_meta_resume_does_not_undo_a_stop_the_person_sent_us(client, ava_with_marketing):
    contact = ava_with_marketing
    consent_record(
        contact_id=contact.pk,
        phone_number=contact.phone_number,
        purpose="marketing",
        action="opt_out",
        source="whatsapp_keyword",
        evidence=Evidence(message_id="wamid.STOP"),
    )

    deliver(client, "user_preferences_resume")

    assert consent_status(contact_id=contact.pk, purpose="marketing") == ConsentStatus.REVOKED


def test_an_unknown_preference_category_is_shown_to_staff(client):
    body = load_fixture("user_preferences_stop")
    body["entry"][0]["changes"][0]["value"]["user_preferences"][0]["category"] = "calls"

    deliver(client, body)

    assert "calls = stop is not handled" in ProviderAlert.objects.get(kind="user_preferences").title
    assert not ConsentEvent.objects.exists()


# --- Template webhooks -------------------------------------------------------------------------------


@pytest.fixture
def order_shipped():
    return MessageTemplate.objects.create(
        waba_id="900800700600500",
        name="order_shipped",
        language="en_US",
        category="UTILITY",
        status=TemplateStatus.PENDING,
        meta_template_id="1689556908129832",
        components=[{"type": "BODY", "text": "Your order {{1}} has shipped."}],
    )


def test_template_approved(client, order_shipped):
    deliver(client, "template_status_approved")

    order_shipped.refresh_from_db()
    assert order_shipped.status == TemplateStatus.APPROVED and order_shipped.rejected_reason == ""
    change = TemplateStatusChange.objects.get(template=order_shipped)
    assert (change.old_status, change.new_status, change.source) == ("PENDING", "APPROVED", "webhook")


def test_template_rejected_with_reason_and_recommendation(client, order_shipped):
    deliver(client, "template_status_rejected")

    order_shipped.refresh_from_db()
    assert order_shipped.status == TemplateStatus.REJECTED
    assert order_shipped.rejected_reason == "INVALID_FORMAT"
    assert "Separate adjacent variables" in order_shipped.meta_recommendation


def test_template_paused(client, order_shipped):
    MessageTemplate.objects.filter(pk=order_shipped.pk).update(status=TemplateStatus.APPROVED)

    deliver(client, "template_status_paused")

    order_shipped.refresh_from_db()
    assert order_shipped.status == TemplateStatus.PAUSED and not order_shipped.is_sendable
    assert "paused for 3 hours" in order_shipped.meta_recommendation


def test_template_quality_change(client, order_shipped):
    deliver(client, "template_quality_update")

    order_shipped.refresh_from_db()
    assert order_shipped.quality_rating == QualityRating.YELLOW


def test_template_category_change(client, order_shipped):
    deliver(client, "template_category_update")

    order_shipped.refresh_from_db()
    assert order_shipped.category == "MARKETING"
    change = TemplateStatusChange.objects.get(template=order_shipped)
    assert "from UTILITY to MARKETING" in change.reason


def test_an_update_for_a_template_we_do_not_have_is_ignored(client):
    event = deliver(client, "template_status_approved")

    assert not MessageTemplate.objects.exists()
    assert json.loads(event.raw_body)["entry"][0]["changes"][0]["field"] == "message_template_status_update"
