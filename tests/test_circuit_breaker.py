"""The per-sender circuit breaker, proven against the Graph API double (bench/graph_double.py) with the
real `cloud` backend: Meta answering 500s opens the circuit after the threshold, after which no request
reaches Meta and messages stay queued with their attempts intact; after the cool-down exactly one probe
goes out, and its success closes the circuit (its failure re-opens it for twice as long)."""

import os
import subprocess
import sys
import threading
import time
from datetime import timedelta
from urllib.parse import urlparse

import pytest
from django.conf import settings
from django.test import override_settings
from django.utils import timezone

from bench.graph_double import GraphApiDouble, meta_error
from messaging.models import Message, MessageStatus
from messaging.sending import message_send, messages_send, sender_circuit_reset, sender_circuit_state
from messaging.whatsapp import backend_create
from tests.factories import ContactFactory, SenderFactory

pytestmark = pytest.mark.django_db

TOKEN = "EAAGcircuit-breaker-test"
THRESHOLD = 5
COOLDOWN = 3.0  # long enough that a busy machine does not end it between two steps of a test
BREAKER = {
    "FAILURE_THRESHOLD": THRESHOLD,
    "COOLDOWN_SECONDS": COOLDOWN,
    "HALF_OPEN_RECHECK_SECONDS": 1.0,
    "PROBE_TIMEOUT_SECONDS": 10.0,
}


def scratch_redis_url() -> str:
    """REDIS_URL's server, database 15: other tests empty REDIS_URL's own database (cache.clear()),
    which would close a circuit in the middle of a test running beside them (pytest-xdist)."""
    return urlparse(settings.REDIS_URL)._replace(path="/15").geturl()


@pytest.fixture(autouse=True)
def _breaker_settings():
    caches = {}
    if settings.REDIS_URL:  # the circuit's state lives in Django's cache: Redis, like in production
        caches = {"CACHES": {"default": {**settings.CACHES["default"], "LOCATION": scratch_redis_url()}}}
    with override_settings(WHATSAPP_CIRCUIT_BREAKER=BREAKER, **caches):
        yield


@pytest.fixture
def double():
    with GraphApiDouble(access_token=TOKEN) as graph:
        yield graph


@pytest.fixture
def backend(double):
    cloud = backend_create("cloud", graph_url=double.base_url, access_token=TOKEN, api_version="v23.0")
    yield cloud
    cloud.close()


@pytest.fixture
def sender():
    sender = SenderFactory(messages_per_second=1000)
    sender_circuit_reset(sender.pk)  # a previous run on the same Redis may have left one behind
    yield sender
    sender_circuit_reset(sender.pk)


def queued(sender, count: int) -> list[Message]:
    contact = ContactFactory(last_inbound_at=timezone.now())  # free-form: the window is open
    return [
        Message.objects.create(
            contact=contact,
            sender=sender,
            kind="text",
            content={"body": f"Order {n} shipped", "preview_url": False},
            status=MessageStatus.QUEUED,
        )
        for n in range(count)
    ]


def meta_500s(double: GraphApiDouble, times: int = 1000) -> None:
    double.inject_fault(
        status=500,
        error=meta_error(message="(#131000) Something went wrong", code=131000, is_transient=True),
        times=times,
        path_contains="/messages",
    )


def callbacks(double: GraphApiDouble) -> list[str]:
    return [r.json["biz_opaque_callback_data"] for r in double.requests if r.path.endswith("/messages")]


def make_due(*messages: Message) -> None:
    Message.objects.filter(pk__in=[m.pk for m in messages]).update(next_attempt_at=timezone.now())


def wait_for_cooldown(sender) -> None:
    state = sender_circuit_state(sender.pk)
    time.sleep(max(0.0, (state["open_until"] - timezone.now()).total_seconds()) + 0.01)


def trip(sender, backend, double, messages: list[Message]) -> None:
    meta_500s(double)
    for message in messages[:THRESHOLD]:
        assert message_send(message.pk, backend=backend).status == MessageStatus.QUEUED
    assert sender_circuit_state(sender.pk)["state"] == "open"
    double.reset()  # Meta is healthy again; forget the failed requests


@pytest.mark.django_db(transaction=True)  # the probe is sent from a second thread (connection)
def test_the_circuit_opens_holds_messages_then_one_probe_closes_it(sender, backend, double):
    messages = queued(sender, 12)
    meta_500s(double)

    for n, message in enumerate(messages[:THRESHOLD], start=1):
        assert sender_circuit_state(sender.pk)["state"] == "closed"
        outcome = message_send(message.pk, backend=backend)
        message.refresh_from_db()
        # Each real failure is an ordinary retry with backoff: one attempt spent, still queued.
        assert (outcome.status, message.error_code, message.attempts) == (MessageStatus.QUEUED, "131000", 1)
        assert len(double.requests) == n

    state = sender_circuit_state(sender.pk)
    assert state["state"] == "open"
    assert state["consecutive_failures"] == THRESHOLD and state["trips"] == 1
    assert "131000" in state["last_error"] and state["cooldown_seconds"] == COOLDOWN

    # Open: nothing reaches Meta, and the messages wait in the queue without spending an attempt.
    held = messages[THRESHOLD:]
    for message in held:
        outcome = message_send(message.pk, backend=backend)
        message.refresh_from_db()
        assert outcome.status == MessageStatus.QUEUED
        assert (message.status, message.attempts, message.error_code) == (MessageStatus.QUEUED, 0, "")
        assert message.next_attempt_at == outcome.retry_at >= state["open_until"]  # due after the cool-down
        assert "circuit open" in message.status_events.last().detail
    assert len(double.requests) == THRESHOLD

    double.reset()  # Meta recovers
    wait_for_cooldown(sender)
    assert sender_circuit_state(sender.pk)["state"] == "half_open"

    # Half-open: the first due message becomes the probe. While it is in flight (Meta slow to
    # answer), other messages are still held back: exactly one request goes out.
    probe, bystander = held[0], held[1]
    make_due(probe, bystander)
    double.inject_delay(0.5, path_contains="/messages")
    outcomes = {}

    def send_probe():
        try:
            outcomes["probe"] = message_send(probe.pk, backend=backend).status
        finally:
            from django.db import connection

            connection.close()

    thread = threading.Thread(target=send_probe)
    thread.start()
    deadline = time.monotonic() + 5
    while not double.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sender_circuit_state(sender.pk)["probe_in_flight"]
    assert message_send(bystander.pk, backend=backend).status == MessageStatus.QUEUED
    bystander.refresh_from_db()
    assert "half-open" in bystander.status_events.last().detail and bystander.attempts == 0
    thread.join(timeout=10)

    assert outcomes["probe"] == MessageStatus.SENT
    assert callbacks(double) == [str(probe.pk)]
    state = sender_circuit_state(sender.pk)
    assert (state["state"], state["consecutive_failures"], state["probe_in_flight"]) == ("closed", 0, False)

    # Closed again: everything still queued goes out, each message exactly once.
    make_due(*messages)
    for message in messages:
        message_send(message.pk, backend=backend)
    assert set(Message.objects.values_list("status", flat=True)) == {MessageStatus.SENT}
    sent = callbacks(double)
    assert sorted(sent) == sorted(str(m.pk) for m in messages) and len(sent) == len(set(sent))


def test_a_failed_probe_reopens_the_circuit_for_longer(sender, backend, double):
    messages = queued(sender, THRESHOLD + 2)
    trip(sender, backend, double, messages)
    meta_500s(double)  # Meta is still down when the probe goes out
    wait_for_cooldown(sender)
    probe, held = messages[THRESHOLD], messages[THRESHOLD + 1]
    make_due(probe, held)

    assert message_send(probe.pk, backend=backend).status == MessageStatus.QUEUED
    probe.refresh_from_db()
    assert (probe.attempts, probe.error_code) == (1, "131000")  # the probe really was attempted
    state = sender_circuit_state(sender.pk)
    assert (state["state"], state["trips"], state["cooldown_seconds"]) == ("open", 2, 2 * COOLDOWN)
    assert not state["probe_in_flight"]

    assert message_send(held.pk, backend=backend).status == MessageStatus.QUEUED
    held.refresh_from_db()
    assert held.attempts == 0
    assert len(double.requests) == 1  # the probe only


def test_only_consecutive_transient_failures_count(sender, backend, double):
    messages = queued(sender, 3 * THRESHOLD)
    sends = iter(messages)

    def send_next():
        return message_send(next(sends).pk, backend=backend).status

    meta_500s(double, times=THRESHOLD - 1)
    for _ in range(THRESHOLD - 1):
        send_next()
    assert sender_circuit_state(sender.pk)["consecutive_failures"] == THRESHOLD - 1
    assert send_next() == MessageStatus.SENT  # one success resets the count
    assert sender_circuit_state(sender.pk)["consecutive_failures"] == 0

    # Errors about the message or one recipient say Meta is up: they never open the circuit.
    double.inject_fault(
        status=400,
        error=meta_error(message="(#100) Invalid parameter", code=100),
        times=THRESHOLD,
        path_contains="/messages",
    )
    for _ in range(THRESHOLD):
        assert send_next() == MessageStatus.FAILED
    double.inject_fault(
        status=400,
        error=meta_error(message="(#131056) Pair rate limit hit", code=131056),
        times=THRESHOLD,
        path_contains="/messages",
    )
    for _ in range(THRESHOLD):
        assert send_next() == MessageStatus.QUEUED
    assert sender_circuit_state(sender.pk)["state"] == "closed"
    assert len(double.requests) == 3 * THRESHOLD


def test_each_sender_has_its_own_circuit(sender, backend, double):
    other = SenderFactory()
    sender_circuit_reset(other.pk)
    try:
        messages = queued(sender, THRESHOLD)
        trip(sender, backend, double, messages)
        [other_message] = queued(other, 1)
        assert message_send(other_message.pk, backend=backend).status == MessageStatus.SENT
        assert sender_circuit_state(other.pk)["state"] == "closed"
    finally:
        sender_circuit_reset(other.pk)


@pytest.mark.redis
def test_every_worker_process_sees_the_same_circuit(sender, backend, double):
    """The state lives in Redis: another process (a worker on another machine) sees it open."""
    messages = queued(sender, THRESHOLD)
    with override_settings(WHATSAPP_CIRCUIT_BREAKER={**BREAKER, "COOLDOWN_SECONDS": 60}):
        trip(sender, backend, double, messages)
    script = (
        "import django, json, sys; django.setup(); "
        "from messaging.sending import sender_circuit_state; "
        "print(json.dumps(sender_circuit_state(int(sys.argv[1])), default=str))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(sender.pk)],
        cwd=settings.BASE_DIR,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.test_settings",
            "REDIS_URL": scratch_redis_url(),
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert '"state": "open"' in result.stdout.strip().splitlines()[-1]
    # And closing it anywhere closes it everywhere.
    sender_circuit_reset(sender.pk)
    message = queued(sender, 1)[0]
    Message.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    assert message_send(message.pk, backend=backend).status == MessageStatus.SENT


def test_a_half_open_circuit_lets_one_probe_out_of_a_whole_batch(sender, backend, double):
    messages = queued(sender, THRESHOLD + 4)
    trip(sender, backend, double, messages)
    wait_for_cooldown(sender)
    batch = messages[THRESHOLD:]
    make_due(*batch)

    outcomes = messages_send([m.pk for m in batch], backend=backend)

    assert callbacks(double) == [str(batch[0].pk)]  # one request: the probe
    assert outcomes[batch[0].pk].status == MessageStatus.SENT
    for message in batch[1:]:
        message.refresh_from_db()
        assert (outcomes[message.pk].status, message.status, message.attempts) == ("queued", "queued", 0)
        assert "half-open" in message.status_events.last().detail
    assert sender_circuit_state(sender.pk)["state"] == "closed"
