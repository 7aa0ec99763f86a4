"""How to build a provider: frozen settings and one factory, over :mod:`batchrunner.providers.catalog`.

Which providers exist (kinds, presets, their key variables and base URLs, the endpoints each kind
serves) is declared once, in :mod:`batchrunner.providers.catalog`; this module turns a provider's
settings into an adapter. Configuration is resolved at the edge (STYLE habit 19): nothing here reads
``os.environ`` (:mod:`batchrunner.config` resolves a provider's settings). The resulting
:class:`ProviderSettings` holds the key as a :class:`~batchrunner.secret.Secret`, which the adapter
unwraps only when it hands it to the SDK.

The adapters are imported by :func:`build_provider` only, so that importing this module does not load
either SDK (nor aiohttp).

**Transports.** Each API kind has two adapters: ``http`` (the default) speaks HTTP itself through one
shared aiohttp session per provider (:mod:`batchrunner.providers.http` says why, with figures); ``sdk``
goes through the official SDK (``openai.AsyncOpenAI``, ``anthropic.AsyncAnthropic``), the reference the
``http`` adapters are tested against (the provider tests run over both). ``http`` records a request as
sent when its headers reach the connection (``ProviderRequest.on_sent``), the SDKs only just before the
call, so after a runner is killed ``http`` also counts the re-sent jobs more exactly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, get_args

from batchrunner.errors import ConfigError
from batchrunner.providers.base import Provider
from batchrunner.providers.catalog import KINDS, ProviderKind, default_key_env
from batchrunner.secret import Secret

__all__ = [
    "DEFAULT_TRANSPORT",
    "TRANSPORTS",
    "ProviderSettings",
    "Transport",
    "build_provider",
    "missing_key_error",
]


Transport = Literal["http", "sdk"]
TRANSPORTS: Final[tuple[Transport, ...]] = get_args(Transport)
DEFAULT_TRANSPORT: Final[Transport] = "http"


@dataclass(frozen=True, kw_only=True, slots=True)
class ProviderSettings:
    """Everything needed to build one provider; its ``repr`` masks the key."""

    name: str
    kind: ProviderKind
    api_key: Secret | None = None
    key_env: str | None = None
    """Where the key came from (``OPENAI_API_KEY``...): named in the error when it is missing."""
    base_url: str | None = None
    """``None``: the adapter's default (the real OpenAI / Anthropic API)."""
    timeout_s: float = 600.0
    """The client's default timeout; each call overrides it with its request's ``timeout_s``."""
    connect_timeout_s: float = 10.0
    fake_latency_ms: float = 0.0
    """Latency of the ``fake`` provider per call."""
    transport: Transport = DEFAULT_TRANSPORT
    """``http`` (aiohttp, the default) or ``sdk`` (the official SDK); see the module docstring."""
    max_connections: int = 100
    """The ``http`` transport's connection pool size (the run's concurrency)."""
    headers: Mapping[str, str] = field(default_factory=dict)
    """Extra headers sent with every request (the OpenAI organization and project)."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(
                f"provider {self.name}: unknown kind {self.kind!r} (known: {', '.join(sorted(KINDS))})"
            )
        for name in ("timeout_s", "connect_timeout_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"provider {self.name}: {name} must be a number > 0, not {value!r}")
        if self.transport not in TRANSPORTS:
            raise ConfigError(
                f"provider {self.name}: unknown transport {self.transport!r} (known: {', '.join(TRANSPORTS)})"
            )
        if self.max_connections < 1:
            raise ConfigError(f"provider {self.name}: max_connections must be >= 1")
        if not (math.isfinite(self.fake_latency_ms) and self.fake_latency_ms >= 0):
            raise ConfigError(
                f"provider {self.name}: fake_latency_ms must be >= 0, not {self.fake_latency_ms!r}"
            )


def missing_key_error(name: str, key_env: str | None) -> ConfigError:
    """The actionable error for a provider without a key: which variable to set, and where."""
    variable = key_env or default_key_env(name)
    return ConfigError(
        f"no API key for provider {name}: set {variable} (environment or .env) "
        f'or api_key = "${{VAR}}" in batchrunner.toml'
    )


def build_provider(name: str, settings: ProviderSettings) -> Provider:
    """Build the provider that jobs call ``name`` (normally ``settings.name``) from ``settings``.

    Raises :class:`~batchrunner.errors.ConfigError` when a key is needed and missing.
    """
    if settings.kind == "fake":
        from batchrunner.providers.fake import FakeProvider

        return FakeProvider(name=name, latency_ms=settings.fake_latency_ms)
    if settings.api_key is None or not settings.api_key:
        raise missing_key_error(name, settings.key_env)
    common: dict[str, Any] = {
        "api_key": settings.api_key,
        "base_url": settings.base_url,
        "name": name,
        "connect_timeout_s": settings.connect_timeout_s,
        "timeout_s": settings.timeout_s,
        "headers": dict(settings.headers),
    }
    http = {**common, "max_connections": settings.max_connections}
    if settings.kind == "anthropic" and settings.transport == "http":
        from batchrunner.providers.anthropic_http import AnthropicHTTPProvider

        return AnthropicHTTPProvider(**http)
    if settings.kind == "anthropic":
        from batchrunner.providers.anthropic import AnthropicProvider

        return AnthropicProvider(**common)
    if settings.transport == "http":
        from batchrunner.providers.openai_http import OpenAIHTTPProvider

        return OpenAIHTTPProvider(**http)
    from batchrunner.providers.openai import OpenAIProvider

    return OpenAIProvider(**common)
