"""The simulator closes the loop for `make run`: sends get wamids, and Meta-shaped, signed status and
reply webhooks arrive at the app's own endpoint, where they are verified and stored."""

import json

import pytest

from messaging.models import WebhookEvent
from messaging.whatsapp import OutgoingMessage, SenderRef, backend_create
from messaging.whatsapp.signatures import webhook_signature_is_valid

SENDER = SenderRef(
    phone_number_id="100200300400500", display_phone_number="+15550100000", waba_id="900800700600500"
)


@pytest.fixture
def simulator(live_server, settings):
    backend = backend_create(
        "simulator", webhook_url=f"{live_server.url}/webhooks/whatsapp/", status_delay=0.05
    )
    yield backend
    backend.wait_for_webhooks()


def _stored_bodies() -> list[dict]:
    return [json.loads(event.raw_body) for event in WebhookEvent.objects.order_by("id")]


@pytest.mark.django_db(transaction=True)
def test_a_send_is_followed_by_signed_sent_delivered_read_webhooks(simulator, settings):
    result = simulator.send(
        sender=SENDER,
        message=OutgoingMessage(
            to="+15550123456", type="text", content={"body": "Hi"}, callback_data="msg-42"
        ),
    )
    assert result.provider_message_id.startswith("wamid.")
    simulator.wait_for_webhooks()

    events = list(WebhookEvent.objects.order_by("id"))
    assert len(events) == 3
    for event in events:  # stored means the endpoint verified them; check the signature ourselves too
        assert webhook_signature_is_valid(
            event.raw_body.encode(), event.headers["X-Hub-Signature-256"], settings.WHATSAPP["APP_SECRET"]
        )
    statuses = [body["entry"][0]["changes"][0]["value"]["statuses"][0] for body in _stored_bodies()]
    assert sorted(s["status"] for s in statuses) == ["delivered", "read", "sent"]
    assert {s["id"] for s in statuses} == {result.provider_message_id}
    assert {s["recipient_id"] for s in statuses} == {"15550123456"}
    assert {s["biz_opaque_callback_data"] for s in statuses} == {"msg-42"}
    value = _stored_bodies()[0]["entry"][0]["changes"][0]["value"]
    assert value["metadata"] == {"display_phone_number": "15550100000", "phone_number_id": "100200300400500"}


@pytest.mark.django_db(transaction=True)
def test_a_simulated_customer_reply_arrives_as_an_inbound_text(simulator):
    wamid = simulator.simulate_reply(
        sender=SENDER, from_wa_id="+15550123456", text="STOP", profile_name="Ava", context_wamid="wamid.OURS"
    )
    simulator.wait_for_webhooks()
    (body,) = _stored_bodies()
    value = body["entry"][0]["changes"][0]["value"]
    message = value["messages"][0]
    assert message["id"] == wamid
    assert message["from"] == "15550123456"
    assert message["text"] == {"body": "STOP"}
    assert message["context"]["id"] == "wamid.OURS"
    assert value["contacts"] == [{"profile": {"name": "Ava"}, "wa_id": "15550123456"}]


@pytest.mark.django_db(transaction=True)
def test_webhooks_signed_with_another_secret_are_rejected(live_server):
    impostor = backend_create(
        "simulator",
        webhook_url=f"{live_server.url}/webhooks/whatsapp/",
        app_secret="not-our-secret",
        status_delay=0,
    )
    impostor.simulate_reply(sender=SENDER, from_wa_id="15550123456", text="hello")
    impostor.wait_for_webhooks()
    assert not WebhookEvent.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_simulate_reply_command_posts_an_inbound_message(live_server, settings):
    from io import StringIO

    from django.core.management import call_command

    settings.WHATSAPP = {
        **settings.WHATSAPP,
        "BACKEND": "simulator",
        "SIMULATOR_WEBHOOK_URL": f"{live_server.url}/webhooks/whatsapp/",
    }
    out = StringIO()
    call_command("simulate_reply", "(555) 012-3456", "Where is my order?", "--name", "Ava", stdout=out)
    (body,) = _stored_bodies()
    message = body["entry"][0]["changes"][0]["value"]["messages"][0]
    assert message["id"] == out.getvalue().strip()
    assert message["from"] == "15550123456"
    assert message["text"]["body"] == "Where is my order?"


def test_simulate_reply_refuses_when_the_simulator_is_not_configured(settings):
    from django.core.management import CommandError, call_command

    settings.WHATSAPP = {**settings.WHATSAPP, "BACKEND": "cloud"}
    with pytest.raises(CommandError, match="not 'simulator'"):
        call_command("simulate_reply", "+15550123456", "hi")


@pytest.mark.django_db(transaction=True)
def test_round_trip_a_send_reaches_read_and_a_stop_reply_opts_the_customer_out(simulator):
    """The whole loop `make run` shows: our send, Meta's statuses applied, the customer's reply stored
    with its keyword acted on."""
    from django.utils import timezone

    from compliance.services import consent_status
    from messaging.models import Contact, Message, MessageStatus
    from messaging.sending import message_send
    from messaging.services import sender_get_default

    contact = Contact.objects.create(phone_number="+15550123456", wa_id="15550123456")
    Contact.objects.filter(pk=contact.pk).update(last_inbound_at=timezone.now())  # window open
    message = Message.objects.create(
        contact=contact,
        sender=sender_get_default(),
        kind="text",
        content={"body": "Your bike is ready"},
        status=MessageStatus.QUEUED,
    )
    assert message_send(message.pk, backend=simulator).status == MessageStatus.SENT
    simulator.wait_for_webhooks()
    message.refresh_from_db()
    assert message.status == MessageStatus.READ
    assert message.delivered_at is not None and message.read_at is not None
    assert set(WebhookEvent.objects.values_list("state", flat=True)) == {WebhookEvent.State.PROCESSED}

    wamid = simulator.simulate_reply(
        sender=SENDER, from_wa_id="15550123456", text="stop", context_wamid=message.provider_message_id
    )
    simulator.wait_for_webhooks()
    inbound = Message.objects.get(provider_message_id=wamid)
    assert inbound.direction == Message.Direction.INBOUND
    assert inbound.in_reply_to == message
    assert consent_status(contact_id=contact.pk, purpose="marketing") == "revoked"
