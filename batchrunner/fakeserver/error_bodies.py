"""Error responses in each provider's real shape, with the headers the SDKs' retry logic reads.

- OpenAI: ``{"error": {"message", "type", "param", "code"}}``;
- Anthropic: ``{"type": "error", "error": {"type", "message"}, "request_id"}``.

Retry-After: injected 429s carry ``retry-after`` (whole seconds, rounded up) and ``retry-after-ms``; the
``429-date`` fault carries ``retry-after`` as an HTTP date instead. 529s carry ``x-should-retry: true``.
"""

from __future__ import annotations

import email.utils
import json
import math
import time
from dataclasses import dataclass

from batchrunner.fakeserver.faults import FaultKind
from batchrunner.fakeserver.limits import Verdict

_INJECTED = " (injected by the batchrunner fake server)"
_QUOTA = (
    "You exceeded your current quota, please check your plan and billing details. For more information on "
    "this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors."
)
_CREDIT = (
    "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or "
    "purchase credits."
)

# kind -> (status, error.type, error.code, message); "{model}" and "{wait}" are filled in.
_OPENAI: dict[FaultKind, tuple[int, str, str | None, str]] = {
    FaultKind.RATE_LIMIT: (429, "requests", "rate_limit_exceeded", "Rate limit reached for {model}. {wait}"),
    FaultKind.RATE_LIMIT_DATE: (
        429,
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for {model}. {wait}",
    ),
    FaultKind.BAD_REQUEST: (400, "invalid_request_error", None, "Invalid request."),
    FaultKind.UNAUTHORIZED: (
        401,
        "invalid_request_error",
        "invalid_api_key",
        "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
    ),
    FaultKind.FORBIDDEN: (
        403,
        "invalid_request_error",
        "unsupported_country_region_territory",
        "Country, region, or territory not supported",
    ),
    FaultKind.NOT_FOUND: (
        404,
        "invalid_request_error",
        "model_not_found",
        "The model `{model}` does not exist or you do not have access to it.",
    ),
    FaultKind.REQUEST_TIMEOUT: (408, "timeout_error", None, "Request timed out."),
    FaultKind.CONFLICT: (409, "conflict_error", None, "The request conflicts with another request."),
    FaultKind.UNPROCESSABLE: (422, "invalid_request_error", None, "The request could not be processed."),
    FaultKind.SERVER_ERROR: (
        500,
        "server_error",
        None,
        "The server had an error while processing your request. Sorry about that!",
    ),
    FaultKind.BAD_GATEWAY: (502, "server_error", None, "Bad gateway."),
    FaultKind.UNAVAILABLE: (503, "server_error", None, "The server is overloaded or not ready yet."),
    FaultKind.GATEWAY_TIMEOUT: (504, "server_error", None, "Gateway timeout."),
    FaultKind.OVERLOADED: (
        529,
        "server_error",
        "overloaded",
        "The server is overloaded, please try again later.",
    ),
    FaultKind.QUOTA: (429, "insufficient_quota", "insufficient_quota", _QUOTA),
    FaultKind.CREDIT: (429, "insufficient_quota", "insufficient_quota", _QUOTA),
}

# kind -> (status, error.type, message)
_ANTHROPIC: dict[FaultKind, tuple[int, str, str]] = {
    FaultKind.RATE_LIMIT: (
        429,
        "rate_limit_error",
        "This request would exceed the rate limit for {model}. {wait}",
    ),
    FaultKind.RATE_LIMIT_DATE: (429, "rate_limit_error", "This request would exceed the rate limit. {wait}"),
    FaultKind.BAD_REQUEST: (400, "invalid_request_error", "Invalid request."),
    FaultKind.UNAUTHORIZED: (401, "authentication_error", "invalid x-api-key"),
    FaultKind.FORBIDDEN: (
        403,
        "permission_error",
        "Your API key does not have permission to use the specified resource.",
    ),
    FaultKind.NOT_FOUND: (404, "not_found_error", "model: {model}"),
    FaultKind.REQUEST_TIMEOUT: (408, "timeout_error", "Request timed out."),
    FaultKind.CONFLICT: (409, "invalid_request_error", "The request conflicts with another request."),
    FaultKind.UNPROCESSABLE: (422, "invalid_request_error", "The request could not be processed."),
    FaultKind.SERVER_ERROR: (500, "api_error", "Internal server error"),
    FaultKind.BAD_GATEWAY: (502, "api_error", "Bad gateway"),
    FaultKind.UNAVAILABLE: (503, "api_error", "Service unavailable"),
    FaultKind.GATEWAY_TIMEOUT: (504, "timeout_error", "Request timed out"),
    FaultKind.OVERLOADED: (529, "overloaded_error", "Overloaded"),
    FaultKind.QUOTA: (400, "invalid_request_error", _CREDIT),
    FaultKind.CREDIT: (400, "invalid_request_error", _CREDIT),
}

ERROR_FAULTS = frozenset(_OPENAI)
"""Faults that are plain HTTP error responses."""


@dataclass(frozen=True, kw_only=True, slots=True)
class WireError:
    """An error response ready to send."""

    status: int
    body: bytes
    headers: dict[str, str]


def openai_body(message: str, type_: str, code: str | None = None, param: str | None = None) -> bytes:
    error = {"message": message, "type": type_, "param": param, "code": code}
    return json.dumps({"error": error}).encode()


def anthropic_body(type_: str, message: str, request_id: str) -> bytes:
    return json.dumps(
        {"type": "error", "error": {"type": type_, "message": message}, "request_id": request_id}
    ).encode()


def fault_error(
    kind: FaultKind, *, anthropic: bool, model: str, request_id: str, retry_after_s: float
) -> WireError:
    """The response for an injected HTTP-error fault (a kind in :data:`ERROR_FAULTS`)."""
    wait = f"Please try again in {retry_after_s:g}s."
    if anthropic:
        status, type_, template = _ANTHROPIC[kind]
        body = anthropic_body(type_, template.format(model=model, wait=wait) + _INJECTED, request_id)
    else:
        status, type_, code, template = _OPENAI[kind]
        body = openai_body(template.format(model=model, wait=wait) + _INJECTED, type_, code)
    headers: dict[str, str] = {}
    if kind is FaultKind.RATE_LIMIT:
        headers = retry_after_headers(retry_after_s)
    elif kind is FaultKind.RATE_LIMIT_DATE:
        headers = {"retry-after": email.utils.formatdate(math.ceil(time.time() + retry_after_s), usegmt=True)}
    elif kind is FaultKind.OVERLOADED:
        headers = {"x-should-retry": "true"}
    return WireError(status=status, body=body, headers=headers)


def retry_after_headers(seconds: float) -> dict[str, str]:
    return {"retry-after": str(math.ceil(seconds)), "retry-after-ms": str(math.ceil(seconds * 1000))}


def bad_request(message: str, param: str | None, *, anthropic: bool, request_id: str) -> WireError:
    """400 for a body the API would not accept (bad JSON, missing model ...)."""
    if anthropic:
        body = anthropic_body("invalid_request_error", message, request_id)
    else:
        body = openai_body(message, "invalid_request_error", None, param)
    return WireError(status=400, body=body, headers={})


def unauthorized(*, anthropic: bool, missing: bool, request_id: str) -> WireError:
    """401 for a missing or wrong key (the key itself is never echoed)."""
    if anthropic:
        message = "x-api-key header is required" if missing else "invalid x-api-key"
        return WireError(
            status=401, body=anthropic_body("authentication_error", message, request_id), headers={}
        )
    if missing:
        message = (
            "You didn't provide an API key. You need to provide your API key in an Authorization header "
            "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
        )
        return WireError(status=401, body=openai_body(message, "invalid_request_error"), headers={})
    return WireError(
        status=401,
        body=openai_body(_OPENAI[FaultKind.UNAUTHORIZED][3], "invalid_request_error", "invalid_api_key"),
        headers={},
    )


def limited(verdict: Verdict, *, anthropic: bool, model: str, tokens: int, request_id: str) -> WireError:
    """429 for a request the server's own RPM/TPM limiter refused."""
    by_tokens = verdict.refused_by == "tokens"
    snapshot = verdict.tokens if by_tokens else verdict.requests
    assert snapshot is not None
    unit = "tokens per min (TPM)" if by_tokens else "requests per min (RPM)"
    wait = f"Please try again in {math.ceil(verdict.retry_after_s * 1000)}ms."
    asked = tokens if by_tokens else 1
    message = (
        f"Rate limit reached for {model} on {unit}: Limit {snapshot.limit}, Used {verdict.used} in the "
        f"current window, Requested {asked}. {wait}"
    )
    if anthropic:
        body = anthropic_body("rate_limit_error", message, request_id)
    else:
        body = openai_body(message, "tokens" if by_tokens else "requests", "rate_limit_exceeded")
    return WireError(status=429, body=body, headers=retry_after_headers(verdict.retry_after_s))
