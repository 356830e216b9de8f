"""Automations: outside systems post signed events; active rules turn them into template messages
through the compliance gate, once per event id, and every run is logged with its outcome.

The signatures are computed here from each vendor's documented algorithm (hmac/base64 directly), not
with the module under test."""

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.contrib.auth.models import Permission
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from compliance.models import ConsentText
from compliance.personal_data import Person, holders
from compliance.services import Evidence, consent_opt_out_everywhere, consent_record, consent_text_create
from messaging.automations.models import AutomationEvent, AutomationRule, AutomationRun, Integration
from messaging.automations.personal_data import AutomationsPersonalData
from messaging.automations.services import (
    MappingError,
    events_recover,
    integration_create,
    integration_secret,
    path_lookup,
    rule_activate,
    rule_deactivate,
    rule_save,
)
from messaging.automations.signatures import SignatureInvalid, signature_verify
from messaging.models import Contact, Message, MessageStatus
from messaging.whatsapp.memory import MemoryBackend
from templates_app.models import MessageTemplate, TemplateStatus
from tests.factories import ContactFactory, UserFactory

pytestmark = pytest.mark.django_db

SECRET = "whsec-0123456789abcdef"
WABA = "900800700600500"  # the default sender's business account (config/test_settings.py)
PHONE = "+15550123456"
NOW = datetime(2025, 6, 10, 16, 0, tzinfo=UTC)


# --- Signatures, from the documented algorithms ------------------------------------------------------


def hmac_sha256(message: bytes) -> bytes:
    return hmac.new(SECRET.encode(), message, hashlib.sha256).digest()


def shopify_headers(body: bytes, *, webhook_id="wh-1", topic="orders/create") -> dict[str, str]:
    return {
        "X-Shopify-Hmac-Sha256": base64.b64encode(hmac_sha256(body)).decode(),
        "X-Shopify-Topic": topic,
        "X-Shopify-Webhook-Id": webhook_id,
    }


def zendesk_headers(body: bytes, *, at: datetime) -> dict[str, str]:
    stamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "X-Zendesk-Webhook-Signature": base64.b64encode(hmac_sha256(stamp.encode() + body)).decode(),
        "X-Zendesk-Webhook-Signature-Timestamp": stamp,
    }


def bamboohr_headers(body: bytes, *, at: datetime) -> dict[str, str]:
    stamp = str(int(at.timestamp()))
    return {"X-BambooHR-Signature": hmac_sha256(body + stamp.encode()).hex(), "X-BambooHR-Timestamp": stamp}


def generic_headers(
    body: bytes, *, at: datetime, event_id="evt-1", event_type="invoice.paid"
) -> dict[str, str]:
    # X-Event-Id and X-Event-Type are not part of the scheme (the signed body names the event); they
    # are sent here as a careless or hostile sender might, to show they change nothing.
    stamp = str(int(at.timestamp()))
    return {
        "X-Signature": "sha256=" + hmac_sha256(stamp.encode() + b"." + body).hex(),
        "X-Timestamp": stamp,
        "X-Event-Id": event_id,
        "X-Event-Type": event_type,
    }


BODY = b'{"id": 820982911946154508, "phone": "+15550123456"}'


@pytest.mark.parametrize(
    ("kind", "headers"),
    [
        ("shopify", shopify_headers(BODY)),
        ("zendesk", zendesk_headers(BODY, at=NOW)),
        ("bamboohr", bamboohr_headers(BODY, at=NOW)),
        ("generic", generic_headers(BODY, at=NOW)),
    ],
)
def test_each_scheme_accepts_its_own_signature_and_refuses_a_changed_body_or_secret(kind, headers):
    signature_verify(kind, secret=SECRET, headers=headers, body=BODY, now=NOW)
    with pytest.raises(SignatureInvalid):
        signature_verify(kind, secret=SECRET, headers=headers, body=BODY.replace(b"+1555", b"+1556"), now=NOW)
    with pytest.raises(SignatureInvalid):
        signature_verify(kind, secret=SECRET + "x", headers=headers, body=BODY, now=NOW)
    with pytest.raises(SignatureInvalid):
        signature_verify(kind, secret=SECRET, headers={}, body=BODY, now=NOW)


@pytest.mark.parametrize(
    ("kind", "sign"),
    [("zendesk", zendesk_headers), ("bamboohr", bamboohr_headers), ("generic", generic_headers)],
)
def test_timestamped_schemes_refuse_a_replay_older_or_newer_than_five_minutes(kind, sign):
    signature_verify(
        kind, secret=SECRET, headers=sign(BODY, at=NOW - timedelta(minutes=4)), body=BODY, now=NOW
    )
    for skew in (timedelta(minutes=6), -timedelta(minutes=6)):
        with pytest.raises(SignatureInvalid, match="5 minutes"):
            signature_verify(kind, secret=SECRET, headers=sign(BODY, at=NOW - skew), body=BODY, now=NOW)


def test_a_signature_over_another_timestamp_is_refused():
    headers = bamboohr_headers(BODY, at=NOW)
    headers["X-BambooHR-Timestamp"] = str(int(NOW.timestamp()) + 1)
    with pytest.raises(SignatureInvalid):
        signature_verify("bamboohr", secret=SECRET, headers=headers, body=BODY, now=NOW)


# --- Set-up: an approved template, people, a rule a second person activated ------------------------


def grant(user, *codenames):
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return type(user).objects.get(pk=user.pk)  # a fresh object: permissions are cached per instance


@pytest.fixture
def author():
    return grant(UserFactory(username="author"), "add_automationrule", "change_automationrule")


@pytest.fixture
def approver():
    return grant(UserFactory(username="approver"), "activate_automationrule")


@pytest.fixture
def template():
    return MessageTemplate.objects.create(
        waba_id=WABA,
        name="order_update",
        language="en_US",
        category="UTILITY",
        status=TemplateStatus.APPROVED,
        components=[{"type": "BODY", "text": "Hi {{1}}, order {{2}} arrives {{3}}."}],
    )


def opt_in(contact, purpose="utility"):
    if not ConsentText.objects.filter(version="v1").exists():
        consent_text_create(version="v1", business_name="Acme", body="Order updates on WhatsApp. Reply STOP.")
    consent_record(
        contact_id=contact.pk,
        phone_number=contact.phone_number,
        purpose=purpose,
        action="opt_in",
        source="api",
        evidence=Evidence(ip_address="203.0.113.9"),
        text_version="v1",
    )
    return contact


@pytest.fixture
def ava():
    return opt_in(ContactFactory(phone_number=PHONE, profile_name="Ava Jones"))


def make_rule(integration, template, author, approver, *, event_type, parameters, phone_path, activate=True):
    rule = rule_save(
        rule=AutomationRule(
            integration=integration,
            name=f"{integration.kind} {event_type}",
            event_type=event_type,
            template=template,
            parameters=parameters,
            phone_path=phone_path,
        ),
        user=author,
    )
    return rule_activate(rule=rule, user=approver) if activate else rule


@pytest.fixture
def shopify():
    return integration_create(kind="shopify", name="Shop", secret=SECRET)


@pytest.fixture
def shop_rule(shopify, template, author, approver):
    return make_rule(
        shopify,
        template,
        author,
        approver,
        event_type="orders/create",
        parameters=["customer.first_name", "name", {"text": "in 3 days"}],
        phone_path="customer.phone",
    )


def order(*, phone="+1 (555) 012-3456", **extra):
    return {
        "id": 820982911946154508,
        "name": "#1042",
        "customer": {"first_name": "Ava", "phone": phone},
        "line_items": [{"title": "Trail 500 helmet"}],
        **extra,
    }


def post(client, integration, payload, headers_for, **kwargs):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = headers_for(body, **kwargs)
    return client.post(
        f"/integrations/{integration.slug}/", body, content_type="application/json", headers=headers
    )


@pytest.fixture
def deliver(client, django_capture_on_commit_callbacks):
    """POST a signed delivery and run what it queued on commit (processing, then sending)."""

    def _deliver(integration, payload, headers_for, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return post(client, integration, payload, headers_for, **kwargs)

    return _deliver


def sent_parameters() -> list[str]:
    (sent,) = MemoryBackend.outbox
    body = next(c for c in sent["payload"]["template"]["components"] if c["type"] == "body")
    return [p["text"] for p in body["parameters"]]


# --- Endpoint and processing, per integration ------------------------------------------------------


def test_shopify_order_created_sends_the_template_with_values_from_the_order(
    deliver, shopify, shop_rule, ava
):
    response = deliver(shopify, order(), shopify_headers)

    assert response.status_code == 202, response.json()
    assert response.json()["code"] == "accepted"
    assert sent_parameters() == ["Ava", "#1042", "in 3 days"]
    (run,) = AutomationRun.objects.all()
    assert (run.outcome, run.rule, run.message.contact) == ("queued", shop_rule, ava)
    assert run.message.status == MessageStatus.SENT
    timeline = list(run.message.status_events.values_list("status", "detail"))
    assert ("queued", f"released by automation rule #{shop_rule.pk} “{shop_rule.name}”") in timeline
    event = AutomationEvent.objects.get()
    assert (event.event_id, event.event_type, event.processed_at is not None) == (
        "wh-1",
        "orders/create",
        True,
    )


def test_an_event_whose_processing_task_was_lost_is_processed_by_the_periodic_sweep(
    client, shopify, shop_rule, ava, django_capture_on_commit_callbacks
):
    # Acknowledged, but the on-commit task never ran (the broker was down, the worker died).
    assert post(client, shopify, order(), shopify_headers).status_code == 202
    assert MemoryBackend.outbox == []
    with django_capture_on_commit_callbacks(execute=True):
        assert events_recover() == 0  # too recent: its task may still be on its way
    with (
        time_machine.travel(timezone.now() + timedelta(minutes=3)),
        django_capture_on_commit_callbacks(execute=True),
    ):
        assert events_recover() == 1
        assert events_recover() == 0  # processed once
    assert sent_parameters() == ["Ava", "#1042", "in 3 days"]


def test_a_redelivered_shopify_webhook_is_acknowledged_and_sends_nothing_again(
    deliver, shopify, shop_rule, ava
):
    assert deliver(shopify, order(), shopify_headers).status_code == 202
    again = deliver(shopify, order(), shopify_headers)

    assert again.status_code == 200
    assert again.json()["code"] == "duplicate"
    assert len(MemoryBackend.outbox) == 1 and Message.objects.count() == 1
    assert AutomationEvent.objects.count() == 1
    assert sorted(AutomationRun.objects.values_list("outcome", flat=True)) == ["duplicate", "queued"]


def test_a_delayed_shopify_fulfillment_triggers_the_orders_delayed_rule(
    deliver, shopify, template, author, approver, ava
):
    make_rule(
        shopify, template, author, approver,
        event_type="orders/delayed",
        parameters=[{"text": "Ava"}, "order_id", "estimated_delivery_at"],
        phone_path="destination.phone",
    )  # fmt: skip
    event = {
        "id": 944956395,
        "fulfillment_id": 255858046,
        "order_id": 450789469,
        "status": "delayed",
        "estimated_delivery_at": "June 14",
        "destination": {"phone": PHONE},
    }
    response = deliver(shopify, event, shopify_headers, topic="fulfillment_events/create", webhook_id="wh-9")

    assert response.status_code == 202
    assert AutomationEvent.objects.get().event_type == "orders/delayed"
    assert sent_parameters() == ["Ava", "450789469", "June 14"]


def test_zendesk_ticket_solved_asks_for_feedback(deliver, template, author, approver, ava):
    zendesk = integration_create(kind="zendesk", name="Help desk", secret=SECRET)
    make_rule(
        zendesk, template, author, approver,
        event_type="ticket.solved",
        parameters=["ticket.requester.first_name", "ticket.id", {"text": "today"}],
        phone_path="ticket.requester.phone",
    )  # fmt: skip
    ticket = {
        "event_type": "ticket.solved",
        "ticket": {"id": 35436, "requester": {"first_name": "Ava", "phone": PHONE}},
    }

    response = deliver(zendesk, ticket, zendesk_headers, at=timezone.now())

    assert response.status_code == 202, response.json()
    assert sent_parameters() == ["Ava", "35436", "today"]
    # The same delivery replayed later, even freshly re-signed, is the same event: nothing more is sent.
    assert deliver(zendesk, ticket, zendesk_headers, at=timezone.now()).json()["code"] == "duplicate"
    assert len(MemoryBackend.outbox) == 1
    # A captured delivery replayed with its old timestamp is refused outright.
    stale = deliver(zendesk, ticket, zendesk_headers, at=timezone.now() - timedelta(minutes=10))
    assert (stale.status_code, stale.json()["code"]) == (401, "invalid_signature")


def test_zendesk_event_subscription_status_changed_to_solved_is_ticket_solved(deliver, ava):
    zendesk = integration_create(kind="zendesk", name="Help desk", secret=SECRET)
    payload = {
        "id": "cbe4028c-7239-495d-b020-f22348516046",
        "type": "zen:event-type:ticket.status_changed",
        "event": {"current": "SOLVED", "previous": "OPEN"},
        "detail": {"id": "35436"},
    }
    assert deliver(zendesk, payload, zendesk_headers, at=timezone.now()).status_code == 202
    event = AutomationEvent.objects.get()
    assert (event.event_id, event.event_type) == ("cbe4028c-7239-495d-b020-f22348516046", "ticket.solved")


def test_bamboohr_new_employee_gets_the_welcome_for_each_hire_in_the_delivery(
    deliver, template, author, approver, ava
):
    bamboo = integration_create(kind="bamboohr", name="HR", secret=SECRET)
    make_rule(
        bamboo, template, author, approver,
        event_type="employee.created",
        parameters=["fields.firstName", "fields.department", "fields.hireDate"],
        phone_path="fields.mobilePhone",
    )  # fmt: skip
    delivery = {
        "employees": [
            {"id": "41", "action": "Created", "timestamp": "2025-06-10T16:00:00+00:00",
             "fields": {"firstName": "Ava", "department": "Orientation at HQ", "hireDate": "2025-06-16",
                        "mobilePhone": "555-012-3456"}},
            {"id": "7", "action": "Updated", "fields": {"firstName": "Ben", "mobilePhone": "+15550987654"}},
        ]
    }  # fmt: skip

    response = deliver(bamboo, delivery, bamboohr_headers, at=timezone.now())

    assert response.status_code == 202, response.json()
    assert sent_parameters() == ["Ava", "Orientation at HQ", "2025-06-16"]
    assert AutomationEvent.objects.get().event_type == "employee.created,employee.updated"
    assert AutomationRun.objects.count() == 1  # the update matched no rule
    stale = deliver(bamboo, delivery, bamboohr_headers, at=timezone.now() - timedelta(minutes=6))
    assert (stale.status_code, stale.json()["code"]) == (401, "invalid_signature")


def test_generic_trigger_sends_and_is_idempotent_by_its_event_id(deliver, template, author, approver, ava):
    generic = integration_create(kind="generic", name="Billing", secret=SECRET)
    make_rule(
        generic, template, author, approver,
        event_type="invoice.paid",
        parameters=["customer.name", "invoice.number", "invoice.due"],
        phone_path="customer.mobile",
    )  # fmt: skip
    payload = {
        "event_id": "evt-1",
        "event_type": "invoice.paid",
        "customer": {"name": "Ava", "mobile": PHONE},
        "invoice": {"number": "INV-7", "due": "July 1"},
    }

    assert deliver(generic, payload, generic_headers, at=timezone.now()).status_code == 202
    replay = deliver(generic, payload, generic_headers, at=timezone.now() + timedelta(seconds=30))

    assert replay.json()["code"] == "duplicate"
    assert sent_parameters() == ["Ava", "INV-7", "July 1"]
    event = AutomationEvent.objects.get()
    assert (event.event_id, event.event_type) == ("evt-1", "invoice.paid")


def test_a_generic_replay_with_other_unsigned_id_or_type_headers_sends_nothing_again(
    deliver, template, author, approver, ava
):
    # X-Event-Id and X-Event-Type are outside the signature: a replay within the 5 minutes that only
    # changes them is the same signed event, not a new one (and not another rule's).
    generic = integration_create(kind="generic", name="Billing", secret=SECRET)
    for event_type in ("invoice.paid", "invoice.overdue"):
        make_rule(
            generic, template, author, approver,
            event_type=event_type,
            parameters=["customer.name", "invoice.number", {"text": event_type}],
            phone_path="customer.mobile",
        )  # fmt: skip
    payload = {
        "event_id": "evt-1",
        "event_type": "invoice.paid",
        "customer": {"name": "Ava", "mobile": PHONE},
        "invoice": {"number": "INV-7"},
    }
    assert deliver(generic, payload, generic_headers, at=timezone.now()).status_code == 202

    for changed in ({"event_id": "evt-2"}, {"event_type": "invoice.overdue"}):
        replay = deliver(generic, payload, generic_headers, at=timezone.now(), **changed)
        assert (replay.status_code, replay.json()["code"]) == (200, "duplicate")
    assert sent_parameters() == ["Ava", "INV-7", "invoice.paid"]  # one message, the paid one
    assert AutomationEvent.objects.count() == 1

    # Changing the id or type where they are read, in the body, breaks the signature.
    body = json.dumps(payload).encode()
    headers = generic_headers(body, at=timezone.now())
    forged = body.replace(b'"evt-1"', b'"evt-3"')
    response = deliver(generic, forged, lambda _body: headers)
    assert (response.status_code, response.json()["code"]) == (401, "invalid_signature")


def test_a_generic_delivery_naming_its_event_only_in_headers_is_refused(client):
    generic = integration_create(kind="generic", name="Billing", secret=SECRET)
    payload = {"customer": {"name": "Ava", "mobile": PHONE}}
    response = post(client, generic, payload, generic_headers, at=timezone.now())
    assert (response.status_code, response.json()["code"]) == (400, "missing_event_id")
    assert "event_id" in response.json()["detail"]
    assert not AutomationEvent.objects.exists()


def test_a_captured_shopify_delivery_replayed_with_another_webhook_id_or_topic_sends_nothing_again(
    deliver, shopify, shop_rule, template, author, approver, ava
):
    # Shopify signs only the body; the webhook id and topic are unsigned headers anyone can rewrite.
    make_rule(
        shopify, template, author, approver,
        event_type="orders/fulfilled",
        parameters=["customer.first_name", "name", {"text": "today"}],
        phone_path="customer.phone",
    )  # fmt: skip
    assert deliver(shopify, order(), shopify_headers).status_code == 202

    for headers in ({"webhook_id": "wh-2"}, {"webhook_id": "wh-3", "topic": "orders/fulfilled"}):
        replay = deliver(shopify, order(), shopify_headers, **headers)
        assert (replay.status_code, replay.json()["code"]) == (200, "duplicate")
        assert replay.json()["event_id"] == "wh-1"

    assert sent_parameters() == ["Ava", "#1042", "in 3 days"]  # one message, the orders/create one
    assert AutomationEvent.objects.count() == 1
    assert sorted(AutomationRun.objects.values_list("outcome", flat=True)) == [
        "duplicate",
        "duplicate",
        "queued",
    ]
    # Another order (another body) is another event.
    assert deliver(shopify, order(name="#1043"), shopify_headers, webhook_id="wh-4").status_code == 202
    assert len(MemoryBackend.outbox) == 2


# --- Refusals at the door -------------------------------------------------------------------------


def test_an_unknown_or_inactive_integration_is_404(client, shopify):
    body = json.dumps(order()).encode()
    response = client.post(
        "/integrations/nope/", body, content_type="application/json", headers=shopify_headers(body)
    )
    assert (response.status_code, response.json()["code"]) == (404, "unknown_integration")
    Integration.objects.filter(pk=shopify.pk).update(is_active=False)
    assert post(client, shopify, order(), shopify_headers).status_code == 404


def test_a_wrong_signature_is_401_and_nothing_is_stored(client, shopify, shop_rule, ava):
    body = json.dumps(order()).encode()
    headers = shopify_headers(body)
    headers["X-Shopify-Hmac-Sha256"] = base64.b64encode(b"x" * 32).decode()
    response = client.post(
        f"/integrations/{shopify.slug}/", body, content_type="application/json", headers=headers
    )
    assert (response.status_code, response.json()["code"]) == (401, "invalid_signature")
    assert not AutomationEvent.objects.exists()


def test_signed_but_malformed_bodies_are_400_with_a_code(client, shopify):
    bad_json = post(client, shopify, b'{"id": 1,', shopify_headers)
    assert (bad_json.status_code, bad_json.json()["code"]) == (400, "invalid_json")
    not_object = post(client, shopify, b"[1, 2]", shopify_headers)
    assert (not_object.status_code, not_object.json()["code"]) == (400, "not_an_object")
    body = b'{"id": 1}'
    headers = shopify_headers(body)
    del headers["X-Shopify-Webhook-Id"]
    no_id = client.post(
        f"/integrations/{shopify.slug}/", body, content_type="application/json", headers=headers
    )
    assert (no_id.status_code, no_id.json()["code"]) == (400, "missing_event_id")
    assert client.get(f"/integrations/{shopify.slug}/").status_code == 405
    assert not AutomationEvent.objects.exists()


def test_a_non_numeric_content_length_is_400_with_a_code(client, shopify):
    body = json.dumps(order()).encode()
    response = client.post(
        f"/integrations/{shopify.slug}/",
        body,
        content_type="application/json",
        headers=shopify_headers(body),
        CONTENT_LENGTH="12abc",
    )
    assert (response.status_code, response.json()["code"]) == (400, "invalid_content_length")
    assert not AutomationEvent.objects.exists()


# --- The gate and the mapping ---------------------------------------------------------------------


def test_a_person_we_do_not_know_gets_nothing_and_nothing_is_created_about_them(deliver, shopify, shop_rule):
    response = deliver(shopify, order(phone="+15550111222"), shopify_headers)

    assert response.status_code == 202
    (run,) = AutomationRun.objects.all()
    assert (run.outcome, run.code, run.message) == ("refused", "no_consent", None)
    assert not Message.objects.exists() and not Contact.objects.exists()
    assert MemoryBackend.outbox == []


def test_an_opted_out_person_is_refused_with_the_gates_code(deliver, shopify, shop_rule, ava):
    consent_opt_out_everywhere(
        contact_id=ava.pk,
        phone_number=ava.phone_number,
        source="api",
        evidence=Evidence(ip_address="203.0.113.9"),
    )
    deliver(shopify, order(), shopify_headers)
    (run,) = AutomationRun.objects.all()
    assert (run.outcome, run.code) == ("refused", "opted_out")
    assert MemoryBackend.outbox == []


def test_a_template_no_longer_approved_is_logged_and_not_sent(deliver, shopify, shop_rule, template, ava):
    MessageTemplate.objects.filter(pk=template.pk).update(status=TemplateStatus.PAUSED)
    deliver(shopify, order(), shopify_headers)
    (run,) = AutomationRun.objects.all()
    assert (run.outcome, run.code) == ("template_not_approved", "template_not_approved")
    assert "paused" in run.detail and not Message.objects.exists()


def test_a_missing_path_is_a_mapping_error_naming_it(deliver, shopify, shop_rule, ava):
    payload = order()
    del payload["customer"]["first_name"]
    deliver(shopify, payload, shopify_headers)
    (run,) = AutomationRun.objects.all()
    assert (run.outcome, run.code) == ("mapping_error", "missing_path")
    assert "customer.first_name" in run.detail
    assert not Message.objects.exists()


def test_an_invalid_phone_number_is_logged_as_such(deliver, shopify, shop_rule, ava):
    deliver(shopify, order(phone="12"), shopify_headers)
    (run,) = AutomationRun.objects.all()
    assert (run.outcome, run.code) == ("invalid_phone_number", "invalid_phone_number")
    assert not Message.objects.exists()


def test_paths_reach_into_lists_by_index_and_name_where_they_stop():
    data = order()
    assert path_lookup(data, "line_items.0.title") == "Trail 500 helmet"
    with pytest.raises(MappingError, match=r"line_items\.3"):
        path_lookup(data, "line_items.3.title")
    with pytest.raises(MappingError, match="not a text"):
        path_lookup(data, "customer")


def test_a_rule_with_the_wrong_number_of_parameters_is_refused_when_saved(shopify, template, author):
    rule = AutomationRule(
        integration=shopify, name="short", event_type="orders/create", template=template,
        parameters=["customer.first_name"], phone_path="customer.phone",
    )  # fmt: skip
    with pytest.raises(ValidationError) as exc:
        rule_save(rule=rule, user=author)
    assert "has 3 variable(s)" in str(exc.value.message_dict["parameters"])
    rule.parameters = ["a", {"txt": "typo"}, "c"]
    with pytest.raises(ValidationError) as exc:
        rule_save(rule=rule, user=author)
    assert "parameters" in exc.value.message_dict
    rule.parameters, rule.phone_path = ["a", "b", "c"], ""
    with pytest.raises(ValidationError) as exc:
        rule_save(rule=rule, user=author)
    assert "phone_path" in exc.value.message_dict
    assert not AutomationRule.objects.exists()


# --- Two people -----------------------------------------------------------------------------------


def test_a_rule_is_activated_by_a_second_person_with_the_permission(shopify, template, author, approver):
    rule = make_rule(
        shopify, template, author, approver, activate=False,
        event_type="orders/create", parameters=["a", "b", "c"], phone_path="customer.phone",
    )  # fmt: skip
    assert rule.is_active is False
    author_with_permission = grant(author, "activate_automationrule")
    with pytest.raises(ValidationError, match="you wrote") as refused:
        rule_activate(rule=rule, user=author_with_permission)
    assert refused.value.code == "own_rule"
    with pytest.raises(PermissionDenied, match="not allowed"):
        rule_activate(rule=rule, user=UserFactory(username="bystander"))

    rule = rule_activate(rule=rule, user=approver)
    assert (rule.is_active, rule.activated_by) == (True, approver)

    # Any change stops it until someone else approves the new version.
    rule.parameters = ["x", "y", "z"]
    rule = rule_save(rule=rule, user=author)
    assert (rule.is_active, rule.activated_by) == (False, None)
    rule_activate(rule=rule, user=approver)
    assert rule_deactivate(rule=rule, user=author_with_permission).is_active is False


def test_a_colleague_who_rewrote_a_rule_cannot_activate_it_alone(shopify, template, author, approver):
    rule = make_rule(
        shopify, template, author, approver, activate=False,
        event_type="orders/create", parameters=["a", "b", "c"], phone_path="customer.phone",
    )  # fmt: skip
    editor = grant(UserFactory(username="editor"), "change_automationrule", "activate_automationrule")

    # The editor sends the message to another number and puts their own words in it...
    rule.phone_path, rule.parameters = "note_attributes.0.value", [{"text": "x"}, "b", "c"]
    rule = rule_save(rule=rule, user=editor)
    assert (rule.created_by, rule.last_changed_by) == (author, editor)
    # ... and cannot approve what they wrote, though they did not create the rule.
    with pytest.raises(ValidationError) as refused:
        rule_activate(rule=rule, user=editor)
    assert refused.value.code == "own_rule"
    assert AutomationRule.objects.get(pk=rule.pk).is_active is False
    # The author did not write this version, but wrote the rule: not a second person either.
    with pytest.raises(ValidationError) as refused:
        rule_activate(rule=rule, user=grant(author, "activate_automationrule"))
    assert refused.value.code == "own_rule"

    assert rule_activate(rule=rule, user=approver).activated_by == approver


def test_a_rule_whose_writers_are_gone_cannot_be_activated(shopify, template, approver):
    writer = grant(UserFactory(username="leaver"), "add_automationrule")
    rule = rule_save(
        rule=AutomationRule(
            integration=shopify, name="orphan", event_type="orders/create", template=template,
            parameters=["a", "b", "c"], phone_path="customer.phone",
        ),
        user=writer,
    )  # fmt: skip
    assert rule.last_changed_by == writer  # set on creation too
    writer.delete()  # nobody can tell whether the approver is a second person

    with pytest.raises(ValidationError) as refused:
        rule_activate(rule=rule, user=approver)
    assert refused.value.code == "author_unknown"
    assert AutomationRule.objects.get(pk=rule.pk).is_active is False


def test_an_inactive_rule_sends_nothing(deliver, shopify, template, author, approver, ava):
    make_rule(
        shopify, template, author, approver, activate=False,
        event_type="orders/create", parameters=["customer.first_name", "name", "id"], phone_path="customer.phone",
    )  # fmt: skip
    assert deliver(shopify, order(), shopify_headers).status_code == 202
    assert not AutomationRun.objects.exists() and MemoryBackend.outbox == []


# --- Secrets, the admin, personal data ------------------------------------------------------------


def test_the_secret_is_stored_encrypted_and_never_shown_back_in_the_admin(client):
    admin_user = UserFactory(username="root", is_staff=True, is_superuser=True)
    client.force_login(admin_user)
    response = client.post(
        "/admin/automations/integration/add/",
        {"kind": "shopify", "name": "Shop", "secret": SECRET, "is_active": "on"},
    )
    assert response.status_code == 302, response.content
    integration = Integration.objects.get()
    assert SECRET not in integration.secret_encrypted and integration_secret(integration) == SECRET

    page = client.get(f"/admin/automations/integration/{integration.pk}/change/").content.decode()
    assert SECRET not in page
    assert f"http://testserver/integrations/{integration.slug}/" in page and "X-Shopify-Hmac-Sha256" in page
    # Saving without a secret keeps the current one.
    client.post(
        f"/admin/automations/integration/{integration.pk}/change/",
        {"kind": "shopify", "name": "Shop 2", "secret": "", "is_active": "on"},
    )
    integration.refresh_from_db()
    assert (integration.name, integration_secret(integration)) == ("Shop 2", SECRET)


def test_the_admin_lists_events_and_runs_read_only_with_a_link_to_the_message(
    client, deliver, shopify, shop_rule, ava
):
    deliver(shopify, order(), shopify_headers)
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    runs = client.get("/admin/automations/automationrun/?outcome=queued").content.decode()
    message = Message.objects.get()
    assert f"/admin/messaging/message/{message.pk}/change/" in runs
    assert client.get("/admin/automations/automationevent/").status_code == 200
    assert client.get("/admin/automations/automationrun/add/").status_code == 403
    rule_page = client.get("/admin/automations/automationrule/")
    assert rule_page.status_code == 200


def test_erasure_redacts_the_persons_events_and_runs_and_a_know_request_lists_them(
    deliver, shopify, shop_rule, ava
):
    deliver(shopify, order(), shopify_headers)
    deliver(shopify, order(phone="+15550987654", customer_name="Ben"), shopify_headers, webhook_id="wh-ben")
    # Registered: every privacy request (know, delete) reaches it.
    assert any(isinstance(h, AutomationsPersonalData) for h in holders())
    holder = AutomationsPersonalData()
    person = Person(phone_number=PHONE, contact_id=ava.pk)

    held = holder.personal_data_collect(person)
    (piece,) = held.pieces["automation events"]
    assert (
        piece["data"]["customer"]["phone"] == "+1 (555) 012-3456" and piece["runs"][0]["outcome"] == "queued"
    )

    counts = holder.personal_data_erase(person)
    assert counts["automation events redacted"] == 1
    assert not AutomationEvent.objects.filter(raw_body__contains="012-3456").exists()
    assert AutomationEvent.objects.filter(event_id="wh-ben", raw_body__contains="0987654").exists()
    assert holder.personal_data_collect(person).pieces == {}


def test_an_event_erased_before_it_was_processed_is_closed_by_the_sweep_and_sends_nothing(
    client, shopify, shop_rule, ava, django_capture_on_commit_callbacks
):
    # Acknowledged, its task lost, then the person asked to be erased before the sweep came by.
    assert post(client, shopify, order(), shopify_headers).status_code == 202
    AutomationsPersonalData().personal_data_erase(Person(phone_number=PHONE, contact_id=ava.pk))
    assert AutomationEvent.objects.get().raw_body == "[erased]"

    with (
        time_machine.travel(timezone.now() + timedelta(minutes=3)),
        django_capture_on_commit_callbacks(execute=True),
    ):
        assert events_recover() == 1
        assert events_recover() == 0  # closed: not retried on every sweep

    event = AutomationEvent.objects.get()
    assert event.processed_at is not None
    (run,) = event.runs.all()
    assert (run.outcome, run.code, run.rule) == ("payload_erased", "payload_erased", None)
    assert MemoryBackend.outbox == [] and not Message.objects.exists()


def test_in_the_admin_the_author_saves_a_rule_and_a_colleague_activates_it(client, shopify, template):
    author = grant(
        UserFactory(username="composer", is_staff=True), "add_automationrule", "view_automationrule"
    )
    form = {
        "integration": shopify.pk,
        "name": "Order confirmation",
        "event_type": "orders/create",
        "template": template.pk,
        "parameters": '["customer.first_name", "name"]',
        "phone_path": "customer.phone",
    }
    client.force_login(author)
    refused = client.post("/admin/automations/automationrule/add/", form)
    assert refused.status_code == 200 and "has 3 variable(s)" in refused.content.decode()

    form["parameters"] = '["customer.first_name", "name", {"text": "soon"}]'
    assert client.post("/admin/automations/automationrule/add/", form).status_code == 302
    rule = AutomationRule.objects.get()
    assert (rule.is_active, rule.created_by) == (False, author)

    approver = grant(
        UserFactory(username="checker", is_staff=True), "view_automationrule", "activate_automationrule"
    )
    client.force_login(approver)
    client.post("/admin/automations/automationrule/", {"action": "activate", "_selected_action": [rule.pk]})
    rule.refresh_from_db()
    assert (rule.is_active, rule.activated_by) == (True, approver)
