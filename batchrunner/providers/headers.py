"""What a provider's response headers say, read without an SDK: when to retry, and the rate limits.

- :func:`parse_retry_after`: ``retry-after-ms``, then ``retry-after`` as seconds, then as an HTTP date,
  as the OpenAI and Anthropic SDKs read them (STYLE habit 10: the SDKs' rules in a few lines of our own);
- :func:`parse_should_retry`: the server's explicit ``x-should-retry`` verdict;
- :func:`openai_rate_limits` / :func:`anthropic_rate_limits`: the ``x-ratelimit-*`` and
  ``anthropic-ratelimit-*`` headers as a :class:`~batchrunner.models.RateLimitInfo` for the limiter.

Everything here is a pure function of the headers (and of ``now``, passed in where a date needs it),
so the rules are tested from tables. :mod:`batchrunner.providers.errors` uses the first two to
classify an error response; the adapters attach the rate limits to every answer.
"""

from __future__ import annotations

import email.utils
import math
import re
from collections.abc import Mapping
from datetime import datetime

from batchrunner.models import RateLimitInfo

__all__ = [
    "anthropic_rate_limits",
    "lower_headers",
    "openai_rate_limits",
    "parse_duration",
    "parse_retry_after",
    "parse_should_retry",
]


def lower_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """A plain dict with lower-case names: the SDKs' header objects and test dicts read alike."""
    return {name.lower(): value for name, value in headers.items()}


# --- retry hints ------------------------------------------------------------------------------------


def parse_retry_after(headers: Mapping[str, str], *, now: float) -> float | None:
    """Seconds the server asks us to wait, from response headers, as the OpenAI and Anthropic SDKs read them.

    Tried in order, each falling through to the next when absent or unusable: ``retry-after-ms``
    (float milliseconds, a non-standard OpenAI header), ``retry-after`` as float seconds, ``retry-after``
    as an HTTP date (relative to ``now``, Unix seconds, passed in to keep this pure). Returns ``None``
    when no header gives a finite delay >= 0: a date in the past, ``nan``, ``inf`` and overflowing
    numerals count as garbage (the policy then uses its own backoff). Header names are matched
    case-insensitively, so a plain ``dict`` works as well as ``httpx.Headers``.
    """
    millis = _seconds(_header(headers, "retry-after-ms"), scale=1000.0)
    if millis is not None:
        return millis
    raw = _header(headers, "retry-after")
    if raw is None:
        return None
    seconds = _seconds(raw, scale=1.0)
    if seconds is not None:
        return seconds
    try:
        parsed = email.utils.parsedate_tz(raw)
        if parsed is None:
            return None
        delay = float(email.utils.mktime_tz(parsed)) - now
    except (TypeError, ValueError, OverflowError, OSError):
        return None
    return delay if math.isfinite(delay) and delay >= 0 else None


def parse_should_retry(headers: Mapping[str, str]) -> bool | None:
    """The server's explicit verdict in ``x-should-retry``: ``True``, ``False`` or ``None`` when absent.

    The SDKs obey it over the status code, and so do the adapters: ``false`` makes an otherwise
    retryable error permanent, ``true`` makes an otherwise permanent one transient. Like the SDKs,
    only the exact values ``true`` and ``false`` count (case-insensitive here, whitespace ignored).
    """
    value = _header(headers, "x-should-retry")
    if value is None:
        return None
    verdict = value.strip().lower()
    if verdict == "true":
        return True
    if verdict == "false":
        return False
    return None


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """``headers[name]`` with the name matched case-insensitively (``name`` is lower-case)."""
    value = headers.get(name)
    if value is not None:
        return value
    for key, candidate in headers.items():
        if key.lower() == name:
            return candidate
    return None


def _seconds(raw: str | None, *, scale: float) -> float | None:
    """``raw`` parsed as a float and divided by ``scale``; ``None`` unless finite and >= 0."""
    if raw is None:
        return None
    try:
        value = float(raw) / scale
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


# --- rate-limit headers -----------------------------------------------------------------------------

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)")
_DURATION_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def parse_duration(text: str | None) -> float | None:
    """Seconds in an OpenAI reset header: Go durations (``"1s"``, ``"6m0s"``, ``"20ms"``, ``"1h2m3.5s"``)
    or a bare number of seconds; ``None`` when absent or unparseable."""
    if text is None:
        return None
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        parts = _DURATION_PART.findall(text)
        if not parts or "".join(number + unit for number, unit in parts) != text:
            return None
        value = sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts)
    return value if math.isfinite(value) and value >= 0 else None


def _count(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        value = int(text.strip())
    except ValueError:
        return None
    return value if value >= 0 else None


def _until(text: str | None, now: float) -> float | None:
    """Seconds from ``now`` until an RFC 3339 time (Anthropic's resets); never negative."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return max(0.0, moment.timestamp() - now)


def _info(info: RateLimitInfo) -> RateLimitInfo | None:
    empty = RateLimitInfo()
    return None if info == empty else info


def _limit(text: str | None) -> int | None:
    """An advertised limit: a count above zero (a limit of 0 is a broken header, not a limit)."""
    value = _count(text)
    return value if value else None


def openai_rate_limits(headers: Mapping[str, str]) -> RateLimitInfo | None:
    """``x-ratelimit-{limit,remaining,reset}-{requests,tokens}``; ``None`` when the server sent none."""
    h = lower_headers(headers)
    return _info(
        RateLimitInfo(
            remaining_requests=_count(h.get("x-ratelimit-remaining-requests")),
            remaining_tokens=_count(h.get("x-ratelimit-remaining-tokens")),
            reset_requests_s=parse_duration(h.get("x-ratelimit-reset-requests")),
            reset_tokens_s=parse_duration(h.get("x-ratelimit-reset-tokens")),
            limit_requests=_limit(h.get("x-ratelimit-limit-requests")),
            limit_tokens=_limit(h.get("x-ratelimit-limit-tokens")),
        )
    )


def anthropic_rate_limits(headers: Mapping[str, str], *, now: float) -> RateLimitInfo | None:
    """``anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}`` (resets are RFC 3339 times); the
    ``input-tokens`` variants stand in for the remaining budget when the combined headers are absent.

    The token *limit* is taken only from ``tokens-limit`` and only when no separate input/output limits
    come with it: Anthropic's own API limits input and output tokens apart (its ``tokens-limit`` is the
    most restrictive of the two), which a limit on prompt + output together cannot express without
    slowing the run below what the provider admits.
    """
    h = lower_headers(headers)

    def first(*names: str) -> str | None:
        return next((h[name] for name in names if name in h), None)

    prefix = "anthropic-ratelimit-"
    split = prefix + "input-tokens-limit" in h or prefix + "output-tokens-limit" in h
    return _info(
        RateLimitInfo(
            remaining_requests=_count(h.get(prefix + "requests-remaining")),
            remaining_tokens=_count(first(prefix + "tokens-remaining", prefix + "input-tokens-remaining")),
            reset_requests_s=_until(h.get(prefix + "requests-reset"), now),
            reset_tokens_s=_until(first(prefix + "tokens-reset", prefix + "input-tokens-reset"), now),
            limit_requests=_limit(h.get(prefix + "requests-limit")),
            limit_tokens=None if split else _limit(h.get(prefix + "tokens-limit")),
        )
    )
