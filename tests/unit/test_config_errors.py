"""Config errors name the file, the key or the variable, and say what is wrong; which file is read."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from helpers.config_files import config_error, load, write

from batchrunner.config import RunDefaults
from batchrunner.errors import ConfigError, UsageError

# -- validation -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[runn]\n", "batchrunner.toml: runn: unknown key (known: run, providers, prices)"),
        ("[run]\nmax_atempts = 3\n", "batchrunner.toml: run.max_atempts: unknown key"),
        ("[run]\nrpm = 3\n", "batchrunner.toml: run.rpm: unknown key"),  # a flag only: see RunDefaults
        ("[run]\nconcurrency = 0\n", "run.concurrency: Input should be greater than or equal to 1"),
        ("[run]\nconcurrency = true\n", "run.concurrency: expected a number, not true/false"),
        ("[run]\nmax_attempts = 1.5\n", "run.max_attempts: Input should be a valid integer"),
        ("[run]\ntimeout_s = 0\n", "run.timeout_s: Input should be greater than 0"),
        ("[run]\nmax_cost_usd = -1\n", "run.max_cost_usd: Input should be greater than or equal to 0"),
        ('[run]\nmodel = ""\n', "run.model: String should have at least 1 character"),
        ("[providers.openai]\nrpm = 0\n", "providers.openai.rpm: Input should be greater than 0"),
        ("[providers.openai]\ntpm = inf\n", "providers.openai.tpm: Input should be a finite number"),
        ("[prices.m]\ninput = 1\n", "batchrunner.toml: prices.m: output is required"),
        ('[prices."gpt-4o"]\ninput = 1\noutput = -2\n', "prices.gpt-4o.output: must be a finite number >= 0"),
        ("[run]\nconcurrency = \n", "batchrunner.toml: invalid TOML: Invalid value (at line 2, column 15)"),
        ("run = 3\n", "batchrunner.toml: run: Input should be a valid dictionary"),
    ],
)
def test_file_errors_name_the_file_and_the_key(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in config_error(tmp_path, text)


def test_all_shape_problems_are_reported_at_once(tmp_path: Path) -> None:
    message = config_error(tmp_path, "[run]\nconcurrency = 0\nfoo = 1\n[providers.openai]\nrpm = -1\n")
    assert len(message.splitlines()) == 3


def test_yaml_refuses_duplicate_keys_like_toml(tmp_path: Path) -> None:
    message = config_error(tmp_path, "run:\n  concurrency: 1\n  concurrency: 2\n", name="batchrunner.yaml")
    assert message == "batchrunner.yaml: invalid YAML: duplicate key 'concurrency' (at line 3, column 3)"


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({"concurrency": 0}, "--concurrency: Input should be greater than or equal to 1"),
        ({"max_attempts": True}, "--max-attempts: expected a number, not true/false"),
        ({"rpm": -5.0}, "--rpm: Input should be greater than 0"),
        ({"max_cost_usd": Decimal("NaN")}, "--max-cost: Input should be a finite number"),
    ],
)
def test_bad_flags_are_usage_errors(tmp_path: Path, flags: dict[str, object], expected: str) -> None:
    with pytest.raises(UsageError) as info:
        load(tmp_path, flags=flags)
    assert not isinstance(info.value, ConfigError)
    assert str(info.value) == expected


def test_bad_environment_values_name_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^BATCHRUNNER_TIMEOUT: Input should be a valid number"):
        load(tmp_path, env={"BATCHRUNNER_TIMEOUT": "soon"})


def test_an_unknown_flag_is_a_programming_error(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="max_cost"):
        load(tmp_path, flags={"max_cost": 3})


def test_run_defaults_check_values_built_in_code() -> None:
    with pytest.raises(UsageError):
        RunDefaults(concurrency=0)
    with pytest.raises(UsageError):
        RunDefaults(max_cost_usd=Decimal(-1))
    with pytest.raises(UsageError):
        RunDefaults(rpm=float("inf"))


# -- which file -----------------------------------------------------------------------------------------


def test_an_explicit_file_beats_the_variable_and_the_working_directory(tmp_path: Path) -> None:
    write(tmp_path, "batchrunner.toml", "[run]\nconcurrency = 1\n")
    write(tmp_path, "team.yaml", "run: {concurrency: 2}\n")
    write(tmp_path, "mine.toml", "[run]\nconcurrency = 3\n")
    assert load(tmp_path).run.concurrency == 1
    assert load(tmp_path, env={"BATCHRUNNER_CONFIG": "team.yaml"}).run.concurrency == 2
    settings = load(tmp_path, env={"BATCHRUNNER_CONFIG": "team.yaml"}, config_path=Path("mine.toml"))
    assert (settings.run.concurrency, settings.source) == (3, tmp_path / "mine.toml")


@pytest.mark.parametrize(
    ("files", "env", "config_path", "expected"),
    [
        (
            ("batchrunner.toml", "batchrunner.yaml"),
            {},
            None,
            "both batchrunner.toml and batchrunner.yaml exist",
        ),
        ((), {}, Path("missing.toml"), "config file missing.toml not found"),
        ((), {"BATCHRUNNER_CONFIG": "gone.yaml"}, None, "config file gone.yaml (from BATCHRUNNER_CONFIG)"),
        (("settings.ini",), {}, Path("settings.ini"), "settings.ini: unknown config format '.ini'"),
    ],
)
def test_which_file_errors(
    tmp_path: Path, files: tuple[str, ...], env: dict[str, str], config_path: Path | None, expected: str
) -> None:
    for name in files:
        write(tmp_path, name, "")
    with pytest.raises(ConfigError) as info:
        load(tmp_path, env=env, config_path=config_path)
    assert expected in str(info.value)
