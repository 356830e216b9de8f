"""One global send-rate limiter per sender (Meta's throughput limit is per business number).

Atomic in Redis when REDIS_URL is set (so it holds across every worker on every machine),
in-process otherwise (the embedded default, one process).

The sender's send slots are spaced SLOT_INTERVAL = (1 + SLOT_MARGIN)/rate seconds apart on one
timeline (Redis' clock). A caller is granted the next free slots, as many as it asks for in one
call (a batch asks for all of its messages at once: one round trip), each as a `SendSlot`: not
before its time, and not later than LATE_TOLERANCE after it. A caller that gets there in time sends
on its slot; one that is late (its thread starved of CPU or of the GIL, a batch that waited for a
free send thread) gives the slot up and is granted a fresh one at the back of the line.

Why that holds the limit: every send leaves within [slot, slot + LATE_TOLERANCE], and slots are
SLOT_INTERVAL apart, so any one-second window holds the sends of the slots within 1 + LATE_TOLERANCE
seconds: at most (1 + LATE_TOLERANCE) / SLOT_INTERVAL <= rate while LATE_TOLERANCE <= SLOT_MARGIN.
The rest of the margin absorbs the jitter between the check and Meta reading the request (building
it, the network). What no limiter on the sending side can absorb is a worker stalled between the
check and the socket for longer than that (a saturated CPU): keep the workers' CPUs some headroom.
A slot's times are taken conservatively: not before the moment the grant's answer arrived plus its
wait (never early, whatever the round trip), not after the moment it was asked plus its wait plus
the tolerance (a slow round trip counts as lateness). Celery's own `rate_limit` is per worker, which
is why it is not used.
"""

import threading
import time
from dataclasses import dataclass
from functools import cache

from django.conf import settings

#: Extra spacing, in seconds per second (see the module docstring).
SLOT_MARGIN = 0.03
WINDOW = 1.0 + SLOT_MARGIN
#: How late after its slot a send may still leave (see the module docstring); <= SLOT_MARGIN.
LATE_TOLERANCE = 0.01
MAX_REGRANTS = 50  # fresh slots one send may take after missing its own, before giving up (requeued)

# Redis' own clock is used so workers with drifting clocks still share one timeline. Microseconds;
# '%.0f' because Lua's tostring keeps only 14 significant digits (100 us at today's epoch).
_GRANT_LUA = """
local now_t = redis.call('TIME')
local now = tonumber(now_t[1]) * 1000000 + tonumber(now_t[2])
local interval = tonumber(ARGV[1])
local max_wait = tonumber(ARGV[2])
local count = tonumber(ARGV[3])
local next_free = tonumber(redis.call('GET', KEYS[1]) or '0')
if next_free < now then next_free = now end
local waits = {}
for i = 1, count do
    local wait = next_free - now
    if wait > max_wait then break end
    waits[i] = wait
    next_free = next_free + interval
end
if #waits > 0 then redis.call('SET', KEYS[1], string.format('%.0f', next_free), 'PX', 60000) end
return waits
"""


@dataclass(frozen=True)
class SendSlot:
    """A granted send slot, in this process's time.monotonic(): send at `at` or later, and not after
    `latest` (then the slot is lost, see slot_wait)."""

    at: float
    latest: float


class _LocalBuckets:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next_free: dict[str, float] = {}

    def grant(self, key: str, interval: float, max_wait: float, count: int) -> list[float]:
        with self._lock:
            now = time.monotonic()
            next_free = max(self._next_free.get(key, 0.0), now)
            waits = []
            for _ in range(count):
                wait = next_free - now
                if wait > max_wait:
                    break
                waits.append(wait)
                next_free += interval
            self._next_free[key] = next_free
            return waits


_local = _LocalBuckets()


@cache
def _redis_script(url: str):
    import redis

    return redis.Redis.from_url(url).register_script(_GRANT_LUA)


def slot_interval(per_second: int) -> float:
    """Seconds between two send slots of one sender."""
    return WINDOW / max(1, per_second)


def _key(sender_id: int) -> str:
    return f"{settings.CACHES['default'].get('KEY_PREFIX', '')}:send-slot:{sender_id}"


def rate_grant(*, sender_id: int, per_second: int, count: int = 1, max_wait: float = 2.0) -> list[SendSlot]:
    """Grant the next `count` free send slots of `sender_id` in one atomic step, or as many of them as
    are at most `max_wait` seconds away (slots refused are not taken); in the order they are due."""
    interval = slot_interval(per_second)
    if count < 1:
        return []
    asked = time.monotonic()
    if not settings.REDIS_URL:
        waits = _local.grant(_key(sender_id), interval, max_wait, count)
        answered = asked
    else:
        found = _redis_script(settings.REDIS_URL)(
            keys=[_key(sender_id)], args=[int(interval * 1_000_000), int(max_wait * 1_000_000), count]
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
