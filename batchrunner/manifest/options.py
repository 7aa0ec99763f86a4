"""Run options for reading a manifest; which provider serves a line (docs/design.md "Manifest formats")."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from batchrunner.errors import UsageError
from batchrunner.manifest.strictjson import Problem, show
from batchrunner.models import Endpoint
from batchrunner.providers.catalog import ENDPOINTS, PRESETS, ProviderKind

DEFAULT_PROVIDERS = frozenset(PRESETS)
"""The providers batchrunner ships; a configuration file may name more (OpenAI-compatible presets)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ManifestOptions:
    """What the run supplies to lines that leave it out: ``--provider``, ``--model``, configured providers."""

    default_provider: str | None = None
    """``--provider`` (or the config file); beats a line's format default, loses to its own ``provider``."""
    default_model: str | None = None
    """``--model``: the model of simple lines without one."""
    known_providers: frozenset[str] = field(default=DEFAULT_PROVIDERS)
    """Provider names a line may use; any other is an error."""
    kinds: Mapping[str, ProviderKind] = field(default_factory=dict)
    """The kind of each configured provider that is not a preset (``claude-proxy`` of kind anthropic):
    what it can serve is its kind's."""

    def __post_init__(self) -> None:
        if self.default_provider is not None and self.default_provider not in self.known_providers:
            known = ", ".join(sorted(self.known_providers))
            raise UsageError(f"unknown provider {self.default_provider!r}; known: {known}")


def provider_problem(provider: str, endpoint: Endpoint, origin: str, options: ManifestOptions) -> Problem:
    """Why ``provider`` cannot serve ``endpoint`` for this line (unknown, or not that endpoint).

    ``origin`` says where the provider came from (``"the line's provider"``, ``"--provider"``, ...), so the
    message points at the thing to change.
    """
    if provider not in options.known_providers:
        return (
            "provider",
            f"unknown provider {show(provider)}; known: {', '.join(sorted(options.known_providers))}",
        )
    able = ", ".join(sorted(name for name in options.known_providers if endpoint in served_by(name, options)))
    return "provider", f"{provider} ({origin}) cannot serve {endpoint.value}; providers that can: {able}"


def served_by(provider: str, options: ManifestOptions) -> frozenset[Endpoint]:
    """The endpoints ``provider`` can call: its kind's (configured, else its preset's); a name of no
    known kind is taken to be on the OpenAI adapter (an OpenAI-compatible server)."""
    kind = options.kinds.get(provider)
    if kind is None:
        preset = PRESETS.get(provider)
        kind = preset.kind if preset is not None else "openai"
    return ENDPOINTS[kind]
