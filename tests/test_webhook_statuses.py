"""Meta's status webhooks, replayed through the real endpoint with a real signature, as staff then see
them on the message: its status, when it was sent/delivered/read, what Meta charges, Meta's error, and
the timeline. One fixture per status event (tests/fixtures/webhooks/status_*.json, our own, written
from Meta's documentation), then the rules: statuses only move forward, duplicates change nothing,
statuses that arrive before our wamid wait for it, and an unconfirmed send is settled by its
callback data."""

import copy
import json
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.urls import reverse

from compliance.models import ConsentEvent
from compliance.services import consent_status
from messaging.models import (
    Message,
    MessageStatus,
    MessageStatusEvent,
    PendingStatus,
    ProviderAlert,
    WebhookEvent,
)
from messaging.services import sender_get_default
from messaging.statuses import pending_statuses_apply, pending_statuses_sweep, status_apply
from messaging.webhook_events import webhook_normalize
from tests.factories import ContactFactory, UserFactory
from tests.webhook_client import load_fixture, post_webhook

pytestmark = pytest.mark.django_db

WAMID = "wamid.HBgLMTU1NTAxMjM0NTYVAgARGBI4QjFGNkQ0QTlDMjM3RTBDNTEA"  # the fixtures' message
VOICE_WAMID = "wamid.HBgLMTU1NTAxMjM0NTYVAgARGBJFNzc0QjA5OUQ2RjJBMTg3QzIA"
OUR_SEND_AT = datetime(2026, 1, 1, 9, 59, 59, tzinfo=UTC)  # when our worker had Meta's answer


def meta_time(seconds: str) -> datetime:
    return datetime.fromtimestamp(int(seconds), tz=UTC)


SENT_AT = meta_time("1767261600")
DELIVERED_AT = meta_time("1767261605")
READ_AT = meta_time("1767261720")
FAILED_AT = meta_time("1767261603")


@pytest.fixture
def contact():
    return ContactFactory(phone_number="+15550123456", profile_name="Ava Johnson")


def outbound(contact, *, status=MessageStatus.SENT, wamid: str | None = WAMID, **fields) -> Message:
    defaults = {
        "kind": "text",
        "content": {"body": "Your order #1042 ships today."},
        "sent_at": OUR_SEND_AT if status == MessageStatus.SENT else None,
    }
    return Message.objects.create(
        contact=contact,
        sender=sender_get_default(),
        status=status,
        provider_message_id=wamid,
        **{**defaults, **fields},
    )


def replay(client, name: str, **status_fields):
    """POST a fixture (optionally with fields of its status changed) and check it was applied."""
    body = load_fixture(name)
    if status_fields:
        body["entry"][0]["changes"][0]["value"]["statuses"][0].update(status_fields)
    response = post_webhook(client, body)
    assert response.status_code == 200
    event = WebhookEvent.objects.order_by("-id").first()
    assert (event.state, event.error) == (WebhookEvent.State.PROCESSED, "")
    return event


def timeline(message) -> list[tuple[str, datetime]]:
    return list(
        MessageStatusEvent.objects.filter(message=message, source="webhook").values_list(
            "status", "occurred_at"
        )
    )


def admin_page(message) -> str:
    from django.test import Client

    staff = Client()
    staff.force_login(UserFactory(username="admin", is_staff=True, is_superuser=True))
    response = staff.get(reverse("admin:messaging_message_change", args=[message.pk]))
    assert response.status_code == 200
    return response.text


# --- One fixture per status event -------------------------------------------------------------------


def test_sent_with_conversation_pricing_records_what_meta_charges(client, contact):
    message = outbound(contact)
    replay(client, "status_sent_cbp_pricing")
    message.refresh_from_db()
    assert message.status == MessageStatus.SENT
    assert message.sent_at == OUR_SEND_AT  # ours: when Meta accepted the request
    assert (message.pricing_model, message.pricing_category, message.billable) == ("CBP", "utility", True)
    assert message.conversation_id == "c0ffee5e1d2a4b7f9e8d7c6b5a493827"
    assert timeline(message) == [("sent", SENT_AT)]


def test_sent_with_per_message_pricing(client, contact):
    message = outbound(contact, template_category="MARKETING")
    replay(client, "status_sent_pmp_pricing")
    message.refresh_from_db()
    assert (message.pricing_model, message.pricing_type, message.pricing_category) == (
        "PMP",
        "regular",
        "marketing",
    )
    assert message.billable is True
    assert "marketing / regular" in admin_page(message)


def test_delivered_moves_the_message_and_shows_on_its_page(client, contact):
    message = outbound(contact)
    replay(client, "status_delivered")
    message.refresh_from_db()
    assert message.status == MessageStatus.DELIVERED
    assert message.delivered_at == DELIVERED_AT
    assert (message.pricing_category, message.pricing_type) == ("utility", "regular")
    assert timeline(message) == [("delivered", DELIVERED_AT)]
    page = admin_page(message)
    assert 'data-status="delivered"' in page
    assert "delivered 2026-01-01" in page  # delivery times, in the admin's time zone


def test_read_implies_delivered_without_inventing_a_timeline_row(client, contact):
    message = outbound(contact)
    replay(client, "status_read")
    message.refresh_from_db()
    assert message.status == MessageStatus.READ
    assert message.read_at == READ_AT
    assert message.delivered_at == READ_AT  # it was delivered by then at the latest
    assert timeline(message) == [("read", READ_AT)]  # only what Meta said


def test_played_for_a_voice_message(client, contact):
    message = outbound(contact, wamid=VOICE_WAMID, kind="audio", content={"id": "1013859600285441"})
    replay(client, "status_played_voice")
    message.refresh_from_db()
    assert message.status == MessageStatus.PLAYED
    assert message.played_at == meta_time("1767261780")
    assert message.delivered_at == message.played_at
    assert message.read_at is None
    assert timeline(message) == [("played", message.played_at)]


def test_failed_stores_metas_error_for_staff(client, contact):
    message = outbound(contact)
    replay(client, "status_failed_undeliverable")
    message.refresh_from_db()
    assert message.status == MessageStatus.FAILED
    assert message.failed_at == FAILED_AT
    assert (message.error_code, message.error_title) == ("131026", "Message undeliverable")
    assert message.error_details == "Unable to deliver message. The recipient may not be a WhatsApp user."
    (row,) = MessageStatusEvent.objects.filter(message=message, source="webhook")
    assert (row.status, row.occurred_at) == ("failed", FAILED_AT)
    assert row.detail.startswith("131026: Message undeliverable")
    page = admin_page(message)
    assert 'data-status="failed"' in page and "Message undeliverable" in page


def test_failed_with_131050_opts_the_person_out_of_marketing_once(client, contact):
    message = outbound(contact, template_category="MARKETING")
    replay(client, "status_failed_marketing_opt_out")
    message.refresh_from_db()
    assert (message.status, message.error_code) == (MessageStatus.FAILED, "131050")
    assert consent_status(contact_id=contact.pk, purpose="marketing") == "revoked"
    assert ConsentEvent.objects.filter(source="meta_error_131050").count() == 1

    # Meta redelivers the same status inside another batch: no second ledger entry.
    body = load_fixture("status_failed_marketing_opt_out")
    body["entry"][0]["id"] = "redelivery"
    assert post_webhook(client, body).status_code == 200
    assert ConsentEvent.objects.filter(source="meta_error_131050").count() == 1


def test_sent_with_callback_data_settles_an_unconfirmed_send(client, contact):
    message = outbound(
        contact,
        status=MessageStatus.UNCONFIRMED,
        wamid=None,
        pk=4242,  # the fixture's biz_opaque_callback_data
        error_code="transport",
        error_title="Read timed out",
    )
    replay(client, "status_sent_callback_data")
    message.refresh_from_db()
    assert message.status == MessageStatus.SENT
    assert message.provider_message_id == WAMID
    assert message.sent_at == meta_time("1767261601")  # we had no answer: Meta's time is the best we know
    assert (message.error_code, message.error_title) == ("", "")
    (row,) = MessageStatusEvent.objects.filter(message=message, source="webhook")
    assert "callback data" in row.detail

    # Its later statuses find it by wamid.
    replay(client, "status_delivered")
    message.refresh_from_db()
    assert message.status == MessageStatus.DELIVERED


def test_v25_status_with_business_scoped_user_ids(client, contact):
    message = outbound(contact)
    replay(client, "status_delivered_v25_user_ids")
    message.refresh_from_db()
    assert message.status == MessageStatus.DELIVERED
    assert (message.pricing_type, message.pricing_category, message.billable) == (
        "free_customer_service",
        "service",
        False,
    )
    assert message.conversation_id == "c0ffee5e1d2a4b7f9e8d7c6b5a493827"


def test_a_status_value_we_do_not_know_is_kept_in_the_timeline_only(client, contact):
    message = outbound(contact)
    replay(client, "status_unknown_value")
    message.refresh_from_db()
    assert message.status == MessageStatus.SENT
    (row,) = MessageStatusEvent.objects.filter(message=message, source="webhook")
    assert row.status == "unknown"
    assert "held_for_quality_assessment" in row.detail
    assert "held_for_quality_assessment" in admin_page(message)


@pytest.mark.parametrize("value", ["deleted", "warning"])
def test_deleted_and_warning_statuses_are_recorded_without_moving_the_message(client, contact, value):
    message = outbound(contact, status=MessageStatus.DELIVERED)
    replay(client, "status_read", status=value)
    message.refresh_from_db()
    assert message.status == MessageStatus.DELIVERED
    assert [status for status, _ in timeline(message)] == [value]


# --- Forward only, once --------------------------------------------------------------------------------


def test_read_then_delivered_stays_read_and_takes_the_real_delivery_time(client, contact):
    message = outbound(contact)
    replay(client, "status_read")
    replay(client, "status_delivered")
    message.refresh_from_db()
    assert message.status == MessageStatus.READ
    assert message.delivered_at == DELIVERED_AT  # Meta's own, earlier than the read that implied it
    assert timeline(message) == [("delivered", DELIVERED_AT), ("read", READ_AT)]


def test_failed_after_delivered_stays_delivered_and_is_kept_in_the_timeline(client, contact):
    message = outbound(contact)
    replay(client, "status_delivered")
    replay(client, "status_failed_undeliverable")
    message.refresh_from_db()
    assert message.status == MessageStatus.DELIVERED
    assert (message.error_code, message.failed_at) == ("", None)
    assert [status for status, _ in timeline(message)] == ["failed", "delivered"]  # by Meta's time


def test_failed_is_terminal_a_late_delivered_is_only_recorded(client, contact):
    message = outbound(contact)
    replay(client, "status_failed_undeliverable")
    replay(client, "status_delivered")
    message.refresh_from_db()
    assert message.status == MessageStatus.FAILED
    assert message.error_code == "131026"
    # Meta contradicting itself stays visible to staff in the timeline.
    assert {"failed", "delivered"} <= {status for status, _ in timeline(message)}


def test_duplicates_change_nothing(client, contact):
    message = outbound(contact)
    replay(client, "status_delivered")
    message.refresh_from_db()
    before = (message.status, message.delivered_at, message.pricing_category, message.conversation_id)
    # The same status again, in a batch whose bytes differ (an identical body is not even processed).
    body = load_fixture("status_delivered")
    body["entry"][0]["changes"][0]["value"]["statuses"][0]["timestamp"] = "1767261999"
    assert post_webhook(client, body).status_code == 200
    message.refresh_from_db()
    assert (message.status, message.delivered_at, message.pricing_category, message.conversation_id) == before
    assert timeline(message) == [("delivered", DELIVERED_AT)]


def test_a_status_without_timestamp_takes_the_time_the_webhook_arrived(client, contact):
    message = outbound(contact)
    event = replay(client, "status_delivered", timestamp="not a time")
    message.refresh_from_db()
    assert message.delivered_at == event.received_at
    assert timeline(message) == [("delivered", event.received_at)]


# --- Who a status is for -------------------------------------------------------------------------------


def test_a_status_for_an_unknown_wamid_waits_and_is_applied_once_the_send_records_it(client, contact):
    replay(client, "status_delivered")
    replay(client, "status_read")
    replay(client, "status_read", timestamp="1767261721")  # a redelivery keeps one row
    assert sorted(PendingStatus.objects.values_list("status", flat=True)) == ["delivered", "read"]

    # Our send records the wamid (sending.py calls pending_statuses_apply right after).
    message = outbound(contact)
    assert pending_statuses_apply(WAMID) == 2
    message.refresh_from_db()
    assert message.status == MessageStatus.READ
    assert (message.delivered_at, message.read_at) == (DELIVERED_AT, READ_AT)
    assert timeline(message) == [("delivered", DELIVERED_AT), ("read", READ_AT)]
    assert not PendingStatus.objects.exists()
    assert pending_statuses_apply(WAMID) == 0


def test_pending_statuses_wait_while_the_message_is_still_sending(client, contact):
    message = outbound(contact, status=MessageStatus.SENDING, wamid=None, pk=4242)
    replay(client, "status_sent_callback_data")
    message.refresh_from_db()
    assert (message.status, message.provider_message_id) == (MessageStatus.SENDING, None)
    assert PendingStatus.objects.get().status == "sent"
    assert pending_statuses_apply(WAMID) == 0  # no message has that wamid yet


def test_the_sweep_settles_a_send_that_ended_unconfirmed_while_its_status_waited(client, contact):
    message = outbound(contact, status=MessageStatus.SENDING, wamid=None, pk=4242)
    replay(client, "status_sent_callback_data")
    replay(client, "status_delivered")  # no callback data: waits for the wamid
    Message.objects.filter(pk=message.pk).update(status=MessageStatus.UNCONFIRMED)  # the request timed out

    assert pending_statuses_sweep(older_than=timedelta(0)) == 2
    message.refresh_from_db()
    assert (message.status, message.provider_message_id) == (MessageStatus.DELIVERED, WAMID)
    assert not PendingStatus.objects.exists()


def test_the_sweep_leaves_fresh_and_still_unknown_statuses_alone(client, contact):
    replay(client, "status_delivered")
    assert pending_statuses_sweep() == 0  # younger than a minute: the send's own call handles it
    assert pending_statuses_sweep(older_than=timedelta(0)) == 0  # still nobody's
    assert PendingStatus.objects.count() == 1


def test_callback_data_from_another_number_does_not_settle_our_message(client, contact):
    message = outbound(contact, status=MessageStatus.UNCONFIRMED, wamid=None, pk=4242)
    body = load_fixture("status_sent_callback_data")
    body["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] = "999999999999999"
    assert post_webhook(client, body).status_code == 200
    message.refresh_from_db()
    assert (message.status, message.provider_message_id) == (MessageStatus.UNCONFIRMED, None)
    assert PendingStatus.objects.count() == 1


def test_a_status_for_an_inbound_message_is_ignored(client, contact):
    inbound = Message.objects.create(
        direction=Message.Direction.INBOUND,
        contact=contact,
        sender=sender_get_default(),
        kind="text",
        status=MessageStatus.RECEIVED,
        provider_message_id=WAMID,
    )
    replay(client, "status_read")
    inbound.refresh_from_db()
    assert (inbound.status, inbound.read_at) == (MessageStatus.RECEIVED, None)
    assert not MessageStatusEvent.objects.exists()
    assert not PendingStatus.objects.exists()


@pytest.mark.parametrize(
    "status", [MessageStatus.DRAFT, MessageStatus.PENDING_APPROVAL, MessageStatus.QUEUED]
)
def test_a_status_for_a_message_not_sent_yet_is_ignored(client, contact, status):
    message = outbound(contact, status=status)
    replay(client, "status_delivered")
    message.refresh_from_db()
    assert (message.status, message.delivered_at) == (status, None)
    assert not MessageStatusEvent.objects.exists()


@pytest.mark.parametrize("status", [MessageStatus.QUEUED, MessageStatus.DRAFT, MessageStatus.CANCELLED])
def test_callback_data_naming_a_message_not_sent_does_not_touch_it(client, contact, status):
    message = outbound(contact, status=status, wamid=None, pk=4242)
    replay(client, "status_sent_callback_data")
    message.refresh_from_db()
    assert (message.status, message.provider_message_id) == (status, None)


def test_status_apply_directly_without_a_webhook_event(contact):
    message = outbound(contact)
    (update,) = webhook_normalize(load_fixture("status_delivered"))
    status_apply(update)
    status_apply(update)
    message.refresh_from_db()
    assert message.status == MessageStatus.DELIVERED
    assert timeline(message) == [("delivered", DELIVERED_AT)]


# --- Batches and account-level notices ------------------------------------------------------------------


def test_one_post_with_many_entries_changes_and_120_statuses_is_fully_applied(client):
    sender = sender_get_default()
    messages = [outbound(ContactFactory(), wamid=f"wamid.BATCH{i:04d}") for i in range(40)]
    base = load_fixture("status_delivered")["entry"][0]["changes"][0]["value"]
    entries = []
    for entry_index in range(2):
        changes = []
        for change_index in range(2):
            statuses = []
            for message in messages[(entry_index * 2 + change_index) * 10 :][:10]:
                for step, status in enumerate(("read", "sent", "delivered")):  # out of order, as Meta may
                    statuses.append(
                        {
                            "id": message.provider_message_id,
                            "status": status,
                            "timestamp": str(1767261600 + 10 * step),
                            "recipient_id": message.contact.wa_id,
                        }
                    )
            value = {**copy.deepcopy(base), "statuses": statuses}
            value["metadata"]["phone_number_id"] = sender.phone_number_id
            changes.append({"field": "messages", "value": value})
        entries.append({"id": sender.waba_id, "changes": changes})
    body = {"object": "whatsapp_business_account", "entry": entries}

    response = post_webhook(client, body)
    assert response.status_code == 200
    event = WebhookEvent.objects.get()
    assert (event.state, event.summary) == (WebhookEvent.State.PROCESSED, {"status": 120})
    assert set(Message.objects.values_list("status", flat=True)) == {MessageStatus.READ}
    assert MessageStatusEvent.objects.filter(source="webhook").count() == 120
    assert not Message.objects.filter(delivered_at__isnull=True).exists()


def test_value_level_error_becomes_an_alert_for_staff(client):
    event = replay(client, "error_throughput_130429")
    alert = ProviderAlert.objects.get()
    assert (alert.kind, alert.severity, alert.code) == ("error", "error", "130429")
    assert alert.title == "Rate limit hit"
    assert alert.details == "Cloud API message throughput has been reached."
    assert alert.sender == sender_get_default()
    assert alert.webhook_event == event


def test_account_alert_becomes_an_alert_for_staff(client):
    replay(client, "account_alerts")
    alert = ProviderAlert.objects.get()
    assert (alert.kind, alert.severity, alert.code) == ("account_alerts", "warning", "OBA_APPROVED")
    assert alert.title == "Your Official Business Account request was approved."
    assert alert.details == "ACTIVE"


def test_phone_number_quality_update_becomes_an_alert_for_staff(client):
    replay(client, "account_phone_number_quality_update")
    alert = ProviderAlert.objects.get()
    assert (alert.kind, alert.severity, alert.code) == ("phone_number_quality_update", "warning", "FLAGGED")


def test_replaying_a_delivery_adds_no_second_alert_or_status(client, contact):
    from messaging.webhook_processing import webhook_event_process

    message = outbound(contact)
    body = load_fixture("status_delivered")
    body["entry"].append(load_fixture("account_alerts")["entry"][0])
    post_webhook(client, body)
    event = WebhookEvent.objects.get()
    webhook_event_process(event.pk)  # staff replay, or the sweeper racing the task
    assert ProviderAlert.objects.count() == 1
    assert timeline(message) == [("delivered", DELIVERED_AT)]
    event.refresh_from_db()
    assert (event.state, event.attempts) == (WebhookEvent.State.PROCESSED, 2)


# --- Concurrency (PostgreSQL: real row locks between two connections) ------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_statuses_never_move_a_message_backwards(contact):
    import threading

    updates = {}
    for name in ("status_delivered", "status_read", "status_failed_undeliverable", "status_sent_cbp_pricing"):
        (updates[name],) = webhook_normalize(load_fixture(name))
    rounds = 15
    for round_number in range(rounds):
        wamid = f"{WAMID}.{round_number}"
        message = outbound(contact, wamid=wamid)
        barrier = threading.Barrier(len(updates))
        errors: list[BaseException] = []

        def apply(update, wamid=wamid, barrier=barrier, errors=errors):
            from dataclasses import replace

            try:
                barrier.wait(timeout=10)
                status_apply(replace(update, wamid=wamid))
            except BaseException as exc:  # reported below, in the test's thread
                errors.append(exc)
            finally:
                connection.close()

        threads = [threading.Thread(target=apply, args=(u,)) for u in updates.values()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert errors == []
        message.refresh_from_db()
        # Read wins unless the (terminal) failure got in first, while the message was only sent;
        # never anything in between, never an error on a message that is not failed.
        assert message.status in (MessageStatus.READ, MessageStatus.FAILED)
        assert (message.error_code == "131026") == (message.status == MessageStatus.FAILED)
        assert sorted(
            MessageStatusEvent.objects.filter(message=message).values_list("status", flat=True)
        ) == [
            "delivered",
            "failed",
            "read",
            "sent",
        ]


def test_fixtures_are_meta_shaped():
    """Each fixture is a signed-envelope body the normalizer reads without an `unsupported` notice."""
    from tests.webhook_client import FIXTURES

    names = sorted(
        p.stem for p in FIXTURES.glob("*.json") if p.stem.startswith(("status_", "error_", "account_"))
    )
    assert {"status_sent_cbp_pricing", "status_failed_undeliverable", "account_alerts"} <= set(names)
    for name in names:
        items = webhook_normalize(json.loads((FIXTURES / f"{name}.json").read_text()))
        assert items, name
        assert all(getattr(item, "kind", "") != "unsupported" for item in items), name
