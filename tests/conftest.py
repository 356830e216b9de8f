"""Suite-wide fixtures and the rule for tests that need real services.

Tests marked `postgres`, `redis`, `worker` or `browser` skip with a printed reason when that service is
not available (a fresh machine), and FAIL instead when REQUIRE_SERVICES=1 (CI): there, any skipped
test at all turns the run red, so a missing service can never pass silently.
"""

import os
import re
import shutil
import socket
from pathlib import Path
from urllib.parse import urlparse

import pytest

REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES", "") not in ("", "0", "false")
SERVICE_MARKERS = ("postgres", "redis", "worker", "browser")


def chromium_path() -> str | None:
    return os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or shutil.which("chromium-browser")


def _tcp_reachable(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection(
            (parsed.hostname or "127.0.0.1", parsed.port or default_port), timeout=1
        ):
            return True
    except OSError:
        return False


def service_unavailable_reason(marker: str) -> str | None:
    from django.conf import settings
    from django.db import connection

    if marker == "postgres" and connection.vendor != "postgresql":
        return "needs PostgreSQL: set DATABASE_URL=postgres://postgres@127.0.0.1:5432/test"
    if marker in ("redis", "worker"):
        if not settings.REDIS_URL:
            return f"needs Redis ({marker}): set REDIS_URL=redis://127.0.0.1:6379/0"
        if not _tcp_reachable(settings.REDIS_URL, 6379):
            return f"REDIS_URL={settings.REDIS_URL} is not reachable"
    if marker == "browser":
        if chromium_path() is None:
            return "needs Debian's chromium (apt-get install -y chromium) or CHROMIUM_PATH"
        try:
            import playwright  # noqa: F401
        except ImportError:
            return "needs the playwright Python package"
    return None


def pytest_runtest_setup(item: pytest.Item) -> None:
    for marker in SERVICE_MARKERS:
        if item.get_closest_marker(marker) is None:
            continue
        reason = service_unavailable_reason(marker)
        if reason is None:
            continue
        if REQUIRE_SERVICES:
            pytest.fail(f"REQUIRE_SERVICES is set but {reason}", pytrace=False)
        pytest.skip(reason)


_skipped: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if REQUIRE_SERVICES and _skipped and not hasattr(session.config, "workerinput"):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(
                f"REQUIRE_SERVICES is set and {len(_skipped)} test(s) were skipped: {', '.join(_skipped[:10])}",
                red=True,
            )


@pytest.fixture(autouse=True)
def _reset_memory_backend():
    from messaging.whatsapp.memory import MemoryBackend

    MemoryBackend.reset()
    yield
    MemoryBackend.reset()


@pytest.fixture(autouse=True)
def _forget_send_windows():
    """Each test starts with empty send-rate windows. Test databases hand out the same sender ids
    again (sender 1 in every test), and a window remembers its sender's sends of the last second, so
    a test would otherwise inherit the sends of the one before it."""
    yield
    from django.conf import settings

    from messaging import limiter

    limiter.send_windows_forget()
    if settings.REDIS_URL:
        from django.core.cache import cache

        prefix = settings.CACHES["default"].get("KEY_PREFIX", "")
        client = cache._cache.get_client(write=True)
        keys = list(client.scan_iter(match=f"{prefix}:send-window:*", count=1000))
        if keys:
            client.delete(*keys)


def cache_clear_own() -> None:
    """Empty this test process's cache keys only. `cache.clear()` on Redis flushes the whole database,
    wiping the keys of the other pytest-xdist workers (rate-limit counters, circuit state) mid-test."""
    from django.conf import settings
    from django.core.cache import cache

    config = settings.CACHES["default"]
    if "redis" not in config["BACKEND"].lower():
        cache.clear()
        return
    client = cache._cache.get_client(write=True)
    prefix = config.get("KEY_PREFIX", "")
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture
def api_client():
    from rest_framework.test import APIClient

    return APIClient()


@pytest.fixture
def api_user(db):
    from tests.factories import UserFactory

    return UserFactory(username="api-user")


@pytest.fixture
def authed_client(api_client, api_user):
    """An API client sending `Authorization: Bearer <token>` for `api_user` (all permissions checks apply)."""
    from messaging.services import api_token_create

    _, token = api_token_create(user=api_user, name="tests")
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return api_client


# --- Browser tests (marker `browser`): Debian's chromium driven by Playwright -----------------------

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
BROWSER_TIMEOUT_MS = 10_000
ARTIFACTS_DIR = Path(__file__).resolve().parent.parent / "test-artifacts"


def screenshot(page, name: str, **options) -> str:
    """Save a screenshot under test-artifacts/ (gitignored), one file per xdist worker."""
    ARTIFACTS_DIR.mkdir(exist_ok=True)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    path = ARTIFACTS_DIR / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}-{worker}.png"
    page.screenshot(path=str(path), **options)
    return str(path)


@pytest.fixture(scope="session")
def browser():
    """One chromium per test process (launching it is the slow part). The browser marker's check has
    skipped (or, with REQUIRE_SERVICES, failed) the test before this runs when chromium is missing."""
    from playwright.sync_api import sync_playwright

    with pytest.MonkeyPatch.context() as patch:
        # Playwright's sync API keeps an asyncio event loop running in this thread. Django sees it and
        # refuses ORM calls (SynchronousOnlyOperation), although the factories and the database flush
        # between browser steps are plain synchronous calls: nothing runs inside that loop.
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            launched = playwright.chromium.launch(
                executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS
            )
            try:
                yield launched
            finally:
                launched.close()


@pytest.fixture
def page(request, browser):
    """A fresh desktop-sized context per test (no cookies leak between tests); JavaScript errors are
    collected in `page.js_errors`, and a failing test leaves a screenshot."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(BROWSER_TIMEOUT_MS)
    new_page = context.new_page()
    errors: list[str] = []
    new_page.on("pageerror", lambda exc: errors.append(str(exc)))
    new_page.js_errors = errors
    failed_before = request.session.testsfailed
    yield new_page
    # The call phase has been reported by the time teardown runs: a failure has been counted.
    if request.session.testsfailed > failed_before:
        print(f"screenshot: {screenshot(new_page, request.node.nodeid + '-failed', full_page=True)}")
    context.close()


# --- The Graph API double behind get_backend() -------------------------------------------------------

GRAPH_DOUBLE_TOKEN = "double-token"


@pytest.fixture
def graph_double():
    from bench.graph_double import GraphApiDouble

    with GraphApiDouble(access_token=GRAPH_DOUBLE_TOKEN) as server:
        yield server


@pytest.fixture
def cloud(settings, graph_double):
    """Code calling `get_backend()` talks to the Graph API double through the cloud backend.
    get_backend() caches one backend per name, so the cache starts empty and is restored after."""
    from messaging import whatsapp

    settings.WHATSAPP = {
        **settings.WHATSAPP,
        "BACKEND": "cloud",
        "GRAPH_URL": graph_double.base_url,
        "ACCESS_TOKEN": GRAPH_DOUBLE_TOKEN,
    }
    saved = dict(whatsapp._instances)
    whatsapp._instances.clear()
    yield graph_double
    for backend in whatsapp._instances.values():
        backend.close()
    whatsapp._instances.clear()
    whatsapp._instances.update(saved)
