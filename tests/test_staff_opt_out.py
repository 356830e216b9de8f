"""Staff opt-out from the contact list (confirmation page with a reason, recorded in the ledger) and
the read-only consent section on the contact page."""

import re
from datetime import UTC, datetime

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from compliance.gate import MessageFacts, gate_check
from compliance.ledger import ledger_verify
from compliance.models import ConsentEvent
from compliance.services import (
    Evidence,
    consent_evidence,
    consent_record,
    consent_status,
    consent_text_create,
)
from tests.factories import ContactFactory, StaffUserFactory, UserFactory

pytestmark = pytest.mark.django_db

CHANGELIST_URL = reverse("admin:messaging_contact_changelist")
REASON = "Called the store on 10 June and asked us to stop all WhatsApp messages."


def staff_with(*perms: str):
    """A staff user holding "app_label.codename" permissions."""
    user = StaffUserFactory()
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return user


@pytest.fixture
def officer(client):
    user = staff_with("messaging.view_contact", "messaging.change_contact", "compliance.add_consentevent")
    client.force_login(user)
    client.user = user
    return client


@pytest.fixture
def contacts():
    return [
        ContactFactory(phone_number="+15550100001", profile_name="Ann"),
        ContactFactory(phone_number="+15550100002", profile_name="Bob"),
    ]


def choose_action(client, contacts, **extra):
    return client.post(
        CHANGELIST_URL,
        {"action": "staff_opt_out", "_selected_action": [c.pk for c in contacts], "index": "0", **extra},
    )


def confirm(client, contacts, reason=REASON, **extra):
    return client.post(
        CHANGELIST_URL,
        {
            "action": "staff_opt_out",
            "_selected_action": [c.pk for c in contacts],
            "confirm": "yes",
            "reason": reason,
            **extra,
        },
    )


def marketing_template(contact) -> MessageFacts:
    return MessageFacts(
        contact_id=contact.id,
        phone_number=contact.phone_number,
        at=timezone.now(),
        kind="template",
        template_category="MARKETING",
        template_status="APPROVED",
        timezone="America/New_York",
    )


# --- The action -------------------------------------------------------------------------------------


def test_the_action_is_offered_only_to_staff_who_may_record_consent(client, officer):
    assert 'value="staff_opt_out"' in officer.get(CHANGELIST_URL).text
    assert "Opt out (staff) of all messages…" in officer.get(CHANGELIST_URL).text

    client.force_login(staff_with("messaging.view_contact", "messaging.change_contact"))
    assert 'value="staff_opt_out"' not in client.get(CHANGELIST_URL).text


def test_choosing_the_action_asks_for_a_reason_first(officer, contacts):
    response = choose_action(officer, contacts)

    assert response.status_code == 200
    assert "admin/messaging/contact/opt_out_confirm.html" in [t.name for t in response.templates]
    html = response.text
    assert "Ann (+15550100001)" in html and "Bob (+15550100002)" in html
    assert '<textarea name="reason"' in html
    assert 'name="action" value="staff_opt_out"' in html
    assert 'name="confirm" value="yes"' in html
    for contact in contacts:
        assert f'name="_selected_action" value="{contact.pk}"' in html
    assert 'name="index"' not in html  # or the admin would run the action without confirmation
    assert not ConsentEvent.objects.exists()


@pytest.mark.parametrize("reason", ["", "   "])
def test_the_reason_is_required(officer, contacts, reason):
    response = confirm(officer, contacts, reason=reason)

    assert response.status_code == 200
    assert "This field is required." in response.text
    assert not ConsentEvent.objects.exists()


def test_confirming_opts_the_contacts_out_of_everything_with_staff_evidence(officer, contacts):
    response = confirm(officer, contacts)

    assert response.status_code == 302
    assert response["Location"] == CHANGELIST_URL
    events = list(ConsentEvent.objects.select_related("subject").order_by("sequence"))
    assert len(events) == 6
    assert {(e.subject.contact_id, e.purpose) for e in events} == {
        (c.id, purpose) for c in contacts for purpose in ("marketing", "utility", "authentication")
    }
    for event in events:
        assert (event.action, event.source, event.staff_user_id) == ("opt_out", "staff", officer.user.id)
        evidence = consent_evidence(event)
        assert evidence["reason"] == REASON
        assert evidence["phone_number"] in {c.phone_number for c in contacts}
    assert ledger_verify().ok

    messages = [str(m) for m in response.wsgi_request._messages]
    assert messages == [
        "Opted out 2 contacts of all messages (marketing, utility and authentication), effective immediately."
    ]


def test_the_opt_out_is_effective_immediately(officer, contacts):
    text = consent_text_create(version="v1", business_name="Acme", body="Offers on WhatsApp. Reply STOP.")
    ann = contacts[0]
    consent_record(
        contact_id=ann.id,
        phone_number=ann.phone_number,
        purpose="marketing",
        action="opt_in",
        source="api",
        evidence=Evidence(ip_address="203.0.113.7"),
        text_version=text.version,
    )
    assert consent_status(contact_id=ann.id, purpose="marketing") == "granted"

    confirm(officer, [ann])

    for purpose in ("marketing", "utility", "authentication"):
        assert consent_status(contact_id=ann.id, purpose=purpose) == "revoked"
    decision = gate_check(marketing_template(ann))
    assert (decision.verdict, decision.code) == ("deny", "opted_out")


def test_only_the_selected_contacts_are_opted_out(officer, contacts):
    bystander = ContactFactory(phone_number="+15550100003")
    confirm(officer, contacts[:1])
    assert consent_status(contact_id=contacts[0].id, purpose="marketing") == "revoked"
    assert consent_status(contact_id=contacts[1].id, purpose="marketing") is None
    assert consent_status(contact_id=bystander.id, purpose="marketing") is None


def test_select_all_across_pages_keeps_the_search(officer, contacts):
    other = ContactFactory(phone_number="+15550199999", profile_name="Zed")
    url = f"{CHANGELIST_URL}?q=01000"  # matches Ann and Bob only
    step1 = officer.post(
        url,
        {"action": "staff_opt_out", "_selected_action": [contacts[0].pk], "select_across": "1", "index": "0"},
    )
    assert step1.status_code == 200
    assert 'name="select_across" value="1"' in step1.text
    assert "2 contacts will be opted out" in step1.text

    step2 = officer.post(
        url,
        {
            "action": "staff_opt_out",
            "_selected_action": [contacts[0].pk],
            "select_across": "1",
            "confirm": "yes",
            "reason": REASON,
        },
    )
    assert step2.status_code == 302
    assert {c.id for c in contacts} == set(
        ConsentEvent.objects.values_list("subject__contact_id", flat=True).distinct()
    )
    assert consent_status(contact_id=other.id, purpose="marketing") is None


def test_the_admin_history_notes_the_opt_out_without_the_reason(officer, contacts):
    confirm(officer, contacts)
    entries = LogEntry.objects.filter(user=officer.user).order_by("id")
    assert [e.get_change_message() for e in entries] == ["Opted out of all messages (staff)."] * 2
    assert all(REASON not in e.change_message for e in entries)


def test_staff_without_the_permission_cannot_opt_anyone_out(client, contacts):
    client.force_login(staff_with("messaging.view_contact", "messaging.change_contact"))

    for response in (choose_action(client, contacts), confirm(client, contacts)):
        assert response.status_code in (200, 302)
        assert "opt_out_confirm.html" not in [t.name for t in response.templates or []]
    assert not ConsentEvent.objects.exists()


def test_the_action_refuses_a_direct_call_without_the_permission(rf, contacts):
    from django.contrib import admin
    from django.core.exceptions import PermissionDenied

    from messaging.models import Contact

    request = rf.post(CHANGELIST_URL, {"confirm": "yes", "reason": REASON})
    request.user = staff_with("messaging.view_contact")
    model_admin = admin.site._registry[Contact]
    with pytest.raises(PermissionDenied):
        model_admin.staff_opt_out(request, Contact.objects.all())
    assert not ConsentEvent.objects.exists()


# --- The consent section on the contact page --------------------------------------------------------


def consent_rows(html: str) -> dict[str, tuple[str, str, str]]:
    table = re.search(r'<table id="consent-summary">.*?</table>', html, re.DOTALL)
    assert table, "no consent table on the page"
    cells = re.findall(
        r'<tr><th scope="row">(.*?)</th><td class="consent-status">(.*?)</td><td>(.*?)</td><td>(.*?)</td></tr>',
        table.group(0),
    )
    return {purpose: (status, changed, via) for purpose, status, changed, via in cells}


def test_the_contact_page_shows_current_consent_per_purpose(client, contacts):
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    ann = contacts[0]
    text = consent_text_create(version="v1", business_name="Acme", body="Offers on WhatsApp. Reply STOP.")
    web = Evidence(ip_address="203.0.113.7", user_agent="Mozilla/5.0", page_url="https://shop.example/")
    for purpose, pending in (("marketing", False), ("utility", True)):
        consent_record(
            contact_id=ann.id,
            phone_number=ann.phone_number,
            purpose=purpose,
            action="opt_in",
            source="web_form",
            evidence=web,
            text_version=text.version,
            awaiting_confirmation=pending,
            occurred_at=datetime(2025, 6, 1, 14, 30, tzinfo=UTC),
        )

    response = client.get(reverse("admin:messaging_contact_change", args=[ann.pk]))

    assert response.status_code == 200
    assert "<h2" in response.text and ">Consent</h2>" in response.text
    assert consent_rows(response.text) == {
        "Marketing": ("granted", "2025-06-01 14:30 UTC", "web form"),
        "Utility": ("pending", "2025-06-01 14:30 UTC", "web form"),
        "Authentication": ("none", "—", ""),
    }

    confirm(client, [ann])
    rows = consent_rows(client.get(reverse("admin:messaging_contact_change", args=[ann.pk])).text)
    assert {purpose: (status, via) for purpose, (status, _, via) in rows.items()} == {
        "Marketing": ("revoked", "staff"),
        "Utility": ("revoked", "staff"),
        "Authentication": ("revoked", "staff"),
    }


def test_view_only_staff_see_the_consent_section_but_not_the_add_page(client, contacts):
    client.force_login(staff_with("messaging.view_contact", "messaging.add_contact"))
    page = client.get(reverse("admin:messaging_contact_change", args=[contacts[0].pk]))
    assert set(consent_rows(page.text).values()) == {("none", "—", "")}

    add = client.get(reverse("admin:messaging_contact_add"))
    assert add.status_code == 200
    assert "consent-summary" not in add.text


def test_saving_the_contact_form_still_works_with_the_consent_section(officer, contacts):
    ann = contacts[0]
    response = officer.post(
        reverse("admin:messaging_contact_change", args=[ann.pk]),
        {"phone_number": ann.phone_number, "profile_name": "Ann B.", "locale": "en_US", "timezone": ""},
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    ann.refresh_from_db()
    assert ann.profile_name == "Ann B."
