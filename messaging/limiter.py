"""One global send-rate limiter per sender (Meta's throughput limit is per business number).

A reservation token bucket with room for one message: each send reserves the next free slot, spaced
1/rate seconds apart, and the caller sleeps until its slot. So no one-second window ever holds more
than `rate` sends, across every worker on every machine, when Redis holds the bucket (REDIS_URL);
without Redis an in-process bucket does the same for one process (the embedded default).
Celery's own `rate_limit` is per worker, which is why it is not used.
"""

import threading
import time
from functools import cache

from django.conf import settings

# Atomic in Redis: read the next free slot, reserve it, return how long to wait (microseconds).
# Redis' own clock is used so workers with drifting clocks still share one timeline.
_RESERVE_LUA = """
local now_t = redis.call('TIME')
local now = tonumber(now_t[1]) * 1000000 + tonumber(now_t[2])
local interval = tonumber(ARGV[1])
local max_wait = tonumber(ARGV[2])
local next_free = tonumber(redis.call('GET', KEYS[1]) or '0')
if next_free < now then next_free = now end
local wait = next_free - now
if wait > max_wait then return -1 end
redis.call('SET', KEYS[1], tostring(next_free + interval), 'PX', 60000)
return wait
"""


class _LocalBuckets:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next_free: dict[str, float] = {}

    def reserve(self, key: str, interval: float, max_wait: float) -> float | None:
        with self._lock:
            now = time.monotonic()
            next_free = max(self._next_free.get(key, 0.0), now)
            wait = next_free - now
            if wait > max_wait:
                return None
            self._next_free[key] = next_free + interval
            return wait


_local = _LocalBuckets()


@cache
def _redis_script(url: str):
    import redis

    client = redis.Redis.from_url(url)
    return client.register_script(_RESERVE_LUA)


def rate_reserve(*, sender_id: int, per_second: int, max_wait: float = 2.0) -> float | None:
    """Reserve a send slot for `sender_id`. Returns seconds to sleep before sending, or None when the
    next free slot is more than `max_wait` away (the caller should re-queue instead of blocking)."""
    interval = 1.0 / max(1, per_second)
    key = f"{settings.CACHES['default'].get('KEY_PREFIX', '')}:send-slot:{sender_id}"
    if settings.REDIS_URL:
        waited = _redis_script(settings.REDIS_URL)(
            keys=[key], args=[int(interval * 1_000_000), int(max_wait * 1_000_000)]
        )
        return None if int(waited) < 0 else int(waited) / 1_000_000
    return _local.reserve(key, interval, max_wait)
