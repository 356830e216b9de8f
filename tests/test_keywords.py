"""Keywords people send (STOP, START, HELP) and staff auto-replies: matching in every spelling, the
consent ledger, exactly one confirmation, and the gate keeping opted-out people out."""

from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compliance.gate import MessageFacts, SystemPurpose, gate_check
from compliance.models import ConsentEvent, ConsentSource, ConsentStatus
from compliance.services import (
    Evidence,
    consent_evidence,
    consent_record,
    consent_status,
    consent_text_create,
)
from messaging.keywords import Keyword, autoreply_choose, keyword_of
from messaging.models import AutoReply, Contact, Message, MessageStatus, WebhookEvent
from messaging.sending import message_facts, message_send
from messaging.webhook_processing import webhook_event_process
from messaging.whatsapp import webhook_payloads
from messaging.whatsapp.base import SenderRef
from messaging.whatsapp.memory import MemoryBackend
from templates_app.models import MessageTemplate, TemplateStatus
from tests.factories import ContactFactory, StaffUserFactory
from tests.webhook_client import post_webhook

SENDER = SenderRef("100200300400500", "+15550100000", "900800700600500")
AVA_WA_ID = "15550123456"
OPT_OUT_TEXT = "You are unsubscribed: you will get no more WhatsApp messages from Acme Bikes."


# --- Matching (pure) ---------------------------------------------------------------------------------

OPT_OUT_SPELLINGS = ["STOP", "stop", " stop!! ", "Stop.", "STOP 🛑", "Opt-Out", "OPT OUT", "optout", "opt_out",
                     "Unsubscribe", "cancel", "QUIT", "End", "revoke", "\uff33\uff34\uff2f\uff30", "«stop»", "S.T.O.P"]  # fmt: skip
NOT_KEYWORDS = ["don't stop", "please stop it", "stop sending me ads", "nonstop", "stopwatch", "the end",
                "backend", "cancel my order", "I want to opt out of the newsletter", "", "   ", "🛑"]  # fmt: skip


@pytest.mark.parametrize("text", OPT_OUT_SPELLINGS)
def test_opt_out_keywords_in_every_spelling(text):
    assert keyword_of(text) is Keyword.OPT_OUT


@pytest.mark.parametrize("text", NOT_KEYWORDS)
def test_the_word_inside_a_sentence_is_not_a_keyword(text):
    assert keyword_of(text) is None


@pytest.mark.parametrize(
    ("text", "keyword"),
    [("START", Keyword.OPT_IN), ("unstop!", Keyword.OPT_IN), ("Help?", Keyword.HELP), ("yes", Keyword.CONFIRM),
     ("CONFIRM.", Keyword.CONFIRM)],
)  # fmt: skip
def test_other_keywords(text, keyword):
    assert keyword_of(text) is keyword


_WRAPPING = st.text(alphabet=" \t\n!?.,;:-*…\"'()🛑✋", max_size=6)


@given(
    word=st.sampled_from(
        ["stop", "quit", "end", "revoke", "opt out", "opt-out", "optout", "cancel", "unsubscribe"]
    ),
    casing=st.lists(st.booleans(), min_size=11, max_size=11),
    before=_WRAPPING,
    after=_WRAPPING,
)
def test_any_casing_and_surrounding_punctuation_still_opts_out(word, casing, before, after):
    cased = "".join(ch.upper() if upper else ch for ch, upper in zip(word, casing, strict=False))
    assert keyword_of(before + cased + after) is Keyword.OPT_OUT


@given(
    left=st.text(alphabet="abcdefghijklmnopqrstuvwxyz'", min_size=1, max_size=8),
    right=st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8),
)
def test_stop_between_other_words_never_opts_out(left, right):
    assert keyword_of(f"{left} stop {right}") is None
    assert keyword_of(f"stop {right}") is None


def test_auto_reply_matching_exact_contains_and_priority():
    hours = AutoReply(pk=1, keyword="hours", match="exact", reply_text="9-6", priority=100)
    price = AutoReply(
        pk=2, keyword="price", match="contains", reply_text="See acme.example/prices", priority=50
    )
    opening = AutoReply(pk=3, keyword="opening hours", match="contains", reply_text="9-6 daily", priority=10)
    rules = [hours, price, opening]

    assert autoreply_choose("Hours?", rules) is hours
    assert autoreply_choose("what hours are you open", rules) is None  # exact means the whole message
    assert autoreply_choose("What's the PRICE of the Trail 500?", rules) is price
    assert autoreply_choose("priceless", rules) is None  # a word, not a substring
    assert autoreply_choose("Opening   hours and price?", rules) is opening  # lowest priority number wins


# --- Through the endpoint ----------------------------------------------------------------------------

_wamids = iter(range(1, 10**6))


def say(client, text: str, *, at: datetime | None = None, wa_id: str = AVA_WA_ID, wamid: str = "") -> str:
    """The person sends `text` now (or at `at`); returns the wamid."""
    wamid = wamid or f"wamid.IN-KW-{next(_wamids):06d}"
    at = at or timezone.now()
    value = webhook_payloads.inbound_text_value(
        wamid=wamid, from_wa_id=wa_id, text=text, profile_name="Ava Jones", timestamp=int(at.timestamp())
    )
    response = post_webhook(client, webhook_payloads.envelope(SENDER, value))
    assert response.status_code == 200
    return wamid


def replies() -> list[Message]:
    return list(Message.objects.filter(direction=Message.Direction.OUTBOUND).order_by("id"))


@pytest.fixture
def acme(db):
    return consent_text_create(
        version="v1", business_name="Acme Bikes", body="Acme offers. Reply STOP to stop."
    )


@pytest.fixture
def ava(acme):
    contact = ContactFactory(phone_number="+15550123456", wa_id=AVA_WA_ID, profile_name="Ava Jones")
    for purpose in ("marketing", "utility"):
        consent_record(
            contact_id=contact.pk,
            phone_number=contact.phone_number,
            purpose=purpose,
            action="opt_in",
            source="import",
            evidence=Evidence(reason="CRM import"),
            text_version="v1",
            occurred_at=timezone.now() - timedelta(days=30),
        )
    return contact


@pytest.mark.django_db
def test_stop_opts_out_of_everything_with_the_message_as_evidence_and_confirms_once(client, ava):
    wamid = say(client, "Stop!")

    for purpose in ("marketing", "utility", "authentication"):
        assert consent_status(contact_id=ava.pk, purpose=purpose) == ConsentStatus.REVOKED
    events = ConsentEvent.objects.filter(action="opt_out")
    assert {e.source for e in events} == {ConsentSource.WHATSAPP_KEYWORD}
    assert consent_evidence(events.first())["message_id"] == wamid
    [confirmation] = replies()
    assert confirmation.preview.startswith(OPT_OUT_TEXT)
    assert (confirmation.kind, confirmation.status, confirmation.reply_to) == ("text", "queued", wamid)
    assert confirmation.created_by is None and confirmation.contact == ava


@pytest.mark.django_db
def test_a_second_stop_is_recorded_but_not_answered(client, ava):
    say(client, "STOP")
    say(client, "stop!!!")

    assert len(replies()) == 1
    assert ConsentEvent.objects.filter(action="opt_out").count() == 6  # each STOP is on record


@pytest.mark.django_db
def test_a_redelivered_stop_acts_and_answers_once(client, ava):
    say(client, "STOP", wamid="wamid.IN-STOP-ONCE")
    event_count = ConsentEvent.objects.count()

    say(client, "STOP", wamid="wamid.IN-STOP-ONCE", at=timezone.now() + timedelta(seconds=3))  # other bytes
    for event in WebhookEvent.objects.all():
        webhook_event_process(event.pk)  # and staff replay everything

    assert len(replies()) == 1
    assert ConsentEvent.objects.count() == event_count


@pytest.mark.django_db
def test_stop_from_a_stranger_opts_them_out_and_confirms(client, acme):
    say(client, "unsubscribe", wa_id="15550187654")

    contact = Contact.objects.get(phone_number="+15550187654")
    assert consent_status(contact_id=contact.pk, purpose="marketing") == ConsentStatus.REVOKED
    assert len(replies()) == 1


@pytest.mark.django_db
def test_the_word_stop_inside_a_sentence_changes_nothing(client, ava):
    say(client, "Please don't stop the newsletter, I love it")

    assert consent_status(contact_id=ava.pk, purpose="marketing") == ConsentStatus.GRANTED
    assert replies() == []


@pytest.mark.django_db
def test_after_stop_the_gate_blocks_marketing_and_ordinary_replies_but_lets_the_confirmation_through(
    client, ava
):
    say(client, "STOP")
    now = timezone.now() + timedelta(minutes=1)
    ava.refresh_from_db()
    [confirmation] = replies()

    marketing = MessageFacts(
        contact_id=ava.pk, phone_number=ava.phone_number, at=now, kind="template", template_category="MARKETING",
        template_status="APPROVED", timezone="America/New_York", last_inbound_at=ava.last_inbound_at,
    )  # fmt: skip
    assert gate_check(marketing).code == "opted_out"
    staff_reply = Message(
        contact=ava, sender=confirmation.sender, kind="text", content={"body": "Sorry to see you go! 20% off?"},
        created_by=StaffUserFactory(), reply_to=confirmation.reply_to,
    )  # fmt: skip
    assert staff_reply.purpose == ""
    assert gate_check(message_facts(staff_reply, now)).code == "opted_out"
    # The confirmation is recognised as exactly that, and only that is allowed.
    assert confirmation.purpose == SystemPurpose.OPT_OUT_CONFIRMATION
    assert gate_check(message_facts(confirmation, now)).allowed
    # ... within the day of the STOP: a day later it would be blocked too.
    late = replace(
        message_facts(confirmation, now + timedelta(hours=25)), purpose=SystemPurpose.OPT_OUT_CONFIRMATION
    )
    assert gate_check(late).code == "window_closed"
    # The purpose cannot smuggle a marketing template through.
    assert (
        gate_check(replace(marketing, purpose=SystemPurpose.OPT_OUT_CONFIRMATION)).code == "invalid_purpose"
    )


@pytest.mark.django_db
def test_the_opt_out_confirmation_purpose_needs_an_opt_out_by_the_persons_own_keyword(ava):
    consent_record(
        contact_id=ava.pk, phone_number=ava.phone_number, purpose="utility", action="opt_out", source="staff",
        evidence=Evidence(staff_user_id=1, reason="asked on the phone"),
    )  # fmt: skip
    now = timezone.now()
    facts = MessageFacts(
        contact_id=ava.pk, phone_number=ava.phone_number, at=now, last_inbound_at=now - timedelta(minutes=5),
        purpose=SystemPurpose.OPT_OUT_CONFIRMATION,
    )  # fmt: skip
    assert gate_check(facts).code == "opted_out"
    fresh = ContactFactory()
    assert (
        gate_check(replace(facts, contact_id=fresh.pk, phone_number=fresh.phone_number)).code
        == "not_opted_out"
    )


@pytest.mark.django_db
def test_the_stop_confirmation_goes_out_through_the_sending_pipeline(
    client, ava, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        say(client, "STOP")

    [confirmation] = replies()
    assert confirmation.status == MessageStatus.SENT, confirmation.error_title
    [sent] = MemoryBackend.outbox
    assert sent["payload"]["text"]["body"].startswith(OPT_OUT_TEXT)
    assert sent["payload"]["to"] == AVA_WA_ID


@pytest.mark.django_db
def test_nothing_else_reaches_the_person_after_the_confirmation(
    client, ava, django_capture_on_commit_callbacks
):
    say(client, "STOP")
    AutoReply.objects.create(keyword="hours", reply_text="We open 9-6.")
    staff_message = Message.objects.create(
        contact=ava, sender=replies()[0].sender, kind="text", content={"body": "One more offer!"},
        status=MessageStatus.QUEUED, created_by=StaffUserFactory(),
    )  # fmt: skip

    assert message_send(staff_message.pk).status == MessageStatus.BLOCKED


@pytest.mark.django_db
def test_start_restores_what_stop_took_away_and_confirms(client, ava):
    say(client, "STOP")
    wamid = say(client, "Start")

    assert consent_status(contact_id=ava.pk, purpose="marketing") == ConsentStatus.GRANTED
    assert consent_status(contact_id=ava.pk, purpose="utility") == ConsentStatus.GRANTED
    # Never granted before the STOP: START does not invent it.
    assert consent_status(contact_id=ava.pk, purpose="authentication") == ConsentStatus.REVOKED
    opt_in = ConsentEvent.objects.filter(action="opt_in", source=ConsentSource.WHATSAPP_KEYWORD)
    assert opt_in.count() == 2 and {e.text_version for e in opt_in} == {"v1"}
    assert consent_evidence(opt_in.first())["message_id"] == wamid
    assert [m.preview.split(":")[0] for m in replies()] == [
        "You are unsubscribed",
        "You are subscribed again to WhatsApp messages from Acme Bikes. Reply STOP at any time to stop.",
    ]


@pytest.mark.django_db
def test_start_from_someone_who_never_consented_grants_nothing(client, acme):
    say(client, "START", wa_id="15550187654")

    contact = Contact.objects.get(phone_number="+15550187654")
    assert consent_status(contact_id=contact.pk, purpose="marketing") is None
    assert replies() == []


@pytest.mark.django_db
def test_help_answers_with_the_business_and_how_to_stop(client, ava):
    wamid = say(client, "help?")

    [answer] = replies()
    assert "Acme Bikes" in answer.preview and "Reply STOP" in answer.preview
    assert answer.reply_to == wamid


@pytest.mark.django_db
def test_help_text_is_configurable(client, ava, settings):
    settings.WHATSAPP_HELP_TEXT = "{business} support: call 555-0100. Text STOP to quit."

    say(client, "HELP")

    assert replies()[0].preview == "Acme Bikes support: call 555-0100. Text STOP to quit."


@pytest.mark.django_db
def test_help_still_reaches_someone_who_opted_out(client, ava):
    say(client, "STOP", at=timezone.now() - timedelta(minutes=5))
    say(client, "HELP")

    assert len(replies()) == 2 and "Reply STOP" in replies()[1].preview


# --- Auto-replies ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_one_auto_reply_per_message_by_priority(client, ava):
    AutoReply.objects.create(keyword="hours", match="contains", reply_text="We open 9-6.", priority=20)
    AutoReply.objects.create(keyword="sunday", match="contains", reply_text="Closed on Sundays.", priority=10)
    AutoReply.objects.create(
        keyword="open", match="contains", reply_text="Inactive rule", is_active=False, priority=1
    )

    wamid = say(client, "What are your opening hours on Sunday? Are you open?")

    [answer] = replies()
    assert answer.preview == "Closed on Sundays." and answer.reply_to == wamid
    assert answer.status == MessageStatus.QUEUED and answer.created_by is None


@pytest.mark.django_db
def test_no_auto_reply_when_nothing_matches_or_on_redelivery(client, ava):
    AutoReply.objects.create(keyword="hours", reply_text="We open 9-6.")

    say(client, "hello")
    say(client, "Hours?", wamid="wamid.IN-HOURS")
    say(client, "Hours?", wamid="wamid.IN-HOURS", at=timezone.now() + timedelta(seconds=2))

    assert [m.preview for m in replies()] == ["We open 9-6."]


@pytest.mark.django_db
def test_an_auto_reply_can_be_an_approved_template(client, ava):
    template = MessageTemplate.objects.create(
        waba_id="900800700600500", name="store_hours", language="en_US", category="UTILITY",
        status=TemplateStatus.APPROVED, components=[{"type": "BODY", "text": "We open {{1}} to {{2}}."}],
    )  # fmt: skip
    AutoReply.objects.create(keyword="hours", template=template, template_parameters=["9 am", "6 pm"])

    say(client, "HOURS")

    [answer] = replies()
    assert (answer.kind, answer.template, answer.preview) == ("template", template, "We open 9 am to 6 pm.")


@pytest.mark.django_db
def test_consent_keywords_win_over_auto_replies(client, ava):
    AutoReply.objects.create(keyword="stop", match="contains", reply_text="Which stop? We have two shops.")

    say(client, "STOP")

    assert [m.preview.split(":")[0] for m in replies()] == ["You are unsubscribed"]


# --- Admin -------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_admin_refuses_consent_keywords_as_auto_reply_keywords(client):
    from tests.factories import UserFactory

    admin = UserFactory(username="boss", is_staff=True, is_superuser=True)
    client.force_login(admin)

    response = client.post(
        "/admin/messaging/autoreply/add/",
        {"keyword": "Opt-Out", "match": "exact", "reply_text": "bye", "template_parameters": "[]", "priority": 100,
         "is_active": "on"},
    )  # fmt: skip
    assert response.status_code == 200
    assert "is a consent keyword" in response.content.decode()
    assert not AutoReply.objects.exists()

    response = client.post(
        "/admin/messaging/autoreply/add/",
        {"keyword": "Hours", "match": "exact", "reply_text": "9-6", "template_parameters": "[]", "priority": 100,
         "is_active": "on"},
    )  # fmt: skip
    assert response.status_code == 302
    assert client.get("/admin/messaging/autoreply/").status_code == 200
    assert AutoReply.objects.get().keyword == "Hours"


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None, max_examples=25)
@given(text=st.sampled_from(OPT_OUT_SPELLINGS))
@pytest.mark.django_db
def test_every_spelling_opts_out_through_the_endpoint(client, ava, text):
    Message.objects.all().delete()
    consent_record(
        contact_id=ava.pk, phone_number=ava.phone_number, purpose="marketing", action="opt_in", source="import",
        evidence=Evidence(reason="re-import"), text_version="v1",
    )  # fmt: skip

    say(client, text)

    assert consent_status(contact_id=ava.pk, purpose="marketing") == ConsentStatus.REVOKED
    assert len(replies()) == 1
