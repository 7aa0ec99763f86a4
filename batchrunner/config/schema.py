"""The shape of a config file as pydantic models: where untrusted configuration is validated (habit 14).

Every model forbids unknown keys, so a typo (``max_atempts``, ``[provider.openai]``) is an error naming
the file and the dotted key instead of a setting silently ignored. :func:`problems` turns a
:class:`pydantic.ValidationError` into one line per problem, ``WHERE: KEY: reason``, built from the error
locations and messages only: pydantic's inputs are never shown, since the input may be a key.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Annotated, Final

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails, PydanticCustomError

from batchrunner.config.sources import REFERENCE, dotted
from batchrunner.providers.catalog import ProviderKind, default_key_env
from batchrunner.providers.registry import Transport

PROVIDER_NAME_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_-]*$"
"""A provider name: it becomes part of a variable name (``LOCAL_VLLM_API_KEY``), so no dots or spaces."""

Loc = tuple[int | str, ...]


def _no_bool(value: object) -> object:
    """``concurrency = true`` is a mistake, not 1 (pydantic's lax mode would take it)."""
    if isinstance(value, bool):
        raise PydanticCustomError("bool_number", "expected a number, not true/false")
    return value


def _key_reference(value: str) -> str:
    """An ``api_key`` must be a whole ``${VAR}`` reference; the value itself is never echoed."""
    if REFERENCE.fullmatch(value) is None:
        raise PydanticCustomError("literal_key", "a literal API key is not allowed in a config file")
    return value


Count = Annotated[int, BeforeValidator(_no_bool), Field(ge=1)]
Positive = Annotated[float, BeforeValidator(_no_bool), Field(gt=0, allow_inf_nan=False)]
NonNegative = Annotated[float, BeforeValidator(_no_bool), Field(ge=0, allow_inf_nan=False)]
Money = Annotated[Decimal, BeforeValidator(_no_bool), Field(ge=0, allow_inf_nan=False)]
Text = Annotated[str, Field(min_length=1)]
ProviderName = Annotated[str, Field(pattern=PROVIDER_NAME_PATTERN)]
KeyReference = Annotated[str, AfterValidator(_key_reference)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class RunSection(_Strict):
    """``[run]``: defaults of ``batchrunner run``; each one is also a flag."""

    concurrency: Count | None = None
    max_attempts: Count | None = None
    timeout_s: Positive | None = None
    max_cost_usd: Money | None = None
    provider: Text | None = None
    model: Text | None = None
    db: Text | None = None
    transport: Transport | None = None


class RunOverrides(RunSection):
    """What flags and ``BATCHRUNNER_*`` variables may set: ``[run]`` plus limits for every provider."""

    rpm: Positive | None = None
    tpm: Positive | None = None
    base_url: Text | None = None
    no_stop_on_systematic: bool | None = None


class ProviderSection(_Strict):
    """``[providers.NAME]``: adjusts a preset, or defines a new provider (then ``kind`` is required)."""

    kind: ProviderKind | None = None
    api_key: KeyReference | None = None
    base_url: Text | None = None
    rpm: Positive | None = None
    tpm: Positive | None = None
    timeout_s: Positive | None = None
    connect_timeout_s: Positive | None = None
    fake_latency_ms: NonNegative | None = None
    batch_api: bool | None = None
    """``false``: an OpenAI-compatible server without ``/v1/files`` + ``/v1/batches``; its jobs run in real
    time in batch mode (default: true for the openai and anthropic kinds, false for the other presets)."""


class ConfigSchema(_Strict):
    """The whole file. ``prices`` entries are checked by :meth:`PriceTable.with_overrides`."""

    run: RunSection = Field(default_factory=RunSection)
    providers: dict[ProviderName, ProviderSection] = Field(default_factory=dict)
    prices: dict[str, dict[str, object]] = Field(default_factory=dict)


def problems(exc: ValidationError, where: Callable[[Loc], str]) -> list[str]:
    """One ``WHERE: reason`` line per error; ``where`` names a location (file key, flag or variable)."""
    errors = exc.errors(include_url=False, include_input=False)
    return [f"{where(error['loc'])}: {_reason(error)}" for error in errors]


def _reason(error: ErrorDetails) -> str:
    loc = error["loc"]
    if error["type"] == "extra_forbidden":
        known = _known_keys(loc[:-1])
        return "unknown key" + (f" (known: {', '.join(known)})" if known else "")
    if error["type"] == "literal_key" and len(loc) == 3:
        variable = default_key_env(str(loc[1]))
        return (
            f'a literal API key is not allowed in a config file; write api_key = "${{{variable}}}" '
            f"(or another variable) and set {variable} in the environment or .env"
        )
    if loc and loc[-1] == "[key]":
        return "a provider name may hold letters, digits, '_' and '-', and starts with a letter or digit"
    return error["msg"]


def _known_keys(parent: Loc) -> list[str]:
    """The keys allowed where an unknown key was found."""
    if not parent:
        model: type[BaseModel] = ConfigSchema
    elif parent == ("run",):
        model = RunSection
    elif len(parent) == 2 and parent[0] == "providers":
        model = ProviderSection
    else:
        return []
    return list(model.model_fields)


def file_location(label: str) -> Callable[[Loc], str]:
    """``where`` for errors in a file: ``batchrunner.toml: providers.openai.rpm``."""

    def where(loc: Loc) -> str:
        path = loc[:-1] if loc and loc[-1] == "[key]" else loc
        return f"{label}: {dotted(path)}"

    return where
