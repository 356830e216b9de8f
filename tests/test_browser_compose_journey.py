"""The two-person message flow as people live it: Debian's chromium, driven by Playwright, against a live
server. A composer writes a text to a customer who wrote in an hour ago, watches the WhatsApp preview
follow the typing, submits; an approver logs in, finds it in the queue and approves; it is sent, and
Meta's status webhooks bring it to "delivered" on the message's page.

The journey's live server talks to the simulator backend (a stand-in for Meta, with eager Celery, so
approving sends at once): it answers the send with a wamid and, a moment later, posts signed `sent`
and `delivered` webhooks to the live server's own endpoint, which applies them.

Screenshots land in test-artifacts/ (gitignored) on every run, to look at.
"""

import re
import time
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from messaging import roles, whatsapp
from messaging.models import Message, MessageStatus, ProviderCall
from messaging.services import sender_get_default
from messaging.whatsapp import simulator
from templates_app.models import MessageTemplate, TemplateStatus
from tests.conftest import screenshot
from tests.factories import ContactFactory, StaffUserFactory

pytestmark = pytest.mark.browser

PASSWORD = "a-long-staff-password-for-tests"


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


@pytest.fixture
def simulated_meta(settings, live_server, monkeypatch):
    """get_backend() is the simulator, posting its status webhooks to this live server. The customer
    does not open the message during the test: Meta says sent, then delivered (no read)."""
    monkeypatch.setattr(simulator, "STATUS_SEQUENCE", ("sent", "delivered"))
    settings.WHATSAPP = {
        **settings.WHATSAPP,
        "BACKEND": "simulator",
        "SIMULATOR_WEBHOOK_URL": f"{live_server.url}/webhooks/whatsapp/",
        "SIMULATOR_STATUS_DELAY": 0.5,
    }
    saved = dict(whatsapp._instances)
    whatsapp._instances.clear()
    yield
    for backend in whatsapp._instances.values():
        if isinstance(backend, simulator.SimulatorBackend):
            backend.wait_for_webhooks()
    whatsapp._instances.clear()
    whatsapp._instances.update(saved)


def reload_until_status(page, url: str, status: str, *, timeout: float = 20.0) -> None:
    """Staff reload the page until Meta's webhooks have arrived (the caller asserts what it shows)."""
    deadline = time.monotonic() + timeout
    badge = page.locator(".field-status_badge .msg-status")
    while True:
        page.goto(url)
        if badge.get_attribute("data-status") == status or time.monotonic() > deadline:
            return
        page.wait_for_timeout(250)


def test_a_composer_writes_an_approver_approves_and_the_message_is_delivered(
    transactional_db, live_server, simulated_meta, page
):
    from playwright.sync_api import expect

    roles.roles_apply_permissions()  # a transactional test may start after another one's flush
    sender = sender_get_default()
    # The customer wrote an hour ago: the 24-hour window for free-form messages is open.
    ContactFactory(
        phone_number="+15550123456",
        profile_name="Ava Johnson",
        last_inbound_at=timezone.now() - timedelta(hours=1),
    )
    staff_in(roles.COMPOSER, "composer")
    approver = staff_in(roles.APPROVER, "approver")

    # --- The composer writes ---
    log_in(page, live_server, "composer", "/admin/messaging/message/add/")
    preview = page.locator("#msg-preview")
    expect(preview.locator(".wa-placeholder")).to_have_text("Your message appears here as you type.")
    expect(page.locator("#msg-preview-business")).to_contain_text(sender.display_phone_number)
    page.evaluate("window.__sameDocument = true")  # gone if the page reloads

    page.fill("#id_to_number", "(555) 012-3456")
    # Other kinds' fields stay out of the way until their kind is chosen.
    expect(page.locator("fieldset.msg-kind--text")).to_be_visible()
    expect(page.locator("fieldset.msg-kind--buttons").first).to_be_hidden()
    page.click("label[for=id_message_type_4]")  # Reply buttons
    expect(page.locator("fieldset.msg-kind--text")).to_be_hidden()
    page.fill("#id_interactive_body", "Did it arrive?")
    page.fill("#id_button_1_title", "Yes")
    expect(preview.locator(".wa-button")).to_have_text(["Yes"])
    page.click("label[for=id_message_type_0]")  # back to Text

    page.locator("#id_text").press_sequentially("Hi Ava, your order *#1042* ships today.")
    body = preview.locator(".wa-body")
    expect(body).to_have_text("Hi Ava, your order #1042 ships today.")
    expect(body.locator("strong")).to_have_text("#1042")  # WhatsApp's *bold*
    expect(page.locator(".field-text .msg-counter")).to_have_text("39/4096")
    assert page.evaluate("window.__sameDocument") is True
    screenshot(page, "compose-text-live-preview", full_page=True)
    screenshot(page, "compose-preview-bubble", clip=page.locator(".tpl-editor-preview").bounding_box())

    page.click("#msg-submit")
    expect(page.locator(".messagelist")).to_contain_text("Submitted for approval")
    message = Message.objects.get()
    assert message.status == MessageStatus.PENDING_APPROVAL
    expect(page.locator(".msg-workflow")).to_contain_text("Waiting for a colleague's approval")
    assert page.js_errors == []
    log_out(page)

    # --- The approver approves from the queue ---
    log_in(page, live_server, "approver", "/admin/messaging/message/")
    expect(page.locator(".msg-queue-tab--selected")).to_contain_text("Waiting for approval")
    row = page.locator("#result_list tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("Hi Ava, your order *#1042* ships today.")
    expect(row).to_contain_text("composer")
    expect(row).to_contain_text("+15550123456")
    screenshot(page, "approval-queue", full_page=True)
    row.locator("input[name=_selected_action]").check()
    page.select_option("select[name=action]", "approve_selected")
    page.click("button[name=index]")
    expect(page.locator(".messagelist")).to_contain_text("Approved 1 message; sending now.")

    message.refresh_from_db()
    assert message.approved_by == approver
    assert message.provider_message_id.startswith("wamid.")
    (call,) = ProviderCall.objects.filter(message=message)
    assert (call.backend, call.http_status) == ("simulator", 200)
    assert "Hi Ava, your order *#1042* ships today." in call.request_body

    # Meta's webhooks arrive a moment later; staff reload the message's page until they have.
    detail_url = f"{live_server.url}/admin/messaging/message/{message.pk}/change/"
    reload_until_status(page, detail_url, "delivered")
    badge = page.locator(".field-status_badge .msg-status")
    expect(badge).to_have_attribute("data-status", "delivered")
    expect(badge).to_have_text("Delivered")
    expect(page.locator(".field-provider_message_id")).to_contain_text(message.provider_message_id)
    expect(page.locator(".field-delivery_times")).to_contain_text("delivered 20")
    expect(page.locator(".field-pricing")).to_contain_text("utility / regular")
    timeline = page.locator("#msg-timeline")
    expect(timeline).to_contain_text("approved by approver")
    webhook_rows = timeline.locator("tbody tr", has=page.locator("td", has_text=re.compile(r"^webhook$")))
    expect(webhook_rows.locator(".msg-status")).to_have_text(["Sent", "Delivered"])
    screenshot(page, "message-delivered-detail", full_page=True)
    message.refresh_from_db()
    assert message.status == MessageStatus.DELIVERED
    assert page.js_errors == []


def test_template_variables_and_list_rows_appear_as_inputs_and_in_the_preview(
    transactional_db, live_server, page
):
    from playwright.sync_api import expect

    roles.roles_apply_permissions()
    sender = sender_get_default()
    template = MessageTemplate.objects.create(
        waba_id=sender.waba_id,
        name="order_shipped",
        language="en_US",
        category="UTILITY",
        status=TemplateStatus.APPROVED,
        components=[
            {
                "type": "HEADER",
                "format": "IMAGE",
                "example": {"header_handle": ["https://example.com/a.jpg"]},
            },
            {
                "type": "BODY",
                "text": "Hi {{1}}, order {{2}} ships *today*.",
                "example": {"body_text": [["Ava", "#1"]]},
            },
            {"type": "FOOTER", "text": "Reply STOP to opt out"},
            {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "Thanks!"}]},
        ],
    )
    staff_in(roles.COMPOSER, "composer")
    log_in(page, live_server, "composer", "/admin/messaging/message/add/")
    preview = page.locator("#msg-preview")

    page.click("label[for=id_message_type_3]")  # Template
    expect(page.locator("fieldset.msg-template-params")).to_be_hidden()  # nothing to fill in yet
    page.select_option("#id_template", str(template.pk))
    expect(page.locator("fieldset.msg-template-params input")).to_have_count(3)  # header image, {{1}}, {{2}}
    expect(preview.locator(".wa-body .wa-var")).to_have_text(["{{1}}", "{{2}}"])
    page.fill("#id_tpl_var__1", "Noah")
    page.fill("#id_tpl_var__2", "#2001")
    page.fill("#id_tpl_header", "https://shop.example.com/box.jpg")
    expect(preview.locator(".wa-body")).to_have_text("Hi Noah, order #2001 ships today.")
    expect(preview.locator(".wa-media--image")).to_contain_text("https://shop.example.com/box.jpg")
    expect(preview.locator(".wa-footer")).to_have_text("Reply STOP to opt out")
    expect(preview.locator(".wa-button")).to_have_text(["Thanks!"])
    screenshot(page, "compose-template-preview", full_page=True)

    page.click("label[for=id_message_type_5]")  # List
    page.fill("#id_interactive_body", "When should we deliver?")
    page.fill("#id_list_button", "Pick a slot")
    page.fill("#id_row_1_section", "Monday")
    page.fill("#id_row_1_title", "Morning")
    expect(page.locator("#id_row_2_title")).to_be_hidden()  # rows appear one at a time
    page.click("#msg-add-row")
    page.fill("#id_row_2_section", "Monday")
    page.fill("#id_row_2_title", "Afternoon")
    page.fill("#id_row_2_description", "x" * 73)
    counter = page.locator("#id_row_2_description + .msg-counter")
    expect(counter).to_have_text("73/72")
    expect(counter).to_have_class(re.compile("tpl-counter--over"))
    expect(preview.locator(".wa-button")).to_have_text(["Pick a slot"])
    expect(preview.locator(".msg-list-section")).to_have_text(["Monday"])
    expect(preview.locator(".msg-list-row-title")).to_have_text(["Morning", "Afternoon"])
    screenshot(page, "compose-list-preview", full_page=True)

    # The server holds the same limit, and says so on the row it concerns.
    page.fill("#id_to_number", "+1 555 012 3456")
    page.click("#msg-save-draft")
    expect(page.locator(".form-row.field-row_2_description .errorlist")).to_have_text(
        "section 1 row 2 description is 73 characters; the limit is 72."
    )
    expect(page.locator("#id_row_2_title")).to_be_visible()  # a row with an error stays open
    assert not Message.objects.exists()
    assert page.js_errors == []
