"""The cache-based rate limiter and the client address it is keyed on."""

import uuid

import pytest
import time_machine
from django.core.exceptions import ImproperlyConfigured
from django.test import RequestFactory, override_settings

from config.ratelimit import client_ip, ip_bucket, parse_rate, rate_limit_hit

# A window boundary for a 60-second period (an exact multiple of 60 seconds since the epoch).
WINDOW_START = 1_750_000_020


def unique_key() -> str:
    # Keys never repeat, so runs against a shared Redis never see each other's counters.
    return f"test:{uuid.uuid4().hex}"


def hit(key: str, limit: int = 3, period: int = 60):
    return rate_limit_hit(key=key, limit=limit, period_seconds=period)


def test_hits_up_to_the_limit_are_allowed_then_refused_with_the_time_left():
    key = unique_key()
    with time_machine.travel(WINDOW_START + 15, tick=False):
        assert [hit(key).allowed for _ in range(3)] == [True, True, True]
        refused = hit(key)
    assert not refused.allowed
    assert refused.retry_after == 45


def test_the_count_starts_again_in_the_next_window():
    key = unique_key()
    with time_machine.travel(WINDOW_START + 50, tick=False) as clock:
        for _ in range(3):
            hit(key)
        assert not hit(key).allowed
        clock.move_to(WINDOW_START + 60)
        assert hit(key).allowed
        assert hit(key).retry_after == 0


def test_keys_are_counted_separately():
    first, second = unique_key(), unique_key()
    with time_machine.travel(WINDOW_START, tick=False):
        for _ in range(3):
            hit(first)
        assert not hit(first).allowed
        assert hit(second).allowed


def test_keys_with_odd_characters_are_still_counted():
    key = f"test: {uuid.uuid4().hex} with spaces and ünïcode " + "x" * 300
    with time_machine.travel(WINDOW_START, tick=False):
        assert hit(key, limit=1).allowed
        assert not hit(key, limit=1).allowed


@pytest.mark.parametrize(
    ("rate", "expected"),
    [
        ("5/10m", (5, 600)),
        ("100/h", (100, 3600)),
        ("10/60", (10, 60)),
        ("3/d", (3, 86400)),
        ("1 / 30s", (1, 30)),
    ],
)
def test_rates_read_as_hits_per_period(rate, expected):
    assert parse_rate(rate) == expected


@pytest.mark.parametrize("rate", ["", "five/m", "5", "0/m", "5/0s", "5/10w"])
def test_malformed_rates_are_a_configuration_error(rate):
    with pytest.raises(ImproperlyConfigured):
        parse_rate(rate)


def request_from(remote: str, forwarded: str | None = None):
    extra = {"REMOTE_ADDR": remote}
    if forwarded is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded
    return RequestFactory().get("/", **extra)


@override_settings(TRUSTED_PROXY_COUNT=0)
def test_x_forwarded_for_is_ignored_unless_proxies_are_trusted():
    assert client_ip(request_from("203.0.113.9", "198.51.100.1")) == "203.0.113.9"


@override_settings(TRUSTED_PROXY_COUNT=1)
def test_with_one_trusted_proxy_the_address_it_saw_is_used_not_what_the_client_claims():
    # The client sent "198.51.100.66" itself; the proxy appended the address it really came from.
    assert client_ip(request_from("10.0.0.2", "198.51.100.66, 203.0.113.9")) == "203.0.113.9"


@override_settings(TRUSTED_PROXY_COUNT=2)
def test_with_two_trusted_proxies_the_outer_ones_entry_is_used():
    assert client_ip(request_from("10.0.0.3", "198.51.100.66, 203.0.113.9, 10.0.0.2")) == "203.0.113.9"
    assert client_ip(request_from("10.0.0.3", "[2001:db8::7]:443, 10.0.0.2")) == "2001:db8::7"


@override_settings(TRUSTED_PROXY_COUNT=2)
def test_a_missing_or_garbled_header_falls_back_to_the_socket_address():
    assert client_ip(request_from("10.0.0.3")) == "10.0.0.3"
    assert client_ip(request_from("10.0.0.3", "203.0.113.9")) == "10.0.0.3"
    assert client_ip(request_from("10.0.0.3", "not-an-address, 10.0.0.2")) == "10.0.0.3"


def test_ipv6_addresses_share_a_limit_per_64_network_ipv4_per_address():
    assert ip_bucket("2001:db8:1:2::1") == ip_bucket("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert ip_bucket("2001:db8:1:3::1") != ip_bucket("2001:db8:1:2::1")
    assert ip_bucket("203.0.113.9") == "203.0.113.9"
    assert ip_bucket("::ffff:203.0.113.9") == "203.0.113.9"
