"""Double opt-in: a web-form opt-in under CONSENT_DOUBLE_OPT_IN waits until the person confirms on
WhatsApp. Messaging sends the confirmation template; a YES (typed or tapped) makes the consent count."""

import uuid

import pytest
from django.test import Client
from django.utils import timezone

from compliance.gate import MessageFacts, SystemPurpose, gate_check
from compliance.models import ConsentEvent, ConsentStatus
from compliance.services import consent_evidence, consent_status, consent_text_create
from messaging.keywords import CONFIRM_PAYLOAD, DECLINE_PAYLOAD
from messaging.models import AutoReply, Contact, Message, MessageStatus, ProviderAlert
from messaging.whatsapp import webhook_payloads
from messaging.whatsapp.base import SenderRef
from messaging.whatsapp.memory import MemoryBackend
from templates_app.models import MessageTemplate, TemplateStatus
from tests.webhook_client import post_webhook

pytestmark = pytest.mark.django_db

SENDER = SenderRef("100200300400500", "+15550100000", "900800700600500")
AVA_WA_ID = "15550123456"
CONFIRMED = "Thank you: your subscription to WhatsApp messages from Acme Bikes is confirmed."


@pytest.fixture(autouse=True)
def double_opt_in(settings):
    settings.CONSENT_DOUBLE_OPT_IN = True
    settings.CONSENT_DOUBLE_OPT_IN_TEMPLATE = "consent_confirm"
    settings.CONSENT_DOUBLE_OPT_IN_TEMPLATE_LANGUAGE = "en_US"


@pytest.fixture
def text():
    return consent_text_create(
        version="v1", business_name="Acme Bikes", body="Acme offers. Reply STOP to stop."
    )


@pytest.fixture
def confirm_template():
    return MessageTemplate.objects.create(
        waba_id="900800700600500",
        name="consent_confirm",
        language="en_US",
        category="UTILITY",
        status=TemplateStatus.APPROVED,
        components=[
            {
                "type": "BODY",
                "text": "You asked for WhatsApp messages from Acme Bikes. Reply YES to confirm.",
            },
            {
                "type": "BUTTONS",
                "buttons": [
                    {"type": "QUICK_REPLY", "text": "Yes, subscribe me"},
                    {"type": "QUICK_REPLY", "text": "No thanks"},
                ],
            },
        ],
    )


def submit_form(text, purposes=("marketing",)):
    client = Client(REMOTE_ADDR=f"10.9.{uuid.uuid4().int % 250}.7", HTTP_USER_AGENT="Mozilla/5.0 (tests)")
    response = client.post(
        "/opt-in/",
        {
            "phone_number": "+1 555 012 3456",
            "name": "Ava Jones",
            "purposes": list(purposes),
            "text_version": text.version,
            "homepage": "",
        },
    )
    assert response.status_code == 302
    return Contact.objects.get(phone_number="+15550123456")


def reply_from_ava(client, message: dict) -> None:
    value = {
        "contacts": [{"profile": {"name": "Ava Jones"}, "wa_id": AVA_WA_ID}],
        "messages": [
            {
                "from": AVA_WA_ID,
                "id": f"wamid.IN-DOI-{uuid.uuid4().hex[:10]}",
                "timestamp": str(int(timezone.now().timestamp())),
                **message,
            }
        ],
    }
    assert post_webhook(client, webhook_payloads.envelope(SENDER, value)).status_code == 200


def outbound() -> list[Message]:
    return list(Message.objects.filter(direction=Message.Direction.OUTBOUND).order_by("id"))


def test_the_form_queues_the_confirmation_template(
    text, confirm_template, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        contact = submit_form(text)

    assert consent_status(contact_id=contact.pk, purpose="marketing") == ConsentStatus.PENDING
    [request] = outbound()
    assert (request.kind, request.template, request.contact) == ("template", confirm_template, contact)
    assert request.status in (MessageStatus.QUEUED, MessageStatus.SENT)
    assert request.created_by is None
    # The first quick-reply button confirms; the other one does not.
    buttons = [c for c in request.content["components"] if c["type"] == "button"]
    assert [b["parameters"][0]["payload"] for b in buttons] == [CONFIRM_PAYLOAD, DECLINE_PAYLOAD]
    assert request.purpose == SystemPurpose.DOUBLE_OPT_IN_REQUEST


def test_the_confirmation_template_goes_out_through_the_sending_pipeline(
    text, confirm_template, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        submit_form(text)

    [request] = outbound()
    assert request.status == MessageStatus.SENT, request.error_title
    assert MemoryBackend.outbox[0]["payload"]["template"]["name"] == "consent_confirm"


def test_the_gate_allows_the_request_only_while_something_is_pending(text, confirm_template):
    contact = submit_form(text)
    facts = MessageFacts(
        contact_id=contact.pk,
        phone_number=contact.phone_number,
        at=timezone.now(),
        kind="template",
        template_category="UTILITY",
        template_status="APPROVED",
        purpose=SystemPurpose.DOUBLE_OPT_IN_REQUEST,
    )
    assert gate_check(facts).allowed
    # Without the purpose it is an ordinary utility template to someone who has not confirmed: refused.
    assert gate_check(MessageFacts(**{**facts.__dict__, "purpose": ""})).code == "no_consent"
    stranger = Contact.objects.create(phone_number="+15550187654")
    assert (
        gate_check(MessageFacts(**{**facts.__dict__, "contact_id": stranger.pk})).code == "nothing_to_confirm"
    )


def test_without_an_approved_template_staff_are_alerted_and_the_form_still_works(
    text, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        contact = submit_form(text)
    with django_capture_on_commit_callbacks(execute=True):
        submit_form(text, purposes=("utility",))

    assert consent_status(contact_id=contact.pk, purpose="marketing") == ConsentStatus.PENDING
    assert outbound() == []
    alert = ProviderAlert.objects.get(
        kind="double_opt_in_template_missing"
    )  # one open alert, not one per form
    assert alert.severity == "error" and "consent_confirm [en_US]" in alert.details


def test_a_paused_template_is_not_used(text, confirm_template, django_capture_on_commit_callbacks):
    MessageTemplate.objects.filter(pk=confirm_template.pk).update(status=TemplateStatus.PAUSED)

    with django_capture_on_commit_callbacks(execute=True):
        submit_form(text)

    assert outbound() == []
    assert "its status is PAUSED" in ProviderAlert.objects.get(kind="double_opt_in_template_missing").details


def test_replying_yes_confirms_and_thanks(client, text, confirm_template):
    contact = submit_form(text, purposes=("marketing", "utility"))

    reply_from_ava(client, {"type": "text", "text": {"body": "Yes!"}})

    assert consent_status(contact_id=contact.pk, purpose="marketing") == ConsentStatus.GRANTED
    assert consent_status(contact_id=contact.pk, purpose="utility") == ConsentStatus.GRANTED
    confirm = ConsentEvent.objects.filter(action="confirm")
    assert confirm.count() == 2
    assert consent_evidence(confirm.first())["message_id"].startswith("wamid.IN-DOI-")
    assert outbound()[-1].preview.startswith(CONFIRMED)


def test_tapping_the_templates_first_button_confirms(client, text, confirm_template):
    contact = submit_form(text)

    reply_from_ava(
        client, {"type": "button", "button": {"payload": CONFIRM_PAYLOAD, "text": "Yes, subscribe me"}}
    )

    assert consent_status(contact_id=contact.pk, purpose="marketing") == ConsentStatus.GRANTED


def test_tapping_no_thanks_leaves_the_opt_in_pending(client, text, confirm_template):
    contact = submit_form(text)

    reply_from_ava(client, {"type": "button", "button": {"payload": DECLINE_PAYLOAD, "text": "No thanks"}})

    assert consent_status(contact_id=contact.pk, purpose="marketing") == ConsentStatus.PENDING
    assert outbound() == []


def test_yes_with_nothing_pending_is_just_a_message(client, text):
    AutoReply.objects.create(keyword="yes", reply_text="Yes to what? Tell us more.")

    reply_from_ava(client, {"type": "text", "text": {"body": "yes"}})

    assert not ConsentEvent.objects.exists()
    assert [m.preview for m in outbound()] == ["Yes to what? Tell us more."]


def test_a_second_form_submission_does_not_send_a_second_request(
    text, confirm_template, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        submit_form(text)
    with django_capture_on_commit_callbacks(execute=True):
        submit_form(text, purposes=("utility",))

    assert len(outbound()) == 1
