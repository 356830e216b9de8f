"""The admin as a person uses it: Debian's chromium, driven by Playwright, against a live server.

One browser per module (launching chromium is the slow part); each test gets a fresh context, so no
cookies leak between tests. On failure a screenshot lands in test-artifacts/ (gitignored).
"""

import os
import re

import pytest
from django.conf import settings

from tests.conftest import chromium_path
from tests.factories import ContactFactory, UserFactory

pytestmark = pytest.mark.browser

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 10_000
ADMIN_PASSWORD = "a-long-admin-password-for-tests"
ARTIFACTS_DIR = settings.BASE_DIR / "test-artifacts"


@pytest.fixture(scope="module")
def browser():
    # conftest skips (or, with REQUIRE_SERVICES, fails) browser-marked tests before this fixture runs
    # when chromium or playwright is missing, so the import can live here.
    from playwright.sync_api import sync_playwright

    with pytest.MonkeyPatch.context() as patch:
        # Playwright's sync API runs an asyncio event loop in this thread for as long as it is started.
        # Django sees that running loop and refuses ORM calls from the thread (SynchronousOnlyOperation),
        # although they are plain synchronous calls between browser steps: factories in the test body
        # and the database flush of `transactional_db`. Nothing here actually runs inside the loop.
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS
            )
            try:
                yield browser
            finally:
                browser.close()


@pytest.fixture
def page(request, browser):
    context = browser.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    failed_before = request.session.testsfailed
    yield page
    # The call phase has been reported by the time teardown runs: a failure has been counted.
    if request.session.testsfailed > failed_before:
        ARTIFACTS_DIR.mkdir(exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid)
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        path = ARTIFACTS_DIR / f"{name}-{worker}.png"
        page.screenshot(path=str(path), full_page=True)
        print(f"screenshot: {path}")
    context.close()


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
