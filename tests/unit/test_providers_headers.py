"""Reading response headers: Retry-After, x-should-retry and the rate-limit headers, from tables."""

from __future__ import annotations

import email.utils

import pytest

from batchrunner.models import RateLimitInfo
from batchrunner.providers.headers import (
    anthropic_rate_limits,
    openai_rate_limits,
    parse_duration,
    parse_retry_after,
    parse_should_retry,
)

NOW = 1_700_000_000.0  # a fixed "wall clock" for HTTP dates


def _http_date(epoch: float) -> str:
    return email.utils.formatdate(epoch, usegmt=True)


# (headers, expected seconds or None)
RETRY_AFTER: list[tuple[dict[str, str], float | None]] = [
    # no header at all
    ({}, None),
    # milliseconds (OpenAI's non-standard header) win over seconds
    ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
    # fractional milliseconds
    ({"retry-after-ms": "12.5"}, 0.0125),
    # garbage milliseconds fall through to retry-after
    ({"retry-after-ms": "soon", "retry-after": "3"}, 3.0),
    # negative / NaN / inf milliseconds fall through too
    ({"retry-after-ms": "-100", "retry-after": "4"}, 4.0),
    ({"retry-after-ms": "nan", "retry-after": "4"}, 4.0),
    ({"retry-after-ms": "inf"}, None),
    # integer and float seconds, with whitespace
    ({"retry-after": "20"}, 20.0),
    ({"retry-after": " 0.25 "}, 0.25),
    # zero is a valid "retry now"
    ({"retry-after": "0"}, 0.0),
    # header names are case-insensitive even in a plain dict
    ({"Retry-After": "7"}, 7.0),
    ({"RETRY-AFTER-MS": "70"}, 0.07),
    # an HTTP date 30 s after now
    ({"retry-after": _http_date(NOW + 30)}, 30.0),
    # an HTTP date in the past is useless
    ({"retry-after": _http_date(NOW - 30)}, None),
    # negative, NaN, infinite and overflowing seconds are garbage
    ({"retry-after": "-1"}, None),
    ({"retry-after": "NaN"}, None),
    ({"retry-after": "Infinity"}, None),
    ({"retry-after": "1e400"}, None),
    # neither a number nor a date
    ({"retry-after": "tomorrow-ish"}, None),
    ({"retry-after": ""}, None),
]


@pytest.mark.parametrize(("headers", "expected"), RETRY_AFTER)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(headers, now=NOW) == expected


# (headers, expected verdict)
SHOULD_RETRY: list[tuple[dict[str, str], bool | None]] = [
    # absent: decide by status code
    ({}, None),
    # the two values the SDKs obey
    ({"x-should-retry": "true"}, True),
    ({"x-should-retry": "false"}, False),
    # case and whitespace are forgiven; the name is case-insensitive
    ({"X-Should-Retry": " TRUE "}, True),
    # anything else is no verdict
    ({"x-should-retry": "maybe"}, None),
    ({"x-should-retry": "1"}, None),
]


@pytest.mark.parametrize(("headers", "expected"), SHOULD_RETRY)
def test_parse_should_retry(headers: dict[str, str], expected: bool | None) -> None:
    assert parse_should_retry(headers) is expected


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1s", 1.0), ("6m0s", 360.0), ("20ms", 0.02), ("1h2m3.5s", 3723.5), ("2", 2.0), ("0.5", 0.5),
     ("", None), ("soon", None), ("5x", None), ("-1", None), ("nan", None), (None, None)],
)  # fmt: skip
def test_parse_duration(text: str | None, seconds: float | None) -> None:
    assert parse_duration(text) == (pytest.approx(seconds) if seconds is not None else None)


def test_openai_rate_limits() -> None:
    headers = {
        "X-RateLimit-Remaining-Requests": "59",
        "x-ratelimit-remaining-tokens": "149000",
        "x-ratelimit-reset-requests": "1s",
        "x-ratelimit-reset-tokens": "6m0s",
    }
    assert openai_rate_limits(headers) == RateLimitInfo(
        remaining_requests=59, remaining_tokens=149000, reset_requests_s=1.0, reset_tokens_s=360.0
    )
    assert openai_rate_limits({"content-type": "application/json"}) is None


def test_anthropic_rate_limits() -> None:
    headers = {
        "anthropic-ratelimit-requests-remaining": "49",
        "anthropic-ratelimit-requests-reset": "2026-01-01T00:00:03Z",
        "anthropic-ratelimit-input-tokens-remaining": "1000",
        "anthropic-ratelimit-input-tokens-reset": "2025-12-31T23:59:00+00:00",  # in the past: 0, not negative
    }
    now = 1767225600.0  # 2026-01-01T00:00:00Z
    assert anthropic_rate_limits(headers, now=now) == RateLimitInfo(
        remaining_requests=49, remaining_tokens=1000, reset_requests_s=3.0, reset_tokens_s=0.0
    )
    assert anthropic_rate_limits({"anthropic-ratelimit-requests-reset": "garbage"}, now=now) is None
