"""Security: Host header and WebSocket Origin validation, and signed values."""

from __future__ import annotations

import base64
import time

import pytest
from channelapp.security import (
    CLOCK_SKEW,
    BadSignature,
    host_allowed,
    origin_allowed,
    sign,
    unsign,
)

# --- host_allowed ----------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["example.com", "evil.org", "", None, "a:b:c", "[::1]:80"])
def test_star_or_empty_allowed_hosts_allow_every_host(host: str | None) -> None:
    assert host_allowed(host, ["*"]) is True
    assert host_allowed(host, []) is True
    assert host_allowed(host, ["example.com", "*"]) is True


@pytest.mark.parametrize("host", [None, ""])
def test_missing_host_is_refused_when_hosts_are_listed(host: str | None) -> None:
    assert host_allowed(host, ["example.com"]) is False


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("example.com", True),
        ("example.com:8000", True),  # any port of a name without a port
        ("EXAMPLE.com", True),
        ("Example.COM:443", True),
        ("  example.com  ", True),
        ("www.example.com", False),
        ("example.com.evil.org", False),
        ("evil-example.com", False),
        ("example.co", False),
        ("xample.com", False),
        ("example.com.", False),
    ],
)
def test_exact_host(host: str, allowed: bool) -> None:
    assert host_allowed(host, ["example.com"]) is allowed


def test_pattern_case_is_ignored() -> None:
    assert host_allowed("example.com", ["EXAMPLE.COM"]) is True
    assert host_allowed("www.example.com", [".Example.Com"]) is True


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("example.com:8000", True),
        ("EXAMPLE.COM:8000", True),
        ("example.com", False),
        ("example.com:8001", False),
        ("example.com:80", False),
    ],
)
def test_host_pattern_with_port_needs_that_port(host: str, allowed: bool) -> None:
    assert host_allowed(host, ["example.com:8000"]) is allowed


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("example.com", True),
        ("www.example.com", True),
        ("a.b.example.com", True),
        ("WWW.Example.Com:8443", True),
        ("evil-example.com", False),
        ("myexample.com", False),
        ("example.com.evil.org", False),
        ("www.example.com.evil.org:80", False),
        ("example.org", False),
    ],
)
def test_subdomain_pattern(host: str, allowed: bool) -> None:
    assert host_allowed(host, [".example.com"]) is allowed


def test_any_listed_pattern_may_match() -> None:
    allowed = ["api.internal", ".example.com", "localhost:8000"]
    assert host_allowed("api.internal:9000", allowed) is True
    assert host_allowed("shop.example.com", allowed) is True
    assert host_allowed("localhost:8000", allowed) is True
    assert host_allowed("localhost:8001", allowed) is False
    assert host_allowed("internal", allowed) is False


@pytest.mark.parametrize(
    ("host", "pattern", "allowed"),
    [
        ("[::1]:8000", "[::1]", True),
        ("[::1]", "[::1]", True),
        ("[::1]:8000", "[::1]:8000", True),
        ("[::1]:8000", "[::2]", False),
        ("[2001:DB8::1]:443", "[2001:db8::1]", True),
        ("127.0.0.1:8000", "127.0.0.1", True),
        ("127.0.0.1:8000", "127.0.0.2", False),
    ],
)
def test_ip_hosts(host: str, pattern: str, allowed: bool) -> None:
    assert host_allowed(host, [pattern]) is allowed


@pytest.mark.parametrize(
    "host",
    ["evil.com/.example.com", "evil.com#.example.com", "evil.com?.example.com"],
)
def test_malformed_host_ending_in_allowed_domain_is_refused(host: str) -> None:
    assert host_allowed(host, [".example.com"]) is False


# --- origin_allowed --------------------------------------------------------------------------


@pytest.mark.parametrize("allowed", [[], ["https://example.com"], [".example.com"], ["*"]])
def test_missing_origin_is_allowed(allowed: list[str]) -> None:
    assert origin_allowed(None, allowed) is True
    assert origin_allowed(None, allowed, ["example.com"]) is True


@pytest.mark.parametrize(
    "origin", ["https://evil.org", "null", "", "http://x:1", "garbage", "http://[::1"]
)
def test_star_allows_any_origin(origin: str) -> None:
    assert origin_allowed(origin, ["*"]) is True
    assert origin_allowed(origin, ["https://example.com", "*"]) is True


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("http://127.0.0.1:8000", True),  # `channelapp dev`'s own page
        ("http://localhost:8000", True),
        ("http://LOCALHOST:3000", True),
        ("https://localhost", True),
        ("http://app.localhost:8000", True),
        ("http://[::1]:8000", True),
        ("ws://127.0.0.1:8000", False),  # not a page's origin
        ("file://localhost", False),
        ("http://evil.example", False),  # DNS rebinding: whatever its Host header says
        ("http://localhost.evil.example", False),
        ("http://127.0.0.2:8000", False),
        ("http://[::2]:8000", False),
    ],
)
def test_without_allowed_hosts_pages_of_this_machine_only(origin: str, allowed: bool) -> None:
    assert origin_allowed(origin, []) is allowed


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://mysite.example", True),
        ("http://mysite.example:8000", True),
        ("https://chat.other.example", True),
        ("https://other.example", True),
        ("ws://mysite.example", False),
        ("https://evil.example", False),
        ("http://127.0.0.1:8000", False),  # the loopback default gives way to the list
        ("https://mysite.example.evil.example", False),
    ],
)
def test_allowed_hosts_are_the_origins_of_pages_that_may_open_sockets(
    origin: str, allowed: bool
) -> None:
    assert origin_allowed(origin, [], ["mysite.example", ".other.example"]) is allowed


def test_allowed_hosts_star_allows_any_page() -> None:
    assert origin_allowed("https://anything.example", [], ["*"]) is True
    assert origin_allowed("null", [], ["*"]) is False  # not a page's origin


@pytest.mark.parametrize(
    "origin",
    [
        "null",
        "",
        "example.com",
        "//example.com",
        "https://",
        "file://",
        "https:///path",
        "mailto:a@b",
    ],
)
@pytest.mark.parametrize(
    "allowed", [[], ["example.com"], [".example.com"], ["https://example.com"]]
)
def test_origin_without_scheme_or_host_is_refused(origin: str, allowed: list[str]) -> None:
    assert origin_allowed(origin, allowed, ["example.com"]) is False


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://example.com", True),
        ("https://example.com/", True),
        ("HTTPS://Example.COM", True),
        ("https://example.com:443", True),  # the default port, written out
        ("http://example.com", False),  # another scheme
        ("wss://example.com", False),
        ("http://example.com:443", False),
        ("https://example.com:8443", False),
        ("https://www.example.com", False),
        ("https://example.com.evil.org", False),
    ],
)
def test_full_origin_pattern(origin: str, allowed: bool) -> None:
    assert origin_allowed(origin, ["https://example.com"], ["app.internal"]) is allowed


def test_full_origin_pattern_with_port_and_trailing_slash() -> None:
    allowed = ["http://LOCALHOST:3000/"]
    assert origin_allowed("http://localhost:3000", allowed, ["app.internal"]) is True
    assert origin_allowed("http://localhost:3001", allowed, ["app.internal"]) is False
    assert origin_allowed("http://localhost", allowed, ["app.internal"]) is False


def test_full_origin_pattern_for_subdomains() -> None:
    allowed = ["https://.example.com"]
    assert origin_allowed("https://chat.example.com", allowed, ["app.internal"]) is True
    assert origin_allowed("https://example.com", allowed, ["app.internal"]) is True
    assert origin_allowed("http://chat.example.com", allowed, ["app.internal"]) is False


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://example.com", True),
        ("http://example.com:8000", True),
        ("https://EXAMPLE.com", True),
        ("wss://example.com", False),  # pages are http or https
        ("https://www.example.com", False),
        ("https://example.com.evil.org", False),
        ("https://evil.org", False),
    ],
)
def test_host_origin_pattern_matches_web_schemes_and_any_port(origin: str, allowed: bool) -> None:
    assert origin_allowed(origin, ["example.com"], ["app.internal"]) is allowed


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("http://example.com:8000", True),
        ("https://example.com:8000", True),
        ("https://example.com", False),
        ("https://example.com:8001", False),
    ],
)
def test_host_and_port_origin_pattern(origin: str, allowed: bool) -> None:
    assert origin_allowed(origin, ["example.com:8000"], ["app.internal"]) is allowed


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://example.com", True),
        ("https://chat.example.com", True),
        ("http://a.b.example.com:8080", True),
        ("https://CHAT.Example.Com", True),
        ("https://evil-example.com", False),
        ("https://myexample.com", False),
        ("https://example.com.evil.org", False),
        ("https://evil.org/.example.com", False),
        ("https://evil.org?.example.com", False),
        ("https://evil.org#.example.com", False),
    ],
)
def test_subdomain_origin_pattern(origin: str, allowed: bool) -> None:
    assert origin_allowed(origin, [".example.com"], ["app.internal"]) is allowed


def test_allowed_origins_add_to_the_allowed_hosts() -> None:
    # Local development keeps working when a project lists its production origin.
    assert origin_allowed("http://127.0.0.1:8000", ["https://mysite.example"]) is True
    assert origin_allowed("https://mysite.example", ["https://mysite.example"]) is True
    assert origin_allowed("https://evil.example", ["https://mysite.example"]) is False
    hosts = ["app.test"]
    assert origin_allowed("https://app.test", ["https://other.test"], hosts) is True
    assert origin_allowed("https://other.test", ["https://other.test"], hosts) is True
    assert origin_allowed("https://third.test", ["https://other.test"], hosts) is False


def test_listed_patterns_of_several_kinds() -> None:
    allowed = ["https://a.test", ".b.test", "c.test:81"]
    hosts = ["x"]
    assert origin_allowed("https://a.test", allowed, hosts) is True
    assert origin_allowed("https://x.b.test", allowed, hosts) is True
    assert origin_allowed("http://c.test:81", allowed, hosts) is True
    assert origin_allowed("http://c.test:82", allowed, hosts) is False
    assert origin_allowed("https://d.test", allowed, hosts) is False


@pytest.mark.parametrize("allowed", [[], ["https://example.com"]])
def test_malformed_ipv6_origin_is_refused(allowed: list[str]) -> None:
    assert origin_allowed("http://[::1", allowed) is False


# --- sign / unsign ---------------------------------------------------------------------------

KEY = "k" * 32


def test_sign_format_is_base64_value_timestamp_mac() -> None:
    signed = sign(b"hello", KEY, now=1_700_000_000.9)
    data, stamp, mac = signed.split(".")
    assert data == "aGVsbG8"  # base64url("hello") without padding
    assert stamp == "1700000000"  # whole seconds, truncated
    assert len(mac) == 43  # 32-byte SHA-256 HMAC, base64url without padding
    assert "=" not in signed


def test_sign_is_deterministic_for_value_key_and_time() -> None:
    assert sign(b"v", KEY, now=1000) == sign(b"v", KEY, now=1000)
    assert sign(b"v", KEY, now=1000) != sign(b"v", KEY, now=1001)
    assert sign(b"v", KEY, now=1000) != sign(b"w", KEY, now=1000)
    assert sign(b"v", KEY, now=1000) != sign(b"v", KEY + "x", now=1000)


def test_sign_uses_the_clock_when_now_is_not_given() -> None:
    before = int(time.time())
    stamp = int(sign(b"v", KEY).split(".")[1])
    assert before <= stamp <= int(time.time())


@pytest.mark.parametrize(
    "value", [b"", b"x", b"\x00\xff\xfe binary", "ünïcode ✓".encode(), b"." * 50, bytes(range(256))]
)
def test_round_trip(value: bytes) -> None:
    assert unsign(sign(value, KEY), KEY) == value


def test_base64url_characters_survive() -> None:
    # b"\xfb\xff\xbf" encodes to "-_-_" in base64url: both URL-safe substitutions are used.
    signed = sign(b"\xfb\xff\xbf\xfb\xff\xbf", KEY, now=5)
    assert signed.startswith("-_-_-_-_.")
    assert unsign(signed, KEY) == b"\xfb\xff\xbf\xfb\xff\xbf"


def test_wrong_key_is_refused() -> None:
    with pytest.raises(BadSignature, match="does not match"):
        unsign(sign(b"v", KEY), "another-key")


def test_tampered_value_is_refused() -> None:
    signed = sign(b'{"user":1}', KEY, now=1000)
    _data, stamp, mac = signed.split(".")
    forged = base64.urlsafe_b64encode(b'{"user":2}').decode().rstrip("=")
    with pytest.raises(BadSignature, match="does not match"):
        unsign(f"{forged}.{stamp}.{mac}", KEY)


def test_tampered_timestamp_is_refused() -> None:
    data, _stamp, mac = sign(b"v", KEY, now=1000).split(".")
    with pytest.raises(BadSignature, match="does not match"):
        unsign(f"{data}.{int(time.time())}.{mac}", KEY)


def test_tampered_mac_is_refused() -> None:
    data, stamp, mac = sign(b"v", KEY, now=1000).split(".")
    flipped = ("A" if mac[0] != "A" else "B") + mac[1:]
    with pytest.raises(BadSignature, match="does not match"):
        unsign(f"{data}.{stamp}.{flipped}", KEY)


def test_truncated_mac_is_refused() -> None:
    signed = sign(b"v", KEY, now=1000)
    with pytest.raises(BadSignature):
        unsign(signed[:-4], KEY)


@pytest.mark.parametrize("signed", ["", "novalue", "only.one", "a.b.%%%%", "a.b.abcde", "a.b.é"])
def test_malformed_is_refused(signed: str) -> None:
    with pytest.raises(BadSignature):
        unsign(signed, KEY)


def test_extra_dots_go_into_the_value_part_and_are_refused() -> None:
    signed = sign(b"v", KEY, now=1000)
    with pytest.raises(BadSignature):
        unsign("x." + signed, KEY)


def test_bad_signature_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        unsign("junk", KEY)


def test_max_age() -> None:
    signed = sign(b"v", KEY, now=1000)
    assert unsign(signed, KEY, max_age=60, now=1000) == b"v"
    assert unsign(signed, KEY, max_age=60, now=1060) == b"v"  # exactly max_age old
    with pytest.raises(BadSignature, match="expired"):
        unsign(signed, KEY, max_age=60, now=1060.5)
    with pytest.raises(BadSignature, match="expired"):
        unsign(signed, KEY, max_age=60, now=5000)


def test_no_max_age_never_expires() -> None:
    assert unsign(sign(b"v", KEY, now=0), KEY, now=10**10) == b"v"


def test_max_age_uses_the_clock_when_now_is_not_given() -> None:
    old = sign(b"v", KEY, now=time.time() - 120)
    assert unsign(old, KEY, max_age=300) == b"v"
    with pytest.raises(BadSignature, match="expired"):
        unsign(old, KEY, max_age=60)


def test_signature_is_checked_before_age() -> None:
    signed = sign(b"v", KEY, now=1000)
    with pytest.raises(BadSignature, match="does not match"):
        unsign(signed, "other", max_age=1, now=10**9)


def test_a_value_stamped_in_the_future_is_refused() -> None:
    signed = sign(b"v", KEY, now=1000)
    assert unsign(signed, KEY, max_age=60, now=1000 - CLOCK_SKEW) == b"v"  # clocks differ
    with pytest.raises(BadSignature, match="future"):
        unsign(signed, KEY, max_age=60, now=1000 - CLOCK_SKEW - 1)
    ten_years_ahead = sign(b"v", KEY, now=time.time() + 10 * 365 * 86400)
    with pytest.raises(BadSignature, match="future"):
        unsign(ten_years_ahead, KEY)
    with pytest.raises(BadSignature, match="future"):
        unsign(ten_years_ahead, KEY, max_age=86400)
