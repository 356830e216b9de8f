"""The admin as a person uses it: Debian's chromium, driven by Playwright, against a live server.

One browser per module (launching chromium is the slow part); each test gets a fresh context, so no
cookies leak between tests. On failure a screenshot lands in test-artifacts/ (gitignored).
"""

import re

import pytest

from tests.factories import ContactFactory, UserFactory

pytestmark = pytest.mark.browser

ADMIN_PASSWORD = "a-long-admin-password-for-tests"


def test_admin_login_contacts_changelist_and_search(transactional_db, live_server, page):
    from playwright.sync_api import expect

    UserFactory(
        username="admin",
        password=ADMIN_PASSWORD,
        is_staff=True,
        is_superuser=True,
    )
    ada = ContactFactory(phone_number="+15550107001", wa_id="15550107001", profile_name="Ada Lovelace")
    grace = ContactFactory(phone_number="+15550107002", wa_id="15550107002", profile_name="Grace Hopper")

    page.goto(f"{live_server.url}/admin/")
    expect(page).to_have_url(re.compile(r"/admin/login/"))
    page.fill("#id_username", "admin")
    page.fill("#id_password", ADMIN_PASSWORD)
    page.click("input[type=submit]")
    expect(page.locator("#user-tools")).to_contain_text("admin")

    page.goto(f"{live_server.url}/admin/messaging/contact/")
    results = page.locator("#result_list")
    expect(results).to_contain_text(ada.phone_number)
    expect(results).to_contain_text(grace.phone_number)

    page.fill("#searchbar", "Lovelace")
    page.press("#searchbar", "Enter")
    expect(page).to_have_url(re.compile(r"[?&]q=Lovelace"))
    expect(results).to_contain_text(ada.phone_number)
    expect(results).not_to_contain_text(grace.phone_number)
    expect(results.locator("tbody tr")).to_have_count(1)
