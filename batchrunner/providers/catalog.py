"""What batchrunner knows about providers, as plain data: adapter kinds, presets and endpoints.

This is the one declaration of that knowledge. :mod:`batchrunner.providers.registry` builds adapters
from it, each adapter checks a request's endpoint against :data:`ENDPOINTS`, and ``manifest/`` and
``config/`` read it to validate names and lines. It imports no SDK (only :mod:`batchrunner.models`), so
reading it never loads ``openai`` or ``anthropic``.

Presets (a kind, a key variable and a base URL each, nothing more)::

    name       kind        key variable        base URL (variable, else default)
    openai     openai      OPENAI_API_KEY      OPENAI_BASE_URL, else https://api.openai.com/v1
    anthropic  anthropic   ANTHROPIC_API_KEY   ANTHROPIC_BASE_URL, else https://api.anthropic.com
    gemini     openai      GEMINI_API_KEY      https://generativelanguage.googleapis.com/v1beta/openai/
    cohere     openai      COHERE_API_KEY      https://api.cohere.ai/compatibility/v1
    fake       fake        (none)              (in-process, no network)

Batch APIs (``run --mode batch``): ``openai`` and ``anthropic``, and every configured provider of those
kinds (an OpenAI-compatible server that implements ``/v1/files`` and ``/v1/batches``); the ``gemini``,
``cohere`` and ``fake`` presets have none that batchrunner uses, so their jobs run in real time.

Endpoints per kind: the ``openai`` adapter serves chat completions, embeddings and responses (any
OpenAI-compatible server is this kind); ``anthropic`` serves messages; ``fake`` answers every endpoint
in its real shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Literal, get_args

from batchrunner.models import Endpoint

__all__ = [
    "ANTHROPIC_BASE_URL",
    "ENDPOINTS",
    "KINDS",
    "OPENAI_BASE_URL",
    "PRESETS",
    "ProviderKind",
    "ProviderPreset",
    "default_key_env",
    "has_batch_api",
]

ProviderKind = Literal["openai", "anthropic", "fake"]
"""Which adapter serves a provider."""

KINDS: Final = frozenset(get_args(ProviderKind))

OPENAI_BASE_URL: Final = "https://api.openai.com/v1"
"""The OpenAI API; the adapter's paths are relative to it (it ends in ``/v1``)."""
ANTHROPIC_BASE_URL: Final = "https://api.anthropic.com"
"""The Anthropic API; the adapter's paths start with ``/v1``."""

ENDPOINTS: Final[Mapping[ProviderKind, frozenset[Endpoint]]] = MappingProxyType(
    {
        "openai": frozenset({Endpoint.CHAT_COMPLETIONS, Endpoint.EMBEDDINGS, Endpoint.RESPONSES}),
        "anthropic": frozenset({Endpoint.MESSAGES}),
        "fake": frozenset(Endpoint),
    }
)
"""The endpoints each kind of adapter serves."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ProviderPreset:
    """A provider users can name without configuring it: its adapter, key variable and base URL."""

    kind: ProviderKind
    key_env: str | None
    """The variable that holds the API key; ``None``: no key needed."""
    base_url_env: str | None = None
    """A variable that may override ``base_url``."""
    base_url: str | None = None
    """The default base URL (``None``: the adapter's default)."""
    header_envs: Mapping[str, str] = field(default_factory=dict)
    """Request headers taken from variables when they are set (header -> variable), sent over both
    transports: the OpenAI SDK's organization and project."""
    batch_api: bool = True
    """It has a batch API that ``run --mode batch`` uses (OpenAI's ``/v1/batches``, Anthropic's Message
    Batches); the others run in real time in batch mode."""


PRESETS: Final[Mapping[str, ProviderPreset]] = MappingProxyType(
    {
        "openai": ProviderPreset(
            kind="openai",
            key_env="OPENAI_API_KEY",
            base_url_env="OPENAI_BASE_URL",
            base_url=OPENAI_BASE_URL,
            header_envs=MappingProxyType(
                {"OpenAI-Organization": "OPENAI_ORG_ID", "OpenAI-Project": "OPENAI_PROJECT_ID"}
            ),
        ),
        "anthropic": ProviderPreset(
            kind="anthropic",
            key_env="ANTHROPIC_API_KEY",
            base_url_env="ANTHROPIC_BASE_URL",
            base_url=ANTHROPIC_BASE_URL,
        ),
        "gemini": ProviderPreset(
            kind="openai",
            key_env="GEMINI_API_KEY",
            base_url="https://generativelanguage.googleapis.com/v1beta/openai/",
            batch_api=False,
        ),
        "cohere": ProviderPreset(
            kind="openai",
            key_env="COHERE_API_KEY",
            base_url="https://api.cohere.ai/compatibility/v1",
            batch_api=False,
        ),
        "fake": ProviderPreset(kind="fake", key_env=None, batch_api=False),
    }
)


def has_batch_api(name: str, kind: ProviderKind) -> bool:
    """Whether provider ``name`` of adapter ``kind`` has a batch API (the module docstring)."""
    preset = PRESETS.get(name)
    if preset is not None:
        return preset.batch_api
    return kind != "fake"


def default_key_env(name: str) -> str:
    """The variable for the key of a provider that names none: a preset's own (``OPENAI_API_KEY``), else
    ``local-vllm`` -> ``LOCAL_VLLM_API_KEY``. The config file reads it, and the missing-key error names
    it, so the variable users are told to set is the one that is read."""
    preset = PRESETS.get(name)
    if preset is not None and preset.key_env is not None:
        return preset.key_env
    return f"{name.upper().replace('-', '_')}_API_KEY"
