"""A campaign as people live it: Debian's chromium, driven by Playwright, against a live server. A
composer creates a campaign for five customers who opted in, sees which values the template needs,
runs the dry run and submits; an approver logs in and approves; the campaign's page then follows it
without a reload: the progress bar reaches 100 % and the delivered count grows as Meta's webhooks arrive.

The live server talks to the simulator backend (a stand-in for Meta, with eager Celery, so approving
starts the campaign and sends at once): it answers each send with a wamid and, a moment later, posts
signed `sent` and `delivered` webhooks to the live server's own endpoint, which applies them.

Screenshots land in test-artifacts/ (gitignored) on every run, to look at.
"""

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from compliance.services import Evidence, consent_record, consent_text_create
from messaging import roles, whatsapp
from messaging.models import Campaign, Message, MessageStatus
from messaging.services import sender_get_default
from messaging.whatsapp import simulator
from templates_app.models import MessageTemplate, TemplateStatus
from tests.conftest import screenshot
from tests.factories import ContactFactory, StaffUserFactory

pytestmark = pytest.mark.browser

PASSWORD = "a-long-staff-password-for-tests"
#: Seconds between a send and each of its status webhooks: long enough that the campaign's page is
#: open before "delivered" arrives, so the count visibly grows on it.
STATUS_DELAY = 2.0


def staff_in(role: str, username: str):
    user = StaffUserFactory(username=username, password=PASSWORD)
    user.groups.add(Group.objects.get(name=role))
    return user


def log_in(page, live_server, username: str, next_path: str) -> None:
    page.goto(f"{live_server.url}/admin/login/?next={next_path}")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(re.compile(re.escape(next_path) + "$"))


def log_out(page) -> None:
    page.click("#logout-form button")
    page.wait_for_url(re.compile(r"/admin/logout/$"))


def awake_timezone() -> str:
    """A timezone where it is daytime now: quiet hours would defer the sends to the morning."""
    hour = timezone.now().hour  # UTC
    for name, offset in (("UTC", 0), ("Asia/Tokyo", 9), ("America/New_York", -4), ("Asia/Kolkata", 5.5)):
        if 10 <= (hour + offset) % 24 < 19:
            return name
    return "Pacific/Honolulu"


@pytest.fixture
def simulated_meta(settings, live_server, monkeypatch):
    """get_backend() is the simulator, posting its status webhooks to this live server: sent, then
    delivered (the customers do not open the message during the test)."""
    monkeypatch.setattr(simulator, "STATUS_SEQUENCE", ("sent", "delivered"))
    settings.WHATSAPP = {
        **settings.WHATSAPP,
        "BACKEND": "simulator",
        "SIMULATOR_WEBHOOK_URL": f"{live_server.url}/webhooks/whatsapp/",
        "SIMULATOR_STATUS_DELAY": STATUS_DELAY,
    }
    saved = dict(whatsapp._instances)
    whatsapp._instances.clear()
    yield
    for backend in whatsapp._instances.values():
        if isinstance(backend, simulator.SimulatorBackend):
            backend.wait_for_webhooks()
    whatsapp._instances.clear()
    whatsapp._instances.update(saved)


def test_a_composer_prepares_a_campaign_an_approver_approves_and_its_page_follows_delivery(
    transactional_db, live_server, simulated_meta, page
):
    from playwright.sync_api import expect

    roles.roles_apply_permissions()  # a transactional test may start after another one's flush
    sender = sender_get_default()
    consent_text_create(version="v1", business_name="Acme", body="Acme offers. Reply STOP to stop.")
    MessageTemplate.objects.create(
        waba_id=sender.waba_id,
        name="summer_sale",
        language="en_US",
        category="MARKETING",
        status=TemplateStatus.APPROVED,
        components=[
            {"type": "BODY", "text": "Hi {{1}}, {{2}}", "example": {"body_text": [["Ann", "20% off"]]}}
        ],
    )
    zone = awake_timezone()
    for n in range(5):
        contact = ContactFactory(profile_name=f"Customer {n}", timezone=zone, tags=["vip"])
        consent_record(
            contact_id=contact.pk,
            phone_number=contact.phone_number,
            purpose="marketing",
            action="opt_in",
            source="web_form",
            evidence=Evidence(
                ip_address="203.0.113.7", user_agent="Mozilla/5.0", page_url="https://shop.example/"
            ),
            text_version="v1",
            occurred_at=timezone.now() - timedelta(days=30),
        )
    ContactFactory(tags=["other"])  # not in the audience
    staff_in(roles.COMPOSER, "composer")
    staff_in(roles.APPROVER, "approver")

    # --- The composer prepares the campaign ---
    log_in(page, live_server, "composer", "/admin/messaging/campaign/add/")
    page.fill("#id_name", "Summer sale")
    page.select_option("#id_sender", str(sender.pk))
    slots = page.locator("#campaign-template-slots")
    expect(slots).to_have_text("Choose a template to see the values it needs.")
    page.click(".field-template .select2-selection")
    page.fill(".select2-search__field", "summer")
    page.click(".select2-results__option:has-text('summer_sale')")
    expect(slots).to_have_text("“summer_sale” needs 2 values, in this order: 1. body {{1}}, 2. body {{2}}.")
    page.fill("#id_template_parameters", '[{"field": "profile_name"}, {"text": "20% off everything"}]')
    page.select_option("#id_audience_tags_from", label="vip")
    page.click("#id_audience_tags_add")
    page.click("input[name=_continue]")
    expect(page.locator(".messagelist")).to_contain_text("was added successfully")
    campaign = Campaign.objects.get()
    change_path = f"/admin/messaging/campaign/{campaign.pk}/change/"

    page.click("#campaign-dry-run")
    expect(page.locator("#dry-run-state")).to_contain_text("No dry run yet")
    page.click("#dry-run-start")  # worked out in a worker; here, in-process right after the click
    expect(page.locator("#dry-run-will-receive")).to_have_text("5")
    expect(page.locator("#dry-run-excluded")).to_have_text("0")
    screenshot(page, "campaign-dry-run", full_page=True)
    page.click("text=Back to the campaign")
    page.click("#campaign-submit input[type=submit]")
    expect(page.locator(".messagelist")).to_contain_text("is waiting for approval")
    assert page.js_errors == []
    log_out(page)

    # --- The approver approves; the page follows the campaign ---
    log_in(page, live_server, "approver", change_path)
    page.click("#campaign-approve input[type=submit]")
    expect(page.locator(".messagelist")).to_contain_text("is approved")
    page.evaluate("window.__sameDocument = true")  # gone if the page reloads
    delivered = page.locator('#campaign-counts [data-count="delivered"]')
    shown_first = int(delivered.inner_text())
    assert shown_first < 5, "the webhooks came before the page: nothing left to watch"

    expect(page.locator("#campaign-progress")).to_have_attribute("value", "100", timeout=20_000)
    expect(page.locator('#campaign-counts [data-count="total"]')).to_have_text("5")
    expect(page.locator('#campaign-counts [data-count="sent"]')).to_have_text("5", timeout=20_000)
    expect(delivered).to_have_text("5", timeout=20_000)
    assert page.evaluate("window.__sameDocument") is True
    expect(page.locator("#campaign-pause")).to_be_visible()  # approvers may pause a running campaign
    screenshot(page, "campaign-delivered-progress", full_page=True)

    assert Message.objects.filter(campaign=campaign, status=MessageStatus.DELIVERED).count() == 5
    history = page.locator("#campaign-history")
    expect(history).to_contain_text("submitted")
    expect(history).to_contain_text("approved")
    expect(history).to_contain_text("started")
    page.click("#campaign-recipients-link")
    expect(page.locator("#result_list tbody tr")).to_have_count(5)
    expect(page.locator("#result_list")).to_contain_text("Delivered")
    screenshot(page, "campaign-recipients", full_page=True)
    assert page.js_errors == []
