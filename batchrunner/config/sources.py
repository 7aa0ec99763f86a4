"""Where configuration comes from: finding and parsing the file, reading ``.env``, expanding ``${VAR}``.

Everything here turns bytes into plain Python data (or a :class:`~batchrunner.errors.ConfigError` that
names the file and the dotted key) and never looks at ``os.environ``: the environment arrives as a
mapping from the caller (STYLE habit 19). Error messages carry file names, key paths and variable names
but never values, because a value may be a key (docs/reliability.md rule 11); that is also why a YAML syntax
error is reported from its line and column instead of PyYAML's own message, which quotes the line.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Final

from batchrunner.errors import ConfigError

CONFIG_ENV: Final = "BATCHRUNNER_CONFIG"
"""The variable that names a config file (like ``--config``)."""
CONFIG_NAMES: Final = ("batchrunner.toml", "batchrunner.yaml", "batchrunner.yml")
"""The files looked for in the working directory, when no file is named."""
DOTENV_NAME: Final = ".env"

_YAML_SUFFIXES: Final = frozenset({".yaml", ".yml"})
_NAME: Final = r"[A-Za-z_][A-Za-z0-9_]*"
REFERENCE: Final = re.compile(rf"\$\{{(?P<name>{_NAME})(?::-(?P<default>[^}}]*))?\}}")
"""``${VAR}`` or ``${VAR:-default}``; the default may be empty and cannot contain ``}``."""
_DOLLAR_BRACE: Final = "${"

KeyPath = tuple[str, ...]
"""A key path in the file, ``("providers", "openai", "rpm")``."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ConfigFile:
    """A parsed config file: where it is, how to name it in messages, and its data."""

    path: Path
    label: str
    """The path as messages show it: relative to the working directory when it is inside it."""
    data: dict[str, object]


def merged_env(env: Mapping[str, str], cwd: Path) -> dict[str, str]:
    """``cwd/.env`` overlaid by ``env``: the real environment beats ``.env``.

    ``.env`` values are taken literally (no ``${VAR}`` interpolation inside ``.env``): python-dotenv would
    interpolate from ``os.environ``, not from the mapping we were given. A ``NAME`` line without ``=``
    sets nothing.
    """
    path = cwd / DOTENV_NAME
    from_file: dict[str, str] = {}
    if path.is_file():
        from dotenv import dotenv_values  # only where there is a .env (start-up, issue 11)

        try:
            values = dotenv_values(path, interpolate=False)
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{DOTENV_NAME}: cannot read it ({type(exc).__name__})") from None
        from_file = {name: value for name, value in values.items() if value is not None}
    return {**from_file, **env}


def find_config(cwd: Path, env: Mapping[str, str], config_path: Path | None) -> Path | None:
    """The config file to use: ``config_path``, else ``$BATCHRUNNER_CONFIG``, else one in ``cwd``.

    A named file must exist; two candidates in ``cwd`` (``batchrunner.toml`` and ``batchrunner.yaml``)
    are an error rather than a silent choice.
    """
    if config_path is not None:
        path = cwd / config_path
        if not path.is_file():
            raise ConfigError(f"config file {config_path} not found")
        return path
    named = env.get(CONFIG_ENV, "").strip()
    if named:
        path = cwd / named
        if not path.is_file():
            raise ConfigError(f"config file {named} (from {CONFIG_ENV}) not found")
        return path
    found = [cwd / name for name in CONFIG_NAMES if (cwd / name).is_file()]
    if len(found) > 1:
        names = " and ".join(path.name for path in found)
        raise ConfigError(f"both {names} exist in {cwd}; keep one, or name it with --config")
    return found[0] if found else None


def read_config(path: Path, cwd: Path) -> ConfigFile:
    """Parse ``path`` (TOML or YAML, by suffix) into a mapping; errors name the file and the line."""
    label = str(path.relative_to(cwd)) if path.is_relative_to(cwd) else str(path)
    is_yaml = path.suffix.lower() in _YAML_SUFFIXES
    if not is_yaml and path.suffix.lower() != ".toml":
        raise ConfigError(f"{label}: unknown config format {path.suffix!r} (use .toml, .yaml or .yml)")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{label}: cannot read it ({type(exc).__name__})") from None
    if is_yaml:
        from batchrunner.config.yamlfile import parse_yaml  # PyYAML only for a YAML file

        data = parse_yaml(text, label)
    else:
        data = _parse_toml(text, label)
    return ConfigFile(path=path, label=label, data=data)


def _parse_toml(text: str, label: str) -> dict[str, object]:
    """TOML with floats as Decimal, so ``max_cost_usd = 0.1`` and prices stay exact."""
    try:
        return tomllib.loads(text, parse_float=Decimal)
    except tomllib.TOMLDecodeError as exc:  # its message is a position, never the text
        raise ConfigError(f"{label}: invalid TOML: {exc}") from None


def dotted(path: KeyPath | tuple[int | str, ...]) -> str:
    """``("prices", "gpt-4.1", "input")`` -> ``prices."gpt-4.1".input`` (parts with dots are quoted)."""
    parts = [str(part) for part in path]
    return ".".join(f'"{part}"' if ("." in part or not part or " " in part) else part for part in parts)


def expand(data: object, env: Mapping[str, str], label: str, path: KeyPath = (), skip: str = "") -> object:
    """``data`` with ``${VAR}`` / ``${VAR:-default}`` in every string value replaced from ``env``.

    Keys are never expanded. Values under a key named ``skip`` are left as they are (API keys are
    resolved later, lazily, so that a run needs only the keys of the providers it uses).
    """
    if isinstance(data, dict):
        return {
            key: value if key == skip else expand(value, env, label, (*path, str(key)), skip)
            for key, value in data.items()
        }
    if isinstance(data, list):
        return [expand(item, env, label, (*path, str(index)), skip) for index, item in enumerate(data)]
    if isinstance(data, str) and _DOLLAR_BRACE in data:
        return _expand_string(data, env, label, path)
    return data


def _expand_string(value: str, env: Mapping[str, str], label: str, path: KeyPath) -> str:
    where = f"{label}: {dotted(path)}"

    def substitute(match: re.Match[str]) -> str:
        name, default = match["name"], match["default"]
        found = env.get(name)
        if default is not None:  # shell semantics: the default also replaces an empty value
            if _DOLLAR_BRACE in default:
                raise ConfigError(f"{where}: a default cannot hold another reference")
            return found or default
        if found is None:
            raise ConfigError(
                f"{where}: ${{{name}}} is not set; set {name} in the environment or .env, "
                f"or give a default: ${{{name}:-default}}"
            )
        return found

    expanded = REFERENCE.sub(substitute, value)
    if _DOLLAR_BRACE in REFERENCE.sub("", value):
        raise ConfigError(f"{where}: malformed reference; write ${{VAR}} or ${{VAR:-default}}")
    return expanded


def resolve_reference(reference: str, env: Mapping[str, str]) -> tuple[str, str | None]:
    """``(variable, value)`` for a whole-value ``${VAR}`` / ``${VAR:-default}`` (value ``None``: unset)."""
    match = REFERENCE.fullmatch(reference.strip())
    if match is None:  # the schema only lets whole references through
        raise ValueError("not a ${VAR} reference")
    name, default = match["name"], match["default"]
    found = env.get(name)
    if default is not None:
        return name, found or default
    return name, found
