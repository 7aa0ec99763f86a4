"""Sending bodies, and breaking connections on purpose: reset, hang, truncate.

The breaking helpers return a placeholder response that is never sent: the connection is already gone, and
aiohttp treats the failed write as a client that went away (logged at DEBUG at most).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct

from aiohttp import web


def _placeholder() -> web.Response:
    return web.Response(status=500)


def reset(request: web.BaseRequest) -> web.StreamResponse:
    """Reset the connection (TCP RST via SO_LINGER 0) without sending anything."""
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    return _placeholder()


async def hang(request: web.BaseRequest, released: asyncio.Event, max_hang_s: float) -> web.StreamResponse:
    """Answer nothing until the client gives up (the handler is then cancelled), the server shuts down
    (``released`` is set) or ``max_hang_s`` passes; then reset the connection."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(max_hang_s):
            await released.wait()
    return reset(request)


async def send_truncated(
    request: web.BaseRequest, body: bytes, headers: dict[str, str], content_type: str
) -> web.StreamResponse:
    """200 whose ``Content-Length`` promises the whole body, then half of it and a closed connection."""
    response = web.StreamResponse(status=200, headers=headers)
    response.content_type = content_type
    response.content_length = len(body)
    with contextlib.suppress(ConnectionError):
        await response.prepare(request)
        await response.write(body[: len(body) // 2])
    if request.transport is not None:
        request.transport.close()
    return response


async def send_stream(
    request: web.BaseRequest,
    events: list[bytes],
    headers: dict[str, str],
    *,
    cut_after: int | None = None,
    gap_s: float = 0.0,
) -> web.StreamResponse:
    """A 200 SSE stream (chunked), ``gap_s`` between two events; ``cut_after``: only that many events,
    then the connection is closed mid-stream (no end chunk)."""
    response = web.StreamResponse(status=200, headers=headers)
    response.content_type = "text/event-stream"
    response.charset = "utf-8"
    response.headers["cache-control"] = "no-cache"
    sent = events if cut_after is None else events[:cut_after]
    try:
        await response.prepare(request)
        if gap_s:
            for index, event in enumerate(sent):
                if index:
                    await asyncio.sleep(gap_s)
                await response.write(event)
        elif sent:
            await response.write(b"".join(sent))
        if cut_after is not None:
            if request.transport is not None:
                request.transport.close()
            return response
        await response.write_eof()
    except ConnectionError:  # the client went away mid-stream; nothing to tell it
        pass
    return response
