"""SDK-free translation of HTTP outcomes into :mod:`batchrunner.errors`, shared by the adapters.

The adapters catch their SDK's exceptions and hand the plain facts (status, headers, decoded body, the
failing transport exception) to the functions here, so both providers classify alike and the rules are
tested without an SDK. The headers' hints (``x-should-retry``, ``Retry-After``) are read by
:mod:`batchrunner.providers.headers`. Rules (docs/design.md "Job life", docs/reliability.md rules 6-8), first
match wins:

====================================================================  =============================
what the server said                                                  class
====================================================================  =============================
401, 402, 403; ``authentication_error`` / ``permission_error`` /      ``RunStoppingError``
``billing_error``; OpenAI ``insufficient_quota`` (and the other
billing codes); "credit balance is too low"; ``*spend_limit*`` codes
``x-should-retry: false`` on anything retryable                       ``PermanentError``
``x-should-retry: true`` on anything permanent                        ``TransientError``
529 or ``overloaded_error``                                           ``Overloaded(retry_after)``
429 (or ``rate_limit_error``)                                         ``RateLimited(retry_after)``
408, 409, >= 500                                                      ``TransientError``
other 4xx (400, 404, 413, 422 ...)                                    ``PermanentError``
an error *event* inside a 200 stream: by ``error.type`` as above,     ``TransientError``
``invalid_request_error`` / ``not_found_error`` permanent, else
====================================================================  =============================

Why run-stopping errors ignore ``x-should-retry``: stopping leaves every job pending and burns no
attempt, so it is the safe answer whatever the hint; retrying a bad key or an empty balance only
multiplies the same failure across the whole batch.

Why a transport failure is ``possibly_billed`` unless it happened while connecting: once the request
bytes may have left, the provider may have run (and charged) the call even though no answer came back.

Every message starts with the provider's name, keeps the server's own explanation, and is passed
through :func:`redact`: the configured key and anything shaped like an API key become ``***``. The SDK
exception is chained (``raise ... from``) unless its own text holds such a string (:func:`safe_cause`):
a traceback prints the whole chain.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from batchrunner.errors import (
    InvalidResponse,
    Overloaded,
    PermanentError,
    ProviderError,
    ProviderTimeout,
    RateLimited,
    RunStoppingError,
    TransientError,
)
from batchrunner.models import RateLimitInfo
from batchrunner.providers.headers import lower_headers, parse_retry_after, parse_should_retry
from batchrunner.secret import MASK

__all__ = [
    "MAX_ERROR_BODY_CHARS",
    "MAX_MESSAGE_CHARS",
    "classify",
    "error_body_json",
    "error_from_response",
    "invalid_response",
    "json_object",
    "redact",
    "safe_cause",
    "token_count",
    "transport_error",
    "transport_failure_kind",
]

MAX_MESSAGE_CHARS = 500
"""Error messages are cut to this length: they are stored with every attempt."""

MAX_ERROR_BODY_CHARS = 8000
"""A provider's error body longer than this (as JSON) is stored as its message alone."""

_MIN_SECRET_CHARS = 8
"""Shorter "keys" (test dummies like ``"k"``) are not replaced verbatim: that would shred every message."""

_KEY_LIKE = re.compile(
    r"\b(?:sk|pk|rk)-[A-Za-z0-9_*\-]{6,}"  # OpenAI / Anthropic style keys, masked or not
    r"|\bAIza[0-9A-Za-z_\-]{20,}"  # Google API keys
    r"|\bBearer\s+[^\s\"',]+",  # an Authorization header value
    re.IGNORECASE,
)

_RUN_STOPPING_TYPES = frozenset({"authentication_error", "permission_error", "billing_error"})
_RUN_STOPPING_CODES = frozenset(
    {"insufficient_quota", "billing_hard_limit_reached", "billing_not_active", "account_deactivated"}
)
_PERMANENT_EVENT_TYPES = frozenset({"invalid_request_error", "not_found_error", "request_too_large"})

_CONNECT_PHASE = frozenset(
    {
        "ConnectError",
        "ConnectTimeout",
        "PoolTimeout",
        "UnsupportedProtocol",
        "InvalidURL",
        "ConnectionRefusedError",
        "ClientConnectorError",  # aiohttp: refused, DNS, TLS handshake (its subclasses)
        "ConnectionTimeoutError",  # aiohttp: the connect (sock_connect) timeout
    }
)
"""Exception names (httpx, httpx2, httpcore, aiohttp, builtins) that mean no request byte was sent."""
_TRANSPORT_MODULES = frozenset({"httpx", "httpx2", "httpcore", "httpcore2", "h11", "h2", "anyio", "aiohttp"})


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with each configured secret and anything that looks like an API key replaced by ``***``."""
    for secret in secrets:
        if len(secret) >= _MIN_SECRET_CHARS:
            text = text.replace(secret, MASK)
    return _KEY_LIKE.sub(MASK, text)


def safe_cause(exc: BaseException, secrets: Iterable[str] = ()) -> BaseException | None:
    """``exc`` to chain under the translated error (``raise ... from safe_cause(exc)``), or ``None`` when
    its text, or its own cause's, holds a secret or a key-shaped string: a traceback prints the chain, and
    a server that echoes a (masked) key would otherwise put it in the log."""
    secrets = tuple(secrets)
    for link in (exc, exc.__cause__):
        if link is not None and redact(str(link), secrets) != str(link):
            return None
    return exc


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 3] + "..."


# --- classification ---------------------------------------------------------------------------------


def classify(
    status: int,
    *,
    error_type: str | None = None,
    code: str | None = None,
    message: str = "",
    should_retry: bool | None = None,
) -> type[ProviderError]:
    """The error class for an HTTP error (or a streamed 200's error event): the module docstring's table."""
    if _stops_run(status, error_type, code, message):
        return RunStoppingError
    natural = _by_status(status, error_type)
    if should_retry is False and natural is not PermanentError:
        return PermanentError
    if should_retry is True and natural is PermanentError:
        return TransientError
    return natural


def _stops_run(status: int, error_type: str | None, code: str | None, message: str) -> bool:
    if status in (401, 402, 403) or error_type in _RUN_STOPPING_TYPES:
        return True
    if code is not None and (code in _RUN_STOPPING_CODES or "spend_limit" in code):
        return True
    if error_type in _RUN_STOPPING_CODES:  # OpenAI puts insufficient_quota in "type" as well as "code"
        return True
    return "credit balance is too low" in message.lower()


def _by_status(status: int, error_type: str | None) -> type[ProviderError]:
    if status == 529 or error_type == "overloaded_error":
        return Overloaded
    if status == 429 or error_type == "rate_limit_error":
        return RateLimited
    if status in (408, 409) or status >= 500:
        return TransientError
    if status < 400:  # an error event inside a streamed 200
        return PermanentError if error_type in _PERMANENT_EVENT_TYPES else TransientError
    return PermanentError


def _error_fields(body: object) -> tuple[str | None, str | None, str]:
    """``(type, code, message)`` of an error body, OpenAI's or Anthropic's (or the SDK's unwrapped) shape."""
    if not isinstance(body, Mapping):
        return None, None, body.strip() if isinstance(body, str) else ""
    inner = body.get("error")
    error: Mapping[str, object] = inner if isinstance(inner, Mapping) else body
    details = error.get("details")
    code = error.get("code")
    if code is None and isinstance(details, Mapping):
        code = details.get("error_code")  # Anthropic's stable cause, e.g. enforced_spend_limit_reached
    kind = error.get("type")
    message = error.get("message")
    return (
        kind if isinstance(kind, str) else None,
        str(code) if isinstance(code, str | int) and not isinstance(code, bool) else None,
        message if isinstance(message, str) else "",
    )


def error_from_response(
    provider: str,
    *,
    status: int,
    headers: Mapping[str, str],
    body: object,
    request_id: str | None,
    rate_limits: RateLimitInfo | None,
    secrets: Iterable[str],
    now: float,
) -> ProviderError:
    """The project's error for an HTTP error response (``body``: decoded JSON, text or ``None``).

    ``now`` (Unix seconds) dates a ``retry-after`` given as an HTTP date.
    """
    error_type, code, message = _error_fields(body)
    lowered = lower_headers(headers)
    cls = classify(
        status, error_type=error_type, code=code, message=message, should_retry=parse_should_retry(lowered)
    )
    where = f"HTTP {status}" if status >= 400 else "error event"
    label = f"{where} {code or error_type}" if code or error_type else where
    text = redact(_clip(f"{provider}: {label}: {message or 'no error message'}"), secrets)
    error_body = error_body_json(body, message, secrets)
    kind = code or error_type
    if issubclass(cls, RateLimited):
        return cls(
            text,
            retry_after=parse_retry_after(lowered, now=now),
            status_code=status,
            request_id=request_id,
            rate_limits=rate_limits,
            error_body=error_body,
            error_type=kind,
        )
    return cls(
        text,
        status_code=status,
        request_id=request_id,
        rate_limits=rate_limits,
        error_body=error_body,
        error_type=kind,
    )


def error_body_json(body: object, message: str, secrets: Iterable[str]) -> str | None:
    """The provider's error answer as JSON text in the shape of OpenAI's, ``{"error": {...}}``, for the
    attempt record (the openai-batch export gives it back as the response body); None without a body.

    The OpenAI SDK hands over the inner error object (it unwraps ``"error"``), so it is wrapped again;
    a full body (Anthropic's ``{"type": "error", "error": {...}, "request_id": ...}``) is kept as it
    is; a body that is not JSON (an HTML page from a proxy) becomes ``{"error": {"message": ...}}``
    with its text clipped, as does one too long to keep. Every string in it is passed through
    :func:`redact` (it is the server's JSON, which never holds our key, and no request header is ever
    part of it).
    """
    if body is None or body == "":
        return None
    if isinstance(body, Mapping):
        full: object = body if isinstance(body.get("error"), Mapping) else {"error": body}
    else:
        full = _text_error(body if isinstance(body, str) else str(body))
    keys = tuple(secrets)
    encoded = json.dumps(_redact_strings(full, keys), ensure_ascii=False)
    if len(encoded) > MAX_ERROR_BODY_CHARS:
        encoded = json.dumps(_redact_strings(_text_error(message), keys), ensure_ascii=False)
    return encoded


def _text_error(message: str) -> dict[str, object]:
    return {"error": {"message": _clip(message), "type": None, "param": None, "code": None}}


def _redact_strings(value: object, secrets: tuple[str, ...]) -> object:
    """``value`` (decoded JSON) with every string in it, keys included, passed through :func:`redact`."""
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, Mapping):
        return {redact(str(k), secrets): _redact_strings(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_strings(item, secrets) for item in value]
    return value


def invalid_response(
    provider: str,
    reason: str,
    *,
    status: int,
    request_id: str | None,
    rate_limits: RateLimitInfo | None,
    secrets: Iterable[str],
) -> InvalidResponse:
    """A 2xx whose body is not what the API promises. The call ran, so it is ``possibly_billed``."""
    return InvalidResponse(
        redact(_clip(f"{provider}: invalid response (HTTP {status}): {reason}"), secrets),
        status_code=status,
        request_id=request_id,
        rate_limits=rate_limits,
        possibly_billed=True,
    )


def json_object(text: str, content_type: str | None) -> dict[str, Any]:
    """The JSON object in a 2xx body; ``ValueError`` with a short, printable reason when it is not one."""
    try:
        data = json.loads(text)
    except ValueError:
        kind = (content_type or "no content type").split(";")[0]
        raise ValueError(f"the body is not JSON ({kind}, {len(text)} chars): {text[:80]!r}") from None
    if not isinstance(data, dict):
        raise ValueError(f"the body is JSON but not an object: {text[:80]!r}")
    return data


def token_count(value: object) -> int:
    """A usage number as reported, or 0 when it is absent or not a non-negative integer."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return 0
    return value


# --- transport failures -----------------------------------------------------------------------------


def transport_failure_kind(exc: BaseException) -> Literal["timeout", "connection"] | None:
    """Whether ``exc`` is an HTTP transport failure, by its class names and modules (no httpx import).

    Used where an SDK lets transport exceptions through untranslated (reading an SSE stream). A class
    whose name ends in ``Timeout``/``TimeoutException`` (or ``TimeoutError``) is a timeout; any other
    exception from an HTTP transport module, or an ``OSError``/``EOFError``, is a connection failure.
    """
    names = [cls.__name__ for cls in type(exc).__mro__]
    if isinstance(exc, TimeoutError) or any(name.endswith(("Timeout", "TimeoutException")) for name in names):
        return "timeout"
    modules = {cls.__module__.partition(".")[0] for cls in type(exc).__mro__}
    if modules & _TRANSPORT_MODULES or isinstance(exc, OSError | EOFError):
        return "connection"
    return None


def _may_have_been_sent(exc: BaseException | None) -> bool:
    """False only when ``exc`` (the transport exception under the SDK's) failed before sending."""
    if exc is None:
        return True
    return not any(cls.__name__ in _CONNECT_PHASE for cls in type(exc).__mro__)


def transport_error(
    provider: str,
    cause: BaseException | None,
    *,
    timed_out: bool,
    timeout_s: float,
    secrets: Iterable[str],
) -> TransientError:
    """``ProviderTimeout`` or ``TransientError`` for a call that got no HTTP answer; ``cause`` is the
    transport exception (``sdk_error.__cause__``), which says whether the request may have been sent."""
    sent = _may_have_been_sent(cause)
    detail = "" if cause is None else f" ({type(cause).__name__}: {cause})".replace(": )", ")")
    if timed_out:
        phase = "answer" if sent else "connection"
        text = f"{provider}: no {phase} within {timeout_s:g} s{detail}"
        return ProviderTimeout(redact(_clip(text), secrets), possibly_billed=sent)
    return TransientError(
        redact(_clip(f"{provider}: connection failed{detail}"), secrets), possibly_billed=sent
    )
