"""A deletion request as people live it: Debian's chromium, driven by Playwright, against a live server.

Ava, who wrote to the shop on WhatsApp an hour ago, asks on the public page /privacy/request/ for her
data to be deleted. A one-time code goes to her WhatsApp number (the test reads it from the message
queued for her, as her phone would show it); she types it on her request's status page, which then says
it is verified. A compliance officer logs in, finds the request in the queue (open requests by due
date), fulfils it, sees it closed with a deletion certificate whose digest verifies, and finds it
counted on the records-and-metrics page. Ava's status page then says it is done.

Screenshots land in test-artifacts/ (gitignored) on every run, to look at.
"""

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from compliance.erasure import certificate_verify
from compliance.models import DeletionCertificate, PrivacyRequest, PrivacyRequestChannel, PrivacyRequestStatus
from compliance.privacy import privacy_request_file
from messaging import roles
from messaging.models import Contact, Message
from messaging.services import sender_get_default
from tests.conftest import screenshot
from tests.factories import ContactFactory, StaffUserFactory

pytestmark = pytest.mark.browser

PASSWORD = "a-long-staff-password-for-tests"
AVA = "+15550123456"


def log_in(page, live_server, username: str, next_path: str) -> None:
    page.goto(f"{live_server.url}/admin/login/?next={next_path}")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(re.compile(re.escape(next_path) + "$"))


def code_on_avas_phone(contact: Contact) -> str:
    message = Message.objects.filter(contact=contact, direction=Message.Direction.OUTBOUND).latest("id")
    return re.search(r"\b(\d{6})\b", message.preview).group(1)


def test_a_person_asks_for_deletion_proves_it_is_them_and_staff_fulfil_it(
    transactional_db, live_server, page, settings
):
    from playwright.sync_api import expect

    settings.CONSENT_FORM_RATE_LIMIT = "1000/m"  # every request comes from 127.0.0.1 here
    roles.roles_apply_permissions()  # a transactional test may start after another one's flush
    sender_get_default()
    ava = ContactFactory(
        phone_number=AVA, profile_name="Ava Jones", last_inbound_at=timezone.now() - timedelta(hours=1)
    )
    officer = StaffUserFactory(username="officer", password=PASSWORD)
    officer.groups.add(Group.objects.get(name=roles.COMPLIANCE_OFFICER))
    # Two other requests in the queue: one filed three weeks ago (due first), one already answered.
    earlier = privacy_request_file(
        kind="know_categories",
        channel=PrivacyRequestChannel.EMAIL,
        phone_number="+15550987654",
        received_at=timezone.now() - timedelta(days=21),
    )
    privacy_request_file(
        kind="opt_out_sale", channel=PrivacyRequestChannel.PHONE, phone_number="+15550111222"
    )

    # --- Ava files her request ---
    page.goto(f"{live_server.url}/privacy/request/")
    page.get_by_label("Delete my information").check()
    page.get_by_label("WhatsApp phone number").fill("(555) 012-3456")
    page.get_by_label("Email (optional)").fill("ava@example.com")
    screenshot(page, "privacy-journey-1-form", full_page=True)
    page.get_by_role("button", name="Send my request").click()

    expect(page.get_by_role("heading", name="We received your request")).to_be_visible()
    filed = PrivacyRequest.objects.get(kind="delete")
    expect(page.locator("#reference")).to_have_text(filed.reference)
    expect(page.locator("#status")).to_contain_text("Waiting for you to confirm it's you")
    status_url = page.url.split("?")[0]

    # --- The code arrives on WhatsApp; she types it ---
    page.get_by_label("Code from WhatsApp").fill(code_on_avas_phone(ava))
    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_role("heading", name="Thank you: you confirmed it's you")).to_be_visible()
    expect(page.locator("#status")).to_contain_text("confirmed it's you")
    screenshot(page, "privacy-journey-2-verified", full_page=True)
    filed.refresh_from_db()
    assert filed.status == PrivacyRequestStatus.VERIFIED

    # --- The compliance officer fulfils it from the queue ---
    queue = "/admin/compliance/privacyrequest/"
    log_in(page, live_server, "officer", queue)
    references = page.locator("#result_list tbody th.field-reference a")
    expect(references).to_have_count(3)
    assert references.all_inner_texts()[:2] == [earlier.reference, filed.reference]
    ava_row = page.locator("#result_list tbody tr", has_text=filed.reference)
    expect(ava_row.locator("[data-status]")).to_have_text("Verified")
    expect(ava_row.locator("[data-urgency]")).to_have_text("OK")
    screenshot(page, "privacy-journey-3-queue", full_page=True)
    ava_row.get_by_role("link", name=filed.reference).click()

    expect(page.locator("#pr-case-heading")).to_have_text(f"{filed.reference}: Verified")
    screenshot(page, "privacy-journey-4-case", full_page=True)
    page.locator("#pr-fulfil").get_by_label("Complied with in whole").check()
    page.locator("#pr-fulfil").get_by_role("button", name="Fulfil").click()

    expect(page.locator(".messagelist")).to_contain_text("Fulfilled and closed: Personal information erased")
    expect(page.locator("#pr-case-heading")).to_have_text(f"{filed.reference}: Closed")
    expect(page.locator("#pr-outcome")).to_have_text("Complied with in whole")
    certificate = DeletionCertificate.objects.get(request=filed)
    expect(page.locator("#pr-certificate-digest")).to_have_text(certificate.digest)
    expect(page.locator("#pr-certificate-verifies")).to_have_text("yes")
    expect(page.locator("#pr-timeline")).to_contain_text("Erased")
    screenshot(page, "privacy-journey-5-closed", full_page=True)
    assert certificate_verify(certificate)
    assert not Contact.objects.filter(phone_number=AVA).exists()

    # --- This year's numbers count it ---
    page.goto(f"{live_server.url}{queue}")
    page.get_by_role("link", name="Records and metrics").click()
    deletions = page.locator('#pr-metrics tr[data-kind="delete"] td')
    expect(deletions).to_have_text(["1", "1", "0", "0", "0", "0.0", "0.0"])  # received, complied … mean days
    screenshot(page, "privacy-journey-6-metrics", full_page=True)

    # --- Ava's status page says it is done ---
    page.goto(status_url)
    expect(page.locator("#status")).to_have_text("Done")
    expect(page.get_by_role("heading", name="Our answer")).to_be_visible()
    assert page.js_errors == []
