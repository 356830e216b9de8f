"""The template editor as a composer uses it: Debian's chromium, driven by Playwright, against a live
server. The WhatsApp preview beside the form follows what is typed, without a reload.

Screenshots of the editor land in test-artifacts/ (gitignored) on every run, to look at.
"""

import re

import pytest
from django.conf import settings

from templates_app.models import MessageTemplate
from tests.conftest import screenshot
from tests.factories import UserFactory

pytestmark = pytest.mark.browser

PASSWORD = "a-long-composer-password-for-tests"


def log_in(page, live_server) -> None:
    UserFactory(username="composer", password=PASSWORD, is_staff=True, is_superuser=True)
    page.goto(f"{live_server.url}/admin/login/?next=/admin/templates_app/messagetemplate/add/")
    page.fill("#id_username", "composer")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(re.compile(r"/admin/templates_app/messagetemplate/add/$"))


def test_the_preview_bubble_follows_what_the_composer_types(transactional_db, live_server, page):
    from playwright.sync_api import expect

    log_in(page, live_server)
    preview = page.locator("#tpl-preview")
    expect(preview.locator(".wa-bubble")).to_be_visible()
    page.evaluate("window.__sameDocument = true")  # gone if the page reloads

    page.fill("#id_name", "order_shipped")
    page.fill("#id_language", "en_US")
    page.select_option("#id_category", "UTILITY")
    page.locator("#id_body_text").press_sequentially("Hi {{1}}, your order *ships today*.")
    sample = page.locator('input[name="body_samples__1"]')
    expect(sample).to_be_visible()  # one sample input per variable, added as the variable is typed
    expect(preview.locator(".wa-body .wa-var")).to_have_text("{{1}}")

    sample.press_sequentially("Ava")

    body = preview.locator(".wa-body")
    expect(body).to_have_text("Hi Ava, your order ships today.")
    expect(body.locator(".wa-sample")).to_have_text("Ava")
    expect(body.locator("strong")).to_have_text("ships today")

    page.select_option("#id_header_format", "TEXT")
    page.fill("#id_header_text", "Good news")
    page.fill("#id_footer_text", "Reply STOP to opt out")
    page.click("#tpl-add-button")
    page.select_option("#id_buttons-0-type", "URL")
    page.fill('[name="buttons-0-text"]', "Track order")
    page.fill('[name="buttons-0-url"]', "https://shop.example.com/track")
    page.click("#tpl-add-button")
    page.select_option("#id_buttons-1-type", "QUICK_REPLY")
    page.fill('[name="buttons-1-text"]', "Thanks!")

    expect(preview.locator(".wa-header")).to_have_text("Good news")
    expect(preview.locator(".wa-footer")).to_have_text("Reply STOP to opt out")
    expect(preview.locator(".wa-button")).to_have_text(["Track order", "Thanks!"])
    expect(page.locator(".field-body_text .tpl-counter")).to_have_text("35/1024")
    assert page.evaluate("window.__sameDocument") is True
    assert page.js_errors == []
    screenshot(page, "template-editor-live-preview", full_page=True)
    screenshot(
        page, "template-editor-preview-bubble", clip=page.locator(".tpl-editor-preview").bounding_box()
    )

    page.click('input[name="_continue"]')
    expect(page.locator(".messagelist")).to_contain_text("was added successfully")
    template = MessageTemplate.objects.get(name="order_shipped")
    assert template.components[1] == {
        "type": "BODY",
        "text": "Hi {{1}}, your order *ships today*.",
        "example": {"body_text": [["Ava"]]},
    }
    # The saved template's page draws the same bubble, and the server renders it with the samples.
    expect(preview.locator(".wa-body")).to_have_text("Hi Ava, your order ships today.")
    expect(page.locator(".tpl-server-preview")).to_contain_text("Hi Ava, your order *ships today*.")
    screenshot(page, "template-editor-saved", full_page=True)


def test_rules_come_back_inline_with_the_samples_kept(transactional_db, live_server, page):
    from playwright.sync_api import expect

    log_in(page, live_server)
    page.fill("#id_name", "Order Shipped")
    page.fill("#id_language", "en_US")
    page.select_option("#id_category", "UTILITY")
    page.locator("#id_body_text").press_sequentially("{{1}} ships today")
    page.locator('input[name="body_samples__1"]').fill("Your order")

    page.click('input[name="_save"]')

    expect(page.locator(".errornote")).to_be_visible()
    expect(page.locator(".field-name .errorlist")).to_contain_text("(rule: name_format)")
    expect(page.locator(".field-body_text .errorlist")).to_contain_text("(rule: variable_at_edge)")
    expect(page.locator('input[name="body_samples__1"]')).to_have_value("Your order")
    expect(page.locator("#tpl-preview .wa-body")).to_have_text("Your order ships today")
    assert MessageTemplate.objects.count() == 0
    screenshot(page, "template-editor-errors", full_page=True)


def test_a_template_at_meta_shows_its_bubble_read_only(transactional_db, live_server, page):
    from playwright.sync_api import expect

    from templates_app.services import template_create

    template = template_create(
        waba_id=settings.WHATSAPP["BUSINESS_ACCOUNT_ID"],
        name="summer_sale",
        language="en_US",
        category="MARKETING",
        components=[
            {"type": "HEADER", "format": "IMAGE", "example": {"header_handle": ["4::aW1hZ2U=:ARb"]}},
            {
                "type": "BODY",
                "text": "Hi {{1}}, _everything_ is 20% off.",
                "example": {"body_text": [["Ava"]]},
            },
            {"type": "FOOTER", "text": "Reply STOP to opt out"},
            {
                "type": "BUTTONS",
                "buttons": [
                    {"type": "QUICK_REPLY", "text": "Show me"},
                    {"type": "QUICK_REPLY", "text": "Not now"},
                    {"type": "QUICK_REPLY", "text": "Stop promotions"},
                    {"type": "URL", "text": "Shop", "url": "https://shop.example.com"},
                ],
            },
        ],
    )
    MessageTemplate.objects.filter(pk=template.pk).update(status="APPROVED", quality_rating="GREEN")

    log_in(page, live_server)
    page.goto(f"{live_server.url}/admin/templates_app/messagetemplate/{template.pk}/change/")

    preview = page.locator("#tpl-preview")
    expect(preview.locator(".wa-media--image")).to_contain_text("Image")
    expect(preview.locator(".wa-body")).to_have_text("Hi Ava, everything is 20% off.")
    expect(preview.locator(".wa-body em")).to_have_text("everything")
    # Like WhatsApp: with more than three buttons, two and a list of all options.
    expect(preview.locator(".wa-button")).to_have_text(["Show me", "Not now", "See all options"])
    expect(page.locator("#id_body_text")).to_have_count(0)
    assert page.js_errors == []
    screenshot(page, "template-read-only", full_page=True)

    page.goto(f"{live_server.url}/admin/templates_app/messagetemplate/")
    expect(page.locator("#result_list .tpl-badge")).to_have_text("approved")
    screenshot(page, "template-changelist", full_page=True)
