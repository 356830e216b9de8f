"""One global send-rate limiter per sender (Meta's throughput limit is per business number).

Atomic in Redis when REDIS_URL is set (so it holds across every worker on every machine),
in-process otherwise (the embedded default, one process).

The promise: at most `rate` sends of a sender in any window of WINDOW = 1 + SLOT_MARGIN seconds (so,
with the margin, never more than `rate` in any one second). A sliding window, not evenly spaced
slots: below the limit a send never waits (a batch of 32 goes at once, as a bare client would
send it); at the limit, the next send waits for the window to have room.

A caller is granted its send slots, as many as it asks for in one call (a batch asks for all of its
messages at once: one round trip), each as a `SendSlot`: not before its time `at`, and not after
`latest`. A caller that gets there in time sends on its slot; one that is late (its thread starved
of CPU or of the GIL) gives the slot up (it still counts, as if used) and is granted a fresh one.
How long a slot stays usable is its hold: LATE_TOLERANCE, or longer when the caller asks for it (the
messages of a batch that wait for a free send thread) and the sender's window is less than half
full, so that they need no round trip of their own when their thread comes.

Each sender keeps the `latest` of its last `rate` grants (a Redis sorted set, or a sorted list). A
new slot's time is at least WINDOW after the `rate`-th largest of them. Why that holds the limit: of
any rate + 1 sends, take the one granted last; when it was granted, at most rate - 1 of the others
had a `latest` above that `rate`-th largest one, so one of them left no later than WINDOW before this
one's time. Every send leaving by its own `latest`, no one-second window holds rate + 1 of them. The
rest of the margin absorbs the jitter between the check and Meta reading the request (building it,
the network). What no limiter on the sending side can absorb is a worker stalled between the check
and the socket for longer than that (a saturated CPU): keep the workers' CPUs some headroom. A
slot's times are taken conservatively: `at` not before the moment the grant's answer arrived plus
its wait (never early, whatever the round trip), `latest` not after the moment it was asked plus its
wait plus its hold (a slow round trip counts as lateness). Celery's own `rate_limit` is per worker,
which is why it is not used.
"""

import bisect
import threading
import time
from dataclasses import dataclass
from functools import cache

from django.conf import settings

#: Extra length of the window, in seconds per second (see the module docstring).
SLOT_MARGIN = 0.03
WINDOW = 1.0 + SLOT_MARGIN
#: How late after its time a slot may still be used, unless it was granted a longer hold; leaves
#: SLOT_MARGIN - LATE_TOLERANCE for the way from the check to Meta.
LATE_TOLERANCE = 0.01
#: Longer holds are granted only while fewer than this share of the window's sends are taken: a
#: long hold counts as a send at the end of it, which would waste capacity at the limit.
LONG_HOLD_ROOM = 0.8
MAX_REGRANTS = 50  # fresh slots one send may take after missing its own, before giving up (requeued)
#: A sender's grant times are forgotten this long after its last grant (they no longer bind by then).
HISTORY_TTL_MS = 60_000

# Redis' own clock is used so workers with drifting clocks still share one timeline. Microseconds;
# '%.0f' because Lua's tostring keeps only 14 significant digits (100 us at today's epoch).
# KEYS[1]: the sorted set of the last `rate` grants' latest times; KEYS[2]: a counter naming them
# (members must be unique, or two grants with the same time would count as one).
# Returns each granted slot's wait; the first `count` are held LATE_TOLERANCE, the rest long.
_GRANT_LUA = """
local now_t = redis.call('TIME')
local now = tonumber(now_t[1]) * 1000000 + tonumber(now_t[2])
local rate = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local max_wait = tonumber(ARGV[3])
local count = tonumber(ARGV[4])
local held = tonumber(ARGV[5])
local short_hold = tonumber(ARGV[6])
local long_hold = tonumber(ARGV[7])
local long_hold_below = tonumber(ARGV[8])
local taken = redis.call('ZCOUNT', KEYS[1], now - window, '+inf')
local name = redis.call('INCRBY', KEYS[2], count + held) - count - held
local granted = {}
for j = 1, count + held do
    local hold = short_hold
    if j > count then
        if taken >= long_hold_below then break end
        hold = long_hold
    end
    local at = now
    local bound = redis.call('ZREVRANGE', KEYS[1], rate - 1, rate - 1, 'WITHSCORES')
    if bound[2] then at = math.max(at, tonumber(bound[2]) + window) end
    if at - now > max_wait then break end
    redis.call('ZADD', KEYS[1], string.format('%.0f', at + hold), name + j)
    taken = taken + 1
    granted[#granted + 1] = at - now
end
if #granted > 0 then
    redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(rate + 1))
    redis.call('PEXPIRE', KEYS[1], ARGV[9])
    redis.call('PEXPIRE', KEYS[2], ARGV[9])
end
return granted
"""


@dataclass(frozen=True)
class SendSlot:
    """A granted send slot, in this process's time.monotonic(): send at `at` or later, and not after
    `latest` (then the slot is lost, see slot_wait)."""

    at: float
    latest: float


class _LocalBuckets:
    """The same window in this process (no REDIS_URL): each sender's last `rate` latest times, sorted."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest: dict[str, list[float]] = {}

    def grant(
        self, key: str, *, rate: int, max_wait: float, count: int, held: int, hold: float
    ) -> list[float]:
        with self._lock:
            now = time.monotonic()
            latest = self._latest.setdefault(key, [])
            taken = len(latest) - bisect.bisect_right(latest, now - WINDOW)
            waits = []
            for j in range(count + held):
                given = LATE_TOLERANCE
                if j >= count:
                    if taken >= int(rate * LONG_HOLD_ROOM):
                        break
                    given = hold
                at = max(now, latest[-rate] + WINDOW) if len(latest) >= rate else now
                if at - now > max_wait:
                    break
                bisect.insort(latest, at + given)
                taken += 1
                waits.append(at - now)
            del latest[:-rate]
            return waits

    def forget(self) -> None:
        with self._lock:
            self._latest.clear()


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


def rate_grant(
    *,
    sender_id: int,
    per_second: int,
    count: int = 1,
    max_wait: float = 2.0,
    held: int = 0,
    hold: float = LATE_TOLERANCE,
) -> list[SendSlot]:
    """Grant the next `count` send slots of `sender_id` in one atomic step, or as many of them as are
    at most `max_wait` seconds away (slots refused are not taken); in the order they are due. Below
    the sender's limit they are all due at once. Then up to `held` more, usable for `hold` seconds
    after their time instead of LATE_TOLERANCE (for sends that start a little later), granted only
    while the sender's window is less than LONG_HOLD_ROOM full (those the caller did not get, it asks
    for when it sends)."""
    rate = max(1, per_second)
    if count + held < 1:
        return []
    asked = time.monotonic()
    if not settings.REDIS_URL:
        waits = _local.grant(_key(sender_id), rate=rate, max_wait=max_wait, count=count, held=held, hold=hold)
        answered = asked
    else:
        found = _redis_script(settings.REDIS_URL)(
            keys=[_key(sender_id), f"{_key(sender_id)}:names"],
            args=[
                rate,
                _microseconds(WINDOW),
                _microseconds(max_wait),
                count,
                held,
                _microseconds(LATE_TOLERANCE),
                _microseconds(hold),
                int(rate * LONG_HOLD_ROOM),
                HISTORY_TTL_MS,
            ],
        )
        answered = time.monotonic()
        waits = [int(wait) / 1_000_000 for wait in found]
    return [
        SendSlot(at=answered + wait, latest=asked + wait + (LATE_TOLERANCE if i < count else hold))
        for i, wait in enumerate(waits)
    ]


def _microseconds(seconds: float) -> int:
    return int(seconds * 1_000_000)


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
