"""One global send-rate limiter per sender (Meta's throughput limit is per business number).

Two steps, both atomic in Redis when REDIS_URL is set (so they hold across every worker on every
machine), in-process otherwise (the embedded default, one process):

1. Reserve a slot. A reservation token bucket with room for one message: each send reserves the
   next free slot, spaced (1 + SLOT_MARGIN)/rate seconds apart, and the caller sleeps until its
   slot. This paces the senders and keeps them from waking up all at once.
2. Commit, right before the request leaves: the send is recorded in a log of the sender's recent
   sends and allowed only if fewer than `rate` of them fall within the last WINDOW seconds; else
   the caller waits until the oldest leaves the window. So any `rate + 1` sends are at least
   WINDOW = 1 + SLOT_MARGIN seconds apart, whatever happened between reservation and sending.

Why the commit: on a busy machine a thread can wake up (or get the CPU back) long after its slot,
and a late send followed by on-time ones crowds more than `rate` sends into one second. The
commit stops exactly that, and costs nothing when the limit is not reached (a late send then simply
goes). A commit is taken back if its caller only gets going again more than LATE_TOLERANCE later
(its thread starved of CPU or of the GIL while Redis answered), so a send never leaves long after
the moment it was counted at. Why the margin: between the commit and Meta reading the request there
is still a little jitter (the tolerance, building the request, the network); a window SLOT_MARGIN
longer than a second absorbs up to that much of it, for 1/(1 + SLOT_MARGIN) of the nominal
throughput. What no limiter on the sending side can absorb is a worker stalled between the commit
and the socket for longer than that (a saturated CPU): keep the workers' CPUs some headroom.
Celery's own `rate_limit` is per worker, which is why it is not used.
"""

import threading
import time
import uuid
from collections import deque
from functools import cache

from django.conf import settings

#: Extra spacing, in seconds per second (see the module docstring).
SLOT_MARGIN = 0.03
WINDOW = 1.0 + SLOT_MARGIN
#: A commit counts only if its caller is back from it within this many seconds (see rate_acquire).
LATE_TOLERANCE = 0.01
MAX_COMMITS = 50  # attempts to commit in one rate_acquire, before giving up (the message is requeued)

# Redis' own clock is used so workers with drifting clocks still share one timeline. Microseconds.
# Reserve: read the next free slot, reserve it, return how long to wait; when the slot is free now,
# also try to commit at once (the common case below the limit: one round trip per send).
_RESERVE_LUA = """
local now_t = redis.call('TIME')
local now = tonumber(now_t[1]) * 1000000 + tonumber(now_t[2])
local interval = tonumber(ARGV[1])
local max_wait = tonumber(ARGV[2])
local next_free = tonumber(redis.call('GET', KEYS[1]) or '0')
if next_free < now then next_free = now end
local wait = next_free - now
if wait > max_wait then return {-1, 0} end
redis.call('SET', KEYS[1], tostring(next_free + interval), 'PX', 60000)
if wait > 0 or ARGV[3] == '' then return {wait, 0} end
local window = tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
if redis.call('ZCARD', KEYS[2]) < tonumber(ARGV[5]) then
    redis.call('ZADD', KEYS[2], now, ARGV[3])
    redis.call('PEXPIRE', KEYS[2], math.floor(window / 1000) + 1000)
    return {0, 1}
end
return {0, 0}
"""
# Commit: record a send now if the window has room; else return how long until it has.
_COMMIT_LUA = """
local now_t = redis.call('TIME')
local now = tonumber(now_t[1]) * 1000000 + tonumber(now_t[2])
local window = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
    redis.call('ZADD', KEYS[1], now, ARGV[3])
    redis.call('PEXPIRE', KEYS[1], math.floor(window / 1000) + 1000)
    return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return tonumber(oldest[2]) + window - now + 1
"""


class _LocalBuckets:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next_free: dict[str, float] = {}
        self._sent: dict[str, deque[tuple[float, str]]] = {}

    def reserve(self, key: str, interval: float, max_wait: float) -> float | None:
        with self._lock:
            now = time.monotonic()
            next_free = max(self._next_free.get(key, 0.0), now)
            wait = next_free - now
            if wait > max_wait:
                return None
            self._next_free[key] = next_free + interval
            return wait

    def commit(self, key: str, per_second: int, member: str) -> float:
        with self._lock:
            now = time.monotonic()
            sent = self._sent.setdefault(key, deque())
            while sent and sent[0][0] <= now - WINDOW:
                sent.popleft()
            if len(sent) < per_second:
                sent.append((now, member))
                return 0.0
            return sent[0][0] + WINDOW - now + 1e-6

    def uncommit(self, key: str, member: str) -> None:
        with self._lock:
            sent = self._sent.get(key, deque())
            self._sent[key] = deque(entry for entry in sent if entry[1] != member)


_local = _LocalBuckets()


@cache
def _redis_scripts(url: str):
    import redis

    client = redis.Redis.from_url(url)
    return client, client.register_script(_RESERVE_LUA), client.register_script(_COMMIT_LUA)


def slot_interval(per_second: int) -> float:
    """Seconds between two reserved send slots of one sender."""
    return WINDOW / max(1, per_second)


def _keys(sender_id: int) -> tuple[str, str]:
    base = f"{settings.CACHES['default'].get('KEY_PREFIX', '')}:send-slot:{sender_id}"
    return base, f"{base}:sent"


def _reserve(
    sender_id: int, per_second: int, max_wait: float, *, member: str = ""
) -> tuple[float | None, bool]:
    """(seconds to the reserved slot or None, whether the send was also committed as `member`)."""
    slot_key, sent_key = _keys(sender_id)
    interval = slot_interval(per_second)
    if not settings.REDIS_URL:
        wait = _local.reserve(slot_key, interval, max_wait)
        committed = bool(member) and wait == 0 and _local.commit(sent_key, per_second, member) == 0
        return wait, committed
    _, reserve, _ = _redis_scripts(settings.REDIS_URL)
    wait, committed = reserve(
        keys=[slot_key, sent_key],
        args=[
            int(interval * 1_000_000),
            int(max_wait * 1_000_000),
            member,
            int(WINDOW * 1_000_000),
            max(1, per_second),
        ],
    )
    return (None if int(wait) < 0 else int(wait) / 1_000_000), bool(committed)


def rate_reserve(*, sender_id: int, per_second: int, max_wait: float = 2.0) -> float | None:
    """Reserve a send slot for `sender_id`. Returns seconds to sleep before sending, or None when the
    next free slot is more than `max_wait` away (a refusal reserves nothing)."""
    return _reserve(sender_id, per_second, max_wait)[0]


def rate_commit(*, sender_id: int, per_second: int, member: str | None = None) -> float:
    """Record a send of `sender_id` now (as `member`) and return 0, or, when `per_second` sends already
    fall within the last WINDOW seconds, record nothing and return the seconds until one leaves it."""
    _, sent_key = _keys(sender_id)
    member = member or uuid.uuid4().hex
    if not settings.REDIS_URL:
        return _local.commit(sent_key, per_second, member)
    _, _, commit = _redis_scripts(settings.REDIS_URL)
    waited = commit(keys=[sent_key], args=[int(WINDOW * 1_000_000), max(1, per_second), member])
    return int(waited) / 1_000_000


def _uncommit(sender_id: int, member: str) -> None:
    _, sent_key = _keys(sender_id)
    if not settings.REDIS_URL:
        _local.uncommit(sent_key, member)
    else:
        _redis_scripts(settings.REDIS_URL)[0].zrem(sent_key, member)


def rate_acquire(*, sender_id: int, per_second: int, max_wait: float = 2.0) -> bool:
    """Wait until the caller may send, and return True at the moment it may (the send is counted);
    False when that is more than `max_wait` away, so the message should go back to the queue.

    A commit holds only if the caller is back from it within LATE_TOLERANCE: a thread that got the
    CPU (or the GIL) back later than that takes its commit back and commits again, so a request
    never leaves long after the moment it was counted at."""
    started = time.monotonic()
    member = uuid.uuid4().hex
    asked = time.monotonic()
    wait, committed = _reserve(sender_id, per_second, max_wait, member=member)
    if wait is None:
        return False
    if committed:
        if time.monotonic() - asked <= LATE_TOLERANCE:
            return True
        _uncommit(sender_id, member)
    else:
        time.sleep(wait)
    for _ in range(MAX_COMMITS):
        member = uuid.uuid4().hex
        asked = time.monotonic()
        wait = rate_commit(sender_id=sender_id, per_second=per_second, member=member)
        if wait == 0:
            if time.monotonic() - asked <= LATE_TOLERANCE:
                return True
            _uncommit(sender_id, member)  # back too late: as if it had not been counted
            continue
        if time.monotonic() + wait - started > max_wait:
            return False
        time.sleep(wait)
    return False
