"""Campaign drafts (messaging.campaigns): the audience, per-recipient template parameters, and the dry
run that tells staff, before approval, who receives the campaign, who later, and who not and why."""

import csv
import io
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from compliance.services import Evidence, consent_record, consent_text_create
from compliance.suppression import suppression_add
from messaging.campaigns import (
    DRY_RUN_LOST_AFTER,
    MissingParameter,
    campaign_approve,
    campaign_audience,
    campaign_dry_run,
    campaign_dry_run_csv,
    campaign_dry_run_report,
    campaign_dry_run_request,
    campaign_dry_run_rows,
    campaign_parameters_for,
    campaign_reject,
    campaign_submit,
)
from messaging.models import Campaign, CampaignDryRunReport, Message
from templates_app.models import MessageTemplate, TemplateStatus
from tests.factories import ContactFactory, SenderFactory, TagFactory, UserFactory

pytestmark = pytest.mark.django_db

#: Midday in New York (16:00 UTC in June is 12:00 EDT).
MIDDAY = datetime(2025, 6, 10, 16, 0, tzinfo=UTC)
WEB = Evidence(ip_address="203.0.113.7", user_agent="Mozilla/5.0", page_url="https://shop.example/opt-in/")


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


@pytest.fixture
def campaign(template):
    return Campaign.objects.create(
        name="Summer sale",
        sender=SenderFactory(),
        template=template,
        template_parameters=[{"field": "profile_name"}, {"text": "20% off everything"}],
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


def opt_out(contact, purpose="marketing"):
    consent_record(
        contact_id=contact.pk,
        phone_number=contact.phone_number,
        purpose=purpose,
        action="opt_out",
        source="whatsapp_keyword",
        evidence=Evidence(message_id="wamid.STOP"),
        occurred_at=MIDDAY - timedelta(days=3),
    )
    return contact


def marketing_sent(contact, sender, *, days_ago: float):
    Message.objects.create(
        contact=contact,
        sender=sender,
        kind=Message.Kind.TEMPLATE,
        template_category="MARKETING",
        status="delivered",
        sent_at=MIDDAY - timedelta(days=days_ago),
    )


# --- Audience and parameters ----------------------------------------------------------------------


def test_audience_is_everyone_without_tags_and_any_tag_otherwise(campaign):
    vip = ContactFactory(tags=["vip"])
    both = ContactFactory(tags=["vip", "bikes"])
    bikes = ContactFactory(tags=["bikes"])
    other = ContactFactory(tags=["other"])
    assert set(campaign_audience(campaign)) == {vip, both, bikes, other}

    campaign.audience_tags.set([TagFactory(name="vip"), TagFactory(name="bikes")])
    audience = list(campaign_audience(campaign))
    assert sorted(c.pk for c in audience) == sorted([vip.pk, both.pk, bikes.pk])  # `both` only once


def test_audience_filters_by_locale(campaign):
    english = ContactFactory(locale="en_US", tags=["vip"])
    ContactFactory(locale="es_MX", tags=["vip"])
    ContactFactory(locale="en_US", tags=["other"])
    campaign.audience_tags.set([TagFactory(name="vip")])
    campaign.audience_locale = "en_US"
    assert list(campaign_audience(campaign)) == [english]


def test_parameters_map_contact_fields_and_literals(campaign):
    ann = ContactFactory(profile_name="Ann")
    assert campaign_parameters_for(campaign, ann) == ["Ann", "20% off everything"]
    with pytest.raises(MissingParameter, match="profile_name"):
        campaign_parameters_for(campaign, ContactFactory(profile_name="  "))


def test_parameter_mapping_only_allows_listed_contact_fields(campaign):
    campaign.template_parameters = [{"field": "last_inbound_at"}]
    with pytest.raises(ValidationError) as exc:
        campaign.full_clean()
    assert "template_parameters" in exc.value.message_dict
    campaign.template_parameters = [{"field": "locale"}, {"text": "x"}]
    campaign.full_clean()


# --- Dry run --------------------------------------------------------------------------------------


@override_settings(CONSENT_MARKETING_FREQUENCY_CAP=2, CONSENT_FREQUENCY_CAP_DAYS=7)
def test_dry_run_counts_everyone_and_says_why(campaign):
    sender = campaign.sender
    receivers = [opt_in(ContactFactory()) for _ in range(3)]
    ContactFactory()  # no consent
    ContactFactory()  # no consent
    opt_out(opt_in(ContactFactory()))
    suppression_add(e164=opt_in(ContactFactory()).phone_number, reason="erased")
    capped = opt_in(ContactFactory())
    marketing_sent(capped, sender, days_ago=1)
    marketing_sent(capped, sender, days_ago=2)
    below_cap = opt_in(ContactFactory())
    marketing_sent(below_cap, sender, days_ago=1)
    marketing_sent(below_cap, sender, days_ago=30)  # outside the cap's period
    opt_in(ContactFactory(profile_name=""))  # nothing to put in "Hi {{1}}"
    tokyo = opt_in(ContactFactory(timezone="Asia/Tokyo"))  # 01:00 there: deferred to 08:00

    dry_run = campaign_dry_run(campaign, at=MIDDAY)

    assert dry_run.total == 11
    assert dry_run.will_receive == 5  # 3 receivers, below_cap, tokyo
    assert dry_run.later == 1
    assert dry_run.now == 4
    assert dry_run.earliest_later == datetime(2025, 6, 10, 23, 0, tzinfo=UTC)  # 08:00 in Tokyo
    assert dict(dry_run.excluded) == {
        "no_consent": 2,
        "opted_out": 1,
        "suppressed": 1,
        "frequency_cap": 1,
        "missing_parameter": 1,
    }
    outcomes = {row.contact_id: row.outcome for row in campaign_dry_run_rows(campaign, at=MIDDAY)}
    assert {outcomes[c.pk] for c in receivers} == {"send"}
    assert outcomes[below_cap.pk] == "send"
    assert outcomes[tokyo.pk] == "later"


def test_dry_run_at_recipient_night_defers_to_their_morning(campaign):
    opt_in(ContactFactory())  # New York
    # 02:00 in New York: the schedule is "now", so the dry run uses the current time.
    with time_machine.travel(datetime(2025, 6, 10, 6, 0, tzinfo=UTC), tick=False):
        dry_run = campaign_dry_run(campaign)
        (row,) = campaign_dry_run_rows(campaign, at=dry_run.at)
    assert (dry_run.total, dry_run.will_receive, dry_run.later) == (1, 1, 1)
    assert dry_run.earliest_later == datetime(2025, 6, 10, 12, 0, tzinfo=UTC)  # 08:00 EDT
    assert (row.outcome, row.reason, row.defer_until) == ("later", "quiet_hours", dry_run.earliest_later)


def test_dry_run_uses_the_schedule_when_in_the_future(campaign):
    opt_in(ContactFactory())
    campaign.scheduled_at = MIDDAY
    with time_machine.travel(datetime(2025, 6, 10, 6, 0, tzinfo=UTC), tick=False):
        dry_run = campaign_dry_run(campaign)
    assert dry_run.at == MIDDAY
    assert (dry_run.will_receive, dry_run.later) == (1, 0)


def test_dry_run_counts_an_invalid_number(campaign):
    opt_in(ContactFactory(phone_number="+999123"))  # passes the E.164 shape, no such country
    opt_in(ContactFactory())
    dry_run = campaign_dry_run(campaign, at=MIDDAY)
    assert dict(dry_run.excluded) == {"invalid_number": 1}
    assert dry_run.will_receive == 1


@pytest.mark.parametrize("status", [TemplateStatus.PENDING, TemplateStatus.PAUSED, TemplateStatus.REJECTED])
def test_dry_run_refuses_a_template_meta_has_not_approved(campaign, status):
    campaign.template.status = status
    with pytest.raises(ValidationError) as exc:
        campaign_dry_run(campaign, at=MIDDAY)
    assert exc.value.code == "template_not_approved"


def test_dry_run_refuses_a_paused_or_inactive_sender(campaign):
    campaign.sender.paused_at = MIDDAY
    with pytest.raises(ValidationError) as exc:
        campaign_dry_run(campaign, at=MIDDAY)
    assert exc.value.code == "sender_unavailable"
    campaign.sender.paused_at = None
    campaign.sender.is_active = False
    with pytest.raises(ValidationError, match="inactive"):
        campaign_dry_run(campaign, at=MIDDAY)


def test_dry_run_queries_do_not_grow_with_the_audience(campaign, settings):
    settings.CONSENT_MARKETING_FREQUENCY_CAP = 3
    campaign.audience_tags.set([TagFactory(name="vip")])

    def queries_for(n: int) -> int:
        for _ in range(n):
            marketing_sent(opt_in(ContactFactory(tags=["vip"])), campaign.sender, days_ago=1)
        fresh = Campaign.objects.get(pk=campaign.pk)
        with CaptureQueriesContext(connection) as queries:
            dry_run = campaign_dry_run(fresh, at=MIDDAY)
        assert dry_run.will_receive == dry_run.total  # each is below the cap: all went through
        return len(queries), dry_run.total

    small, large = queries_for(10), queries_for(40)
    assert (small[1], large[1]) == (10, 50)
    assert small[0] == large[0]


# --- CSV ------------------------------------------------------------------------------------------


def test_csv_lists_everyone_with_outcome_and_neutralizes_formulas(campaign):
    opt_in(ContactFactory(phone_number="+12125550101"))
    ContactFactory(phone_number="+12125550102")
    opt_in(ContactFactory(phone_number="+12125550103", profile_name=""))
    dry_run_rows = list(campaign_dry_run_rows(campaign, at=MIDDAY))
    dry_run_rows[2] = replace(dry_run_rows[2], detail='=HYPERLINK("http://evil")')  # a hostile detail

    rows = list(csv.reader(io.StringIO("".join(campaign_dry_run_csv(dry_run_rows, at=MIDDAY)))))

    assert rows[0] == ["phone_number", "outcome", "reason", "detail", "send_at"]
    by_phone = {row[0]: row for row in rows[1:]}
    assert by_phone["+12125550101"][1:3] == ["send", ""]
    assert by_phone["+12125550101"][4] == "2025-06-10T16:00:00+00:00"
    assert by_phone["+12125550102"][1:3] == ["excluded", "no_consent"]
    assert by_phone["+12125550102"][4] == ""
    assert by_phone["+12125550103"][1:3] == ["excluded", "missing_parameter"]
    assert by_phone["+12125550103"][3] == '\'=HYPERLINK("http://evil")'


# --- Admin ----------------------------------------------------------------------------------------


@pytest.fixture
def admin_client(client):
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    return client


def test_admin_dry_run_is_worked_out_on_request_then_shown_with_its_csv(
    admin_client, campaign, django_capture_on_commit_callbacks
):
    for _ in range(2):
        opt_in(ContactFactory())
    ContactFactory()
    opt_in(ContactFactory(timezone="Asia/Tokyo"))
    change = admin_client.get(reverse("admin:messaging_campaign_change", args=[campaign.pk]))
    dry_run_url = reverse("admin:messaging_campaign_dry_run", args=[campaign.pk])
    assert dry_run_url in change.content.decode()

    with time_machine.travel(MIDDAY, tick=False):
        before = admin_client.get(dry_run_url)
        with django_capture_on_commit_callbacks(execute=True) as callbacks:  # the worker's part
            started = admin_client.post(dry_run_url)
        page = admin_client.get(dry_run_url)
        download = admin_client.get(reverse("admin:messaging_campaign_dry_run_csv", args=[campaign.pk]))

    assert "No dry run yet" in before.content.decode() and 'id="dry-run-csv"' not in before.content.decode()
    assert (started.status_code, started["Location"]) == (302, dry_run_url)
    assert len(callbacks) == 1
    report = CampaignDryRunReport.objects.get(campaign=campaign)
    assert (report.status, report.requested_by.username, report.at) == ("done", "root", MIDDAY)
    assert page.status_code == 200
    assert page.context["dry_run"].total == 4
    html = page.content.decode()
    assert '<td id="dry-run-will-receive">3</td>' in html
    assert "No consent for this kind of message" in html
    assert "2025-06-10 23:00" in html  # the earliest quiet-hours send time
    assert 'http-equiv="refresh"' not in html
    assert download.status_code == 200
    assert download["Content-Type"].startswith("text/csv")
    lines = b"".join(download.streaming_content).decode().splitlines()
    assert len(lines) == 5 and lines[0] == "phone_number,outcome,reason,detail,send_at"
    assert sum(",excluded,no_consent," in line for line in lines) == 1


def test_a_running_dry_run_reloads_its_page_and_a_second_click_starts_no_other(
    admin_client, campaign, django_capture_on_commit_callbacks
):
    opt_in(ContactFactory())
    dry_run_url = reverse("admin:messaging_campaign_dry_run", args=[campaign.pk])
    with django_capture_on_commit_callbacks(execute=False) as callbacks:  # no worker has taken it yet
        admin_client.post(dry_run_url)
        admin_client.post(dry_run_url)

    page = admin_client.get(dry_run_url).content.decode()

    assert CampaignDryRunReport.objects.filter(campaign=campaign).count() == 1
    assert len(callbacks) == 1
    assert "Working it out" in page and 'http-equiv="refresh"' in page
    assert 'id="dry-run-start"' not in page
    # A dry run lost with its worker no longer holds the next one back.
    CampaignDryRunReport.objects.update(requested_at=timezone.now() - DRY_RUN_LOST_AFTER)
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(dry_run_url)
    assert list(CampaignDryRunReport.objects.values_list("status", flat=True)) == ["done", "running"]


def test_a_dry_run_the_worker_cannot_do_says_why_on_its_page(campaign, django_capture_on_commit_callbacks):
    opt_in(ContactFactory())
    with django_capture_on_commit_callbacks(execute=False):
        report = campaign_dry_run_request(campaign=campaign, user=None)
    campaign.template.status = TemplateStatus.PAUSED  # between the click and the worker
    campaign.template.save()

    campaign_dry_run_report(report.pk)
    campaign_dry_run_report(report.pk)  # delivered twice: the first answer stays

    report.refresh_from_db()
    assert report.status == "failed"
    assert "not approved by Meta" in report.error
    assert report.summary == {}


def test_a_dry_run_that_crashes_is_marked_failed_not_left_running(
    campaign, monkeypatch, django_capture_on_commit_callbacks
):
    from messaging import campaigns

    opt_in(ContactFactory())
    with django_capture_on_commit_callbacks(execute=False):
        report = campaign_dry_run_request(campaign=campaign, user=None)
    monkeypatch.setattr(campaigns, "campaign_dry_run", lambda *a, **kw: 1 / 0)

    with pytest.raises(ZeroDivisionError):  # the worker logs it
        campaign_dry_run_report(report.pk)

    report.refresh_from_db()
    assert report.status == "failed" and "unexpected error" in report.error
    assert report.finished_at is not None


def test_admin_dry_run_of_an_unapproved_template_is_an_error_message(admin_client, campaign):
    campaign.template.status = TemplateStatus.PAUSED
    campaign.template.save()
    dry_run_url = reverse("admin:messaging_campaign_dry_run", args=[campaign.pk])
    response = admin_client.post(dry_run_url, follow=True)
    assert response.status_code == 200
    assert "not approved by Meta" in response.content.decode()
    assert not CampaignDryRunReport.objects.exists()
    download = admin_client.get(
        reverse("admin:messaging_campaign_dry_run_csv", args=[campaign.pk]), follow=True
    )
    assert "not approved by Meta" in download.content.decode()


def test_admin_creates_a_draft_recording_its_author(admin_client, template):
    sender = SenderFactory()
    response = admin_client.post(
        reverse("admin:messaging_campaign_add"),
        {
            "name": "Autumn",
            "sender": sender.pk,
            "template": template.pk,
            "template_parameters": '[{"field": "profile_name"}, {"text": "hello"}]',
            "audience_locale": "en_US",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    campaign = Campaign.objects.get(name="Autumn")
    assert (campaign.status, campaign.created_by.username) == ("draft", "root")


def test_composers_prepare_campaigns_and_approvers_can_read_them():
    from messaging.roles import APPROVER, COMPOSER
    from tests.staff import logged_in, user_in

    composer = logged_in(user_in(COMPOSER, username="composer"))
    approver = logged_in(user_in(APPROVER, username="approver"))
    assert composer.get("/admin/messaging/campaign/add/").status_code == 200
    assert approver.get("/admin/messaging/campaign/").status_code == 200
    assert approver.get("/admin/messaging/campaign/add/").status_code == 403


# --- Approval -------------------------------------------------------------------------------------


def approver_user(username="approver"):
    from messaging.roles import APPROVER
    from tests.staff import user_in

    return user_in(APPROVER, username=username)


def composer_user(username="composer"):
    from messaging.roles import COMPOSER
    from tests.staff import user_in

    return user_in(COMPOSER, username=username)


@pytest.fixture
def author():
    return composer_user("author")


@pytest.fixture
def draft(campaign, author):
    """A draft written by `author` that one opted-in contact would receive."""
    opt_in(ContactFactory(profile_name="Ann"))
    campaign.created_by = author
    campaign.save()
    return campaign


@pytest.fixture
def pending(draft, author):
    return campaign_submit(campaign=draft, user=author)


def refusal_code(call) -> str:
    with pytest.raises(ValidationError) as exc:
        call()
    return exc.value.code


def test_submit_puts_a_draft_in_the_queue_and_records_who(draft, author):
    campaign = campaign_submit(campaign=draft, user=author)
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.PENDING_APPROVAL
    assert campaign.submitted_by == author and campaign.submitted_at is not None


def test_submit_refuses_an_audience_nobody_in_would_receive(campaign, author):
    ContactFactory()  # no consent
    assert refusal_code(lambda: campaign_submit(campaign=campaign, user=author)) == "empty_audience"
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DRAFT


def test_submit_reads_the_audience_only_until_someone_would_receive_it(campaign, author, monkeypatch):
    """A million-person audience is not checked whole to submit it: the first chunk with someone who
    would receive it is enough (the dry run, in a worker, counts them all)."""
    from messaging import campaigns

    monkeypatch.setattr(campaigns, "DRY_RUN_CHUNK_SIZE", 2)
    for _ in range(10):
        opt_in(ContactFactory())
    checked = []
    check = campaigns.campaign_check_recipients
    monkeypatch.setattr(
        campaigns,
        "campaign_check_recipients",
        lambda c, chunk, **kw: checked.extend(chunk) or check(c, chunk, **kw),
    )

    campaign_submit(campaign=campaign, user=author)

    assert len(checked) == 2
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.PENDING_APPROVAL


def test_submit_refuses_an_unsendable_template(draft, author):
    draft.template.status = TemplateStatus.PAUSED
    draft.template.save()
    assert refusal_code(lambda: campaign_submit(campaign=draft, user=author)) == "template_not_approved"


def test_only_drafts_can_be_submitted(pending, author):
    assert refusal_code(lambda: campaign_submit(campaign=pending, user=author)) == "not_a_draft"


def test_a_second_person_approves_and_is_recorded(pending):
    approver = approver_user()
    campaign_approve(campaign=pending, user=approver)
    pending.refresh_from_db()
    assert pending.status == Campaign.Status.APPROVED
    assert pending.approved_by == approver and pending.approved_at is not None


def test_nobody_approves_or_rejects_their_own_even_with_the_permission(pending, author):
    from django.contrib.auth.models import Permission

    author.user_permissions.add(Permission.objects.get(codename="approve_campaign"))
    author = type(author).objects.get(pk=author.pk)  # fresh permission cache
    assert author.has_perm("messaging.approve_campaign")
    assert refusal_code(lambda: campaign_approve(campaign=pending, user=author)) == "own_campaign"
    assert refusal_code(lambda: campaign_reject(campaign=pending, user=author, reason="x")) == "own_campaign"
    pending.refresh_from_db()
    assert pending.status == Campaign.Status.PENDING_APPROVAL


def test_whoever_submitted_someone_elses_draft_cannot_approve_it(draft):
    colleague = approver_user("colleague")
    colleague.groups.add(*composer_user("c2").groups.all())
    campaign_submit(campaign=draft, user=colleague)
    assert refusal_code(lambda: campaign_approve(campaign=draft, user=colleague)) == "own_campaign"


def test_approving_needs_the_permission(pending):
    other_composer = composer_user()
    assert refusal_code(lambda: campaign_approve(campaign=pending, user=other_composer)) == "not_allowed"
    assert refusal_code(lambda: campaign_reject(campaign=pending, user=other_composer, reason="no")) == (
        "not_allowed"
    )


def test_only_pending_campaigns_can_be_approved_or_rejected(draft):
    approver = approver_user()
    assert refusal_code(lambda: campaign_approve(campaign=draft, user=approver)) == "not_pending"
    assert refusal_code(lambda: campaign_reject(campaign=draft, user=approver, reason="no")) == "not_pending"


def test_of_two_approvers_at_once_the_second_is_refused(pending):
    # Both loaded the pending campaign before either clicked; the service re-reads it under a lock.
    first_copy, second_copy = Campaign.objects.get(pk=pending.pk), Campaign.objects.get(pk=pending.pk)
    first, second = approver_user("first"), approver_user("second")
    campaign_approve(campaign=first_copy, user=first)
    assert refusal_code(lambda: campaign_approve(campaign=second_copy, user=second)) == "not_pending"
    assert (
        refusal_code(lambda: campaign_reject(campaign=second_copy, user=second, reason="x")) == "not_pending"
    )
    pending.refresh_from_db()
    assert pending.approved_by == first


def test_approval_rechecks_the_template_meta_may_have_paused_since(pending):
    pending.template.status = TemplateStatus.PAUSED
    pending.template.save()
    assert refusal_code(lambda: campaign_approve(campaign=pending, user=approver_user())) == (
        "template_not_approved"
    )
    pending.refresh_from_db()
    assert pending.status == Campaign.Status.PENDING_APPROVAL


def test_reject_sends_it_back_to_draft_with_the_reason_until_resubmitted(pending, author):
    approver = approver_user()
    assert refusal_code(lambda: campaign_reject(campaign=pending, user=approver, reason="  ")) == (
        "reason_required"
    )
    campaign_reject(campaign=pending, user=approver, reason="Wrong audience")
    pending.refresh_from_db()
    assert (pending.status, pending.rejection_reason) == (Campaign.Status.DRAFT, "Wrong audience")

    campaign_submit(campaign=pending, user=author)
    pending.refresh_from_db()
    assert (pending.status, pending.rejection_reason) == (Campaign.Status.PENDING_APPROVAL, "")


# --- Approval in the admin ------------------------------------------------------------------------


def change_url(campaign):
    return reverse("admin:messaging_campaign_change", args=[campaign.pk])


def action_url(campaign, action):
    return reverse(f"admin:messaging_campaign_{action}", args=[campaign.pk])


def test_admin_author_submits_a_draft_with_the_button(draft, author):
    from tests.staff import logged_in, messages_of

    client = logged_in(author)
    page = client.get(change_url(draft)).content.decode()
    assert 'id="campaign-submit"' in page and 'id="campaign-approve"' not in page
    assert client.get(action_url(draft, "submit")).status_code == 405
    response = client.post(action_url(draft, "submit"))
    assert response.status_code == 302
    assert any("waiting for approval" in m for m in messages_of(response))
    draft.refresh_from_db()
    assert draft.status == Campaign.Status.PENDING_APPROVAL


def test_admin_submit_of_an_empty_audience_is_an_error_message(campaign, author):
    from tests.staff import logged_in, messages_of

    campaign.created_by = author
    campaign.save()
    response = logged_in(author).post(action_url(campaign, "submit"))
    assert response.status_code == 302
    assert any("Nobody" in m for m in messages_of(response))
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DRAFT


def test_admin_pending_campaign_is_read_only_and_only_others_may_review(pending, author):
    from tests.staff import logged_in

    author_client = logged_in(author)
    author_page = author_client.get(change_url(pending)).content.decode()
    assert 'id="campaign-submit"' not in author_page and 'id="campaign-approve"' not in author_page
    # The frozen campaign cannot be edited, even by its author.
    edit = author_client.post(change_url(pending), {"name": "Changed"})
    assert edit.status_code == 403
    assert author_client.post(action_url(pending, "approve")).status_code == 403  # no permission

    approver_page = logged_in(approver_user()).get(change_url(pending)).content.decode()
    assert 'id="campaign-approve"' in approver_page and 'id="campaign-reject"' in approver_page
    assert 'name="name"' not in approver_page  # read-only: no inputs for the fields
    pending.refresh_from_db()
    assert pending.name == "Summer sale"


def test_admin_approve_and_reject_buttons_post_only(pending):
    from tests.staff import logged_in, messages_of

    client = logged_in(approver_user())
    assert client.get(action_url(pending, "approve")).status_code == 405
    assert client.get(action_url(pending, "reject")).status_code == 405

    empty = client.post(action_url(pending, "reject"), {"reason": ""})
    assert any("Say why" in m for m in messages_of(empty))
    rejected = client.post(action_url(pending, "reject"), {"reason": "Wrong audience"})
    assert any("back to draft" in m for m in messages_of(rejected))
    pending.refresh_from_db()
    assert (pending.status, pending.rejection_reason) == (Campaign.Status.DRAFT, "Wrong audience")

    again = client.post(action_url(pending, "approve"))  # a draft now: refused, not a 500
    assert again.status_code == 302
    assert any("not waiting for approval" in m for m in messages_of(again))


def test_admin_approver_approves_and_the_campaign_stays_read_only(pending):
    from tests.staff import logged_in, messages_of

    approver = approver_user()
    client = logged_in(approver)
    response = client.post(action_url(pending, "approve"))
    assert any("is approved" in m for m in messages_of(response))
    pending.refresh_from_db()
    assert (pending.status, pending.approved_by) == (Campaign.Status.APPROVED, approver)
    page = client.get(change_url(pending)).content.decode()
    assert 'id="campaign-approve"' not in page and 'id="campaign-submit"' not in page


def test_admin_rejected_campaign_can_be_edited_again(pending, author):
    from tests.staff import logged_in

    campaign_reject(campaign=pending, user=approver_user(), reason="Fix the name")
    page = logged_in(author).get(change_url(pending)).content.decode()
    assert 'name="name"' in page and "Fix the name" in page and 'id="campaign-submit"' in page


def test_admin_list_filters_by_status(admin_client, pending, template):
    Campaign.objects.create(name="Other draft", sender=pending.sender, template=template)
    listing = admin_client.get(
        reverse("admin:messaging_campaign_changelist"), {"status__exact": "pending_approval"}
    )
    assert [c.name for c in listing.context["cl"].result_list] == ["Summer sale"]


def test_roles_approvers_approve_campaigns_composers_do_not():
    assert approver_user().has_perm("messaging.approve_campaign")
    assert not composer_user().has_perm("messaging.approve_campaign")
