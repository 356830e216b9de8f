"""The global per-sender send-rate limiter (messaging/limiter.py): no one-second window ever holds more
than `rate` sends, while below the limit nothing waits (a sliding window, not evenly spaced slots), whether the senders are threads of one process (in-process bucket, or Redis) or
separate processes, each with its own Redis connection (the Redis bucket, shared by every worker),
and even when callers wake up late for their slots (a busy machine); a slot further away than
`max_wait` is refused without being reserved; senders never share a bucket.

Batch grants (`rate_grant` with a count, one round trip for a whole batch, each slot waited for with
`slot_wait`) keep the same promise, and a caller late for its slot never sends on it.

Times are taken when `rate_acquire` or `slot_wait` lets each caller send, so the assertions hold for what would
reach Meta, thread-scheduling jitter included."""

import itertools
import json
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from types import SimpleNamespace
from urllib.parse import urlparse

import pytest
from django.conf import settings
from django.test import override_settings
from django.utils import timezone
from redis.exceptions import ConnectionError as RedisConnectionError

from messaging import limiter
from messaging.limiter import LATE_TOLERANCE, WINDOW, rate_acquire, rate_grant, rate_reserve, slot_wait
from messaging.models import Message, MessageStatus
from messaging.sending import message_send
from messaging.whatsapp.memory import MemoryBackend
from tests.factories import ContactFactory, SenderFactory

BUCKETS = [
    pytest.param("local", id="in-process"),
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
]


def scratch_redis_url() -> str:
    """REDIS_URL's server, database 15: other tests empty REDIS_URL's own database (cache.clear()),
    which would reset a bucket in the middle of a test running beside them (pytest-xdist)."""
    return urlparse(settings.REDIS_URL)._replace(path="/15").geturl()


@pytest.fixture(params=BUCKETS)
def bucket(request):
    """Run the test against the in-process bucket and (when available) the Redis one."""
    redis_url = scratch_redis_url() if request.param == "redis" else ""
    with override_settings(REDIS_URL=redis_url):
        yield request.param


def new_sender_id() -> int:
    """A sender id no other test (or earlier run on the same Redis) has used."""
    return 10**12 + uuid.uuid4().int % 10**9


def most_in_one_second(times: list[float]) -> int:
    """The most sends inside any half-open window [t, t + 1 s)."""
    times = sorted(times)
    most, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= 1.0:
            start += 1
        most = max(most, end - start + 1)
    return most


def paced_span(sends: int, rate: int) -> float:
    """How long `sends` take at the limit: `rate` at once, the next `rate` a WINDOW later, and so on."""
    return (sends - 1) // rate * WINDOW


def send_when_allowed(sender_id: int, rate: int, count: int, sent: list[float]) -> None:
    for _ in range(count):
        assert rate_acquire(sender_id=sender_id, per_second=rate, max_wait=10.0)
        sent.append(time.time())


@pytest.fixture
def busy_machine(monkeypatch):
    """A third of the limiter's sleeps wake up 10-80 ms late, as threads do on a saturated CPU."""
    rng = random.Random(7)
    lock = threading.Lock()

    def sleep(seconds):
        with lock:
            late = rng.uniform(0.01, 0.08) if rng.random() < 1 / 3 else 0.0
        time.sleep(seconds + late)

    monkeypatch.setattr(limiter, "time", SimpleNamespace(monotonic=time.monotonic, sleep=sleep))


@pytest.mark.parametrize("machine", ["idle", "busy"])
def test_threads_never_exceed_the_rate_in_any_second(bucket, machine, request):
    if machine == "busy":
        request.getfixturevalue("busy_machine")
    threads, rate, per_thread = 8, 40, 9  # 72 sends: 1.8 s at the limit, several full one-second windows
    sender_id, sent = new_sender_id(), []
    workers = [
        threading.Thread(target=send_when_allowed, args=(sender_id, rate, per_thread, sent))
        for _ in range(threads)
    ]
    started = time.time()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert len(sent) == threads * per_thread
    assert most_in_one_second(sent) <= rate
    assert max(sent) - started >= paced_span(len(sent), rate) - 0.05
    # That the limiter is not stingy (a full window's worth at once, the next when the window has
    # room) is asserted on the waits it grants, in test_below_the_limit_nothing_waits and
    # test_a_batch_grant_takes_only_the_slots_within_max_wait: here, on a loaded test machine, a
    # thread that wakes up late gives its slot up for one a window later, so how long the sends took
    # says little.


def test_below_the_limit_nothing_waits(bucket):
    """A burst within the limit goes at once, whatever its size: the limiter adds no latency until the
    sender's window is full (an evenly spaced limiter would spread 40 sends over 40 intervals)."""
    sender_id, rate = new_sender_id(), 40
    waits = [rate_reserve(sender_id=sender_id, per_second=rate, max_wait=10.0) for _ in range(rate)]
    assert waits == [0] * rate
    batch = rate_grant(sender_id=new_sender_id(), per_second=rate, count=rate, max_wait=10.0)
    assert max(slot.at for slot in batch) - min(slot.at for slot in batch) < 0.05
    # The window is full: the next send waits until the first of them is a window old.
    assert rate_reserve(sender_id=sender_id, per_second=rate, max_wait=10.0) == pytest.approx(WINDOW, abs=0.1)


def test_a_slot_beyond_max_wait_is_refused_and_not_reserved(bucket):
    rate = 2
    sender_id = new_sender_id()
    max_wait = 1.5 * WINDOW

    assert rate_reserve(sender_id=sender_id, per_second=rate, max_wait=max_wait) == 0
    assert rate_reserve(sender_id=sender_id, per_second=rate, max_wait=max_wait) == 0
    third = rate_reserve(sender_id=sender_id, per_second=rate, max_wait=max_wait)
    assert third == pytest.approx(WINDOW, abs=0.05)
    assert rate_reserve(sender_id=sender_id, per_second=rate, max_wait=max_wait) == pytest.approx(
        WINDOW, abs=0.05
    )
    # The fifth send is two windows away, beyond max_wait: refused, however often it is asked.
    for _ in range(5):
        assert rate_reserve(sender_id=sender_id, per_second=rate, max_wait=max_wait) is None
    # The refusals reserved nothing: a caller willing to wait gets the very next slot.
    fifth = rate_reserve(sender_id=sender_id, per_second=rate, max_wait=10.0)
    assert fifth == pytest.approx(2 * WINDOW, abs=0.1)


def test_each_sender_has_its_own_bucket(bucket):
    rate = 1
    busy, other = new_sender_id(), new_sender_id()
    assert rate_reserve(sender_id=busy, per_second=rate, max_wait=0.5) == 0
    assert rate_reserve(sender_id=busy, per_second=rate, max_wait=0.5) is None
    # The busy sender's queue does not delay another sender at all.
    assert rate_reserve(sender_id=other, per_second=rate, max_wait=0.5) == 0
    assert rate_reserve(sender_id=other, per_second=rate, max_wait=0.5) is None


def test_a_caller_late_for_its_slot_never_sends_on_it(bucket):
    """Sends that left late for their slots must not crowd the next ones into the same second: a
    caller back after its slot's tolerance gives it up (it still counts as sent) and waits for a
    fresh one behind the others."""
    sender_id, rate = new_sender_id(), 2
    first, second = rate_grant(sender_id=sender_id, per_second=rate, count=2, max_wait=5.0)
    assert second.at - first.at < 0.05  # below the limit, both at once
    time.sleep(max(0.0, first.latest - time.monotonic()) + 0.05)  # the caller of `first` was held up

    assert slot_wait(first, sender_id=sender_id, per_second=rate, max_wait=5.0)
    allowed_at = time.monotonic()
    assert allowed_at >= first.at + WINDOW - 0.01  # the window holds `first` and `second` until then


@pytest.mark.parametrize("machine", ["idle", "busy"])
def test_batch_grants_never_exceed_the_rate_in_any_second(bucket, machine, request):
    """Workers granted their batch's slots in one call each, every slot waited for on a thread of
    its own (as the send pool does), even when a third of those threads wake up late."""
    if machine == "busy":
        request.getfixturevalue("busy_machine")
    batches, batch_size, rate = 6, 12, 40  # 72 sends: 1.8 s at the limit
    sender_id, sent, lock = new_sender_id(), [], threading.Lock()

    def send_on(slot):
        assert slot_wait(slot, sender_id=sender_id, per_second=rate, max_wait=10.0)
        with lock:
            sent.append(time.time())

    def batch():
        slots = rate_grant(sender_id=sender_id, per_second=rate, count=batch_size, max_wait=10.0)
        assert len(slots) == batch_size
        assert all(earlier.at <= later.at for earlier, later in itertools.pairwise(slots))  # in order
        threads = [threading.Thread(target=send_on, args=(slot,)) for slot in slots]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    workers = [threading.Thread(target=batch) for _ in range(batches)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert len(sent) == batches * batch_size
    assert most_in_one_second(sent) <= rate


def test_a_batch_grant_takes_only_the_slots_within_max_wait(bucket):
    sender_id, rate = new_sender_id(), 4
    granted = rate_grant(sender_id=sender_id, per_second=rate, count=10, max_wait=1.5 * WINDOW)
    assert len(granted) == 8  # 4 now, 4 a window later; the next 4 are two windows away: too far
    waits = [slot.at - granted[0].at for slot in granted]
    assert waits[:4] == pytest.approx([0] * 4, abs=0.05)
    assert waits[4:] == pytest.approx([WINDOW] * 4, abs=0.05)
    assert all(slot.latest - slot.at <= LATE_TOLERANCE + 1e-6 for slot in granted)
    # The refused slots were not taken: the next caller gets the first of the third window.
    after = rate_grant(sender_id=sender_id, per_second=rate, count=1, max_wait=10.0)
    assert after[0].at - granted[0].at == pytest.approx(2 * WINDOW, abs=0.05)


@pytest.mark.django_db
def test_a_limiter_failure_puts_the_message_back_in_the_queue():
    """Nothing has been sent when the limiter cannot be asked (Redis down): the message is queued
    again with its attempt intact, never left `sending` (which would end `unconfirmed`)."""
    contact = ContactFactory(last_inbound_at=timezone.now())
    message = Message.objects.create(
        contact=contact,
        sender=SenderFactory(),
        kind="text",
        content={"body": "Hi"},
        status=MessageStatus.QUEUED,
    )
    with override_settings(REDIS_URL="redis://127.0.0.1:9/0"), pytest.raises(RedisConnectionError):
        message_send(message.pk)
    message.refresh_from_db()
    assert (message.status, message.attempts) == (MessageStatus.QUEUED, 0)
    assert message.next_attempt_at > timezone.now()
    assert "before sending" in message.status_events.last().detail
    assert MemoryBackend.outbox == []


# --- Across processes (Redis) ---------------------------------------------------------------------

CHILD = """
import json, os, sys, time
from messaging.limiter import rate_acquire

sender_id, rate, count, start_at = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
rate_acquire(sender_id=sender_id + 1, per_second=1000)  # connect to Redis before the start
time.sleep(max(0.0, start_at - time.time()))
sent = []
for _ in range(count):
    if not rate_acquire(sender_id=sender_id, per_second=rate, max_wait=10.0):
        sys.exit("refused a send within max_wait")
    sent.append(time.time())
print(json.dumps({"pid": os.getpid(), "sent": sent}))
"""


@pytest.mark.redis
def test_processes_with_their_own_redis_connections_share_one_bucket():
    processes, rate, per_process = 3, 30, 20  # 60 sends: 2 s at the limit
    sender_id = new_sender_id()
    start_at = time.time() + 2.0  # after every child has imported the settings and connected
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.test_settings", "REDIS_URL": scratch_redis_url()}
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(sender_id), str(rate), str(per_process), str(start_at)],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    results = []
    for child in children:
        out, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))

    assert time.time() > start_at, "the children must have started together"
    assert len({r["pid"] for r in results}) == processes
    sent = [t for r in results for t in r["sent"]]
    assert len(sent) == processes * per_process
    assert most_in_one_second(sent) <= rate
    # One window for all three: separate ones would have let each send its 20 at once (60 in the
    # first second). Never faster than the rate's pace; how much slower depends on how busy the
    # machine is (not asserted). Which process gets which slot is not asserted either: in a sliding
    # window, the first to ask may take its 20 before the others' first request arrives.
    span = max(sent) - min(sent)
    assert span >= paced_span(len(sent), rate) - 0.3


# --- Held slots (a batch's messages that wait for a free send thread) -------------------------------


def test_held_slots_are_granted_below_the_limit_and_stay_usable_longer(bucket):
    sender_id, rate = new_sender_id(), 40
    slots = rate_grant(sender_id=sender_id, per_second=rate, count=2, held=10, hold=0.25, max_wait=5.0)
    assert len(slots) == 12
    assert all(slot.at - slots[0].at < 0.05 for slot in slots)  # all due now
    assert [round(slot.latest - slot.at, 2) for slot in slots[:2]] == [LATE_TOLERANCE] * 2
    assert all(0.2 <= slot.latest - slot.at <= 0.25 for slot in slots[2:])
    # Used late but within its hold, a held slot lets its caller send without asking again.
    time.sleep(0.1)
    assert slot_wait(slots[-1], sender_id=sender_id, per_second=rate, max_wait=0.0)


def test_held_slots_are_refused_once_the_window_is_busy(bucket):
    """A long hold counts as a send at its end, wasting capacity at the limit: it is granted only while
    the window has room. Refused held slots reserve nothing."""
    sender_id, rate = new_sender_id(), 10
    assert (
        len(rate_grant(sender_id=sender_id, per_second=rate, count=int(rate * limiter.LONG_HOLD_ROOM))) == 8
    )
    assert rate_grant(sender_id=sender_id, per_second=rate, count=0, held=5, hold=0.25) == []
    assert [rate_reserve(sender_id=sender_id, per_second=rate, max_wait=0.5) for _ in range(2)] == [0, 0]


@pytest.mark.parametrize("machine", ["idle", "busy"])
def test_held_slots_used_late_never_exceed_the_rate_in_any_second(bucket, machine, request):
    """Batches granted a few slots ahead and the rest held, each used at a random moment within its hold
    (threads freeing at random), or not in time (a fresh slot then): still never more than `rate`."""
    if machine == "busy":
        request.getfixturevalue("busy_machine")
    batches, batch_size, ahead, rate = 8, 12, 3, 30  # 96 sends: over 3 windows at the limit
    sender_id, sent, lock = new_sender_id(), [], threading.Lock()
    rng = random.Random(11)

    def send_on(slot, delay):
        time.sleep(delay)
        assert slot_wait(slot, sender_id=sender_id, per_second=rate, max_wait=10.0)
        with lock:
            sent.append(time.time())

    def batch():
        slots = rate_grant(
            sender_id=sender_id,
            per_second=rate,
            count=ahead,
            held=batch_size - ahead,
            hold=0.3,
            max_wait=10.0,
        )
        slots += [None] * (batch_size - len(slots))
        with lock:
            delays = [rng.uniform(0, 0.4) for _ in slots]
        threads = [
            threading.Thread(target=send_on, args=(slot, delay))
            for slot, delay in zip(slots, delays, strict=True)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    workers = [threading.Thread(target=batch) for _ in range(batches)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert len(sent) == batches * batch_size
    assert most_in_one_second(sent) <= rate
