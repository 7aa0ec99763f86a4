"""The resolved settings: frozen values built once at the edge and passed down (STYLE habit 19).

:class:`Settings` holds no environment: :func:`~batchrunner.config.load_settings` resolves every
provider's key, base URL and limits into a :class:`ProviderConfig` up front, keeping keys as
:class:`~batchrunner.secret.Secret`\\ s, and *defers* only the missing-key error to
:meth:`Settings.provider_settings`, so a run needs the keys of the providers it uses and no others.
``Settings()`` with no arguments is the built-in configuration (no file, no keys): enough for the
``fake`` provider, and handy in tests.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Final

from batchrunner.errors import ConfigError, UsageError
from batchrunner.policy.pricing import BUILTIN_PRICES, PriceTable
from batchrunner.policy.ratelimit import RateLimits
from batchrunner.providers.catalog import PRESETS, ProviderKind
from batchrunner.providers.registry import (
    DEFAULT_TRANSPORT,
    TRANSPORTS,
    ProviderSettings,
    Transport,
    missing_key_error,
)
from batchrunner.secret import Secret

_DEFAULT_CONNECT_TIMEOUT_S: Final = ProviderSettings(name="-", kind="fake").connect_timeout_s


@dataclass(frozen=True, kw_only=True, slots=True)
class RunDefaults:
    """Options of a run, after defaults < file < environment < flags.

    ``rpm``, ``tpm`` and ``base_url`` exist only as flags (and ``BATCHRUNNER_*`` variables): they override
    every provider of the run, for the one-provider case (``--base-url http://127.0.0.1:8000/v1``). So
    does ``no_stop_on_systematic`` (a flag, off by default).
    """

    concurrency: int = 32
    """Most requests in flight; also each provider's concurrency ceiling (``RateLimits.max_concurrency``)."""
    max_attempts: int = 6
    timeout_s: float = 300.0
    """Per-attempt timeout, unless a provider's entry sets its own."""
    max_cost_usd: Decimal | None = None
    """Budget cap; ``None``: no cap."""
    provider: str | None = None
    """The provider of lines that name none (docs/design.md "Manifest formats")."""
    model: str | None = None
    """The model of simple lines that name none."""
    db: str = "batchrunner.db"
    """Database path or SQLAlchemy URL."""
    rpm: float | None = None
    tpm: float | None = None
    base_url: str | None = None
    no_stop_on_systematic: bool = False
    """Do not stop when a provider+model's first answers all fail alike
    (:mod:`batchrunner.engine.systematic`)."""
    transport: Transport = DEFAULT_TRANSPORT
    """How the OpenAI and Anthropic providers speak HTTP: ``http`` (aiohttp) or ``sdk`` (the official SDKs)
    (:mod:`batchrunner.providers.registry`)."""

    def __post_init__(self) -> None:
        # The loader validates each layer with its source named; this guards values built in code.
        if self.concurrency < 1 or self.max_attempts < 1:
            raise UsageError("concurrency and max_attempts must be >= 1")
        for name in ("timeout_s", "rpm", "tpm"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise UsageError(f"{name} must be a finite number > 0, not {value!r}")
        if self.max_cost_usd is not None and not (self.max_cost_usd.is_finite() and self.max_cost_usd >= 0):
            raise UsageError(f"max_cost_usd must be a finite amount >= 0, not {self.max_cost_usd}")
        if self.transport not in TRANSPORTS:
            raise UsageError(f"transport must be one of {', '.join(TRANSPORTS)}, not {self.transport!r}")


@dataclass(frozen=True, kw_only=True, slots=True)
class ProviderConfig:
    """One provider as configured: its preset, its file entry and the environment, before flags.

    ``None`` fields fall back at resolution: ``timeout_s`` to the run's, ``connect_timeout_s`` and
    ``fake_latency_ms`` to :class:`ProviderSettings`' defaults, ``rpm``/``tpm`` to no limit.
    """

    name: str
    kind: ProviderKind
    api_key: Secret | None = None
    key_env: str | None = None
    """The variable the key is (or would be) read from; named in the missing-key error."""
    base_url: str | None = None
    rpm: float | None = None
    tpm: float | None = None
    timeout_s: float | None = None
    connect_timeout_s: float | None = None
    fake_latency_ms: float | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    """Extra request headers from the preset's variables (``OPENAI_ORG_ID``...)."""
    batch_api: bool = False
    """It has a batch API that ``run --mode batch`` uses (catalog ``has_batch_api``, or the file's
    ``batch_api``)."""

    @classmethod
    def preset(cls, name: str) -> ProviderConfig:
        """A preset with no key and its default base URL (what it is without any environment)."""
        preset = PRESETS[name]
        return cls(
            name=name,
            kind=preset.kind,
            key_env=preset.key_env,
            base_url=preset.base_url,
            batch_api=preset.batch_api,
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class Settings:
    """Everything a run needs from configuration; its ``repr`` masks keys."""

    run: RunDefaults = field(default_factory=RunDefaults)
    prices: PriceTable = field(default=BUILTIN_PRICES, repr=False)
    """Built-in prices with the file's overrides (left out of ``repr``: dozens of models)."""
    source: Path | None = None
    """The config file used, if any."""
    providers: Mapping[str, ProviderConfig] = field(default_factory=dict)
    """Resolved providers by name: the presets and the file's entries."""
    given: Mapping[str, str] = field(default_factory=dict)
    """Run options given for this invocation (a flag or a ``BATCHRUNNER_*`` variable), by field name,
    with where each came from (``--rpm``): these override what a run remembers
    (batchrunner.config.runsettings)."""
    key_lookup: Callable[[str], Secret | None] = field(default=lambda _name: None, repr=False, compare=False)
    """The key in a variable (environment or ``.env``), for a run that remembers another key variable."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "providers", MappingProxyType(dict(self.providers)))
        object.__setattr__(self, "given", MappingProxyType(dict(self.given)))

    def provider_config(self, name: str) -> ProviderConfig:
        """Provider ``name`` as configured (before ``--base-url``, ``--rpm`` and ``--tpm``)."""
        return self._entry(name)

    @property
    def known_providers(self) -> frozenset[str]:
        """Names a manifest line or ``--provider`` may use: the presets and the file's providers."""
        return frozenset(PRESETS) | frozenset(self.providers)

    def provider_settings(self, name: str) -> ProviderSettings:
        """How to build provider ``name``; raises :class:`ConfigError` if it needs a key it lacks.

        Base URL: ``--base-url`` beats the file entry, which beats the preset's variable
        (``OPENAI_BASE_URL``), which beats the preset's default. ``timeout_s`` is the per-attempt
        timeout for this provider: its entry's, else the run's.
        """
        entry = self._entry(name)
        if entry.kind != "fake" and not entry.api_key:
            raise missing_key_error(name, entry.key_env)
        return ProviderSettings(
            name=name,
            kind=entry.kind,
            api_key=entry.api_key,
            key_env=entry.key_env,
            base_url=self.run.base_url or entry.base_url,
            timeout_s=entry.timeout_s or self.run.timeout_s,
            connect_timeout_s=entry.connect_timeout_s or _DEFAULT_CONNECT_TIMEOUT_S,
            fake_latency_ms=entry.fake_latency_ms or 0.0,
            transport=self.run.transport,
            max_connections=self.run.concurrency,
            headers=entry.headers,
        )

    def rate_limits(self, name: str) -> RateLimits:
        """Limits for provider ``name``: ``--rpm``/``--tpm`` beat its entry; concurrency is the run's; the
        limits the provider advertises fill in or lower them (:mod:`batchrunner.policy.learnedlimits`)."""
        entry = self._entry(name)
        return RateLimits(
            rpm=self.run.rpm or entry.rpm,
            tpm=self.run.tpm or entry.tpm,
            max_concurrency=self.run.concurrency,
            learn_from_headers=True,
        )

    def _entry(self, name: str) -> ProviderConfig:
        entry = self.providers.get(name)
        if entry is not None:
            return entry
        if name in PRESETS:
            return ProviderConfig.preset(name)
        known = ", ".join(sorted(self.known_providers))
        raise ConfigError(f"unknown provider {name!r} (known: {known})")
