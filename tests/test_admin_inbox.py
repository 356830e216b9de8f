"""The receiving side in the admin: the webhook inbox (list, search, detail, replay), Meta's alerts
(acknowledge, the banner on the index), each contact's conversation (both directions in order, ticks, the
24-hour window, replies through the approval rules) and the list of people waiting for a reply. Each role
sees only what it needs; every page escapes what customers wrote."""

import json
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from messaging import roles, webhook_processing
from messaging.admin_inbox import contacts_awaiting_reply
from messaging.models import Message, MessageStatus, ProviderAlert, WebhookEvent
from messaging.services import sender_get_default
from messaging.webhook_events import ProviderNotice
from tests.factories import ContactFactory, UserFactory
from tests.staff import logged_in, messages_of, user_in

pytestmark = pytest.mark.django_db

INBOX_URL = reverse("admin:messaging_webhookevent_changelist")
ALERTS_URL = reverse("admin:messaging_provideralert_changelist")
UNANSWERED_URL = reverse("admin:messaging_contact_unanswered")
ACTION_CHECKBOX = "_selected_action"
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _roles():
    roles.roles_apply_permissions()


@pytest.fixture
def operator():
    return user_in(roles.OPERATOR, username="operator")


@pytest.fixture
def auditor():
    return user_in(roles.AUDITOR, username="auditor")


@pytest.fixture
def composer():
    return user_in(roles.COMPOSER, username="composer")


@pytest.fixture
def sender():
    return sender_get_default()


def message(contact, direction: str, text: str, *, at: datetime, sender=None, **fields) -> Message:
    """A message as the pipeline would have stored it, recorded at `at` (created_at is auto_now_add)."""
    inbound = direction == Message.Direction.INBOUND
    row = Message.objects.create(
        contact=contact,
        sender=sender or sender_get_default(),
        direction=direction,
        kind=fields.pop("kind", Message.Kind.TEXT),
        preview=text,
        status=fields.pop("status", MessageStatus.RECEIVED if inbound else MessageStatus.SENT),
        provider_timestamp=at if inbound else None,
        sent_at=None if inbound else at,
        **fields,
    )
    Message.objects.filter(pk=row.pk).update(created_at=at)
    row.refresh_from_db()
    return row


def inbound(contact, text, *, at, **fields):
    return message(contact, Message.Direction.INBOUND, text, at=at, **fields)


def outbound(contact, text, *, at, **fields):
    return message(contact, Message.Direction.OUTBOUND, text, at=at, **fields)


def envelope(*changes: dict) -> dict:
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "900800700600500", "changes": list(changes)}],
    }


def account_alert_change(title: str = "Messaging limit reached") -> dict:
    return {
        "field": "account_alerts",
        "value": {"entity_type": "WABA", "alert_type": "LIMIT_REACHED", "alert_description": title},
    }


def text_message_change(wamid: str, wa_id: str, body: str) -> dict:
    return {
        "field": "messages",
        "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550100000", "phone_number_id": "100200300400500"},
            "contacts": [{"profile": {"name": "Ava"}, "wa_id": wa_id}],
            "messages": [
                {
                    "from": wa_id,
                    "id": wamid,
                    "timestamp": "1760000000",
                    "type": "text",
                    "text": {"body": body},
                }
            ],
        },
    }


def stored_event(body: dict, **fields) -> WebhookEvent:
    raw = json.dumps(body)
    return WebhookEvent.objects.create(
        body_sha256=f"{abs(hash(raw)):064d}"[:64],
        raw_body=raw,
        headers={"Content-Type": "application/json", "X-Hub-Signature-256": "sha256=abc"},
        **fields,
    )


# --- Who sees what ------------------------------------------------------------------------------------


def test_each_role_reaches_only_the_inbox_pages_it_needs(operator, auditor, composer, sender):
    contact = ContactFactory()
    event = stored_event(envelope(account_alert_change()))
    conversation = reverse("admin:messaging_contact_conversation", args=[contact.pk])
    replay = reverse("admin:messaging_webhookevent_replay", args=[event.pk])
    officer = user_in(roles.COMPLIANCE_OFFICER, username="officer")

    # The auditor reads everything and changes nothing.
    reader = logged_in(auditor)
    assert reader.get(INBOX_URL).status_code == 200
    assert reader.get(ALERTS_URL).status_code == 200
    assert reader.get(conversation).status_code == 200
    assert reader.get(UNANSWERED_URL).status_code == 200
    assert reader.post(replay).status_code == 403
    assert reader.post(conversation, {"text": "hello"}).status_code == 403
    assert not Message.objects.filter(direction=Message.Direction.OUTBOUND).exists()
    # A composer writes to customers but has no business in raw deliveries or Meta's alerts.
    writer = logged_in(composer)
    assert writer.get(INBOX_URL).status_code == 403
    assert writer.get(ALERTS_URL).status_code == 403
    assert writer.post(replay).status_code == 403
    assert writer.get(conversation).status_code == 200
    # Consent work needs contacts, not their messages.
    consent = logged_in(officer)
    assert consent.get(conversation).status_code == 403
    assert consent.get(UNANSWERED_URL).status_code == 403
    # The operator replays deliveries but sends nothing.
    ops = logged_in(operator)
    assert ops.post(replay).status_code == 302
    assert ops.post(conversation, {"text": "hello"}).status_code == 403
    event.refresh_from_db()
    assert event.attempts == 1


def test_deliveries_and_alerts_are_read_only_and_only_superusers_delete(operator):
    event = stored_event(envelope(account_alert_change()))
    alert = ProviderAlert.objects.create(kind="account_alerts", title="Limit", webhook_event=event)
    ops = logged_in(operator)

    assert ops.get(reverse("admin:messaging_webhookevent_add")).status_code == 403
    assert (
        ops.post(reverse("admin:messaging_webhookevent_delete", args=[event.pk]), {"post": "yes"}).status_code
        == 403
    )
    assert (
        ops.post(
            reverse("admin:messaging_provideralert_delete", args=[alert.pk]), {"post": "yes"}
        ).status_code
        == 403
    )
    page = ops.get(reverse("admin:messaging_webhookevent_change", args=[event.pk]))
    assert page.status_code == 200 and 'name="raw_body"' not in page.text  # shown, not editable
    assert WebhookEvent.objects.filter(pk=event.pk).exists()

    admin = UserFactory(username="root", is_staff=True, is_superuser=True)
    response = logged_in(admin).post(
        reverse("admin:messaging_webhookevent_delete", args=[event.pk]), {"post": "yes"}
    )
    assert response.status_code == 302
    assert not WebhookEvent.objects.filter(pk=event.pk).exists()


# --- Webhook inbox: list, search, detail -----------------------------------------------------------------


def test_the_inbox_lists_state_contents_attempts_and_the_first_line_of_the_error(auditor):
    stored_event(
        envelope(),
        state=WebhookEvent.State.PROCESSED,
        summary={"status": 3, "message": 1, "notice": 2},
        attempts=1,
    )
    stored_event(
        envelope(account_alert_change("other")),
        state=WebhookEvent.State.FAILED,
        summary={"status": 1},
        attempts=2,
        error="item 0 (StatusUpdate): KeyError: 'id'\nitem 3 (InboundMessage): boom",
    )
    stored_event(envelope(account_alert_change("third")))

    html = logged_in(auditor).get(INBOX_URL).text

    assert 'data-value="processed"' in html and "tpl-badge--green" in html
    assert 'data-value="failed"' in html and "tpl-badge--red" in html
    assert 'data-value="received"' in html and "not processed yet" in html
    assert "3 statuses · 1 message · 2 notices" in html
    assert "KeyError: &#x27;id&#x27;" in html and "boom" not in html  # the first line only
    assert '<td class="field-attempts">2</td>' in html


def test_the_inbox_filters_by_state_and_finds_a_delivery_by_wamid_or_phone_number(auditor):
    ava = stored_event(envelope(text_message_change("wamid.AVA123", "15550123456", "hi")))
    bob = stored_event(
        envelope(text_message_change("wamid.BOB456", "15550999999", "hello")), state=WebhookEvent.State.FAILED
    )
    client = logged_in(auditor)

    def listed(query: str) -> set[int]:
        response = client.get(INBOX_URL + query)
        assert response.status_code == 200
        return {row.pk for row in response.context["cl"].result_list}

    assert listed("?q=wamid.BOB456") == {bob.pk}
    assert listed("?q=%2B1+(555)+012-3456") == {ava.pk}  # as staff type it; Meta writes 15550123456
    assert listed("?state__exact=failed") == {bob.pk}
    assert listed("?state__exact=failed&q=wamid.AVA123") == set()
    assert listed("") == {ava.pk, bob.pk}


def test_a_search_reads_only_the_newest_deliveries_so_it_stays_fast_on_a_million_rows(auditor, monkeypatch):
    from messaging import admin_inbox

    old = stored_event(envelope(text_message_change("wamid.OLD", "15550123456", "first")))
    for n in range(3):
        stored_event(envelope(account_alert_change(f"filler {n}")))
    monkeypatch.setattr(admin_inbox, "SEARCH_SCAN_LIMIT", 3)
    client = logged_in(auditor)

    assert list(client.get(INBOX_URL + "?q=wamid.OLD").context["cl"].result_list) == []
    # Narrowing by state brings it back into the scanned window.
    WebhookEvent.objects.exclude(pk=old.pk).update(state=WebhookEvent.State.PROCESSED)
    response = client.get(INBOX_URL + "?state__exact=received&q=wamid.OLD")
    assert [row.pk for row in response.context["cl"].result_list] == [old.pk]
    assert "newest 3 deliveries" in response.text


def test_the_detail_page_shows_escaped_json_headers_result_and_what_the_delivery_produced(auditor, sender):
    contact = ContactFactory(phone_number="+15550123456", wa_id="15550123456")
    event = stored_event(
        envelope(
            text_message_change("wamid.XSS1", "15550123456", "<script>alert('x')</script>"),
            account_alert_change(),
        ),
        state=WebhookEvent.State.PROCESSED,
        summary={"message": 1, "notice": 1},
        attempts=1,
    )
    produced = inbound(
        contact, "<script>alert('x')</script>", at=timezone.now(), provider_message_id="wamid.XSS1"
    )
    alert = ProviderAlert.objects.create(
        kind="account_alerts", severity="warning", title="Messaging limit reached", webhook_event=event
    )

    response = logged_in(auditor).get(reverse("admin:messaging_webhookevent_change", args=[event.pk]))

    html = response.text
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    assert "\n  &quot;object&quot;: &quot;whatsapp_business_account&quot;" in html  # pretty-printed
    assert "X-Hub-Signature-256" in html
    assert "1 message · 1 notice" in html
    assert reverse("admin:messaging_message_change", args=[produced.pk]) in html
    assert "wamid.XSS1" in html and "← inbound" in html
    assert reverse("admin:messaging_provideralert_change", args=[alert.pk]) in html
    assert 'id="wh-replay"' not in html  # the auditor may not replay


# --- Replay ----------------------------------------------------------------------------------------------


def test_replaying_selected_deliveries_reports_counts_and_changes_nothing_the_second_time(
    operator, monkeypatch
):
    good = stored_event(envelope(account_alert_change("Limit reached")))
    bad = stored_event(envelope(account_alert_change("Quality dropped")))
    original_notice_handler = webhook_processing.HANDLERS[ProviderNotice]

    def fail_for_quality(item, event):
        if "Quality" in item.title:
            raise RuntimeError("database hiccup")
        original_notice_handler(item, event)

    monkeypatch.setitem(webhook_processing.HANDLERS, ProviderNotice, fail_for_quality)
    client = logged_in(operator)
    data = {"action": "replay_selected", ACTION_CHECKBOX: [good.pk, bad.pk]}

    first = client.post(INBOX_URL, data, follow=True)
    assert "Replayed 2 deliveries: 1 processed, 1 failed." in messages_of(first)
    second = client.post(INBOX_URL, data, follow=True)
    assert "Replayed 2 deliveries: 1 processed, 1 failed." in messages_of(second)

    good.refresh_from_db()
    bad.refresh_from_db()
    assert (good.state, good.attempts) == (WebhookEvent.State.PROCESSED, 2)
    assert (bad.state, bad.attempts) == (WebhookEvent.State.FAILED, 2)
    assert "RuntimeError: database hiccup" in bad.error
    assert ProviderAlert.objects.filter(webhook_event=good).count() == 1  # not one per replay

    monkeypatch.setitem(webhook_processing.HANDLERS, ProviderNotice, original_notice_handler)
    fixed = client.post(INBOX_URL, {"action": "replay_selected", ACTION_CHECKBOX: [bad.pk]}, follow=True)
    assert "Replayed 1 delivery: 1 processed, 0 failed." in messages_of(fixed)
    bad.refresh_from_db()
    assert (bad.state, bad.error) == (WebhookEvent.State.PROCESSED, "")


def test_the_replay_button_posts_with_csrf_and_a_get_changes_nothing(operator):
    event = stored_event(envelope(account_alert_change()))
    change = reverse("admin:messaging_webhookevent_change", args=[event.pk])
    replay = reverse("admin:messaging_webhookevent_replay", args=[event.pk])
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)

    page = client.get(change).text
    assert f'action="{replay}"' in page and 'name="csrfmiddlewaretoken"' in page
    assert client.get(replay).status_code == 405
    assert client.post(replay).status_code == 403  # no CSRF token
    event.refresh_from_db()
    assert event.attempts == 0

    token = client.cookies["csrftoken"].value
    response = client.post(replay, {"csrfmiddlewaretoken": token}, follow=True)
    assert "Replayed 1 delivery: 1 processed, 0 failed." in messages_of(response)
    event.refresh_from_db()
    assert (event.state, event.attempts) == (WebhookEvent.State.PROCESSED, 1)
    assert ProviderAlert.objects.filter(webhook_event=event, title="Messaging limit reached").exists()


def test_replaying_too_many_at_once_is_refused_with_advice(operator, monkeypatch):
    from messaging import admin_inbox

    monkeypatch.setattr(admin_inbox, "REPLAY_LIMIT", 1)
    events = [stored_event(envelope(account_alert_change(f"a{n}"))) for n in range(2)]
    response = logged_in(operator).post(
        INBOX_URL, {"action": "replay_selected", ACTION_CHECKBOX: [e.pk for e in events]}, follow=True
    )
    assert any("Select at most 1 deliveries" in m for m in messages_of(response))
    assert not WebhookEvent.objects.filter(attempts__gt=0).exists()


# --- Conversation ----------------------------------------------------------------------------------------


def bubbles(html: str) -> list[tuple[str, str]]:
    """(direction, text) of each bubble, top to bottom."""
    import re

    rows = re.findall(
        r'data-direction="(\w+)">\s*<div class="conv-bubble">(.*?)<div class="conv-meta">', html, flags=re.S
    )
    texts = []
    for direction, inner in rows:
        text = re.search(r'<div class="conv-text[^"]*">(.*?)</div>', inner, flags=re.S)
        texts.append((direction, " ".join(re.sub(r"<[^>]+>", " ", text.group(1)).split()) if text else ""))
    return texts


def conversation_url(contact) -> str:
    return reverse("admin:messaging_contact_conversation", args=[contact.pk])


@time_machine.travel(NOW, tick=False)
def test_the_conversation_shows_both_directions_in_order_with_ticks_replies_and_reactions(auditor, sender):
    contact = ContactFactory(profile_name="Ava Johnson", last_inbound_at=NOW - timedelta(hours=2))
    start = NOW - timedelta(hours=5)
    ours = outbound(
        contact, "Your order shipped.", at=start, status=MessageStatus.READ, provider_message_id="wamid.O1"
    )
    outbound(contact, "Tracking: 1Z999", at=start + timedelta(minutes=1), status=MessageStatus.DELIVERED)
    outbound(contact, "Survey?", at=start + timedelta(minutes=2), status=MessageStatus.SENT)
    outbound(
        contact,
        "Promo",
        at=start + timedelta(minutes=3),
        status=MessageStatus.FAILED,
        error_code="131049",
        error_title="Message not delivered to maintain healthy ecosystem engagement",
    )
    question = inbound(
        contact,
        "Where is my parcel?",
        at=start + timedelta(hours=1),
        in_reply_to=ours,
        provider_message_id="wamid.I1",
    )
    inbound(
        contact,
        "👍",
        at=start + timedelta(hours=1, minutes=1),
        kind=Message.Kind.REACTION,
        content={"type": "reaction", "reaction": {"message_id": "wamid.O1", "emoji": "👍"}},
    )
    outbound(
        contact,
        "It is on its way.",
        at=start + timedelta(hours=3),
        status=MessageStatus.PENDING_APPROVAL,
        reply_to=question.provider_message_id,
    )
    outbound(contact, "draft nobody sent", at=start + timedelta(hours=4), status=MessageStatus.DRAFT)

    response = logged_in(auditor).get(conversation_url(contact))

    assert response.status_code == 200
    html = response.text
    assert bubbles(html) == [
        ("outbound", "Your order shipped."),
        ("outbound", "Tracking: 1Z999"),
        ("outbound", "Survey?"),
        ("outbound", "Promo"),
        ("inbound", "Where is my parcel?"),
        ("outbound", "It is on its way."),
    ]
    assert 'class="conv-tick conv-tick--read" data-status="read"' in html
    assert 'class="conv-tick conv-tick--delivered" data-status="delivered"' in html
    assert 'class="conv-tick conv-tick--sent" data-status="sent"' in html
    assert 'class="conv-tick conv-tick--failed" data-status="failed"' in html
    assert "Message not delivered to maintain healthy ecosystem engagement" in html
    assert 'data-status="pending_approval"' in html and "conv-clock" in html
    assert "↩ replying to “Your order shipped.”" in html  # the customer's quote
    assert "↩ replying to “Where is my parcel?”" in html  # ours
    assert '<span class="conv-reaction" title="The customer reacted">👍</span>' in html
    assert "draft nobody sent" not in html


@time_machine.travel(NOW, tick=False)
def test_the_header_says_until_when_the_window_is_open_or_that_only_templates_can_be_sent(composer, sender):
    fresh = ContactFactory(last_inbound_at=NOW - timedelta(hours=23))
    stale = ContactFactory(last_inbound_at=NOW - timedelta(hours=25))
    never = ContactFactory(last_inbound_at=None)
    client = logged_in(composer)

    open_page = client.get(conversation_url(fresh)).text
    assert 'data-open="true"' in open_page and "24-hour window open" in open_page
    closes = timezone.localtime(NOW + timedelta(hours=1))
    assert f'datetime="{closes.isoformat()}"' in open_page
    assert "1\xa0hour left" in open_page
    assert 'id="conv-reply-form"' in open_page

    closed_page = client.get(conversation_url(stale)).text
    assert 'data-open="false"' in closed_page and "only templates can be sent" in closed_page
    assert 'id="conv-reply-form"' not in closed_page
    assert "message_type=template" in closed_page and f"to_number={stale.phone_number}".replace(
        "+", ""
    ) in closed_page.replace("+", "")
    assert "has never written to us" in client.get(conversation_url(never)).text


def test_the_conversation_pages_back_fifty_messages_at_a_time(auditor, sender):
    contact = ContactFactory()
    start = timezone.now() - timedelta(days=2)
    for n in range(55):
        inbound(contact, f"message {n:02d}", at=start + timedelta(minutes=n))
    client = logged_in(auditor)

    latest = client.get(conversation_url(contact))
    shown = [text for _, text in bubbles(latest.text)]
    assert shown == [f"message {n:02d}" for n in range(5, 55)]
    older_link = latest.context["older_url"]
    assert older_link

    older = client.get(conversation_url(contact) + older_link)
    assert [text for _, text in bubbles(older.text)] == [f"message {n:02d}" for n in range(5)]
    assert older.context["older_url"] == "" and "The beginning of the conversation." in older.text

    bad = client.get(conversation_url(contact) + "?before=abc")
    assert bad.status_code == 400 and b"invalid_cursor" in bad.content
    someone_else = inbound(ContactFactory(), "not yours", at=start)
    assert client.get(conversation_url(contact) + f"?before={someone_else.pk}").status_code == 400


def test_what_customers_wrote_is_escaped_in_the_conversation_and_lists(auditor, sender):
    contact = ContactFactory(profile_name="<img src=x onerror=alert(1)>", last_inbound_at=timezone.now())
    inbound(contact, "<script>alert('x')</script>", at=timezone.now())
    client = logged_in(auditor)

    for url in (conversation_url(contact), UNANSWERED_URL):
        html = client.get(url).text
        assert "<script>alert" not in html and "<img src=x" not in html
        assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html


# --- Replying --------------------------------------------------------------------------------------------


def test_a_composers_reply_goes_through_compose_and_waits_for_approval(composer, sender):
    contact = ContactFactory(last_inbound_at=timezone.now() - timedelta(hours=1))
    question = inbound(
        contact, "Is it in stock?", at=timezone.now() - timedelta(hours=1), provider_message_id="wamid.Q"
    )
    client = logged_in(composer)

    page = client.get(conversation_url(contact)).text
    assert "Submit for approval" in page and "waits for a colleague" in page

    response = client.post(conversation_url(contact), {"text": "Yes, size M too.", "reply_to": "wamid.Q"})
    assert response.status_code == 302 and response["Location"].endswith("#conversation-end")
    reply = Message.objects.get(direction=Message.Direction.OUTBOUND)
    assert (reply.status, reply.preview, reply.created_by, reply.reply_to) == (
        MessageStatus.PENDING_APPROVAL,
        "Yes, size M too.",
        composer,
        question.provider_message_id,
    )
    assert any("submitted for approval" in m for m in messages_of(client.get(conversation_url(contact))))


def test_a_trusted_reply_is_sent_at_once_and_shows_its_tick(sender, django_capture_on_commit_callbacks):
    trusted = user_in(roles.COMPOSER, username="trusted")
    trusted.user_permissions.add(Permission.objects.get(codename="send_without_approval"))
    contact = ContactFactory(last_inbound_at=timezone.now() - timedelta(minutes=5))
    inbound(contact, "Hello?", at=timezone.now() - timedelta(minutes=5))
    client = logged_in(trusted)

    assert ">Send</button>" in client.get(conversation_url(contact)).text
    with django_capture_on_commit_callbacks(execute=True):
        client.post(conversation_url(contact), {"text": "Hi! How can we help?"})
    response = client.get(conversation_url(contact))

    reply = Message.objects.get(direction=Message.Direction.OUTBOUND)
    assert reply.status == MessageStatus.SENT  # the memory backend answered at once
    assert reply.approved_by == trusted
    assert bubbles(response.text)[-1] == ("outbound", "Hi! How can we help?")
    assert 'data-status="sent"' in response.text


def test_a_reply_after_the_window_closed_is_refused_with_its_code_and_nothing_is_stored(composer, sender):
    contact = ContactFactory(last_inbound_at=timezone.now() - timedelta(hours=30))
    client = logged_in(composer)

    response = client.post(conversation_url(contact), {"text": "Still there?"})

    assert response.status_code == 200
    assert "only an approved template can reach them. (window_closed)" in response.text
    assert not Message.objects.filter(direction=Message.Direction.OUTBOUND).exists()


def test_bad_replies_get_form_errors_not_server_errors(composer, sender):
    contact = ContactFactory(last_inbound_at=timezone.now())
    client = logged_in(composer)

    empty = client.post(conversation_url(contact), {"text": "   "})
    assert empty.status_code == 200 and empty.context["form"].errors["text"]
    too_long = client.post(conversation_url(contact), {"text": "x" * 5000})
    assert too_long.status_code == 200 and too_long.context["form"].errors["text"]
    foreign = client.post(conversation_url(contact), {"text": "hi", "reply_to": "wamid.someone-else"})
    assert "not part of this conversation" in foreign.text
    assert not Message.objects.filter(direction=Message.Direction.OUTBOUND).exists()


# --- Waiting for a reply ---------------------------------------------------------------------------------


def test_the_unanswered_list_holds_exactly_the_people_waiting_oldest_first(auditor, sender):
    now = timezone.now()
    waiting_long = ContactFactory(profile_name="Waiting long")
    inbound(waiting_long, "hello?", at=now - timedelta(hours=30))
    outbound(waiting_long, "earlier answer", at=now - timedelta(hours=40))

    waiting_short = ContactFactory(profile_name="Waiting short")
    inbound(waiting_short, "price?", at=now - timedelta(minutes=10))

    answered = ContactFactory(profile_name="Answered")
    inbound(answered, "thanks", at=now - timedelta(hours=2))
    outbound(answered, "you're welcome", at=now - timedelta(hours=1), status=MessageStatus.PENDING_APPROVAL)

    reacted_only = ContactFactory(profile_name="Reacted")
    inbound(reacted_only, "ok", at=now - timedelta(hours=3))
    outbound(reacted_only, "great", at=now - timedelta(hours=2))
    inbound(reacted_only, "👍", at=now - timedelta(hours=1), kind=Message.Kind.REACTION)

    failed_reply = ContactFactory(profile_name="Failed reply")
    inbound(failed_reply, "can you call me", at=now - timedelta(hours=5))
    outbound(failed_reply, "sure", at=now - timedelta(hours=4), status=MessageStatus.FAILED)

    ContactFactory(profile_name="Only ours")  # we wrote, they never did
    outbound(ContactFactory(), "promo", at=now)

    assert list(contacts_awaiting_reply()) == [waiting_long, failed_reply, waiting_short]

    response = logged_in(auditor).get(UNANSWERED_URL)
    rows = response.context["rows"]
    assert [row["contact"] for row in rows] == [waiting_long, failed_reply, waiting_short]
    assert rows[0]["waiting_for"] == "1\xa0day" and rows[0]["window_open"] is False
    assert rows[2]["last_words"] == "price?" and rows[2]["window_open"] is True
    assert conversation_url(waiting_short) in response.text
    assert "3 contacts waiting." in response.text


def test_the_unanswered_list_costs_the_same_queries_for_three_or_thirty_people(
    auditor, sender, django_assert_max_num_queries
):
    client = logged_in(auditor)
    now = timezone.now()

    def add_waiting(count: int) -> None:
        for n in range(count):
            contact = ContactFactory()
            inbound(contact, f"q{n}", at=now - timedelta(minutes=n + 1))
            outbound(contact, "old", at=now - timedelta(days=1))

    add_waiting(3)
    with django_assert_max_num_queries(8):
        few = client.get(UNANSWERED_URL)
    add_waiting(27)
    with django_assert_max_num_queries(8):
        many = client.get(UNANSWERED_URL)
    assert len(few.context["rows"]) == 3 and len(many.context["rows"]) == 30


def test_contacts_link_to_their_conversation_and_to_the_unanswered_list(auditor, sender):
    contact = ContactFactory()
    client = logged_in(auditor)

    listing = client.get(reverse("admin:messaging_contact_changelist")).text
    assert conversation_url(contact) in listing and UNANSWERED_URL in listing
    page = client.get(reverse("admin:messaging_contact_change", args=[contact.pk])).text
    assert f'href="{conversation_url(contact)}" id="contact-conversation"' in page

    officer = logged_in(user_in(roles.COMPLIANCE_OFFICER, username="officer"))
    assert conversation_url(contact) not in officer.get(reverse("admin:messaging_contact_changelist")).text


# --- Alerts ----------------------------------------------------------------------------------------------


def test_acknowledging_alerts_records_who_and_when_once(operator):
    first = ProviderAlert.objects.create(
        kind="error", severity="error", code="130429", title="Rate limit hit"
    )
    second = ProviderAlert.objects.create(kind="account_alerts", severity="warning", title="Quality low")
    earlier = UserFactory(username="earlier")
    seen = ProviderAlert.objects.create(
        kind="error", severity="error", title="Old", acknowledged_at=NOW, acknowledged_by=earlier
    )
    client = logged_in(operator)

    unacknowledged = client.get(ALERTS_URL + "?acknowledged=no")
    assert {a.pk for a in unacknowledged.context["cl"].result_list} == {first.pk, second.pk}

    response = client.post(
        ALERTS_URL, {"action": "acknowledge_selected", ACTION_CHECKBOX: [first.pk, seen.pk]}, follow=True
    )
    assert "Acknowledged 1 alert." in messages_of(response)
    first.refresh_from_db()
    seen.refresh_from_db()
    assert first.acknowledged_by == operator and first.acknowledged_at is not None
    assert (seen.acknowledged_by, seen.acknowledged_at) == (earlier, NOW)  # the first acknowledgement stays

    button = client.post(reverse("admin:messaging_provideralert_acknowledge", args=[second.pk]), follow=True)
    assert "Acknowledged." in messages_of(button)
    second.refresh_from_db()
    assert second.acknowledged_by == operator


def test_an_auditor_sees_alerts_but_cannot_acknowledge_them(auditor):
    alert = ProviderAlert.objects.create(kind="error", severity="error", title="Rate limit hit")
    client = logged_in(auditor)

    page = client.get(reverse("admin:messaging_provideralert_change", args=[alert.pk])).text
    assert "Rate limit hit" in page and 'id="alert-acknowledge"' not in page
    assert (
        client.post(reverse("admin:messaging_provideralert_acknowledge", args=[alert.pk])).status_code == 403
    )
    client.post(ALERTS_URL, {"action": "acknowledge_selected", ACTION_CHECKBOX: [alert.pk]})
    alert.refresh_from_db()
    assert alert.acknowledged_at is None


def test_the_admin_index_shows_unacknowledged_errors_and_warnings_to_those_who_may_see_them(
    operator, composer
):
    ProviderAlert.objects.create(kind="error", severity="error", code="130429", title="Rate <b>limit</b> hit")
    ProviderAlert.objects.create(kind="account_update", severity="info", title="Display name approved")
    ProviderAlert.objects.create(kind="account_alerts", severity="warning", title="Seen", acknowledged_at=NOW)
    index = reverse("admin:index")

    html = logged_in(operator).get(index).text
    assert 'id="provider-alerts-banner"' in html and "alert-banner--error" in html
    assert "1 alert from Meta needs attention" in html
    assert "Rate &lt;b&gt;limit&lt;/b&gt; hit" in html
    assert "Display name approved" not in html and "Seen" not in html
    assert f"{ALERTS_URL}?acknowledged=no" in html
    assert 'id="content-main"' in html  # the usual app list is still there

    assert 'id="provider-alerts-banner"' not in logged_in(composer).get(index).text

    ProviderAlert.objects.update(acknowledged_at=NOW)
    assert 'id="provider-alerts-banner"' not in logged_in(operator).get(index).text
