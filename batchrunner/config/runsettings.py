"""What a run remembers of how it was started, and how a later invocation's settings meet it.

A run's first ``batchrunner run`` stores its settings in ``runs.settings_json``: per provider its kind,
base URL, the *name* of its key variable (never the key), limits and timeout; and the run's concurrency,
max attempts, timeout, max cost, default model and transport (a run stored before the transport
existed has none, and takes this invocation's). A resume, a retry and any later ``run`` use them, so
that a run started against ``--base-url http://127.0.0.1:8000/v1`` is never resumed against the
provider's public API because the flag was not repeated.

Only what is given for this invocation (a flag, or its ``BATCHRUNNER_*`` variable) overrides what the
run remembers, for this invocation only, and each such change is announced ("using --rpm 300 instead of
the run's 600"). A base URL that the environment or the config file now says differently is not taken:
the run keeps its own, and says how to change it (``--base-url``). A provider the run did not use before
(its jobs rerouted, say) is added to what it remembers, with the settings of this invocation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from decimal import Decimal
from typing import Any, Final

from batchrunner.config import Settings
from batchrunner.config.settings import ProviderConfig, RunDefaults
from batchrunner.providers.catalog import PRESETS

VERSION: Final = 1
RUN_FIELDS: Final = ("concurrency", "max_attempts", "timeout_s", "max_cost_usd", "model", "transport")
"""The run-wide settings a run remembers (each is also a flag of ``batchrunner run``)."""

Notify = Callable[[str], None]


def snapshot(
    settings: Settings, providers: Iterable[str], known: dict[str, Any] | None = None
) -> dict[str, Any]:
    """What a run remembers: ``known`` (what it remembered so far) plus the ``providers`` it lacks."""
    if known is not None:
        document = {**known, "providers": dict(known.get("providers", {}))}
    else:
        run = settings.run
        values = {name: getattr(run, name) for name in RUN_FIELDS}
        if values["max_cost_usd"] is not None:
            values["max_cost_usd"] = str(values["max_cost_usd"])
        document = {"version": VERSION, "run": values, "providers": {}}
    for name in providers:
        if name not in document["providers"]:
            document["providers"][name] = _provider_snapshot(settings, name)
    return document


def _provider_snapshot(settings: Settings, name: str) -> dict[str, Any]:
    entry = settings.provider_config(name)
    limits = settings.rate_limits(name)
    return {
        "kind": entry.kind,
        "base_url": settings.run.base_url or entry.base_url,
        "key_env": entry.key_env,
        "rpm": limits.rpm,
        "tpm": limits.tpm,
        "timeout_s": entry.timeout_s,
    }


def apply(stored: dict[str, Any], settings: Settings, notify: Notify) -> Settings:
    """``settings`` as this invocation resolved them, with what the run remembers filled back in.

    Given options (``settings.given``) win and are announced where they differ from the run's; base
    URLs are the run's unless ``--base-url`` is given (see the module docstring).
    """
    run = _run_defaults(stored.get("run", {}), settings, notify)
    providers = dict(settings.providers)
    for name, remembered in stored.get("providers", {}).items():
        providers[name] = _provider(name, remembered, settings, notify)
    return replace(settings, run=run, providers=providers)


def _run_defaults(remembered: dict[str, Any], settings: Settings, notify: Notify) -> RunDefaults:
    current = settings.run
    values: dict[str, Any] = {}
    for name in RUN_FIELDS:
        if name not in remembered:
            continue
        theirs = remembered[name]
        if name == "max_cost_usd" and theirs is not None:
            theirs = Decimal(theirs)
        ours = getattr(current, name)
        if name not in settings.given:
            values[name] = theirs
        elif ours != theirs:
            notify(f"using {settings.given[name]} {_show(ours)} instead of the run's {_show(theirs)}")
    return replace(current, **values)


def _provider(name: str, remembered: dict[str, Any], settings: Settings, notify: Notify) -> ProviderConfig:
    """The provider as the run remembers it, but for what this invocation gives."""
    entry = settings.provider_config(name)
    theirs_url = remembered.get("base_url")
    if "base_url" in settings.given:
        if settings.run.base_url != theirs_url:
            notify(f"{name}: using --base-url {settings.run.base_url} instead of the run's {theirs_url}")
    elif entry.base_url != theirs_url:
        preset = PRESETS.get(name)
        is_default = preset is not None and preset.base_url == entry.base_url
        ours = (
            f"the default {entry.base_url}"
            if is_default
            else f"{entry.base_url} from the environment or config file"
        )
        notify(
            f"{name}: using the run's base URL {theirs_url}, not {ours} "
            f"(pass --base-url {entry.base_url} to use that)"
        )
    key_env = remembered.get("key_env")
    api_key = entry.api_key if key_env == entry.key_env else settings.key_lookup(key_env) if key_env else None
    for limit in ("rpm", "tpm"):
        if limit in settings.given and getattr(settings.run, limit) != remembered.get(limit):
            ours, theirs = getattr(settings.run, limit), remembered.get(limit)
            notify(f"{name}: using --{limit} {_show(ours)} instead of the run's {_show(theirs)}")
    timeout_s = None if "timeout_s" in settings.given else remembered.get("timeout_s")
    return replace(
        entry,
        kind=remembered.get("kind", entry.kind),
        base_url=theirs_url,
        key_env=key_env,
        api_key=api_key,
        rpm=remembered.get("rpm"),
        tpm=remembered.get("tpm"),
        timeout_s=timeout_s,
    )


def _show(value: object) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
