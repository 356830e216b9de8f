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

from compliance.services import Evidence, consent_record, consent_text_create
from compliance.suppression import suppression_add
from messaging.campaigns import (
    MissingParameter,
    campaign_audience,
    campaign_dry_run,
    campaign_dry_run_csv,
    campaign_parameters_for,
)
from messaging.models import Campaign, Message
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
    outcomes = {row.contact_id: row.outcome for row in dry_run.rows}
    assert {outcomes[c.pk] for c in receivers} == {"send"}
    assert outcomes[below_cap.pk] == "send"
    assert outcomes[tokyo.pk] == "later"


def test_dry_run_at_recipient_night_defers_to_their_morning(campaign):
    opt_in(ContactFactory())  # New York
    # 02:00 in New York: the schedule is "now", so the dry run uses the current time.
    with time_machine.travel(datetime(2025, 6, 10, 6, 0, tzinfo=UTC), tick=False):
        dry_run = campaign_dry_run(campaign)
    assert (dry_run.total, dry_run.will_receive, dry_run.later) == (1, 1, 1)
    assert dry_run.earliest_later == datetime(2025, 6, 10, 12, 0, tzinfo=UTC)  # 08:00 EDT
    (row,) = dry_run.rows
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
    dry_run = campaign_dry_run(campaign, at=MIDDAY)
    dry_run.rows[2] = replace(dry_run.rows[2], detail='=HYPERLINK("http://evil")')  # a hostile detail

    rows = list(csv.reader(io.StringIO("".join(campaign_dry_run_csv(dry_run)))))

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


def test_admin_dry_run_page_shows_counts_and_downloads_csv(admin_client, campaign):
    for _ in range(2):
        opt_in(ContactFactory())
    ContactFactory()
    opt_in(ContactFactory(timezone="Asia/Tokyo"))
    change = admin_client.get(reverse("admin:messaging_campaign_change", args=[campaign.pk]))
    dry_run_url = reverse("admin:messaging_campaign_dry_run", args=[campaign.pk])
    assert dry_run_url in change.content.decode()

    with time_machine.travel(MIDDAY, tick=False):
        page = admin_client.get(dry_run_url)
        download = admin_client.get(reverse("admin:messaging_campaign_dry_run_csv", args=[campaign.pk]))

    assert page.status_code == 200
    assert page.context["dry_run"].total == 4
    html = page.content.decode()
    assert '<td id="dry-run-will-receive">3</td>' in html
    assert "No consent for this kind of message" in html
    assert "2025-06-10 23:00" in html  # the earliest quiet-hours send time
    assert download.status_code == 200
    assert download["Content-Type"].startswith("text/csv")
    lines = b"".join(download.streaming_content).decode().splitlines()
    assert len(lines) == 5 and lines[0] == "phone_number,outcome,reason,detail,send_at"


def test_admin_dry_run_of_an_unapproved_template_is_an_error_message(admin_client, campaign):
    campaign.template.status = TemplateStatus.PAUSED
    campaign.template.save()
    response = admin_client.get(reverse("admin:messaging_campaign_dry_run", args=[campaign.pk]), follow=True)
    assert response.status_code == 200
    assert "not approved by Meta" in response.content.decode()


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
