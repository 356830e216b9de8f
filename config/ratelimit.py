"""Rate limiting on Django's cache, and the client IP address that limits are keyed on.

Counters live in the default cache: Redis when `REDIS_URL` is set, so every web process shares one count
per key; an in-process cache otherwise (one count per process, which is what development needs).

The limiter is a fixed window: `limit` hits per key in each `period_seconds`-long window, windows aligned
to the epoch. `cache.add` creates a window's counter and `cache.incr` bumps it; both are atomic in Redis
and in the local-memory cache, so concurrent requests never lose a hit. A burst straddling a window edge
can reach twice the limit, which is acceptable for abuse control (not for billing).
"""

import hashlib
import ipaddress
import math
import re
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest

KEY_PREFIX = "ratelimit"
# Counters outlive their window a little, so one read at the window's last instant never finds it gone.
_EXPIRY_GRACE_SECONDS = 60
_SAFE_KEY = re.compile(r"^[A-Za-z0-9_.:/@-]{1,160}$")
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([smhd]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class RateLimitResult:
    allowed: bool
    retry_after: int  # seconds until the current window ends when refused; 0 when allowed


def rate_limit_hit(*, key: str, limit: int, period_seconds: int) -> RateLimitResult:
    """Count one hit on `key` and say whether it is within `limit` hits per `period_seconds`."""
    if limit < 1 or period_seconds < 1:
        raise ValueError("A rate limit needs limit >= 1 and period_seconds >= 1.")
    now = time.time()
    window = int(now // period_seconds)
    if not _SAFE_KEY.match(key):
        key = "sha256-" + hashlib.sha256(key.encode()).hexdigest()
    cache_key = f"{KEY_PREFIX}:{key}:{period_seconds}:{window}"
    timeout = period_seconds + _EXPIRY_GRACE_SECONDS
    count = 0
    for _ in range(3):
        if cache.add(cache_key, 1, timeout=timeout):
            count = 1
            break
        try:
            count = cache.incr(cache_key)
            break
        except ValueError:
            # Evicted between add and incr (a full local-memory cache culls entries): start again.
            continue
    if count <= limit:
        return RateLimitResult(allowed=True, retry_after=0)
    return RateLimitResult(allowed=False, retry_after=max(1, math.ceil((window + 1) * period_seconds - now)))


def parse_rate(rate: str) -> tuple[int, int]:
    """ "5/10m" -> (5, 600): hits per period; the period is seconds, or a number with s, m, h or d."""
    match = _RATE.match(rate or "")
    if match is None:
        raise ImproperlyConfigured(
            f"Invalid rate {rate!r}: write hits/period, e.g. '5/10m', '100/h' or '10/60' (seconds)."
        )
    hits, amount, unit = match.groups()
    period = int(amount or 1) * _UNIT_SECONDS[unit]
    if int(hits) < 1 or period < 1:
        raise ImproperlyConfigured(f"Invalid rate {rate!r}: hits and period must both be at least 1.")
    return int(hits), period


def _parse_ip(value: str) -> str | None:
    """`value` as a normalized IP address, accepting the "[v6]:port" and "v4:port" forms some proxies
    write; None when it is not an address."""
    value = value.strip()
    if value.startswith("[") and "]" in value:
        value = value[1 : value.index("]")]
    elif value.count(":") == 1:
        value = value.split(":", 1)[0]
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def client_ip(request: HttpRequest) -> str:
    """The address of whoever sent `request`.

    `REMOTE_ADDR` unless `settings.TRUSTED_PROXY_COUNT` says that many reverse proxies (each appending
    to `X-Forwarded-For`) stand in front of the app: then the entry the outermost trusted proxy added.
    Entries further left are whatever the client chose to send and are never believed.
    """
    remote = request.META.get("REMOTE_ADDR", "")
    trusted = settings.TRUSTED_PROXY_COUNT
    if trusted > 0:
        forwarded = [part for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
        if len(forwarded) >= trusted:
            address = _parse_ip(forwarded[-trusted])
            if address is not None:
                return address
    return _parse_ip(remote) or remote


def ip_bucket(ip: str) -> str:
    """The rate-limit key for an address: itself for IPv4, its /64 network for IPv6 (one household or
    phone usually gets a whole /64, so per-address limits would be trivial to dodge)."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip or "unknown"
    if address.version == 6:
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)
