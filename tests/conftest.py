"""Suite-wide fixtures and the rule for tests that need real services.

Tests marked `postgres`, `redis`, `worker` or `browser` skip with a printed reason when that service is
not available (a fresh machine), and FAIL instead when REQUIRE_SERVICES=1 (CI): there, any skipped
test at all turns the run red, so a missing service can never pass silently.
"""

import os
import shutil
import socket
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
