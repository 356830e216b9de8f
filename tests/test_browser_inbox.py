"""A composer answers a customer from the conversation page, in Debian's chromium driven by Playwright
against a live server: the thread opens at the newest message, "↩" quotes the customer's question, Enter
submits, and the reply appears on the right waiting for approval (a clock). Screenshots land in
test-artifacts/ (gitignored), to look at."""

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from messaging import roles
from messaging.models import Message, MessageStatus
from messaging.services import sender_get_default
from tests.conftest import screenshot
from tests.factories import ContactFactory, StaffUserFactory

pytestmark = pytest.mark.browser

PASSWORD = "a-long-staff-password-for-tests"


def stored(contact, sender, direction, text, *, minutes_ago, **fields) -> Message:
    at = timezone.now() - timedelta(minutes=minutes_ago)
    inbound = direction == Message.Direction.INBOUND
    row = Message.objects.create(
        contact=contact,
        sender=sender,
        direction=direction,
        kind=fields.pop("kind", Message.Kind.TEXT),
        preview=text,
        status=fields.pop("status", MessageStatus.RECEIVED if inbound else MessageStatus.READ),
        provider_timestamp=at if inbound else None,
        sent_at=None if inbound else at,
        **fields,
    )
    Message.objects.filter(pk=row.pk).update(created_at=at)
    return row


def test_a_composer_quotes_a_question_and_replies_from_the_conversation(transactional_db, live_server, page):
    from playwright.sync_api import expect

    roles.roles_apply_permissions()  # a transactional test may start after another one's flush
    sender = sender_get_default()
    contact = ContactFactory(
        phone_number="+15550123456",
        profile_name="Ava Johnson",
        last_inbound_at=timezone.now() - timedelta(minutes=20),
    )
    ours = stored(
        contact,
        sender,
        Message.Direction.OUTBOUND,
        "Hi Ava, your order #1042 has shipped 📦",
        minutes_ago=90,
        provider_message_id="wamid.OURS1",
    )
    stored(
        contact,
        sender,
        Message.Direction.OUTBOUND,
        "Rate your delivery?",
        minutes_ago=80,
        status=MessageStatus.FAILED,
        error_title="Re-engagement message",
    )
    stored(
        contact,
        sender,
        Message.Direction.INBOUND,
        "Thanks! When will it arrive?",
        minutes_ago=25,
        in_reply_to=ours,
        provider_message_id="wamid.Q1",
    )
    stored(
        contact,
        sender,
        Message.Direction.INBOUND,
        "👍",
        minutes_ago=24,
        kind=Message.Kind.REACTION,
        content={"type": "reaction", "reaction": {"message_id": "wamid.OURS1", "emoji": "👍"}},
    )
    stored(contact, sender, Message.Direction.INBOUND, "Can I change the address?", minutes_ago=20)
    composer = StaffUserFactory(username="composer", password=PASSWORD)
    composer.groups.add(Group.objects.get(name=roles.COMPOSER))
    path = f"/admin/messaging/contact/{contact.pk}/conversation/"

    page.goto(f"{live_server.url}/admin/login/?next={path}")
    page.fill("#id_username", "composer")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(re.compile(re.escape(path) + "$"))

    thread = page.locator("#conversation")
    expect(thread.locator(".conv-row")).to_have_count(4)  # the reaction sits on the bubble it reacts to
    expect(thread.locator(".conv-row--outbound .conv-reaction")).to_have_text("👍")
    expect(thread.locator(".conv-tick--read")).to_have_count(1)
    expect(thread.locator(".conv-error")).to_contain_text("Re-engagement message")
    expect(page.locator("#conv-window")).to_contain_text("24-hour window open")
    expect(page.locator("#conv-send")).to_have_text("Submit for approval")
    screenshot(page, "conversation-before-reply", full_page=True)

    question = thread.locator(".conv-row", has_text="When will it arrive?")
    question.hover()
    question.locator(".conv-reply-to").click()
    expect(page.locator("#conv-replying")).to_be_visible()
    expect(page.locator("#conv-replying-text")).to_have_text("Thanks! When will it arrive?")
    page.fill("#id_text", "It arrives tomorrow before noon.")
    page.press("#id_text", "Enter")

    page.wait_for_url(re.compile(re.escape(path) + "#conversation-end$"))
    expect(page.locator(".messagelist")).to_contain_text("submitted for approval")
    last = thread.locator(".conv-row").last
    expect(last).to_have_attribute("data-direction", "outbound")
    expect(last).to_contain_text("It arrives tomorrow before noon.")
    expect(last).to_contain_text("↩ replying to “Thanks! When will it arrive?”")
    expect(last.locator(".conv-tick")).to_have_attribute("data-status", "pending_approval")
    screenshot(page, "conversation-after-reply", full_page=True)

    reply = Message.objects.get(
        direction=Message.Direction.OUTBOUND, preview="It arrives tomorrow before noon."
    )
    assert (reply.status, reply.reply_to, reply.created_by_id) == (
        MessageStatus.PENDING_APPROVAL,
        "wamid.Q1",
        composer.pk,
    )
    assert page.js_errors == []
