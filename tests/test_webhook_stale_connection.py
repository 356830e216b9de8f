"""A webhook arriving on a database connection that died while kept alive is still stored (once)."""

import hashlib

import psycopg
import pytest
from django.db import connection

from messaging.models import WebhookEvent
from messaging.webhook_processing import webhook_event_store

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _store(body: str) -> bool:
    return webhook_event_store(
        raw_body=body, body_sha256=hashlib.sha256(body.encode()).hexdigest(), headers={}
    )


def test_a_delivery_on_a_connection_killed_by_the_server_is_stored_on_a_fresh_one():
    assert _store('{"n": 1}')
    backend_pid = connection.connection.info.backend_pid
    settings = connection.settings_dict
    # What a database restart or failover does to a kept-alive connection.
    with psycopg.connect(
        host=settings["HOST"] or None,
        port=settings["PORT"] or None,
        user=settings["USER"],
        dbname=settings["NAME"],
        autocommit=True,
    ) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [backend_pid])

    assert _store('{"n": 2}')  # no error reaches Meta: the insert was retried on a new connection
    assert connection.connection.info.backend_pid != backend_pid
    assert not _store('{"n": 2}')  # and stored once: a redelivery is still recognised
    assert WebhookEvent.objects.count() == 2
