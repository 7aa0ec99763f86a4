"""The ``http`` transport's plumbing: one shared ``aiohttp.ClientSession`` per provider, and what a POST gave.

Why not the SDKs: measured on the 2-core dev machine against the fake server (2,000 calls, BENCHMARKS.md
"Issue 11"), a bare ``AsyncOpenAI`` loop manages ~250-310 calls/s at 200 ms latency and ~5.5 s of CPU,
the SDK over its own aiohttp client ~330-400 calls/s and ~3 s, and a bare aiohttp loop ~460 calls/s
(the ideal is 500) and ~0.9 s: the SDK's request and response machinery, not the HTTP library, costs
most of the CPU. So the adapters of :mod:`batchrunner.providers.openai_http` and
:mod:`batchrunner.providers.anthropic_http` speak HTTP themselves, keeping what the SDK gave:

- **one session per provider**: a ``TCPConnector`` whose limit is the run's concurrency, keep-alive
  (connections are reused, never opened per request), created on the first call (it needs the loop);
- **URLs** as the SDKs join them: the base URL gets a trailing slash, the path loses its leading one
  (``http://host/v1`` + ``/chat/completions`` -> ``http://host/v1/chat/completions``);
- **timeouts**: ``sock_connect`` is the provider's connect timeout, ``total`` the request's ``timeout_s``;
  a timeout is a :class:`~batchrunner.errors.ProviderTimeout`, a connection failure a
  :class:`~batchrunner.errors.TransientError`, ``possibly_billed`` unless it happened while connecting
  (:func:`~batchrunner.providers.errors.transport_error`, which knows aiohttp's connect-phase classes);
- **proxies** from ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY``, as httpx under the SDKs honours them, so
  a run behind a corporate proxy works over both transports (:func:`env_proxy`, read once per session;
  not aiohttp's ``trust_env``, which also reads ``.netrc`` in a thread on every request, and fails
  when it holds the host: an ``Authorization`` header and netrc credentials cannot be combined);
- **the raw text** of every answer, decoded as the SDKs do (the declared charset, else UTF-8, bad bytes
  replaced), which the adapters store as ``response_json``;
- **error bodies** decoded as each SDK decodes them (:func:`error_body`), so the error classification of
  :mod:`batchrunner.providers.errors` sees the same facts over both transports;
- **when a request is sent**: a request's ``on_sent`` is called from aiohttp's
  ``on_request_headers_sent`` trace, once its headers are handed to the connection, so a request still
  waiting for a connection (a pool being opened, a refused connect) is never recorded as sent;
- **the batch APIs' requests** (:meth:`HttpSession.send`, :mod:`batchrunner.providers.batchcalls`): any
  method, query parameters, and bodies that are not built in memory: a file uploaded as multipart form
  data (:func:`file_form`) or a body streamed from an async iterator with its length known
  (:func:`streamed`); their downloads are read line by line (:meth:`HttpSession.body_lines`), with a
  timeout between two reads rather than for the whole (a results file may take minutes);
- **streams** (:meth:`HttpSession.open` and :func:`lines`): the body's lines as they arrive, split on
  ``\n`` (a ``\r`` before it dropped), decoded as UTF-8 as event streams are, and of any length (not
  aiohttp's ``readline``, which refuses lines over 64 KiB); added up by
  :mod:`batchrunner.providers.streaming`.

The key is in the session's default headers only; no message built here holds it (each is passed through
:func:`~batchrunner.providers.errors.redact`, and an aiohttp exception is chained only when
:func:`~batchrunner.providers.errors.safe_cause` finds no key in it).
"""

from __future__ import annotations

import functools
import json
import urllib.parse
import urllib.request
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp

from batchrunner.providers.errors import safe_cause, transport_error
from batchrunner.providers.streaming import StreamedBody

__all__ = [
    "Body",
    "HttpSession",
    "Posted",
    "error_body",
    "file_form",
    "join_url",
    "lines",
    "streamed",
    "user_agent",
]


@dataclass(frozen=True, slots=True)
class Posted:
    """What one POST got back: the status, the (case-insensitive) headers and the body as text."""

    status: int
    headers: Mapping[str, str]
    text: str


async def _nothing() -> None:
    return None


@dataclass(frozen=True, slots=True)
class Body:
    """A request body that is not a JSON value built in memory: what aiohttp sends, the headers that
    describe it, and what to close once the request is over (an open file, an unfinished iterator)."""

    data: object
    headers: Mapping[str, str]
    close: Callable[[], Awaitable[None]] = field(default=_nothing)


def file_form(
    path: Path, *, field_name: str, filename: str, content_type: str, fields: Mapping[str, str]
) -> Body:
    """``multipart/form-data`` with ``fields`` and the file at ``path``, read from disk as it is sent."""
    handle = path.open("rb")
    form = aiohttp.FormData()
    for name, value in fields.items():
        form.add_field(name, value)
    form.add_field(field_name, handle, filename=filename, content_type=content_type)
    writer = form()

    async def close() -> None:
        handle.close()

    return Body(data=writer, headers={"Content-Type": writer.content_type}, close=close)


def streamed(chunks: AsyncIterable[bytes], length: int, content_type: str = "application/json") -> Body:
    """A body sent as ``chunks`` come, with its ``Content-Length`` announced (not chunked encoding).

    ``chunks`` may be left unfinished (a server that answers before reading it all): it must hold nothing
    that needs closing between two chunks."""
    return Body(data=chunks, headers={"Content-Type": content_type, "Content-Length": str(length)})


def join_url(base_url: str, path: str) -> str:
    """``path`` under ``base_url`` as the SDKs join them (see the module docstring)."""
    return with_trailing_slash(base_url) + path.lstrip("/")


def with_trailing_slash(base_url: str) -> str:
    return base_url if base_url.endswith("/") else base_url + "/"


@functools.cache
def user_agent() -> str:
    """``batchrunner/VERSION`` (read on the first call: importlib.metadata costs ~10-60 ms)."""
    try:
        return f"batchrunner/{version('batchrunner')}"
    except PackageNotFoundError:  # pragma: no cover - a source tree without metadata
        return "batchrunner"


def env_proxy(base_url: str) -> str | None:
    """The proxy the environment names for ``base_url`` (``NO_PROXY`` honoured), as httpx would use."""
    parts = urllib.parse.urlsplit(base_url)
    if parts.hostname is None or urllib.request.proxy_bypass(parts.hostname):
        return None
    return urllib.request.getproxies().get(parts.scheme)


def error_body(text: str, *, unwrap: bool) -> object:
    """An error response's body as the SDK hands it over (its ``APIStatusError.body``): decoded JSON, else
    the stripped text. ``unwrap``: an ``"error"`` member replaces the whole, as the OpenAI SDK does (the
    Anthropic SDK keeps the whole body)."""
    stripped = text.strip()
    try:
        body: object = json.loads(stripped)
    except ValueError:
        return stripped
    if unwrap and isinstance(body, Mapping):
        return body.get("error", body)
    return body


class HttpSession:
    """A provider's connection pool and its POST; transport failures come out as ``ProviderError``\\ s."""

    def __init__(
        self,
        *,
        name: str,
        base_url: str,
        headers: Mapping[str, str],
        secrets: tuple[str, ...],
        connect_timeout_s: float,
        max_connections: int,
    ) -> None:
        self.name = name
        self.base_url = with_trailing_slash(base_url)
        self._headers = {"Accept": "application/json", "Content-Type": "application/json", **headers}
        self._secrets = secrets
        self._connect_timeout_s = connect_timeout_s
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self._max_connections, limit_per_host=0)
            headers = {"User-Agent": user_agent(), **self._headers}
            tracing = aiohttp.TraceConfig()
            tracing.on_request_headers_sent.append(_headers_sent)
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers=headers,
                proxy=env_proxy(self.base_url),
                trust_env=False,
                raise_for_status=False,
                trace_configs=[tracing],
            )
        return self._session

    def _timeout(self, timeout_s: float) -> aiohttp.ClientTimeout:
        timeout = self._timeouts.get(timeout_s)
        if timeout is None:
            connect_s = min(self._connect_timeout_s, timeout_s)
            timeout = self._timeouts[timeout_s] = aiohttp.ClientTimeout(
                total=timeout_s, sock_connect=connect_s
            )
        return timeout

    async def post(
        self, path: str, body: dict[str, Any], timeout_s: float, on_sent: Callable[[], None] | None = None
    ) -> Posted:
        """POST ``body`` as JSON to ``path``; any HTTP status comes back, a transport failure is raised."""
        response = await self.open(path, body, timeout_s, on_sent)
        try:
            return await self.read(response, timeout_s)
        finally:
            response.release()

    async def open(
        self, path: str, body: dict[str, Any], timeout_s: float, on_sent: Callable[[], None] | None = None
    ) -> aiohttp.ClientResponse:
        """POST ``body`` and return the response with its body unread (the caller releases it);
        ``on_sent`` is called once its headers are on their way."""
        payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        try:
            return await self._client().post(
                self.base_url + path.lstrip("/"),
                data=payload,
                timeout=self._timeout(timeout_s),
                allow_redirects=False,
                trace_request_ctx=SimpleNamespace(on_sent=on_sent),
            )
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise self._transport_error(exc, timeout_s) from safe_cause(exc, self._secrets)

    async def read(self, response: aiohttp.ClientResponse, timeout_s: float) -> Posted:
        """The whole of ``response``'s body, as text."""
        try:
            raw = await response.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise self._transport_error(exc, timeout_s) from safe_cause(exc, self._secrets)
        return Posted(status=response.status, headers=response.headers, text=_decode(raw, response.charset))

    async def send(
        self,
        method: str,
        path: str,
        *,
        timeout_s: float,
        params: Mapping[str, str] | None = None,
        json_body: Mapping[str, Any] | None = None,
        body: Body | None = None,
        headers: Mapping[str, str] | None = None,
        long: bool = False,
    ) -> aiohttp.ClientResponse:
        """Send any request and return the response with its body unread (the caller releases it);
        ``long``: ``timeout_s`` bounds each read, not the whole exchange (uploads, downloads)."""
        data: object = None
        extra = dict(headers or {})
        if json_body is not None:
            data = json.dumps(json_body, ensure_ascii=False, separators=(",", ":")).encode()
        elif body is not None:
            data = body.data
            extra |= body.headers
        timeout = (
            aiohttp.ClientTimeout(total=None, sock_connect=self._connect_timeout_s, sock_read=timeout_s)
            if long
            else self._timeout(timeout_s)
        )
        try:
            return await self._client().request(
                method,
                self.base_url + path.lstrip("/"),
                params=params,
                data=data,
                headers=extra,
                timeout=timeout,
                allow_redirects=False,
            )
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise self._transport_error(exc, timeout_s) from safe_cause(exc, self._secrets)
        finally:
            if body is not None:
                await body.close()

    async def body_lines(self, response: aiohttp.ClientResponse, timeout_s: float) -> AsyncIterator[str]:
        """:func:`lines` of ``response``, a transport failure raised as a ``ProviderError``."""
        try:
            async for line in lines(response):
                yield line
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise self._transport_error(exc, timeout_s) from safe_cause(exc, self._secrets)

    def streamed_body(
        self, response: aiohttp.ClientResponse, started: float, timeout_s: float
    ) -> StreamedBody:
        """``response``'s unread body, for :mod:`batchrunner.providers.streaming`."""

        async def text() -> str:
            return (await self.read(response, timeout_s)).text

        return StreamedBody(lines=lines(response), text=text, started=started, timeout_s=timeout_s)

    def _transport_error(self, exc: BaseException, timeout_s: float) -> Exception:
        return transport_error(
            self.name,
            exc,
            timed_out=isinstance(exc, TimeoutError),
            timeout_s=timeout_s,
            secrets=self._secrets,
        )

    async def aclose(self) -> None:
        """Close the connection pool (a session never used was never opened)."""
        if self._session is not None:
            await self._session.close()
            self._session = None


async def _headers_sent(
    session: aiohttp.ClientSession, context: SimpleNamespace, params: aiohttp.TraceRequestHeadersSentParams
) -> None:
    """aiohttp's ``on_request_headers_sent`` trace: tell the request's ``on_sent``, once."""
    del session, params
    tracked = context.trace_request_ctx
    on_sent = getattr(tracked, "on_sent", None)
    if on_sent is not None:
        tracked.on_sent = None
        on_sent()


async def lines(response: aiohttp.ClientResponse) -> AsyncIterator[str]:
    """The lines of a streamed body as they arrive (see the module docstring); a transport failure
    comes through as aiohttp raises it."""
    pending = b""
    async for chunk in response.content.iter_any():
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            yield line.removesuffix(b"\r").decode("utf-8", errors="replace")
    if pending:
        yield pending.removesuffix(b"\r").decode("utf-8", errors="replace")


def _decode(raw: bytes, charset: str | None) -> str:
    try:
        return raw.decode(charset or "utf-8", errors="replace")
    except LookupError:  # an unknown charset: UTF-8, as httpx falls back
        return raw.decode("utf-8", errors="replace")
