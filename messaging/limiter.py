"""One global send-rate limiter per sender (Meta's throughput limit is per business number).

Atomic in Redis when REDIS_URL is set (so it holds across every worker on every machine),
in-process otherwise (the embedded default, one process).

The promise: at most `rate` sends of a sender in any window of WINDOW = 1 + SLOT_MARGIN seconds (so,
with the margin, never more than `rate` in any one second). A sliding window, not evenly spaced
slots: below the limit a send never waits (a batch of 32 goes at once, as a bare client would
send it); at the limit, the next send waits until the send `rate` places before it is WINDOW old.
Each sender keeps the times of its last `rate` grants, newest first (a Redis list, or a deque).

A caller is granted its send slots, as many as it asks for in one call (a batch asks for all of its
messages at once: one round trip), each as a `SendSlot`: not before its time, and not later than
LATE_TOLERANCE after it. A caller that gets there in time sends on its slot; one that is late (its
thread starved of CPU or of the GIL, a batch that waited for a free send thread) gives the slot up
(it still counts, as if used) and is granted a fresh one.

Why that holds the limit: send k+rate is granted no earlier than WINDOW after send k's time and
leaves within LATE_TOLERANCE of its own, so any two sends `rate` places apart leave at least
WINDOW - LATE_TOLERANCE >= 1 s apart while LATE_TOLERANCE <= SLOT_MARGIN: no one-second window holds
rate + 1 of them. The rest of the margin absorbs the jitter between the check and Meta reading the
request (building it, the network). What no limiter on the sending side can absorb is a worker
stalled between the check and the socket for longer than that (a saturated CPU): keep the workers'
CPUs some headroom. A slot's times are taken conservatively: not before the moment the grant's
answer arrived plus its wait (never early, whatever the round trip), not after the moment it was
asked plus its wait plus the tolerance (a slow round trip counts as lateness). Celery's own
`rate_limit` is per worker, which is why it is not used.
"""

import threading
import time
from collections import deque
from dataclasses import dataclass
from functools import cache

from django.conf import settings

#: Extra length of the window, in seconds per second (see the module docstring).
SLOT_MARGIN = 0.03
WINDOW = 1.0 + SLOT_MARGIN
#: How late after its slot a send may still leave (see the module docstring); <= SLOT_MARGIN.
LATE_TOLERANCE = 0.01
MAX_REGRANTS = 50  # fresh slots one send may take after missing its own, before giving up (requeued)
#: A sender's grant times are forgotten this long after its last grant (they no longer bind by then).
HISTORY_TTL_MS = 60_000

# Redis' own clock is used so workers with drifting clocks still share one timeline. Microseconds;
# '%.0f' because Lua's tostring keeps only 14 significant digits (100 us at today's epoch).
# KEYS[1]: the sender's grant times, newest first. Grant j of this call must wait for the grant `rate`
# places before it: the list's element rate-1-j (fetched in one LRANGE), or grant j-rate of this call.
_GRANT_LUA = """
local now_t = redis.call('TIME')
local now = tonumber(now_t[1]) * 1000000 + tonumber(now_t[2])
local rate = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local max_wait = tonumber(ARGV[3])
local count = tonumber(ARGV[4])
local first = math.max(0, rate - count)
local older = redis.call('LRANGE', KEYS[1], first, rate - 1)
local latest = tonumber(redis.call('LINDEX', KEYS[1], 0) or '0')
local times, waits = {}, {}
for j = 0, count - 1 do
    local t = math.max(now, latest)
    local before
    if j >= rate then before = times[j - rate + 1] else before = older[rate - j - first] end
    if before then t = math.max(t, tonumber(before) + window) end
    if t - now > max_wait then break end
    times[j + 1] = t
    waits[j + 1] = t - now
    latest = t
end
if #times > 0 then
    local pushed = {}
    for i = 1, #times do pushed[i] = string.format('%.0f', times[i]) end
    redis.call('LPUSH', KEYS[1], unpack(pushed))
    redis.call('LTRIM', KEYS[1], 0, rate - 1)
    redis.call('PEXPIRE', KEYS[1], ARGV[5])
end
return waits
"""


@dataclass(frozen=True)
class SendSlot:
    """A granted send slot, in this process's time.monotonic(): send at `at` or later, and not after
    `latest` (then the slot is lost, see slot_wait)."""

    at: float
    latest: float


class _LocalBuckets:
    """The same sliding window in this process (no REDIS_URL): each sender's last `rate` grant times."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._granted: dict[str, deque[float]] = {}

    def grant(self, key: str, rate: int, window: float, max_wait: float, count: int) -> list[float]:
        with self._lock:
            now = time.monotonic()
            granted = self._granted.setdefault(key, deque())  # oldest first
            waits = []
            for _ in range(count):
                at = max(now, granted[-1]) if granted else now
                if len(granted) >= rate:
                    at = max(at, granted[-rate] + window)
                if at - now > max_wait:
                    break
                waits.append(at - now)
                granted.append(at)
            while len(granted) > rate:
                granted.popleft()
            return waits

    def forget(self) -> None:
        with self._lock:
            self._granted.clear()


_local = _LocalBuckets()


def send_windows_forget() -> None:
    """Forget this process's in-process send windows (tests reuse sender ids)."""
    _local.forget()


@cache
def _redis_script(url: str):
    import redis

    return redis.Redis.from_url(url).register_script(_GRANT_LUA)


def _key(sender_id: int) -> str:
    return f"{settings.CACHES['default'].get('KEY_PREFIX', '')}:send-window:{sender_id}"


def rate_grant(*, sender_id: int, per_second: int, count: int = 1, max_wait: float = 2.0) -> list[SendSlot]:
    """Grant the next `count` send slots of `sender_id` in one atomic step, or as many of them as are
    at most `max_wait` seconds away (slots refused are not taken); in the order they are due. Below
    the sender's limit they are all due at once."""
    rate = max(1, per_second)
    if count < 1:
        return []
    asked = time.monotonic()
    if not settings.REDIS_URL:
        waits = _local.grant(_key(sender_id), rate, WINDOW, max_wait, count)
        answered = asked
    else:
        found = _redis_script(settings.REDIS_URL)(
            keys=[_key(sender_id)],
            args=[rate, int(WINDOW * 1_000_000), int(max_wait * 1_000_000), count, HISTORY_TTL_MS],
        )
        answered = time.monotonic()
        waits = [int(wait) / 1_000_000 for wait in found]
    return [SendSlot(at=answered + wait, latest=asked + wait + LATE_TOLERANCE) for wait in waits]


def rate_reserve(*, sender_id: int, per_second: int, max_wait: float = 2.0) -> float | None:
    """Reserve one send slot for `sender_id`. Returns seconds to sleep before sending, or None when the
    next free slot is more than `max_wait` away (a refusal reserves nothing)."""
    slots = rate_grant(sender_id=sender_id, per_second=per_second, max_wait=max_wait)
    return max(0.0, slots[0].at - time.monotonic()) if slots else None


def slot_wait(slot: SendSlot | None, *, sender_id: int, per_second: int, max_wait: float = 2.0) -> bool:
    """Wait for `slot` (None: take one first) and return True at the moment the caller may send; a
    caller back too late for its slot takes a fresh one. False when no slot is to be had within
    `max_wait` seconds from now, so the message should go back to the queue."""
    deadline = time.monotonic() + max_wait
    for _ in range(MAX_REGRANTS + 1):
        if slot is None:
            left = deadline - time.monotonic()
            slots = rate_grant(sender_id=sender_id, per_second=per_second, max_wait=max(0.0, left))
            if not slots:
                return False
            slot = slots[0]
        wait = slot.at - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        if time.monotonic() <= slot.latest:
            return True
        slot = None  # too late for it: as if it had not been granted (its place in time stays empty)
    return False


def rate_acquire(*, sender_id: int, per_second: int, max_wait: float = 2.0) -> bool:
    """Wait until the caller may send one message, and return True at the moment it may; False when
    that is more than `max_wait` away, so the message should go back to the queue."""
    return slot_wait(None, sender_id=sender_id, per_second=per_second, max_wait=max_wait)
