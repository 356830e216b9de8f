"""The suite really runs on the services CI provides, and /healthz/ reports them.

CI runs the suite a second time with DATABASE_URL and REDIS_URL set and REQUIRE_SERVICES=1; these
tests make a misconfiguration there (a silent fall back to SQLite or to the in-process cache) fail
instead of passing on the embedded defaults.
"""

import uuid

import pytest
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.test import override_settings


@pytest.mark.postgres
def test_database_is_postgresql(db):
    assert connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('server_version_num')::int, version()")
        version_num, version = cursor.fetchone()
    assert version.startswith("PostgreSQL")
    assert version_num >= 140000, f"Django 5.2 needs PostgreSQL 14 or later, the server is {version}"


@pytest.mark.redis
def test_cache_round_trips_through_redis():
    import redis

    assert settings.CACHES["default"]["BACKEND"] == "django.core.cache.backends.redis.RedisCache"
    key = f"real-services-{uuid.uuid4().hex}"
    cache.set(key, {"answer": 42}, timeout=60)
    try:
        assert cache.get(key) == {"answer": 42}
        # The value is on the Redis server itself, not in some in-process cache.
        client = redis.Redis.from_url(settings.REDIS_URL)
        try:
            stored_key = cache.make_and_validate_key(key)
            assert client.exists(stored_key) == 1
            assert 0 < client.ttl(stored_key) <= 60
        finally:
            client.close()
    finally:
        cache.delete(key)
    assert cache.get(key) is None


@pytest.mark.redis
def test_healthz_reports_redis_ok(db, client):
    response = client.get("/healthz/")

    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ok"
    assert body["down"] == []
    assert body["checks"]["redis"]["status"] == "ok"
    assert body["checks"]["database"]["status"] == "ok"


@override_settings(REDIS_URL="redis://127.0.0.1:1/0")
def test_healthz_answers_503_when_redis_is_down(db, client):
    response = client.get("/healthz/")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert "redis" in body["down"]
    assert body["checks"]["redis"]["status"] == "down"
    assert body["checks"]["redis"]["error"]
    assert body["checks"]["database"]["status"] == "ok"


@pytest.mark.django_db
def test_healthz_names_an_unreachable_broker(client, settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    response = client.get("/healthz/")
    assert response.status_code == 503
    body = response.json()
    assert body["down"] == ["broker"]
    assert body["checks"]["database"]["status"] == "ok"
