"""``load_settings``: the layers (defaults < file < environment < flags) folded into one :class:`Settings`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Final

from pydantic import ValidationError

from batchrunner.config.schema import (
    ConfigSchema,
    Loc,
    ProviderSection,
    RunOverrides,
    file_location,
    problems,
)
from batchrunner.config.settings import ProviderConfig, RunDefaults, Settings
from batchrunner.config.sources import (
    ConfigFile,
    dotted,
    expand,
    find_config,
    merged_env,
    read_config,
    resolve_reference,
)
from batchrunner.errors import ConfigError, UsageError
from batchrunner.policy.pricing import BUILTIN_PRICES, PriceTable
from batchrunner.providers.catalog import (
    KINDS,
    PRESETS,
    ProviderKind,
    ProviderPreset,
    default_key_env,
    has_batch_api,
)
from batchrunner.secret import Secret

_OPTION_NAMES: Final = {"timeout_s": "timeout", "max_cost_usd": "max_cost"}
"""Options whose flag is shorter than the field: ``--timeout``, ``--max-cost`` (as ``batchrunner run``)."""


def _option(name: str) -> str:
    return _OPTION_NAMES.get(name, name)


RUN_ENV_VARS: Final[Mapping[str, str]] = MappingProxyType(
    {name: f"BATCHRUNNER_{_option(name).upper()}" for name in RunOverrides.model_fields}
)
"""The variable of each run option (``concurrency`` -> ``BATCHRUNNER_CONCURRENCY``, ``timeout_s`` ->
``BATCHRUNNER_TIMEOUT``): the names ``batchrunner run`` gives click's ``envvar=``."""


def load_settings(
    *,
    flags: Mapping[str, object | None],
    env: Mapping[str, str],
    cwd: Path,
    config_path: Path | None = None,
) -> Settings:
    """Resolve the settings of one command: defaults < config file < environment < flags.

    ``flags`` maps :class:`RunDefaults` field names to values, ``None`` meaning "not given"; ``env`` is
    the process environment (the CLI passes ``os.environ``), overlaid on ``cwd/.env``. The environment
    layer is ``BATCHRUNNER_<OPTION>`` (:data:`RUN_ENV_VARS`): when the CLI declares the same names as
    click ``envvar=`` the two agree, and ``.env`` works for them too. Raises :class:`ConfigError` for a
    bad file or variable and :class:`UsageError` for a bad flag; a missing API key is raised later, by
    :meth:`Settings.provider_settings`, only for a provider that is used.
    """
    unknown = sorted(set(flags) - set(RunOverrides.model_fields))
    if unknown:
        raise TypeError(f"load_settings: unknown flag(s) {', '.join(unknown)}")
    full_env = merged_env(env, cwd)
    path = find_config(cwd, full_env, config_path)
    file = read_config(path, cwd) if path is not None else None
    schema = _validate_file(file, full_env) if file is not None else ConfigSchema()
    label = file.label if file is not None else "(no config file)"

    from_env, from_flags = _from_env(full_env), _from_flags(flags)
    values, origins = _layered(schema, label, from_env, from_flags)
    run = _run_defaults(values)

    run_timeout = "timeout_s" in from_env or "timeout_s" in from_flags
    providers = {
        name: _provider(name, schema.providers.get(name), full_env, label, run_timeout=run_timeout)
        for name in dict.fromkeys([*PRESETS, *schema.providers])
    }
    given = {name: origin for name, origin in origins.items() if not origin.startswith(label)}

    def key_lookup(variable: str) -> Secret | None:
        value = full_env.get(variable, "").strip()
        return Secret(value) if value else None

    settings = Settings(
        run=run,
        prices=_prices(schema, label),
        source=path,
        providers=providers,
        given=given,
        key_lookup=key_lookup,
    )
    if run.provider is not None and run.provider not in settings.known_providers:
        error = UsageError if origins["provider"].startswith("--") else ConfigError
        known = ", ".join(sorted(settings.known_providers))
        raise error(f"{origins['provider']}: unknown provider {run.provider!r} (known: {known})")
    return settings


def _layered(
    schema: ConfigSchema, label: str, from_env: dict[str, object], from_flags: dict[str, object]
) -> tuple[dict[str, object], dict[str, str]]:
    """The run options, file < environment < flags, and where each came from (``--rpm``...)."""
    layers: list[tuple[dict[str, object], Callable[[str], str]]] = [
        (schema.run.model_dump(exclude_none=True), lambda name: f"{label}: run.{name}"),
        (from_env, lambda name: RUN_ENV_VARS[name]),
        (from_flags, _flag_name),
    ]
    values: dict[str, object] = {}
    origins: dict[str, str] = {}
    for layer, origin in layers:
        values.update(layer)
        origins.update({name: origin(name) for name in layer})
    return values, origins


def _validate_file(file: ConfigFile, env: Mapping[str, str]) -> ConfigSchema:
    """Expand ``${VAR}`` (API keys excepted) and check the shape; all shape problems at once."""
    data = expand(file.data, env, file.label, skip="api_key")
    try:
        return ConfigSchema.model_validate(data)
    except ValidationError as exc:  # not chained: pydantic's own message would show the inputs
        raise ConfigError("\n".join(problems(exc, file_location(file.label)))) from None


def _flag_name(name: str) -> str:
    return "--" + _option(name).replace("_", "-")


def _overrides(
    raw: Mapping[str, object], where: Callable[[Loc], str], error: type[UsageError]
) -> dict[str, object]:
    """One layer of run options, validated; errors name the flag or variable (never the value)."""
    try:
        return RunOverrides.model_validate(raw).model_dump(exclude_none=True)
    except ValidationError as exc:
        raise error("\n".join(problems(exc, where))) from None


def _from_env(env: Mapping[str, str]) -> dict[str, object]:
    """``BATCHRUNNER_<OPTION>`` values; an empty variable counts as unset."""
    raw = {name: env[var] for name, var in RUN_ENV_VARS.items() if env.get(var, "").strip()}
    return _overrides(raw, lambda loc: RUN_ENV_VARS[str(loc[0])], ConfigError)


def _from_flags(flags: Mapping[str, object | None]) -> dict[str, object]:
    raw = {name: value for name, value in flags.items() if value is not None}
    return _overrides(raw, lambda loc: _flag_name(str(loc[0])), UsageError)


def _run_defaults(values: Mapping[str, object]) -> RunDefaults:
    """The merged layers (each already validated) as :class:`RunDefaults`, defaults filling the gaps."""
    merged = RunOverrides.model_validate(values)
    default = RunDefaults()
    return RunDefaults(
        concurrency=merged.concurrency or default.concurrency,
        max_attempts=merged.max_attempts or default.max_attempts,
        timeout_s=merged.timeout_s or default.timeout_s,
        max_cost_usd=merged.max_cost_usd,
        provider=merged.provider,
        model=merged.model,
        db=merged.db or default.db,
        rpm=merged.rpm,
        tpm=merged.tpm,
        base_url=merged.base_url,
        no_stop_on_systematic=bool(merged.no_stop_on_systematic),
        transport=merged.transport or default.transport,
    )


def _provider(
    name: str, entry: ProviderSection | None, env: Mapping[str, str], label: str, *, run_timeout: bool
) -> ProviderConfig:
    """One provider from its preset (if any), its file entry (if any) and the environment.

    ``run_timeout``: ``timeout_s`` came from the environment or a flag, which beats the file's
    per-provider ``timeout_s`` (flags beat the file).
    """
    preset = PRESETS.get(name)
    section = entry or ProviderSection()
    kind = _kind(name, preset, section, label)
    key_env, api_key = _key(name, kind, section, env)
    if section.batch_api and kind == "fake":
        where = f"{label}: {dotted(('providers', name, 'batch_api'))}"
        raise ConfigError(f"{where}: the fake provider has no batch API (it answers in-process)")
    preset_url = env.get(preset.base_url_env, "").strip() if preset and preset.base_url_env else ""
    return ProviderConfig(
        name=name,
        kind=kind,
        api_key=api_key,
        key_env=key_env,
        base_url=section.base_url or preset_url or (preset.base_url if preset else None),
        rpm=section.rpm,
        tpm=section.tpm,
        timeout_s=None if run_timeout else section.timeout_s,
        connect_timeout_s=section.connect_timeout_s,
        fake_latency_ms=section.fake_latency_ms,
        headers=_headers(preset, env),
        batch_api=has_batch_api(name, kind) if section.batch_api is None else section.batch_api,
    )


def _headers(preset: ProviderPreset | None, env: Mapping[str, str]) -> dict[str, str]:
    """The preset's headers whose variables are set (``OpenAI-Organization`` from ``OPENAI_ORG_ID``...)."""
    if preset is None:
        return {}
    found = {header: env.get(variable, "").strip() for header, variable in preset.header_envs.items()}
    return {header: value for header, value in found.items() if value}


def _kind(name: str, preset: ProviderPreset | None, section: ProviderSection, label: str) -> ProviderKind:
    where = f"{label}: {dotted(('providers', name, 'kind'))}"
    if preset is None:
        if section.kind is None:
            raise ConfigError(
                f"{where}: required for a provider that is not a preset ({', '.join(PRESETS)}): "
                f"{' or '.join(sorted(KINDS))}"
            )
        return section.kind
    if section.kind is not None and section.kind != preset.kind:
        raise ConfigError(
            f"{where}: {name} is a preset of kind {preset.kind}; "
            f"give the {section.kind} provider another name"
        )
    return preset.kind


def _key(
    name: str, kind: ProviderKind, section: ProviderSection, env: Mapping[str, str]
) -> tuple[str | None, Secret | None]:
    """``(variable, key)``: the entry's ``${VAR}``, else the preset's variable, else ``NAME_API_KEY``.

    A missing key is not an error here (see :meth:`Settings.provider_settings`); the ``fake`` kind
    needs none.
    """
    if section.api_key is not None:
        key_env, value = resolve_reference(section.api_key, env)
    elif kind == "fake":
        return None, None
    else:
        key_env = default_key_env(name)
        value = env.get(key_env)
    value = (value or "").strip()
    return key_env, Secret(value) if value else None


def _prices(schema: ConfigSchema, label: str) -> PriceTable:
    try:
        return BUILTIN_PRICES.with_overrides(schema.prices)
    except ConfigError as exc:
        raise ConfigError(f"{label}: {exc}") from None
