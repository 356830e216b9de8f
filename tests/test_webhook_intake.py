"""The webhook endpoint's gatekeeping: Meta's handshake, signatures over the raw body, storage before
acknowledgement. (What the stored events do is tested in test_webhook_statuses.py and its siblings.)"""

import json
from datetime import timedelta

import pytest

from messaging.models import WebhookEvent
from messaging.whatsapp import webhook_payloads
from messaging.whatsapp.base import SenderRef
from messaging.whatsapp.signatures import webhook_signature

URL = "/webhooks/whatsapp/"
SECRET = "test-app-secret"  # config/test_settings.py
SENDER = SenderRef(
    phone_number_id="100200300400500", display_phone_number="+15550100000", waba_id="900800700600500"
)


def _status_body(wamid: str = "wamid.ABC") -> bytes:
    value = webhook_payloads.status_value(wamid=wamid, status="delivered", recipient_wa_id="15550123456")
    # Meta's own formatting (spaces, key order) must be preserved: sign the bytes as sent.
    return json.dumps(webhook_payloads.envelope(SENDER, value), indent=1).encode()


def _post(client, body: bytes, signature: str | None):
    headers = {"HTTP_X_HUB_SIGNATURE_256": signature} if signature is not None else {}
    return client.post(URL, data=body, content_type="application/json", **headers)


def test_handshake_echoes_the_challenge_byte_for_byte(client):
    response = client.get(
        URL, {"hub.mode": "subscribe", "hub.verify_token": "test-verify-token", "hub.challenge": "1158201444"}
    )
    assert response.status_code == 200
    assert response.content == b"1158201444"
    assert response["Content-Type"].startswith("text/plain")


@pytest.mark.parametrize(
    "params",
    [
        {"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"},
        {"hub.mode": "unsubscribe", "hub.verify_token": "test-verify-token", "hub.challenge": "1"},
        {},
    ],
)
def test_handshake_with_wrong_token_or_mode_is_forbidden(client, params):
    assert client.get(URL, params).status_code == 403


@pytest.mark.django_db
def test_signed_event_is_stored_before_the_200(client):
    body = _status_body()
    response = _post(client, body, webhook_signature(body, SECRET))
    assert response.status_code == 200
    event = WebhookEvent.objects.get()
    assert event.raw_body.encode() == body
    assert event.headers["X-Hub-Signature-256"] == webhook_signature(body, SECRET)
    # The test settings run Celery in-process, so processing has run by the time the 200 goes out.
    assert (event.state, event.summary) == (WebhookEvent.State.PROCESSED, {"status": 1})


@pytest.mark.django_db
def test_a_delivery_whose_processing_cannot_be_queued_is_still_stored_and_acknowledged(client, monkeypatch):
    from messaging import tasks
    from messaging.webhook_processing import webhook_events_recover

    def broker_down(*args, **kwargs):
        raise ConnectionError("broker unreachable")

    monkeypatch.setattr(tasks.drain_webhook_events, "delay", broker_down)
    body = _status_body()
    response = _post(client, body, webhook_signature(body, SECRET))
    assert response.status_code == 200
    event = WebhookEvent.objects.get()
    assert event.state == WebhookEvent.State.RECEIVED
    assert event.raw_body.encode() == body
    # The sweeper finds it once it has waited a minute.
    WebhookEvent.objects.filter(pk=event.pk).update(received_at=event.received_at - timedelta(minutes=2))
    assert webhook_events_recover() == 1
    # The failed attempt did not leave the "drain queued" flag behind: the next delivery is processed.
    monkeypatch.undo()
    other = _status_body(wamid="wamid.NEXT")
    assert _post(client, other, webhook_signature(other, SECRET)).status_code == 200
    assert set(WebhookEvent.objects.values_list("state", flat=True)) == {WebhookEvent.State.PROCESSED}


@pytest.mark.django_db
def test_redelivery_of_the_same_body_is_acknowledged_and_stored_once(client):
    body = _status_body()
    for _ in range(3):
        assert _post(client, body, webhook_signature(body, SECRET)).status_code == 200
    assert WebhookEvent.objects.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    "signature",
    [
        None,
        "",
        "sha256=" + "0" * 64,
        "sha1=abc",
        webhook_signature(b"other body", SECRET),
        webhook_signature(b"x", "wrong"),
    ],
)
def test_missing_or_wrong_signature_is_refused_and_nothing_stored(client, signature):
    body = _status_body()
    response = _post(client, body, signature)
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_signature"
    assert not WebhookEvent.objects.exists()


@pytest.mark.django_db
def test_signature_of_reserialized_json_does_not_pass(client):
    body = _status_body()
    compact = json.dumps(json.loads(body), separators=(",", ":")).encode()
    assert _post(client, body, webhook_signature(compact, SECRET)).status_code == 401


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"not json", "invalid_json"),
        (b'{"object": "page", "entry": []}', "not_a_whatsapp_event"),
        (b"[1,2]", "not_a_whatsapp_event"),
    ],
)
def test_signed_but_malformed_bodies_are_a_400(client, body, code):
    response = _post(client, body, webhook_signature(body, SECRET))
    assert response.status_code == 400
    assert response.json()["code"] == code
    assert not WebhookEvent.objects.exists()


@pytest.mark.django_db
def test_oversized_bodies_are_a_413(client):
    body = b'{"object": "whatsapp_business_account", "entry": [], "pad": "' + b"x" * (4 * 1024 * 1024) + b'"}'
    response = _post(client, body, webhook_signature(body, SECRET))
    assert response.status_code == 413
    assert not WebhookEvent.objects.exists()


@pytest.mark.django_db
def test_a_full_three_megabyte_batch_is_accepted(client):
    body = (
        b'{"object": "whatsapp_business_account", "entry": [], "pad": "'
        + b"x" * (3 * 1024 * 1024 - 100)
        + b'"}'
    )
    response = _post(client, body, webhook_signature(body, SECRET))
    assert response.status_code == 200
    assert len(WebhookEvent.objects.get().raw_body) == len(body)
