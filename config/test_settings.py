"""Settings for the test suite: the real settings module with safe defaults for anything the
environment leaves unset. CI sets DATABASE_URL / REDIS_URL to run the same suite on PostgreSQL and
Redis; a fresh machine runs it on SQLite with in-process equivalents."""

import os
import tempfile

os.environ.setdefault("DJANGO_DEBUG", "false")
os.environ.setdefault("DJANGO_SECRET_KEY", "tests-only-" + "k3y-" * 12)
os.environ.setdefault("DJANGO_ALLOWED_HOSTS", "testserver,localhost,127.0.0.1")
os.environ.setdefault("DJANGO_SECURE_SSL_REDIRECT", "false")
os.environ.setdefault("WHATSAPP_BACKEND", "memory")
os.environ.setdefault("WHATSAPP_APP_SECRET", "test-app-secret")
os.environ.setdefault("CONSENT_ENCRYPTION_KEY", "dGVzdHMtb25seS1rZXktMzItYnl0ZXMtbG9uZy0tLS0=")
os.environ.setdefault("WHATSAPP_VERIFY_TOKEN", "test-verify-token")
os.environ.setdefault("WHATSAPP_ACCESS_TOKEN", "test-access-token")
os.environ.setdefault("WHATSAPP_PHONE_NUMBER_ID", "100200300400500")
os.environ.setdefault("WHATSAPP_DISPLAY_PHONE_NUMBER", "+1 555 010 0000")
os.environ.setdefault("WHATSAPP_BUSINESS_ACCOUNT_ID", "900800700600500")
# Tests drive Celery in-process unless a test starts its own worker against a real broker.
os.environ.pop("CELERY_BROKER_URL", None)

from config.settings import *  # noqa: F403
from config.settings import CACHES, DATABASES, STORAGES

# Fast hashing: the suite creates many users.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Tests never collect static files; the manifest storage would refuse unknown names.
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
# Parallel test processes (pytest-xdist) share one Redis: keep their cache keys apart.
CACHES["default"]["KEY_PREFIX"] = "test-" + os.environ.get("PYTEST_XDIST_WORKER", "main")
# Serve static files through the finders; no collectstatic before tests.
WHITENOISE_AUTOREFRESH = True

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not shared-cache memory: live-server tests receive concurrent webhooks, and shared-cache
    # SQLite answers "table is locked" at once instead of waiting like a real database would.
    # One file per test process, so two suites running at once on one machine never share it.
    DATABASES["default"]["TEST"] = {
        "NAME": os.path.join(tempfile.gettempdir(), f"wa-test-{os.getpid()}.sqlite3")
    }
else:
    # TEST_DB_SUFFIX keeps two suites on one PostgreSQL server apart (pytest-xdist adds its own suffix).
    suffix = os.environ.get("TEST_DB_SUFFIX", "")
    if suffix:
        DATABASES["default"]["TEST"] = {"NAME": f"test_{DATABASES['default']['NAME']}_{suffix}"}
# Live-server request threads must not keep PostgreSQL connections open past their request, or the
# test database cannot be dropped at teardown ("is being accessed by other users").
DATABASES["default"]["CONN_MAX_AGE"] = 0
