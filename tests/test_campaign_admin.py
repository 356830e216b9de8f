"""A campaign's admin pages once it runs (messaging/admin_campaigns.py): live progress as JSON, Pause /
Resume / Cancel, totals, history, the per-recipient changelist, results as CSV, and a draft's uploaded
audience list. Campaigns here really run: approved through the admin, they fan out and send through the
in-memory backend at once (eager Celery); Meta's statuses are applied as its webhooks would."""

import csv
import io
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from compliance.services import Evidence, consent_record, consent_text_create
from messaging.models import Campaign, CampaignRecipient, Message
from messaging.roles import APPROVER, AUDITOR, COMPOSER, OPERATOR
from messaging.statuses import status_apply
from messaging.webhook_events import Metadata, MetaError, StatusUpdate
from messaging.whatsapp.memory import MemoryBackend
from templates_app.models import MessageTemplate, TemplateStatus
from tests.factories import ContactFactory, SenderFactory
from tests.staff import logged_in, messages_of, user_in

pytestmark = pytest.mark.django_db

WEB = Evidence(ip_address="203.0.113.7", user_agent="Mozilla/5.0", page_url="https://shop.example/opt-in/")


@pytest.fixture(autouse=True)
def consent_text(db):
    return consent_text_create(version="v1", business_name="Acme", body="Acme offers. Reply STOP to stop.")


def opt_in(contact):
    consent_record(
        contact_id=contact.pk,
        phone_number=contact.phone_number,
        purpose="marketing",
        action="opt_in",
        source="web_form",
        evidence=WEB,
        text_version="v1",
        occurred_at=timezone.now() - timedelta(days=30),
    )
    return contact


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
def composer():
    return user_in(COMPOSER, username="composer")


@pytest.fixture
def approver():
    return user_in(APPROVER, username="approver")


@pytest.fixture
def operator():
    return user_in(OPERATOR, username="operator")


@pytest.fixture
def auditor():
    return user_in(AUDITOR, username="auditor")


@pytest.fixture
def draft(template, composer):
    # Midday everywhere the audience lives would be better, but "now" is what approval uses: keep the
    # audience in UTC's neighbour with no quiet hours at test time by choosing the timezone per hour.
    return Campaign.objects.create(
        name="Summer sale",
        sender=SenderFactory(),
        template=template,
        template_parameters=[{"field": "profile_name"}, {"text": "20% off everything"}],
        created_by=composer,
    )


def awake_timezone() -> str:
    """A timezone where it is daytime now: quiet hours (21:00-08:00) would defer the sends."""
    hour = timezone.now().hour  # UTC
    for name, offset in (("UTC", 0), ("Asia/Tokyo", 9), ("America/New_York", -4), ("Asia/Kolkata", 5.5)):
        local = (hour + offset) % 24
        if 10 <= local < 19:
            return name
    return "Pacific/Honolulu"  # UTC-10: covers the hours the others miss


def audience(n: int, **fields) -> list:
    zone = awake_timezone()
    return [opt_in(ContactFactory(timezone=zone, **fields)) for _ in range(n)]


def url(campaign, name: str) -> str:
    return reverse(f"admin:messaging_campaign_{name}", args=[campaign.pk])


@pytest.fixture
def run(django_capture_on_commit_callbacks):
    """Submit as the composer and approve as the approver, through the admin's buttons; the start, the
    first dispatch step and the sends run as they would once the approval commits."""

    def submit_and_approve(draft, composer, approver) -> Campaign:
        assert logged_in(composer).post(url(draft, "submit")).status_code == 302
        with django_capture_on_commit_callbacks(execute=True):
            response = logged_in(approver).post(url(draft, "approve"))
        assert response.status_code == 302
        assert messages_of(response) == [f"“{draft}” is approved."]
        draft.refresh_from_db()
        return draft

    return submit_and_approve


def meta_says(message: Message, status: str, **fields) -> None:
    status_apply(
        StatusUpdate(
            meta=Metadata(waba_id="900800700600500"),
            wamid=message.provider_message_id,
            status=status,
            timestamp=timezone.now(),
            **fields,
        )
    )


MARKETING_PRICE = {"billable": True, "pricing_model": "PMP", "category": "marketing", "type": "regular"}


# --- Live progress ------------------------------------------------------------------------------------


def test_progress_json_follows_a_real_dispatch_and_meta_statuses(draft, composer, approver, settings, run):
    settings.WHATSAPP_PRICE_PER_MESSAGE = {"marketing": "0.025"}
    receivers = audience(4)
    ContactFactory()  # no consent: excluded
    campaign = run(draft, composer, approver)
    assert campaign.status == Campaign.Status.RUNNING
    assert len(MemoryBackend.outbox) == 4

    progress = logged_in(approver).get(url(campaign, "progress")).json()
    assert progress["status"] == "running" and progress["live"] is True
    assert (progress["total"], progress["pending"], progress["sent"], progress["waiting"]) == (5, 0, 4, 0)
    assert progress["excluded"] == {"no_consent": 1}
    assert progress["excluded_total"] == 1
    assert (progress["delivered"], progress["read"], progress["failed"]) == (0, 0, 0)
    assert progress["percent"] == 100  # everyone's dispatch is over: sent or excluded

    messages = list(Message.objects.filter(campaign=campaign).order_by("pk"))
    for message in messages:
        meta_says(message, "sent", pricing=MARKETING_PRICE)
    meta_says(messages[0], "delivered")
    meta_says(messages[1], "read")
    meta_says(messages[3], "failed", errors=(MetaError(code="131026", title="Message undeliverable"),))

    progress = logged_in(composer).get(url(campaign, "progress")).json()
    assert (progress["sent"], progress["delivered"], progress["read"], progress["failed"]) == (3, 2, 1, 1)
    assert progress["messages"]["failed"] == 1
    assert progress["percent"] == 100
    assert {m.contact_id for m in messages} == {c.pk for c in receivers}

    page = logged_in(approver).get(reverse("admin:messaging_campaign_change", args=[campaign.pk]))
    html = page.content.decode()
    assert '<progress id="campaign-progress" value="100" max="100"' in html
    assert '<td data-count="delivered">2</td>' in html
    assert 'data-live="true"' in html and "messaging/campaign.js" in html
    assert (
        '<tr data-code="131026"><td><code>131026</code></td><td>Message undeliverable</td><td>1</td></tr>'
        in html
    )
    assert '<tr data-reason="no_consent">' in html and "No consent for this kind of message" in html
    # Four billable marketing messages at $0.025.
    assert '<tr data-category="marketing">' in html
    assert '<td id="campaign-cost-estimate">$0.10</td>' in html
    assert "Recipients (5)" in html


def test_totals_say_when_no_prices_are_configured(draft, composer, approver, settings, run):
    settings.WHATSAPP_PRICE_PER_MESSAGE = {}
    audience(1)
    campaign = run(draft, composer, approver)
    meta_says(Message.objects.get(campaign=campaign), "sent", pricing=MARKETING_PRICE)
    html = logged_in(approver).get(url(campaign, "change")).content.decode()
    assert 'id="campaign-no-prices"' in html and "no price" in html
    assert "campaign-cost-estimate" not in html


def test_a_draft_has_no_progress_section_and_a_finished_campaign_stops_polling(
    draft, composer, approver, run
):
    html = logged_in(composer).get(url(draft, "change")).content.decode()
    assert 'id="campaign-live"' not in html
    audience(1)
    campaign = run(draft, composer, approver)
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.COMPLETED)
    html = logged_in(approver).get(url(campaign, "change")).content.decode()
    assert 'data-live="false"' in html
    assert logged_in(approver).get(url(campaign, "progress")).json()["live"] is False


def test_progress_and_results_need_the_view_permission(draft, composer, approver, operator, auditor, run):
    audience(1)
    campaign = run(draft, composer, approver)
    for user in (composer, approver, operator):
        client = logged_in(user)
        assert client.get(url(campaign, "progress")).status_code == 200, user
        assert client.get(url(campaign, "results")).status_code == 200, user
        assert client.get(url(campaign, "change")).status_code == 200, user
    assert logged_in(approver).get("/admin/messaging/campaign/abc/progress.json").status_code == 404
    assert logged_in(approver).get("/admin/messaging/campaign/999999/results.csv").status_code == 404
    auditor_client = logged_in(auditor)
    assert auditor_client.get(url(campaign, "progress")).status_code == 403
    assert auditor_client.get(url(campaign, "results")).status_code == 403
    assert auditor_client.get(reverse("admin:messaging_campaignrecipient_changelist")).status_code == 403


def test_the_results_csv_needs_the_recipients_permission_too(draft, composer, approver, run):
    from django.contrib.auth.models import Permission

    from tests.factories import StaffUserFactory

    audience(1)
    campaign = run(draft, composer, approver)
    viewer = StaffUserFactory(username="viewer")
    viewer.user_permissions.add(Permission.objects.get(codename="view_campaign"))
    client = logged_in(viewer)
    assert client.get(url(campaign, "change")).status_code == 200
    assert client.get(url(campaign, "results")).status_code == 403  # every recipient's number


def test_started_campaigns_cannot_be_deleted_in_bulk(draft, composer, approver, run):
    from django.contrib.auth.models import Permission

    audience(1)
    draft.scheduled_at = timezone.now() + timedelta(days=1)  # approved, no message yet
    draft.save()
    campaign = run(draft, composer, approver)
    assert campaign.status == Campaign.Status.APPROVED
    composer.user_permissions.add(Permission.objects.get(codename="delete_campaign"))
    client = logged_in(type(composer).objects.get(pk=composer.pk))
    response = client.post(
        reverse("admin:messaging_campaign_changelist"),
        {"action": "delete_selected", "_selected_action": [campaign.pk], "post": "yes"},
    )
    assert response.status_code in (200, 302)
    assert Campaign.objects.filter(pk=campaign.pk).exists()


# --- Pause, resume, cancel ----------------------------------------------------------------------------


def test_operator_pauses_resumes_and_cancels_with_a_reason(draft, composer, approver, operator, run):
    audience(2)
    campaign = run(draft, composer, approver)
    client = logged_in(operator)
    page = client.get(url(campaign, "change")).content.decode()
    assert 'id="campaign-pause"' in page
    assert (
        f'<form method="post" action="{url(campaign, "resume")}" id="campaign-resume" '
        'class="campaign-control" data-statuses="paused" hidden>' in page
    )

    response = client.post(url(campaign, "pause"))
    assert response.status_code == 302 and response["Location"] == url(campaign, "change")
    assert any("is paused" in m for m in messages_of(response))
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.PAUSED

    response = client.post(url(campaign, "pause"))  # twice: refused, said, not a 500
    assert messages_of(response)[-1] == "Only a running campaign can be paused (this one is paused)."

    response = client.post(url(campaign, "resume"))
    assert "running again" in messages_of(response)[-1]
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.RUNNING
    response = client.post(url(campaign, "resume"))
    assert messages_of(response)[-1] == "Only a paused campaign can be resumed (this one is running)."

    response = client.post(url(campaign, "cancel"), {"reason": "Wrong price in the text"})
    assert "is cancelled" in messages_of(response)[-1]
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.CANCELLED
    response = client.post(url(campaign, "cancel"))
    assert "Only an approved, running or paused campaign can be cancelled" in messages_of(response)[-1]

    history = client.get(url(campaign, "change")).content.decode()
    for action in ("submitted", "approved", "started", "paused", "resumed", "cancelled"):
        assert f'<tr data-action="{action}">' in history
    assert "reason: Wrong price in the text" in history
    assert 'id="campaign-pause"' in history  # rendered hidden: no control fits a cancelled campaign
    assert 'data-live="false"' in history


def test_controls_need_the_permission_and_post(draft, composer, approver, run):
    audience(1)
    campaign = run(draft, composer, approver)
    client = logged_in(composer)
    assert 'id="campaign-pause"' not in client.get(url(campaign, "change")).content.decode()
    for action in ("pause", "resume", "cancel"):
        assert client.post(url(campaign, action)).status_code == 403
    assert logged_in(approver).get(url(campaign, "pause")).status_code == 405
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.RUNNING
    assert logged_in(approver).post(url(campaign, "pause")).status_code == 302  # approvers may


def test_cancelling_a_draft_is_refused_with_a_message(draft, operator):
    response = logged_in(operator).post(url(draft, "cancel"))
    assert response.status_code == 302
    assert "this one is draft" in messages_of(response)[0]


# --- Results CSV --------------------------------------------------------------------------------------


def test_results_csv_has_one_row_per_recipient_with_formula_safe_cells(draft, composer, approver, run):
    sent_to = audience(2)
    no_consent = ContactFactory()
    campaign = run(draft, composer, approver)
    message = Message.objects.filter(campaign=campaign).order_by("pk").first()
    meta_says(message, "failed", errors=(MetaError(code="131026", title='=HYPERLINK("http://evil")'),))

    response = logged_in(approver).get(url(campaign, "results"))
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"] == f'attachment; filename="campaign-{campaign.pk}-results.csv"'
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert sorted(row["phone_number"] for row in rows) == sorted(
        c.phone_number for c in [*sent_to, no_consent]
    )
    by_phone = {row["phone_number"]: row for row in rows}
    assert (
        by_phone[no_consent.phone_number]["recipient_status"],
        by_phone[no_consent.phone_number]["reason"],
    ) == (
        "excluded",
        "no_consent",
    )
    failed = by_phone[message.contact.phone_number]
    assert (failed["message_status"], failed["error_code"]) == ("failed", "131026")
    assert failed["error_title"] == '\'=HYPERLINK("http://evil")'


# --- Recipients ---------------------------------------------------------------------------------------


def test_recipients_changelist_filtered_by_campaign_and_searchable_by_phone(
    draft, composer, approver, template, run
):
    receivers = audience(3)
    excluded = ContactFactory(phone_number="+15550123456")
    campaign = run(draft, composer, approver)
    other = Campaign.objects.create(name="Other", sender=draft.sender, template=template, status="completed")
    CampaignRecipient.objects.create(
        campaign=other, contact=receivers[0], status="excluded", reason="opted_out"
    )
    message = Message.objects.filter(campaign=campaign).order_by("pk").first()
    meta_says(message, "delivered")

    client = logged_in(approver)
    changelist = reverse("admin:messaging_campaignrecipient_changelist")
    page = client.get(url(campaign, "change")).content.decode()
    assert f'href="{changelist}?campaign__id__exact={campaign.pk}"' in page

    with CaptureQueriesContext(connection) as queries:
        response = client.get(changelist, {"campaign__id__exact": campaign.pk})
    assert response.status_code == 200
    assert response.context["cl"].result_count == 4
    html = response.content.decode()
    assert reverse("admin:messaging_contact_change", args=[excluded.pk]) in html
    assert reverse("admin:messaging_message_change", args=[message.pk]) in html
    assert 'data-status="delivered">Delivered</a>' in html
    assert "No consent for this kind of message" in html
    assert len(queries) < 15  # no query per row (list_select_related)

    filtered = client.get(changelist, {"campaign__id__exact": campaign.pk, "status__exact": "excluded"})
    assert [r.contact_id for r in filtered.context["cl"].result_list] == [excluded.pk]
    by_reason = client.get(changelist, {"reason": "opted_out"})
    assert [r.campaign_id for r in by_reason.context["cl"].result_list] == [other.pk]
    by_message = client.get(changelist, {"message_status": "delivered"})
    assert [r.message_id for r in by_message.context["cl"].result_list] == [message.pk]
    searched = client.get(changelist, {"campaign__id__exact": campaign.pk, "q": "(555) 012-3456"})
    assert [r.contact_id for r in searched.context["cl"].result_list] == [excluded.pk]

    assert client.get(reverse("admin:messaging_campaignrecipient_add")).status_code == 403
    recipient = CampaignRecipient.objects.filter(campaign=campaign).first()
    detail = client.get(reverse("admin:messaging_campaignrecipient_change", args=[recipient.pk]))
    assert detail.status_code == 200 and 'name="_save"' not in detail.content.decode()
    assert (
        client.post(reverse("admin:messaging_campaignrecipient_delete", args=[recipient.pk])).status_code
        == 403
    )


# --- The list of campaigns ----------------------------------------------------------------------------


def test_campaign_list_shows_the_last_progress_without_a_query_per_campaign(
    draft, composer, approver, template, run
):
    audience(2)
    campaign = run(draft, composer, approver)
    client = logged_in(approver)
    # The list shows the progress last computed (by the campaign's page and its dispatch steps).
    assert client.get(url(campaign, "progress")).json()["percent"] == 100

    def list_queries() -> int:
        with CaptureQueriesContext(connection) as queries:
            response = client.get(reverse("admin:messaging_campaign_changelist"))
        assert response.status_code == 200
        return len(queries), response.content.decode()

    few, html = list_queries()
    assert '<progress class="campaign-list-progress" value="100" max="100"></progress> 100%' in html
    for n in range(5):
        Campaign.objects.create(name=f"Draft {n}", sender=draft.sender, template=template)
    many, _ = list_queries()
    assert few == many


# --- The draft's form ---------------------------------------------------------------------------------


def test_the_form_lists_the_template_slots_and_refuses_a_mapping_that_does_not_fit(draft, composer):
    client = logged_in(composer)
    html = client.get(url(draft, "change")).content.decode()
    assert "“summer_sale” needs 2 values, in this order: 1. body {{1}}, 2. body {{2}}." in html
    slots = client.get(reverse("admin:messaging_campaign_template_slots"), {"template": draft.template_id})
    assert slots.json()["slots"] == ["body {{1}}", "body {{2}}"]

    data = {
        "name": "Summer sale",
        "sender": draft.sender_id,
        "template": draft.template_id,
        "template_parameters": '[{"field": "profile_name"}]',
        "audience_source": "filters",
        "audience_locale": "",
        "frequency_cap_count": "2",
        "frequency_cap_days": "30",
    }
    response = client.post(url(draft, "change"), data)
    assert response.status_code == 200
    assert response.context["adminform"].form.non_field_errors().as_data()[0].code == "parameter_count"
    assert "needs 2 value(s)" in response.content.decode()

    data["template_parameters"] = '[{"field": "profile_name"}, {"column": "order_id"}]'
    response = client.post(url(draft, "change"), data)
    assert response.context["adminform"].form.non_field_errors().as_data()[0].code == "column_without_upload"

    data["template_parameters"] = '[{"field": "profile_name"}, {"text": "x"}]'
    assert client.post(url(draft, "change"), data).status_code == 302
    draft.refresh_from_db()
    assert (draft.frequency_cap_count, draft.frequency_cap_days) == (2, 30)


# --- Uploaded audience --------------------------------------------------------------------------------


def test_upload_replaces_the_audience_and_shows_the_summary(draft, composer):
    ann = ContactFactory(phone_number="+15550100001")
    ContactFactory(phone_number="+15550100002")
    client = logged_in(composer)
    assert 'id="campaign-upload-link"' in client.get(url(draft, "change")).content.decode()
    assert client.get(url(draft, "audience")).status_code == 200
    body = (
        "phone,order_id\n"
        "+1 555 010 0001,A-1\n"
        "(555) 010-0002,A-2\n"
        "+15550100001,A-3\n"  # a duplicate
        "+15550109999,A-4\n"  # not a contact
        "not a number,A-5\n"
    )
    response = client.post(
        url(draft, "audience"),
        {"file": SimpleUploadedFile("vip.csv", body.encode(), "text/csv"), "default_region": "US"},
    )
    assert response.status_code == 302
    assert messages_of(response)[0].startswith(
        "2 contacts listed from “vip.csv” (1 not contacts, 1 duplicates"
    )
    draft.refresh_from_db()
    assert draft.audience_source == Campaign.AudienceSource.UPLOAD
    assert set(draft.audience_members.values_list("contact_id", flat=True)) >= {ann.pk}

    html = client.get(url(draft, "change")).content.decode()
    assert '<span data-count="listed">2</span> listed' in html
    assert '<span data-count="not_contacts">1</span> not contacts' in html
    assert '<span data-count="duplicates">1</span> duplicates' in html
    assert '<span data-count="invalid">1</span> invalid lines' in html
    assert "line 6: not a valid phone number" in html
    assert "(columns: order_id)" in html


def test_upload_of_a_bad_file_is_a_form_error(draft, composer):
    response = logged_in(composer).post(
        url(draft, "audience"), {"file": SimpleUploadedFile("x.csv", b"name,city\nAnn,Oslo\n", "text/csv")}
    )
    assert response.status_code == 200
    assert "The first line must name the columns" in str(response.context["form"].errors["file"])
    draft.refresh_from_db()
    assert draft.audience_source == Campaign.AudienceSource.FILTERS


def test_upload_needs_a_draft_and_the_change_permission(draft, composer, approver):
    assert logged_in(approver).get(url(draft, "audience")).status_code == 403
    Campaign.objects.filter(pk=draft.pk).update(status=Campaign.Status.PENDING_APPROVAL)
    response = logged_in(composer).get(url(draft, "audience"))
    assert response.status_code == 302
    assert messages_of(response) == ["Only a draft campaign's audience can be changed."]


# --- History --------------------------------------------------------------------------------------------


def test_history_shows_the_rejection_and_who(draft, composer, approver):
    audience(1)
    logged_in(composer).post(url(draft, "submit"))
    logged_in(approver).post(url(draft, "reject"), {"reason": "Say which products"})
    html = logged_in(composer).get(url(draft, "change")).content.decode()
    assert '<tr data-action="rejected">' in html
    row = html[html.index('<tr data-action="rejected">') :]
    row = row[: row.index("</tr>")]
    assert "<td>approver</td>" in row and "<td>Say which products</td>" in row
    assert '<tr data-action="submitted">' in html
