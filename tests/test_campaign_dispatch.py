"""Running campaigns (messaging.campaign_dispatch): the fan-out, paced dispatch through the outbound
pipeline, pause / resume / cancel without anyone receiving the campaign twice, completion, and what
the progress and results say (messaging.campaign_results)."""

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.contrib.auth.models import Permission
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.test import override_settings

from compliance.services import Evidence, consent_record, consent_text_create
from messaging.campaign_dispatch import (
    campaign_advance,
    campaign_cancel,
    campaign_fan_out,
    campaign_pause,
    campaign_resume,
    campaign_start,
    campaigns_tick,
)
from messaging.campaign_results import campaign_progress, campaign_results_csv, campaign_totals
from messaging.campaign_upload import campaign_audience_upload
from messaging.campaigns import campaign_approve, campaign_check_parameters, campaign_submit
from messaging.models import Campaign, CampaignEvent, CampaignRecipient, Message, MessageStatus
from messaging.sending import messages_due, messages_send
from messaging.whatsapp.memory import MemoryBackend
from templates_app.models import MessageTemplate, TemplateStatus
from tests.factories import ContactFactory, SenderFactory, TagFactory, UserFactory

pytestmark = pytest.mark.django_db

MIDDAY = datetime(2025, 6, 10, 16, 0, tzinfo=UTC)  # 12:00 in New York
WEB = Evidence(ip_address="203.0.113.7", user_agent="Mozilla/5.0", page_url="https://shop.example/opt-in/")


@pytest.fixture(autouse=True)
def at_midday():
    with time_machine.travel(MIDDAY, tick=True):
        yield


@pytest.fixture(autouse=True)
def consent_text(db):
    return consent_text_create(version="v1", business_name="Acme", body="Acme offers. Reply STOP to stop.")


@pytest.fixture
def template():
    return MessageTemplate.objects.create(
        waba_id="900800700600500",
        name="summer_sale",
        language="en_US",
        category="MARKETING",
        status=TemplateStatus.APPROVED,
        components=[
            {"type": "BODY", "text": "Hi {{1}}, {{2}}", "example": {"body_text": [["Ann", "20% off"]]}}
        ],
    )


def user_with(*codenames: str, username: str):
    user = UserFactory(username=username, is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return type(user).objects.get(pk=user.pk)


@pytest.fixture
def author():
    return user_with("add_campaign", "change_campaign", "view_campaign", username="author")


@pytest.fixture
def approver():
    return user_with("approve_campaign", "view_campaign", "control_campaign", username="approver")


@pytest.fixture
def campaign(template, author):
    return Campaign.objects.create(
        name="Summer sale",
        sender=SenderFactory(messages_per_second=80),
        template=template,
        template_parameters=[{"field": "profile_name"}, {"text": "20% off everything"}],
        created_by=author,
    )


def opt_in(contact, purpose="marketing"):
    consent_record(
        contact_id=contact.pk,
        phone_number=contact.phone_number,
        purpose=purpose,
        action="opt_in",
        source="web_form",
        evidence=WEB,
        text_version="v1",
        occurred_at=MIDDAY - timedelta(days=30),
    )
    return contact


def consenting(n: int, **fields) -> list:
    return [opt_in(ContactFactory(**fields)) for _ in range(n)]


def approved(campaign, author, approver):
    campaign_submit(campaign=campaign, user=author)
    return campaign_approve(campaign=campaign, user=approver)


def sent_to() -> list[str]:
    """E.164 numbers the campaign's requests went to (Meta's `to` is the number without its +)."""
    return ["+" + item["payload"]["to"] for item in MemoryBackend.outbox]


def test_approval_starts_the_campaign_and_every_consenting_contact_gets_one_message(
    campaign, author, approver, django_capture_on_commit_callbacks
):
    people = consenting(4)
    ContactFactory()  # no consent: excluded with the reason
    with django_capture_on_commit_callbacks(execute=True):
        approved(campaign, author, approver)
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.RUNNING
    assert campaign.recipients_total == 5
    assert sorted(sent_to()) == sorted(p.phone_number for p in people)
    first = MemoryBackend.outbox[0]["payload"]
    assert first["type"] == "template" and first["template"]["name"] == "summer_sale"
    assert first["template"]["components"][0]["parameters"][1] == {
        "type": "text",
        "text": "20% off everything",
    }
    messages = Message.objects.filter(campaign=campaign)
    assert {m.status for m in messages} == {MessageStatus.SENT}
    assert all(m.approved_by == approver for m in messages)
    excluded = CampaignRecipient.objects.get(campaign=campaign, status="excluded")
    assert excluded.reason == "no_consent"

    # The next step finds nobody left and nothing in flight: complete.
    campaign_advance(campaign.pk)
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED and campaign.finished_at is not None
    assert campaign.progress_percent == 100  # the campaign list's snapshot
    actions = list(CampaignEvent.objects.filter(campaign=campaign).values_list("action", flat=True))
    assert actions == ["submitted", "approved", "started", "completed"]


def test_timeline_names_the_campaign_and_its_approver(
    campaign, author, approver, django_capture_on_commit_callbacks
):
    consenting(1)
    with django_capture_on_commit_callbacks(execute=True):
        approved(campaign, author, approver)
    message = Message.objects.get(campaign=campaign)
    queued = message.status_events.get(status="queued")
    assert queued.source == "campaign"
    assert "Summer sale" in queued.detail and "approver" in queued.detail


def test_a_scheduled_campaign_waits_for_its_time(
    campaign, author, approver, django_capture_on_commit_callbacks
):
    consenting(2)
    campaign.scheduled_at = MIDDAY + timedelta(hours=2)
    campaign.save()
    with django_capture_on_commit_callbacks(execute=True):
        approved(campaign, author, approver)
        campaigns_tick()
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.APPROVED
    assert MemoryBackend.outbox == []
    with (
        time_machine.travel(MIDDAY + timedelta(hours=2, seconds=1), tick=False),
        django_capture_on_commit_callbacks(execute=True),
    ):
        campaigns_tick()
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.RUNNING
    assert len(MemoryBackend.outbox) == 2


def test_fan_out_materializes_the_audience_once(campaign):
    vip = TagFactory(name="vip")
    tagged = [ContactFactory(tags=["vip"]) for _ in range(3)]
    ContactFactory(tags=["other"])
    campaign.audience_tags.set([vip])
    assert campaign_fan_out(campaign) == 3
    assert sorted(CampaignRecipient.objects.values_list("contact_id", flat=True)) == sorted(
        c.pk for c in tagged
    )
    assert set(CampaignRecipient.objects.values_list("status", flat=True)) == {"pending"}
    with pytest.raises(IntegrityError), transaction.atomic():
        campaign_fan_out(campaign)  # a second fan-out of the same people is impossible


def test_start_is_idempotent(campaign, author, approver):
    consenting(2)
    approved(campaign, author, approver)  # on-commit start not run: started by hand below
    assert campaign_start(campaign.pk) is True
    assert campaign_start(campaign.pk) is False
    assert CampaignRecipient.objects.filter(campaign=campaign).count() == 2


def test_a_template_paused_after_approval_pauses_the_campaign_at_start(campaign, author, approver):
    consenting(2)
    approved(campaign, author, approver)
    MessageTemplate.objects.filter(pk=campaign.template_id).update(status=TemplateStatus.PAUSED)
    campaign_start(campaign.pk)
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.PAUSED
    assert "paused" in CampaignEvent.objects.filter(campaign=campaign).last().detail.lower()
    assert not Message.objects.filter(campaign=campaign).exists()


@override_settings(CAMPAIGN_DISPATCH_AHEAD_SECONDS=0)
def test_steps_keep_only_a_window_in_flight(campaign, author, approver, monkeypatch):
    from messaging import campaign_dispatch

    monkeypatch.setattr(campaign_dispatch, "DISPATCH_MIN_WINDOW", 3)
    consenting(7)
    approved(campaign, author, approver)
    campaign_start(campaign.pk)
    # Messages are queued but not handed to workers (no on-commit here): the window is full.
    assert campaign_advance(campaign.pk).created == 3
    assert campaign_advance(campaign.pk).waiting
    assert Message.objects.filter(campaign=campaign).count() == 3
    messages_send(list(Message.objects.filter(campaign=campaign).values_list("pk", flat=True)))
    assert campaign_advance(campaign.pk).created == 3
    messages_send(
        list(Message.objects.filter(campaign=campaign, status="queued").values_list("pk", flat=True))
    )
    assert campaign_advance(campaign.pk).created == 1
    messages_send(
        list(Message.objects.filter(campaign=campaign, status="queued").values_list("pk", flat=True))
    )
    campaign_advance(campaign.pk)
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED
    assert len(sent_to()) == 7 == len(set(sent_to()))


def test_pause_holds_what_workers_have_not_claimed_and_resume_sends_each_once(
    campaign, author, approver, django_capture_on_commit_callbacks
):
    people = consenting(5)
    approved(campaign, author, approver)
    campaign_start(campaign.pk)
    campaign_advance(campaign.pk)  # 5 queued, tasks not run yet
    queued = list(Message.objects.filter(campaign=campaign).values_list("pk", flat=True))
    messages_send(queued[:2])  # a worker got to two of them before the pause

    assert campaign_pause(campaign=campaign, user=approver) == 3
    statuses = dict(Message.objects.filter(campaign=campaign).values_list("pk", "status"))
    assert sorted(statuses.values()) == ["held", "held", "held", "sent", "sent"]
    # The tasks enqueued before the pause run now: they claim nothing.
    outcomes = messages_send(queued)
    assert {o.status for o in outcomes.values()} == {"not_claimed"}
    assert campaign_advance(campaign.pk).status == Campaign.Status.PAUSED
    assert len(MemoryBackend.outbox) == 2

    with django_capture_on_commit_callbacks(execute=True):
        assert campaign_resume(campaign=campaign, user=approver) == 3
    assert sorted(sent_to()) == sorted(p.phone_number for p in people)  # each exactly once
    held = Message.objects.get(pk=queued[4])
    assert [e.status for e in held.status_events.all()][:4] == ["queued", "held", "queued", "sending"]
    # Resumed again after everything went: still once each.
    messages_send(queued)
    assert len(MemoryBackend.outbox) == 5


def test_cancel_stops_everything_not_yet_with_meta(campaign, author, approver, monkeypatch):
    from messaging import campaign_dispatch

    monkeypatch.setattr(campaign_dispatch, "DISPATCH_BATCH_SIZE", 2)
    consenting(5)
    approved(campaign, author, approver)
    campaign_start(campaign.pk)
    campaign_advance(campaign.pk)  # 2 queued, 3 pending
    first = list(Message.objects.filter(campaign=campaign).values_list("pk", flat=True))
    messages_send(first[:1])
    assert campaign_cancel(campaign=campaign, user=approver, reason="wrong price") == 1
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.CANCELLED
    assert sorted(Message.objects.filter(campaign=campaign).values_list("status", flat=True)) == [
        "cancelled",
        "sent",
    ]
    assert CampaignRecipient.objects.filter(campaign=campaign, status="cancelled").count() == 3
    messages_send(first)
    assert len(MemoryBackend.outbox) == 1
    assert campaign_advance(campaign.pk).status == Campaign.Status.CANCELLED
    assert "wrong price" in CampaignEvent.objects.filter(campaign=campaign, action="cancelled").get().detail
    progress = campaign_progress(campaign)
    assert progress.percent == 100 and progress.sent == 1


def test_controls_refuse_wrong_states_and_people_without_permission(campaign, author, approver):
    consenting(1)
    approved(campaign, author, approver)

    def code(call):
        with pytest.raises(ValidationError) as exc:
            call()
        return exc.value.code

    assert code(lambda: campaign_pause(campaign=campaign, user=approver)) == "not_running"
    assert code(lambda: campaign_resume(campaign=campaign, user=approver)) == "not_paused"
    assert code(lambda: campaign_pause(campaign=campaign, user=author)) == "not_allowed"
    campaign_start(campaign.pk)
    campaign_pause(campaign=campaign, user=approver)
    MessageTemplate.objects.filter(pk=campaign.template_id).update(status=TemplateStatus.PAUSED)
    assert code(lambda: campaign_resume(campaign=campaign, user=approver)) == "template_not_approved"
    campaign_cancel(campaign=campaign, user=approver)
    assert code(lambda: campaign_cancel(campaign=campaign, user=approver)) == "not_cancellable"


def test_consent_withdrawn_after_fan_out_excludes_at_dispatch(campaign, author, approver):
    stays, leaves = consenting(2)
    approved(campaign, author, approver)
    campaign_start(campaign.pk)
    consent_record(
        contact_id=leaves.pk,
        phone_number=leaves.phone_number,
        purpose="marketing",
        action="opt_out",
        source="whatsapp_keyword",
        evidence=Evidence(message_id="wamid.STOP"),
    )
    campaign_advance(campaign.pk)
    recipient = CampaignRecipient.objects.get(campaign=campaign, contact=leaves)
    assert (recipient.status, recipient.reason) == ("excluded", "opted_out")
    assert list(Message.objects.filter(campaign=campaign).values_list("contact_id", flat=True)) == [stays.pk]


def test_quiet_hours_defer_a_recipient_to_their_morning(
    campaign, author, approver, django_capture_on_commit_callbacks
):
    opt_in(ContactFactory(timezone="Asia/Tokyo"))  # 01:00 in Tokyo
    with django_capture_on_commit_callbacks(execute=True):
        approved(campaign, author, approver)
    message = Message.objects.get(campaign=campaign)
    assert message.status == MessageStatus.DEFERRED
    assert message.next_attempt_at == datetime(2025, 6, 10, 23, 0, tzinfo=UTC)
    assert MemoryBackend.outbox == []
    campaign_advance(campaign.pk)
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.RUNNING  # not complete while it waits
    assert campaign_progress(campaign).waiting == 1


def test_the_campaign_frequency_cap_excludes_people_messaged_recently(campaign, author, approver):
    recent, fresh = consenting(2)
    Message.objects.create(
        contact=recent,
        sender=campaign.sender,
        kind="template",
        template_category="MARKETING",
        status="delivered",
        sent_at=MIDDAY - timedelta(days=2),
    )
    campaign.frequency_cap_count, campaign.frequency_cap_days = 1, 3
    campaign.save()
    approved(campaign, author, approver)
    campaign_start(campaign.pk)
    campaign_advance(campaign.pk)
    recipient = CampaignRecipient.objects.get(campaign=campaign, contact=recent)
    assert (recipient.status, recipient.reason) == ("excluded", "frequency_cap")
    assert "this campaign's cap: 1" in recipient.detail
    assert CampaignRecipient.objects.get(campaign=campaign, contact=fresh).status == "queued"


def test_parameter_count_must_match_the_template(campaign):
    campaign.template_parameters = [{"field": "profile_name"}]
    with pytest.raises(ValidationError) as exc:
        campaign_check_parameters(campaign)
    assert exc.value.code == "parameter_count"
    assert "body {{1}}, body {{2}}" in exc.value.messages[0]


def test_an_uploaded_list_with_columns_fills_the_parameters(
    campaign, author, approver, django_capture_on_commit_callbacks
):
    ann, bob = consenting(2)
    ContactFactory(phone_number="+15557770000")  # listed, no consent
    csv_text = (
        "Phone,Discount\n"
        f"{ann.phone_number},15% off\n"
        f"{bob.phone_number},=HYPERLINK(1)\n"
        f"{ann.phone_number},duplicate line\n"
        "+15557770000,5% off\n"
        "+19999,nope\n"
        "+15550001111,not a contact\n"
    )
    summary = campaign_audience_upload(
        campaign=campaign, file=io.StringIO(csv_text), user=author, file_name="list.csv"
    )
    assert (summary.rows, summary.listed, summary.duplicates, summary.invalid, summary.not_contacts) == (
        6,
        3,
        1,
        1,
        1,
    )
    assert summary.invalid_lines == [{"line": 6, "error": "not a valid phone number"}]
    assert summary.columns == ["discount"]
    campaign.refresh_from_db()
    campaign.template_parameters = [{"field": "profile_name"}, {"column": "discount"}]
    campaign.save()
    with django_capture_on_commit_callbacks(execute=True):
        approved(campaign, author, approver)
    texts = {
        "+" + item["payload"]["to"]: item["payload"]["template"]["components"][0]["parameters"][1]["text"]
        for item in MemoryBackend.outbox
    }
    assert texts == {ann.phone_number: "15% off", bob.phone_number: "=HYPERLINK(1)"}
    assert (
        CampaignRecipient.objects.get(campaign=campaign, contact__phone_number="+15557770000").reason
        == "no_consent"
    )


def test_a_column_parameter_needs_the_column(campaign, author):
    ContactFactory(phone_number="+15557770001")
    campaign_audience_upload(campaign=campaign, file=io.StringIO("phone\n+15557770001\n"), user=author)
    campaign.refresh_from_db()
    campaign.template_parameters = [{"field": "profile_name"}, {"column": "discount"}]
    with pytest.raises(ValidationError) as exc:
        campaign_check_parameters(campaign)
    assert exc.value.code == "unknown_column"


def test_an_upload_without_a_phone_column_is_refused(campaign, author):
    with pytest.raises(ValidationError) as exc:
        campaign_audience_upload(campaign=campaign, file=io.StringIO("name,email\nAnn,a@b.c\n"), user=author)
    assert exc.value.code == "invalid_file"


def test_totals_and_results_export(campaign, author, approver, django_capture_on_commit_callbacks, settings):
    from messaging.whatsapp.errors import WhatsAppApiError

    settings.WHATSAPP_PRICE_PER_MESSAGE = {"marketing": "0.025"}
    ok, _failing = consenting(2)
    ContactFactory()
    MemoryBackend.script(
        {
            "messaging_product": "whatsapp",
            "contacts": [{"input": ok.phone_number, "wa_id": ok.phone_number}],
            "messages": [{"id": "wamid.OK1"}],
        },
        WhatsAppApiError(http_status=400, code=131026, message="Message undeliverable"),
    )
    with django_capture_on_commit_callbacks(execute=True):
        approved(campaign, author, approver)
    Message.objects.filter(provider_message_id="wamid.OK1").update(
        status="delivered", billable=True, pricing_category="marketing"
    )
    campaign.refresh_from_db()
    totals = campaign_totals(campaign)
    assert (totals.progress.sent, totals.progress.delivered, totals.progress.failed) == (1, 1, 1)
    assert [(f.code, f.count) for f in totals.failures] == [("131026", 1)]
    assert totals.excluded[0][0] == "no_consent"
    assert str(totals.cost.estimate) == "0.025"
    assert totals.progress.percent == 100

    rows = list(csv.DictReader(io.StringIO("".join(campaign_results_csv(campaign)))))
    assert len(rows) == 3
    by_status = {r["recipient_status"]: r for r in rows}
    assert by_status["excluded"]["reason"] == "no_consent"
    assert {r["message_status"] for r in rows if r["recipient_status"] == "queued"} == {"delivered", "failed"}


def test_totals_add_up_each_figure_across_the_others(campaign, settings):
    """The totals read the messages once, grouped by status, error code, pricing category and
    billable together: each figure must add its groups up across the other columns."""
    settings.WHATSAPP_PRICE_PER_MESSAGE = {"marketing": "0.025", "utility": "0.004"}
    rows = [
        # (status, error code, error title, billable, pricing category)
        ("read", "", "", True, "marketing"),
        ("delivered", "", "", True, "marketing"),
        ("delivered", "", "", True, "utility"),
        ("sent", "", "", False, ""),
        ("failed", "131026", "Message undeliverable", False, ""),
        ("failed", "131026", "Message undeliverable", True, "marketing"),  # charged, then failed
        ("blocked", "131026", "", False, ""),  # the same code, also blocked: one line
        ("failed", "131049", "Not delivered to keep engagement healthy", False, ""),
        ("queued", "", "", False, ""),
    ]
    for status, code, title, billable, category in rows:
        Message.objects.create(
            campaign=campaign,
            contact=ContactFactory(),
            sender=campaign.sender,
            kind="template",
            status=status,
            error_code=code,
            error_title=title,
            billable=billable,
            pricing_category=category,
        )

    totals = campaign_totals(campaign)

    assert totals.progress.messages == {
        "read": 1,
        "delivered": 2,
        "sent": 1,
        "failed": 3,
        "blocked": 1,
        "queued": 1,
    }
    assert (totals.progress.sent, totals.progress.delivered, totals.progress.read) == (4, 3, 1)
    assert (totals.progress.failed, totals.progress.waiting) == (4, 1)
    assert [(f.code, f.title, f.count) for f in totals.failures] == [
        ("131026", "Message undeliverable", 3),
        ("131049", "Not delivered to keep engagement healthy", 1),
    ]
    assert [(c.category, c.count) for c in totals.cost.categories] == [("marketing", 3), ("utility", 1)]
    assert str(totals.cost.estimate) == "0.079"
    assert totals.progress.messages == campaign_progress(campaign).messages  # as the progress bar counts


# --- What staff do while messages are with a worker ---------------------------------------------------


def meta_throttles_while(action):
    """A send during which `action` runs (staff click a button) and Meta answers 130429 (retry)."""
    from messaging.whatsapp.errors import WhatsAppApiError

    original = MemoryBackend._post_message

    def post(self, sender, payload):
        action()
        raise WhatsAppApiError(message="Rate limit hit", code=130429, http_status=429)

    MemoryBackend._post_message = post
    return original


@pytest.mark.parametrize("stop", ["cancel", "pause"])
def test_a_message_retried_after_a_cancel_or_pause_is_not_sent(campaign, author, approver, stop):
    consenting(1)
    approved(campaign, author, approver)
    campaign_start(campaign.pk)
    campaign_advance(campaign.pk)
    (message_id,) = Message.objects.filter(campaign=campaign).values_list("pk", flat=True)
    control = campaign_cancel if stop == "cancel" else campaign_pause
    original = meta_throttles_while(
        lambda: control(campaign=Campaign.objects.get(pk=campaign.pk), user=approver)
    )
    try:
        messages_send([message_id])
    finally:
        MemoryBackend._post_message = original
    assert Message.objects.get(pk=message_id).status == MessageStatus.QUEUED  # back for a retry
    later = MIDDAY + timedelta(hours=1)
    with time_machine.travel(later, tick=False):
        assert message_id not in messages_due()
        assert messages_send([message_id])[message_id].status == "not_claimed"
        campaigns_tick()
    settled = Message.objects.get(pk=message_id)
    assert settled.status == (MessageStatus.CANCELLED if stop == "cancel" else MessageStatus.HELD)
    assert MemoryBackend.outbox == []  # the throttled attempt was the only request, and Meta refused it
    if stop == "pause":
        with time_machine.travel(later, tick=False):
            campaign_resume(campaign=campaign, user=approver)
            messages_send([message_id])
        assert Message.objects.get(pk=message_id).status == MessageStatus.SENT
        assert len(MemoryBackend.outbox) == 1


def test_a_template_paused_by_meta_mid_run_pauses_the_campaign_and_loses_nobody(
    campaign, author, approver, monkeypatch
):
    from messaging import campaign_dispatch

    monkeypatch.setattr(campaign_dispatch, "DISPATCH_BATCH_SIZE", 2)
    consenting(5)
    approved(campaign, author, approver)
    campaign_start(campaign.pk)
    assert campaign_advance(campaign.pk).created == 2
    MessageTemplate.objects.filter(pk=campaign.template_id).update(status=TemplateStatus.PAUSED)
    assert campaign_advance(campaign.pk).status == Campaign.Status.PAUSED
    assert CampaignRecipient.objects.filter(campaign=campaign, status="pending").count() == 3
    assert not CampaignRecipient.objects.filter(campaign=campaign, status="excluded").exists()
    assert set(Message.objects.filter(campaign=campaign).values_list("status", flat=True)) == {"held"}
    assert "paused" in CampaignEvent.objects.filter(campaign=campaign).last().detail.lower()

    MessageTemplate.objects.filter(pk=campaign.template_id).update(status=TemplateStatus.APPROVED)
    campaign_resume(campaign=campaign, user=approver)
    campaign_advance(campaign.pk)
    campaign_advance(campaign.pk)
    assert CampaignRecipient.objects.filter(campaign=campaign, status="queued").count() == 5


def test_resume_keeps_quiet_hours_and_does_not_stall_the_others(campaign, author, approver, monkeypatch):
    monkeypatch.setattr("messaging.campaign_dispatch.dispatch_window", lambda campaign: 3)
    for _ in range(3):
        opt_in(ContactFactory(timezone="Asia/Tokyo"))  # 01:00 there: deferred to 08:00
    new_york = consenting(4)
    approved(campaign, author, approver)
    campaign_start(campaign.pk)
    campaign_advance(campaign.pk)  # the 3 Tokyo recipients come first: deferred
    campaign_pause(campaign=campaign, user=approver)
    campaign_resume(campaign=campaign, user=approver)
    statuses = list(Message.objects.filter(campaign=campaign).values_list("status", flat=True))
    assert statuses == ["deferred"] * 3
    step = campaign_advance(campaign.pk)
    assert not step.waiting and step.created == 3  # deferred messages do not fill the window
    queued = Message.objects.filter(campaign=campaign, status="queued").values_list("contact_id", flat=True)
    assert set(queued) <= {c.pk for c in new_york}


def test_the_campaign_cap_counts_messages_still_on_their_way(campaign, author, approver):
    person, _other = consenting(2)
    Message.objects.create(
        contact=person,
        sender=campaign.sender,
        kind="template",
        template_category="MARKETING",
        status="queued",
    )  # another campaign's, not sent yet
    campaign.frequency_cap_count = 1
    campaign.save()
    approved(campaign, author, approver)
    campaign_start(campaign.pk)
    campaign_advance(campaign.pk)
    assert CampaignRecipient.objects.get(campaign=campaign, contact=person).reason == "frequency_cap"


def test_a_superseded_chain_of_steps_stops(campaign, author, approver):
    consenting(2)
    approved(campaign, author, approver)
    campaign_start(campaign.pk)
    campaign.refresh_from_db()
    current = campaign.dispatch_chain
    assert current
    stale = campaign_advance(campaign.pk, chain="an-older-chain")
    assert stale.superseded and not stale.running and stale.created == 0
    assert campaign_advance(campaign.pk, chain=current).created == 2


def test_header_body_and_button_values_are_mapped_in_slot_order(campaign):
    from messaging.campaigns import campaign_render_for
    from templates_app.rendering import template_slots

    campaign.template.components = [
        {"type": "HEADER", "format": "TEXT", "text": "Hello {{1}}", "example": {"header_text": ["Ann"]}},
        {"type": "BODY", "text": "Your code {{1}} saves {{2}}.", "example": {"body_text": [["X1", "20%"]]}},
        {
            "type": "BUTTONS",
            "buttons": [
                {"type": "QUICK_REPLY", "text": "Stop"},
                {"type": "URL", "text": "Shop", "url": "https://shop.example/{{1}}", "example": ["a"]},
            ],
        },
    ]
    campaign.template.save()
    labels = [slot.label for slot in template_slots(campaign.template)]
    assert labels == ["header {{1}}", "body {{1}}", "body {{2}}", "button 2 (URL suffix)"]
    campaign.template_parameters = [
        {"field": "profile_name"},
        {"text": "SPRING"},
        {"text": "20%"},
        {"text": "spring"},
    ]
    rendered = campaign_render_for(campaign, ContactFactory(profile_name="Ann"))
    components = {c["type"]: c for c in rendered.payload["components"]}
    assert components["header"]["parameters"] == [{"type": "text", "text": "Ann"}]
    assert [p["text"] for p in components["body"]["parameters"]] == ["SPRING", "20%"]
    assert components["button"] == {
        "type": "button",
        "sub_type": "url",
        "index": "1",
        "parameters": [{"type": "text", "text": "spring"}],
    }
    assert rendered.preview.startswith("*Hello Ann*")
