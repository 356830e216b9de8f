"""The public opt-in page on a phone-sized screen: Debian's chromium, driven by Playwright, against a
live server. Screenshots of the form land in test-artifacts/ (gitignored) on every run, to look at."""

import re

import pytest

from compliance.models import ConsentEvent
from compliance.services import consent_evidence, consent_text_create
from tests.conftest import BROWSER_TIMEOUT_MS
from tests.conftest import screenshot as save_screenshot

pytestmark = pytest.mark.browser

PHONE_VIEWPORT = {"width": 390, "height": 844}
BODY = (
    "Acme Bikes will send you WhatsApp messages about the things you choose above. "
    "Consent is not a condition of purchase. Reply STOP at any time to stop."
)


@pytest.fixture
def phone(browser):
    context = browser.new_context(
        viewport=PHONE_VIEWPORT, device_scale_factor=2, is_mobile=True, has_touch=True
    )
    context.set_default_timeout(BROWSER_TIMEOUT_MS)
    yield context.new_page()
    context.close()


@pytest.fixture
def opt_in_page(transactional_db, live_server, settings):
    # The live server sees every request from 127.0.0.1; keep repeated runs against one Redis unthrottled.
    settings.CONSENT_FORM_RATE_LIMIT = "1000/m"
    consent_text_create(version="2025-06-v1", business_name="Acme Bikes", body=BODY)
    return f"{live_server.url}/opt-in/"


def screenshot(page, name: str) -> None:
    save_screenshot(page, f"opt-in-{name}", full_page=True)


def fits_the_screen(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_signing_up_on_a_phone(phone, opt_in_page, live_server):
    from playwright.sync_api import expect

    phone.goto(opt_in_page)
    expect(phone.get_by_role("heading", level=1)).to_have_text("Get WhatsApp messages from Acme Bikes")
    expect(phone.get_by_text("Consent is not a condition of purchase.")).to_be_visible()
    for box in ("Offers and news", "Order and account updates", "Security codes"):
        expect(phone.get_by_label(box)).not_to_be_checked()
    assert fits_the_screen(phone)
    screenshot(phone, "form")

    phone.get_by_label("WhatsApp phone number").fill("(555) 012-3456")
    phone.get_by_label("Your name").fill("Ava Jones")
    phone.get_by_label("Order and account updates").check()
    phone.get_by_role("button", name="Agree and sign up").click()

    expect(phone).to_have_url(re.compile(r"/opt-in/thanks/$"))
    expect(phone.get_by_role("heading", level=1)).to_have_text("You're signed up")
    screenshot(phone, "thanks")
    event = ConsentEvent.objects.get()
    assert (event.purpose, event.action, event.source, event.text_version) == (
        "utility",
        "opt_in",
        "web_form",
        "2025-06-v1",
    )
    evidence = consent_evidence(event)
    assert evidence["phone_number"] == "+15550123456"
    assert evidence["page_url"] == opt_in_page
    assert evidence["user_agent"] == phone.evaluate("navigator.userAgent")


def test_submitting_without_a_purpose_shows_the_error_at_the_choices(phone, opt_in_page):
    from playwright.sync_api import expect

    phone.goto(opt_in_page)
    phone.get_by_label("WhatsApp phone number").fill("(555) 012-3456")
    phone.get_by_label("Your name").fill("Ava Jones")
    phone.get_by_role("button", name="Agree and sign up").click()

    choices = phone.get_by_role("group", name="What would you like to receive?")
    expect(choices.locator(".error")).to_have_text(re.compile("Choose at least one kind of message."))
    expect(choices).to_have_attribute("aria-describedby", re.compile(r"\bpurposes_error\b"))
    expect(phone.get_by_role("alert")).to_contain_text("There is a problem")
    expect(phone.get_by_role("alert")).to_be_focused()
    expect(phone.get_by_label("WhatsApp phone number")).to_have_value("(555) 012-3456")
    assert fits_the_screen(phone)
    screenshot(phone, "error")
    assert not ConsentEvent.objects.exists()

    # The error summary links to the first choice; ticking it and resubmitting goes through.
    phone.get_by_role("link", name="Choose at least one kind of message.").click()
    expect(phone.get_by_label("Offers and news")).to_be_focused()
    phone.get_by_label("Offers and news").check()
    phone.get_by_role("button", name="Agree and sign up").click()
    expect(phone).to_have_url(re.compile(r"/opt-in/thanks/$"))
    assert ConsentEvent.objects.filter(purpose="marketing").count() == 1
