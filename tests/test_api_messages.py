"""The messages API: compose in the shapes businesses use, two-person approval, every refusal as a coded
4xx (never a 500), idempotent retries, filtered listing, and the status history."""

import uuid
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.urls import include, path
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from rest_framework.routers import SimpleRouter
from rest_framework.test import APIClient

from compliance.crypto import phone_keyed_hash
from compliance.gate import Decision, Verdict
from compliance.models import ConsentText, Suppression
from compliance.services import Evidence, consent_opt_out_everywhere, consent_record, consent_text_create
from messaging.models import Message, MessageStatus
from messaging.services import api_token_create
from messaging.whatsapp import WhatsAppApiError
from messaging.whatsapp.memory import MemoryBackend
from templates_app.models import MessageTemplate, TemplateStatus
from tests.factories import ContactFactory, SenderFactory, UserFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/messages/"
TO = "+15550123456"
WABA = "900800700600500"  # the default sender's business account (config/test_settings.py)


def grant(user, *codenames):
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))


def client_for(user) -> APIClient:
    client = APIClient()
    _, token = api_token_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


@pytest.fixture
def contact():
    # Wrote to us an hour ago: the 24-hour window is open for free-form messages.
    return ContactFactory(phone_number=TO, last_inbound_at=timezone.now() - timedelta(hours=1))


@pytest.fixture
def composer(authed_client, api_user):
    """The API user may write and read messages, but needs a second person's approval."""
    grant(api_user, "add_message", "view_message")
    return authed_client


@pytest.fixture
def trusted(composer, api_user):
    grant(api_user, "send_without_approval")
    return composer


@pytest.fixture
def approver():
    user = UserFactory(username="approver")
    grant(user, "approve_message", "view_message")
    return client_for(user)


def post(client, body, **headers):
    return client.post(URL, body, format="json", headers=headers or None)


def text(**extra):
    return {"message_type": "text", "to_number": "+1-555-0123456", "text": "Your order shipped.", **extra}


def make_template(*, name="order_confirmation", category="UTILITY", status=TemplateStatus.APPROVED):
    return MessageTemplate.objects.create(
        waba_id=WABA,
        name=name,
        language="en_US",
        category=category,
        status=status,
        components=[
            {"type": "BODY", "text": "Hi {{1}}, order {{2}} is confirmed."},
            {"type": "BUTTONS", "buttons": [
                {"type": "URL", "text": "Track", "url": "https://shop.example/track/{{1}}"},
            ]},
        ],
    )  # fmt: skip


def opt_in(contact, purpose="utility"):
    if not ConsentText.objects.filter(version="v1").exists():
        consent_text_create(version="v1", business_name="Acme", body="Updates on WhatsApp. Reply STOP.")
    consent_record(
        contact_id=contact.id,
        phone_number=contact.phone_number,
        purpose=purpose,
        action="opt_in",
        source="api",
        evidence=Evidence(ip_address="203.0.113.9"),
        text_version="v1",
    )


TEMPLATE = {
    "message_type": "template",
    "to_number": "(555) 012-3456",
    "template_name": "order_confirmation",
    "language": "en_US",
    "parameters": ["Ava", "#1042"],
    "buttons": ["1042"],
}


# --- Composing: one happy path per shape -----------------------------------------------------------

SHAPES = [
    pytest.param(text(preview_url=False), "text", "text", "Your order shipped.", id="text"),
    pytest.param(
        {
            "message_type": "media",
            "to_number": TO,
            "media": "https://cdn.example.com/invoices/invoice.pdf",
            "caption": "Your invoice",
            "filename": "invoice-1042.pdf",
        },
        "media",
        "document",
        "Your invoice",
        id="media-link",
    ),
    pytest.param(
        {
            "message_type": "media",
            "to_number": TO,
            "media": {"id": "1037543291543636"},
            "media_type": "image",
        },
        "media",
        "image",
        "[image]",
        id="media-id",
    ),
    pytest.param(
        {
            "message_type": "location",
            "to_number": TO,
            "latitude": 40.7128,
            "longitude": -74.006,
            "name": "Acme",
            "address": "1 Main St",
        },
        "location",
        "location",
        "[location] Acme 1 Main St",
        id="location",
    ),
    pytest.param(
        {
            "message_type": "buttons",
            "to_number": TO,
            "body": "When?",
            "header": "Delivery",
            "footer": "Acme",
            "buttons": [{"id": "today", "title": "Today"}, {"id": "later", "title": "Later"}],
        },
        "buttons",
        "interactive",
        "When?\n[Today] [Later]",
        id="buttons",
    ),
    pytest.param(
        {
            "message_type": "list",
            "to_number": TO,
            "body": "Pick a slot",
            "button": "Slots",
            "sections": [
                {"title": "Morning", "rows": [{"id": "m9", "title": "9 am", "description": "Early"}]}
            ],
        },
        "list",
        "interactive",
        "Pick a slot\n[Slots]",
        id="list",
    ),
    pytest.param(
        {"message_type": "reaction", "to_number": TO, "message_id": "wamid.ABC", "emoji": "👍"},
        "reaction",
        "reaction",
        "👍",
        id="reaction",
    ),
]


@pytest.mark.parametrize(("body", "message_type", "kind", "preview"), SHAPES)
def test_each_shape_is_accepted_and_waits_for_approval(composer, contact, body, message_type, kind, preview):
    response = post(composer, body)
    assert response.status_code == 202, response.json()
    data = response.json()
    message = Message.objects.get()
    assert data["id"] == message.id
    assert response["Location"] == f"{URL}{message.id}/"
    assert data["status"] == "pending_approval"
    assert data["to_number"] == TO
    assert data["from_number"] == "+15550100000"
    assert data["provider_message_id"] is None
    assert (data["message_type"], data["kind"], data["preview"]) == (message_type, kind, preview)
    assert data["created_at"] and data["direction"] == "outbound"
    assert [h["status"] for h in data["status_history"]] == ["draft", "pending_approval"]
    assert data["created_by"] == "api-user" and data["approved_by"] is None
    assert MemoryBackend.outbox == []


def test_a_template_goes_out_with_consent(trusted, contact, django_capture_on_commit_callbacks):
    make_template()
    opt_in(contact)
    with django_capture_on_commit_callbacks(execute=True):
        response = post(trusted, TEMPLATE)
    assert response.status_code == 202, response.json()
    data = response.json()
    assert (data["message_type"], data["template_name"], data["template_category"]) == (
        "template",
        "order_confirmation",
        "UTILITY",
    )
    assert data["preview"] == "Hi Ava, order #1042 is confirmed.\n\n[Track]"
    (sent,) = MemoryBackend.outbox
    assert sent["payload"]["template"]["components"][0] == {
        "type": "body",
        "parameters": [{"type": "text", "text": "Ava"}, {"type": "text", "text": "#1042"}],
    }


def test_trusted_senders_queue_directly_and_the_message_is_sent_on_commit(
    trusted, contact, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = post(trusted, text(reply_to="wamid.QUESTION"))
    assert response.status_code == 202
    data = response.json()
    assert data["status"] == "queued"  # the response leaves before the transaction's callbacks run
    assert data["approved_by"] == "api-user"
    (sent,) = MemoryBackend.outbox
    assert sent["payload"]["context"] == {"message_id": "wamid.QUESTION"}

    detail = trusted.get(f"{URL}{data['id']}/").json()
    assert detail["status"] == "sent"
    assert detail["provider_message_id"].startswith("wamid.")
    assert detail["reply_to"] == "wamid.QUESTION"
    assert [h["status"] for h in detail["status_history"]] == ["draft", "queued", "sending", "sent"]


def test_from_number_picks_the_sender(composer, contact):
    other = SenderFactory(display_phone_number="+15550107777", waba_id=WABA)
    response = post(composer, text(from_number="(555) 010-7777"))
    assert response.status_code == 202
    assert response.json()["from_number"] == "+15550107777"
    assert Message.objects.get().sender == other


def test_unknown_recipients_become_contacts_without_consent(composer):
    # A new number has never written: free-form is refused, and nothing is left behind.
    response = post(composer, text(to_number="+1 555 012 9999"))
    assert (response.status_code, response.json()["code"]) == (422, "window_closed")
    assert not Message.objects.exists()


# --- Refusals --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field", "fragment"),
    [
        (text(text="x" * 4097), "text", "text is 4097 characters; the limit is 4096."),
        (
            {"message_type": "media", "to_number": TO, "media": "https://x.example/a.jpg", "caption": "c" * 1025},
            "caption",
            "the limit is 1024",
        ),
        (
            {"message_type": "buttons", "to_number": TO, "body": "b", "buttons": [{"title": "t" * 21}]},
            "buttons",
            "button 1 title is 21 characters; the limit is 20.",
        ),
        (
            {"message_type": "media", "to_number": TO, "media": "http://x.example/a.jpg"},
            "media",
            "https",
        ),
        ({"message_type": "location", "to_number": TO, "latitude": 91, "longitude": 0}, "latitude", "-90 and 90"),
        ({"message_type": "fax", "to_number": TO}, "message_type", "not a valid choice"),
        ({"to_number": TO, "text": "hi"}, "message_type", "required"),
        (text(to_number=None), "to_number", "may not be null"),
        (text(reply_to="w" * 129), "reply_to", "128"),
        ({**TEMPLATE, "template_name": None}, "template_name", "template_name and language are required"),
        ({**TEMPLATE, "buttons": 5}, "buttons", "buttons must be a list"),
        ({**TEMPLATE, "parameters": "Ava"}, "parameters", "parameters must be a list or an object"),
    ],
)  # fmt: skip
def test_invalid_messages_are_a_400_naming_the_field_and_the_limit(composer, contact, body, field, fragment):
    response = post(composer, body)
    assert response.status_code == 400
    data = response.json()
    assert data["code"] == "validation_error"
    assert field in data["errors"]
    assert fragment in data["detail"] or fragment in str(data["errors"][field])
    assert data["detail"].startswith(f"{field}: ")
    assert not Message.objects.exists()


def test_a_bad_recipient_number_is_invalid_phone_number(composer):
    response = post(composer, text(to_number="call me maybe"))
    assert response.status_code == 400
    data = response.json()
    assert data["code"] == "invalid_phone_number"
    assert "to_number" in data["errors"] and "not a valid phone number" in data["detail"]


@pytest.mark.parametrize("from_number", ["+15559999999", "not a number"])
def test_an_unknown_sender_is_sender_unknown(composer, contact, from_number):
    response = post(composer, text(from_number=from_number))
    assert response.status_code == 400
    assert response.json()["code"] == "sender_unknown"
    assert "from_number" in response.json()["errors"]


def test_free_form_outside_the_24_hour_window_is_window_closed(composer):
    ContactFactory(phone_number=TO, last_inbound_at=timezone.now() - timedelta(hours=25))
    response = post(composer, text())
    assert response.status_code == 422
    assert response.json()["code"] == "window_closed"
    assert "24 hours" in response.json()["detail"]


def test_a_template_without_consent_is_no_consent(composer, contact):
    make_template()
    response = post(composer, TEMPLATE)
    assert (response.status_code, response.json()["code"]) == (422, "no_consent")


def test_after_an_opt_out_messages_are_opted_out(composer, contact):
    make_template()
    opt_in(contact)
    consent_opt_out_everywhere(
        contact_id=contact.id,
        phone_number=contact.phone_number,
        source="whatsapp_keyword",
        evidence=Evidence(message_id="wamid.STOP"),
    )
    for body in (TEMPLATE, text()):
        response = post(composer, body)
        assert (response.status_code, response.json()["code"]) == (422, "opted_out")


def test_a_suppressed_number_is_suppressed(composer, contact):
    Suppression.objects.create(phone_hash=phone_keyed_hash(TO), reason="legal hold")
    response = post(composer, text())
    assert (response.status_code, response.json()["code"]) == (422, "suppressed")


def test_marketing_beyond_the_frequency_cap_is_frequency_cap(composer, contact, settings):
    settings.CONSENT_MARKETING_FREQUENCY_CAP = 1
    template = make_template(name="spring_sale", category="MARKETING")
    opt_in(contact, "marketing")
    Message.objects.create(
        contact=contact,
        sender=SenderFactory(),
        kind="template",
        template=template,
        template_category="MARKETING",
        status=MessageStatus.SENT,
        sent_at=timezone.now() - timedelta(days=1),
    )
    response = post(composer, {**TEMPLATE, "template_name": "spring_sale"})
    assert (response.status_code, response.json()["code"]) == (422, "frequency_cap")


@pytest.mark.parametrize("status", [TemplateStatus.PENDING, TemplateStatus.PAUSED, TemplateStatus.REJECTED])
def test_a_template_meta_has_not_approved_is_template_not_approved(composer, contact, status):
    make_template(status=status)
    opt_in(contact)
    response = post(composer, TEMPLATE)
    assert (response.status_code, response.json()["code"]) == (422, "template_not_approved")
    assert status.lower() in response.json()["detail"]


def test_an_unknown_template_is_template_not_approved(composer, contact):
    response = post(composer, {**TEMPLATE, "template_name": "nope"})
    assert (response.status_code, response.json()["code"]) == (422, "template_not_approved")
    assert "template_name" in response.json()["errors"]


def test_wrong_template_parameters_are_template_parameters_invalid(composer, contact):
    make_template()
    opt_in(contact)
    response = post(composer, {**TEMPLATE, "parameters": ["Ava"]})
    assert response.status_code == 400
    data = response.json()
    assert data["code"] == "template_parameters_invalid"
    assert "expected 2 values, got 1" in data["detail"]
    assert "parameters" in data["errors"]


@pytest.mark.parametrize(
    "code", ["no_consent", "opted_out", "window_closed", "suppressed", "template_paused", "frequency_cap"]
)
def test_every_gate_refusal_is_a_422_with_its_code(composer, contact, monkeypatch, code):
    monkeypatch.setattr(
        "messaging.outbound.gate_check", lambda facts: Decision(Verdict.DENY, code, f"Refused: {code}.")
    )
    response = post(composer, text())
    assert response.status_code == 422
    assert response.json() == {"code": code, "detail": f"Refused: {code}."}


def test_quiet_hours_do_not_refuse_a_message(trusted, contact, monkeypatch):
    reopen = timezone.now() + timedelta(hours=3)
    monkeypatch.setattr(
        "messaging.outbound.gate_check",
        lambda facts: Decision(Verdict.DEFER, "quiet_hours", "Outside hours.", reopen),
    )
    assert post(trusted, text()).status_code == 202


# --- Permissions -----------------------------------------------------------------------------------


def test_requests_without_a_token_are_401(api_client):
    assert api_client.get(URL).json()["code"] == "not_authenticated"
    response = post(api_client, text())
    assert (response.status_code, response.json()["code"]) == (401, "not_authenticated")


def test_composing_needs_add_message(authed_client, api_user, contact):
    grant(api_user, "view_message")
    response = post(authed_client, text())
    assert response.status_code == 403
    assert response.json() == {
        "code": "permission_denied",
        "detail": "You need the messaging.add_message permission.",
    }
    assert not Message.objects.exists()


def test_reading_needs_view_message(authed_client, api_user, contact):
    grant(api_user, "add_message")
    assert post(authed_client, text()).status_code == 202
    message = Message.objects.get()
    for url in (URL, f"{URL}{message.id}/"):
        response = authed_client.get(url)
        assert (response.status_code, response.json()["code"]) == (403, "permission_denied")
        assert "messaging.view_message" in response.json()["detail"]


def test_approving_needs_approve_message(composer, contact):
    message_id = post(composer, text()).json()["id"]
    other = UserFactory(username="colleague")
    grant(other, "view_message", "add_message")
    for action in ("approve", "reject"):
        response = client_for(other).post(f"{URL}{message_id}/{action}/", {"reason": "no"}, format="json")
        assert (response.status_code, response.json()["code"]) == (403, "permission_denied")
        assert "messaging.approve_message" in response.json()["detail"]


def test_a_superuser_sends_without_approval(contact):
    admin = UserFactory(username="root", is_superuser=True, is_staff=True)
    response = post(client_for(admin), text())
    assert (response.status_code, response.json()["status"]) == (202, "queued")


# --- Approval --------------------------------------------------------------------------------------


def test_a_colleague_approves_and_the_message_is_sent(
    composer, approver, contact, django_capture_on_commit_callbacks
):
    message_id = post(composer, text()).json()["id"]
    with django_capture_on_commit_callbacks(execute=True):
        response = approver.post(f"{URL}{message_id}/approve/")
    assert response.status_code == 200, response.json()
    assert (response.json()["status"], response.json()["approved_by"]) == ("queued", "approver")
    assert len(MemoryBackend.outbox) == 1
    detail = approver.get(f"{URL}{message_id}/").json()
    assert detail["status"] == "sent"
    assert [(h["status"], h["source"]) for h in detail["status_history"]] == [
        ("draft", "compose"),
        ("pending_approval", "compose"),
        ("queued", "approval"),
        ("sending", "worker"),
        ("sent", "worker"),
    ]
    assert detail["status_history"][2]["detail"] == "approved by approver"

    again = approver.post(f"{URL}{message_id}/approve/")
    assert again.status_code == 409
    assert again.json() == {"code": "invalid_state", "detail": "This message is not waiting for approval."}


def test_nobody_approves_or_rejects_their_own_message(composer, api_user, contact):
    grant(api_user, "approve_message")
    message_id = post(composer, text()).json()["id"]
    response = composer.post(f"{URL}{message_id}/approve/")
    assert response.status_code == 403
    assert response.json() == {
        "code": "permission_denied",
        "detail": "You cannot approve a message you wrote; ask a colleague.",
    }
    response = composer.post(f"{URL}{message_id}/reject/", {"reason": "oops"}, format="json")
    assert response.status_code == 403
    assert "cancel it instead" in response.json()["detail"]
    assert Message.objects.get().status == MessageStatus.PENDING_APPROVAL


def test_rejecting_needs_a_reason_and_sends_nothing(composer, approver, contact):
    message_id = post(composer, text()).json()["id"]
    for body in ({}, {"reason": "   "}):
        response = approver.post(f"{URL}{message_id}/reject/", body, format="json")
        assert response.status_code == 400
        assert response.json()["code"] == "validation_error"
        assert response.json()["errors"]["reason"] == ["Say why the message is rejected."]
    too_long = approver.post(f"{URL}{message_id}/reject/", {"reason": "r" * 2001}, format="json")
    assert (too_long.status_code, list(too_long.json()["errors"])) == (400, ["reason"])

    response = approver.post(f"{URL}{message_id}/reject/", {"reason": "Wrong order number"}, format="json")
    assert response.status_code == 200
    data = response.json()
    assert (data["status"], data["rejection_reason"], data["approved_by"]) == (
        "rejected",
        "Wrong order number",
        "approver",
    )
    assert data["status_history"][-1]["detail"] == "Wrong order number"
    assert MemoryBackend.outbox == []
    assert approver.post(f"{URL}{message_id}/approve/").json()["code"] == "invalid_state"


@pytest.mark.parametrize("body", [["reason"], "reason", {"reason": ["a"]}, {"reason": None}])
def test_malformed_reject_bodies_are_a_400(composer, approver, contact, body):
    message_id = post(composer, text()).json()["id"]
    response = approver.post(f"{URL}{message_id}/reject/", body, format="json")
    assert (response.status_code, response.json()["code"]) == (400, "validation_error")


def test_unknown_messages_are_404(approver):
    for response in (
        approver.get(f"{URL}999999/"),
        approver.post(f"{URL}999999/approve/"),
        approver.post(f"{URL}999999/reject/", {"reason": "x"}, format="json"),
        approver.get(f"{URL}abc/"),
    ):
        assert (response.status_code, response.json()["code"]) == (404, "not_found")


# --- Idempotency -----------------------------------------------------------------------------------


def test_a_repeated_request_with_the_same_key_returns_the_original_response(composer, contact):
    key = str(uuid.uuid4())
    first = post(composer, text(), **{"Idempotency-Key": key})
    again = composer.post(
        URL, dict(reversed(text().items())), format="json", headers={"Idempotency-Key": key}
    )
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first
    assert again["Location"] == first["Location"]
    assert Message.objects.count() == 1


def test_the_same_key_with_another_body_is_a_conflict(composer, contact):
    key = str(uuid.uuid4())
    post(composer, text(), **{"Idempotency-Key": key})
    response = post(composer, text(text="Something else"), **{"Idempotency-Key": key})
    assert (response.status_code, response.json()["code"]) == (409, "idempotency_conflict")
    assert Message.objects.count() == 1


def test_a_refused_request_does_not_use_up_its_key(composer):
    key = str(uuid.uuid4())
    contact = ContactFactory(phone_number=TO)  # never wrote: the window is closed
    assert post(composer, text(), **{"Idempotency-Key": key}).json()["code"] == "window_closed"
    contact.last_inbound_at = timezone.now()
    contact.save()
    assert post(composer, text(), **{"Idempotency-Key": key}).status_code == 202


def test_keys_belong_to_one_user_and_different_keys_make_different_messages(composer, contact):
    key = str(uuid.uuid4())
    post(composer, text(), **{"Idempotency-Key": key})
    post(composer, text(), **{"Idempotency-Key": str(uuid.uuid4())})
    other = UserFactory(username="other-site")
    grant(other, "add_message")
    response = post(client_for(other), text(), **{"Idempotency-Key": key})
    assert response.status_code == 202 and "Idempotent-Replayed" not in response
    assert Message.objects.count() == 3


@pytest.mark.parametrize("key", ["", "   ", "k" * 256])
def test_an_unusable_idempotency_key_is_refused(composer, contact, key):
    response = post(composer, text(), **{"Idempotency-Key": key})
    assert (response.status_code, response.json()["code"]) == (400, "invalid_idempotency_key")
    assert not Message.objects.exists()


# --- Listing and detail ----------------------------------------------------------------------------


@pytest.fixture
def history(contact):
    """Five messages: three to `contact` (two days apart), one to someone else, one inbound."""
    sender = SenderFactory(display_phone_number="+15550109999")
    other = ContactFactory(phone_number="+15550123457")
    now = timezone.now()
    rows = [
        (contact, Message.Direction.OUTBOUND, MessageStatus.SENT, now - timedelta(days=4)),
        (contact, Message.Direction.OUTBOUND, MessageStatus.DELIVERED, now - timedelta(days=2)),
        (contact, Message.Direction.OUTBOUND, MessageStatus.FAILED, now),
        (other, Message.Direction.OUTBOUND, MessageStatus.SENT, now),
        (contact, Message.Direction.INBOUND, MessageStatus.RECEIVED, now),
    ]
    messages = []
    for who, direction, status, at in rows:
        message = Message.objects.create(
            contact=who, sender=sender, direction=direction, status=status, kind="text", content={"body": "x"}
        )
        Message.objects.filter(pk=message.pk).update(created_at=at)
        messages.append(message)
    return messages


def ids(response):
    assert response.status_code == 200, response.json()
    return [m["id"] for m in response.json()["results"]]


def test_list_filters(composer, history):
    sent_old, delivered, failed, to_other, inbound = (m.id for m in history)
    now = timezone.now()
    assert ids(composer.get(URL)) == [inbound, to_other, failed, delivered, sent_old]
    assert ids(composer.get(URL, {"to_number": "(555) 012-3456"})) == [failed, delivered, sent_old]
    assert ids(composer.get(URL, {"to_number": "+1 555 010 9999"})) == [inbound]  # inbound: to us
    assert ids(composer.get(URL, {"status": "sent"})) == [to_other, sent_old]
    assert ids(composer.get(URL, {"status": "sent, delivered"})) == [to_other, delivered, sent_old]
    assert ids(composer.get(URL, {"direction": "inbound"})) == [inbound]
    after = (now - timedelta(days=3)).isoformat()
    before = (now - timedelta(days=1)).isoformat()
    assert ids(composer.get(URL, {"created_after": after, "created_before": before})) == [delivered]
    # An unencoded "+" in the offset arrives as a space: still understood.
    raw = (now - timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%S+00:00").replace("+", " ")
    assert delivered in ids(composer.get(URL, {"created_after": raw}))
    assert ids(composer.get(URL, {"created_before": "2000-01-01"})) == []
    assert ids(composer.get(URL, {"to_number": "", "status": ""})) == ids(composer.get(URL))


def test_list_rows_have_the_summary_fields(composer, history):
    row = composer.get(URL, {"direction": "inbound"}).json()["results"][0]
    assert (row["to_number"], row["from_number"], row["direction"]) == ("+15550109999", TO, "inbound")
    assert {"id", "status", "message_type", "kind", "preview", "provider_message_id", "created_at"} <= set(
        row
    )
    assert "status_history" not in row


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"to_number": "nope"}, "to_number"),
        ({"status": "lost"}, "status"),
        ({"status": "sent,lost"}, "status"),
        ({"direction": "sideways"}, "direction"),
        ({"created_after": "yesterday"}, "created_after"),
        ({"created_before": "2025-13-45T00:00:00Z"}, "created_before"),
        ({"created_after": "9" * 300}, "created_after"),
    ],
)
def test_bad_filter_values_are_a_400(composer, params, field):
    response = composer.get(URL, params)
    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"
    assert field in response.json()["errors"]


def test_listing_is_paginated_without_a_query_per_message(composer, contact, django_assert_max_num_queries):
    sender = SenderFactory()
    template = make_template()
    Message.objects.bulk_create(
        Message(contact=ContactFactory(), sender=sender, kind="template", template=template, status="sent")
        for _ in range(60)
    )
    composer.get(URL)  # warm the token's last_used_at
    # token, its user, permissions (2), count, page: none per message.
    with django_assert_max_num_queries(7):
        page = composer.get(URL).json()
    assert (page["count"], len(page["results"])) == (60, 50)
    assert page["next"] and page["results"][0]["template_name"] == "order_confirmation"
    with django_assert_max_num_queries(7):
        assert len(composer.get(URL, {"page": 2}).json()["results"]) == 10
    assert composer.get(URL, {"page": 9}).json()["code"] == "not_found"


def test_detail_shows_the_history_errors_attempts_and_pricing(
    trusted, contact, django_capture_on_commit_callbacks, django_assert_max_num_queries
):
    MemoryBackend.script(
        WhatsAppApiError(
            message="(#131026) Message undeliverable", code=131026, http_status=400, details="Not on WhatsApp"
        )
    )
    with django_capture_on_commit_callbacks(execute=True):
        message_id = post(trusted, text()).json()["id"]
    Message.objects.filter(pk=message_id).update(pricing_category="service", pricing_type="regular")
    with django_assert_max_num_queries(7):
        detail = trusted.get(f"{URL}{message_id}/").json()
    assert detail["status"] == "failed"
    assert (detail["error_code"], detail["error_title"], detail["error_details"]) == (
        "131026",
        "(#131026) Message undeliverable",
        "Not on WhatsApp",
    )
    assert detail["attempts"] == 1
    assert (detail["pricing_category"], detail["pricing_type"]) == ("service", "regular")
    assert detail["approved_by"] == "api-user" and detail["approved_at"]
    assert detail["content"] == {"body": "Your order shipped.", "preview_url": False}
    history = detail["status_history"]
    assert [h["status"] for h in history] == ["draft", "queued", "sending", "failed"]
    assert set(history[0]) == {"status", "at", "source", "detail"}
    assert history[-1]["detail"] == "131026: (#131026) Message undeliverable"


# --- Never a 500 -----------------------------------------------------------------------------------

FUZZ = [
    [],
    ["text"],
    "text",
    42,
    None,
    True,
    {},
    {"message_type": None, "to_number": TO},
    {"message_type": ["text"], "to_number": TO, "text": "hi"},
    {"message_type": {"a": 1}, "to_number": TO},
    {"message_type": "text", "to_number": 15550123456, "text": "hi"},
    {"message_type": "text", "to_number": ["+15550123456"], "text": "hi"},
    {"message_type": "text", "to_number": {"n": TO}, "text": "hi"},
    {"message_type": "text", "to_number": TO, "text": None},
    {"message_type": "text", "to_number": TO, "text": {"body": "hi"}},
    {"message_type": "text", "to_number": TO, "text": 12},
    {"message_type": "text", "to_number": TO, "text": "x" * 200_000},
    {"message_type": "text", "to_number": "9" * 10_000, "text": "hi"},
    {"message_type": "text", "to_number": TO, "text": "%s %(x)s %d {0}"},
    {"message_type": "text", "to_number": TO, "text": "hi", "preview_url": "yes"},
    {"message_type": "text", "to_number": TO, "text": "hi", "from_number": 5},
    {"message_type": "text", "to_number": TO, "text": "hi", "from_number": ["+15550100000"]},
    {"message_type": "text", "to_number": TO, "text": "hi", "reply_to": {"id": "w"}},
    {"message_type": "media", "to_number": TO, "media": None},
    {"message_type": "media", "to_number": TO, "media": 12345},
    {"message_type": "media", "to_number": TO, "media": True},
    {"message_type": "media", "to_number": TO, "media": [{"link": "https://x.example/a.jpg"}]},
    {"message_type": "media", "to_number": TO, "media": {"link": ["https://x.example/a.jpg"]}},
    {"message_type": "media", "to_number": TO, "media": {"id": {"nested": 1}}, "media_type": "image"},
    {"message_type": "media", "to_number": TO, "media": "https://[::1/a.jpg"},
    {"message_type": "media", "to_number": TO, "media": "https://x.example/a.jpg", "media_type": {"k": "image"}},
    {"message_type": "media", "to_number": TO, "media": "https://x.example/a.jpg", "caption": ["c"]},
    {"message_type": "media", "to_number": TO, "media": "https://x.example/%%%.pdf", "filename": 5},
    {"message_type": "location", "to_number": TO, "latitude": None, "longitude": None},
    {"message_type": "location", "to_number": TO, "latitude": [1], "longitude": {"a": 1}},
    {"message_type": "location", "to_number": TO, "latitude": 10**400, "longitude": -(10**400)},
    {"message_type": "location", "to_number": TO, "latitude": 1e308, "longitude": 1},
    {"message_type": "location", "to_number": TO, "latitude": "NaN", "longitude": "inf"},
    {"message_type": "location", "to_number": TO, "latitude": 1, "longitude": 1, "name": ["n"]},
    {"message_type": "buttons", "to_number": TO, "body": "b", "buttons": None},
    {"message_type": "buttons", "to_number": TO, "body": "b", "buttons": "Yes,No"},
    {"message_type": "buttons", "to_number": TO, "body": "b", "buttons": [None, 1]},
    {"message_type": "buttons", "to_number": TO, "body": "b", "buttons": [{"id": ["a"], "title": "A"}]},
    {"message_type": "buttons", "to_number": TO, "body": "b", "buttons": [{"id": {"a": 1}, "title": {"t": 1}}]},
    {"message_type": "buttons", "to_number": TO, "body": ["b"], "buttons": [{"title": "A"}]},
    {"message_type": "buttons", "to_number": TO, "body": "b", "header": {"type": "image"}, "buttons": [{"title": "A"}]},
    {"message_type": "list", "to_number": TO, "body": "b", "button": "B", "sections": {"rows": []}},
    {"message_type": "list", "to_number": TO, "body": "b", "button": "B", "sections": [None, "s"]},
    {"message_type": "list", "to_number": TO, "body": "b", "button": "B", "sections": [{"rows": {"id": "a"}}]},
    {"message_type": "list", "to_number": TO, "body": "b", "button": "B", "sections": [{"rows": [None]}]},
    {"message_type": "list", "to_number": TO, "body": "b", "button": "B", "sections": [{"title": 5, "rows": [{"title": "t"}]}]},
    {"message_type": "list", "to_number": TO, "body": "b", "button": 7, "sections": [{"rows": [{"title": "t"}]}]},
    {"message_type": "reaction", "to_number": TO, "message_id": None, "emoji": None},
    {"message_type": "reaction", "to_number": TO, "message_id": ["w"], "emoji": ["👍"]},
    {"message_type": "reaction", "to_number": TO, "message_id": "w" * 10_000, "emoji": "👍"},
    {**TEMPLATE, "template_name": ["order_confirmation"]},
    {**TEMPLATE, "template_name": {"name": "x"}},
    {**TEMPLATE, "language": 5},
    {**TEMPLATE, "template_name": "x" * 5000},
    {**TEMPLATE, "parameters": None, "buttons": None, "header": None},
    {**TEMPLATE, "parameters": [None, [1]]},
    {**TEMPLATE, "parameters": [{"type": "currency"}, {"type": "date_time"}]},
    {**TEMPLATE, "parameters": [{"type": "currency", "fallback_value": "$1", "code": "USD", "amount_1000": [1]}, "x"]},
    {**TEMPLATE, "parameters": {"1": "Ava", "2": "#1"}},
    {**TEMPLATE, "parameters": [True, False]},
    {**TEMPLATE, "buttons": [{"a": 1}]},
    {**TEMPLATE, "buttons": "1042"},
    {**TEMPLATE, "buttons": {"0": "1042"}},
    {**TEMPLATE, "header": ["h"]},
    {**TEMPLATE, "header": True},
]  # fmt: skip


def test_no_body_is_a_server_error(trusted, contact):
    make_template()
    opt_in(contact)
    failures = []
    for body in FUZZ:  # one test: the setup is shared, and every failing body is reported at once
        response = post(trusted, body)
        data = response.json()
        ok = response.status_code == 202 or (
            400 <= response.status_code < 500
            and isinstance(data.get("code"), str)
            and isinstance(data.get("detail"), str)
        )
        if not ok:
            failures.append((str(body)[:200], response.status_code, data))
    assert failures == []


@pytest.mark.parametrize(
    ("content_type", "raw"),
    [
        ("application/json", b"{not json"),
        ("application/json", b"[" * 100_000 + b"]" * 100_000),
        ("application/json", b'{"message_type": "text", "to_number": NaN}'),
        ("application/json", b"\xff\xfe"),
        ("application/x-www-form-urlencoded", b"message_type=text&to_number=%2B15550123456&text=hi"),
        ("text/plain", b"hello"),
    ],
)
def test_malformed_requests_are_4xx(composer, contact, content_type, raw):
    response = composer.generic("POST", URL, raw, content_type=content_type)
    assert 400 <= response.status_code < 500
    assert response.json()["code"] in ("parse_error", "unsupported_media_type")


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
FIELDS = [
    "to_number", "from_number", "reply_to", "text", "preview_url", "media", "media_type", "caption",
    "filename", "latitude", "longitude", "name", "address", "template_name", "language", "parameters",
    "header", "buttons", "body", "footer", "button", "sections", "message_id", "emoji",
]  # fmt: skip


@hypothesis_settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    message_type=st.sampled_from(["text", "media", "location", "template", "buttons", "list", "reaction"]),
    fields=st.dictionaries(st.sampled_from(FIELDS), JSON_VALUES, max_size=6),
)
def test_random_bodies_are_never_a_server_error(trusted, contact, message_type, fields):
    response = post(trusted, {"message_type": message_type, "to_number": TO, **fields})
    assert response.status_code < 500, response.content


# --- Schema ----------------------------------------------------------------------------------------


def test_the_openapi_schema_documents_the_messages_api(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    paths = schema["paths"]
    assert {"get", "post"} <= set(paths["/api/v1/messages/"])
    assert "get" in paths["/api/v1/messages/{id}/"]
    assert "post" in paths["/api/v1/messages/{id}/approve/"]
    assert "post" in paths["/api/v1/messages/{id}/reject/"]

    create = paths["/api/v1/messages/"]["post"]
    assert {"202", "400", "401", "403", "409", "422"} <= set(create["responses"])
    assert any(p["name"] == "Idempotency-Key" and p["in"] == "header" for p in create["parameters"])
    for code in (
        "validation_error",
        "invalid_phone_number",
        "window_closed",
        "no_consent",
        "template_not_approved",
    ):
        assert code in create["description"]
    examples = create["requestBody"]["content"]["application/json"]["examples"]
    assert {e["value"]["message_type"] for e in examples.values()} == {
        "text", "media", "location", "template", "buttons", "list", "reaction",
    }  # fmt: skip
    components = schema["components"]["schemas"]
    assert set(components["MessageCreate"]["discriminator"]["mapping"]) == {
        "text", "media", "location", "template", "buttons", "list", "reaction",
    }  # fmt: skip
    assert {"status_history", "error_code", "attempts", "approved_by", "pricing_category"} <= set(
        components["MessageDetail"]["properties"]
    )
    assert "sent" in components["MessageStatus"]["enum"]
    listing = paths["/api/v1/messages/"]["get"]
    assert {"to_number", "status", "direction", "created_after", "created_before", "page"} <= {
        p["name"] for p in listing["parameters"]
    }
    assert {"200", "403", "404", "409"} <= set(paths["/api/v1/messages/{id}/approve/"]["post"]["responses"])
    assert {"200", "400", "403", "404", "409"} <= set(
        paths["/api/v1/messages/{id}/reject/"]["post"]["responses"]
    )


def test_the_messages_views_generate_a_valid_schema_without_warnings():
    from drf_spectacular.drainage import GENERATOR_STATS
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.validation import validate_schema

    from messaging.api.messages import MessageViewSet

    router = SimpleRouter()
    router.register("messages", MessageViewSet, basename="message")
    GENERATOR_STATS.reset()
    with GENERATOR_STATS.silence():
        mine = SchemaGenerator(patterns=[path("api/v1/", include(router.urls))]).get_schema(public=True)
        whole = SchemaGenerator().get_schema(public=True)
    assert not GENERATOR_STATS._warn_cache and not GENERATOR_STATS._error_cache
    validate_schema(mine)
    validate_schema(whole)
