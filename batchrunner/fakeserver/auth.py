"""Which API key a request carries, and whether the server accepts it (shared by every route)."""

from __future__ import annotations

import hmac

from aiohttp import web


def key_problem(request: web.Request, anthropic: bool, expected: str | None) -> bool | None:
    """``None`` if the key is acceptable, ``True`` if it is missing, ``False`` if it is wrong.

    OpenAI routes read ``Authorization: Bearer KEY``, Anthropic routes ``x-api-key`` (or a bearer token).
    """
    key = request.headers.get("x-api-key") if anthropic else None
    if not key:
        auth = request.headers.get("authorization", "")
        key = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
    if not key:
        return True
    if expected is not None and not hmac.compare_digest(key.encode(), expected.encode()):
        return False
    return None
