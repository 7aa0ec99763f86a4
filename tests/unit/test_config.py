"""Settings from defaults < config file < environment < flags, with real files in tmp_path (bad files and
which file is read: test_config_errors.py)."""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path

import pytest
from helpers.config_files import config_error, load, write

from batchrunner.config import RUN_ENV_VARS, RunDefaults, Settings
from batchrunner.errors import ConfigError, UsageError
from batchrunner.policy.pricing import BUILTIN_PRICES, ModelPrice
from batchrunner.providers.catalog import PRESETS
from batchrunner.secret import Secret

CANARY = "sk-canary-5f0c1d2e3a4b"
"""A key that must never show up in a message or a repr."""

EXAMPLE_TOML = """
[run]
concurrency = 8
max_attempts = 3
timeout_s = 60
max_cost_usd = 2.5
provider = "local-vllm"
model = "my-model"
db = "runs.db"

[providers.openai]
api_key = "${OPENAI_API_KEY}"
base_url = "https://proxy.example/v1"
rpm = 500
tpm = 200000
timeout_s = 120

[providers.local-vllm]
kind = "openai"
base_url = "http://127.0.0.1:8000/v1"
api_key = "${VLLM_KEY:-none}"

[prices."my-model"]
input = 0.10
cached_input = 0.05
output = 0.40
"""

EXAMPLE_YAML = """
run:
  concurrency: 8
  max_attempts: 3
  timeout_s: 60
  max_cost_usd: 2.5
  provider: local-vllm
  model: my-model
  db: runs.db
providers:
  openai:
    api_key: ${OPENAI_API_KEY}
    base_url: https://proxy.example/v1
    rpm: 500
    tpm: 200000
    timeout_s: 120
  local-vllm:
    kind: openai
    base_url: http://127.0.0.1:8000/v1
    api_key: "${VLLM_KEY:-none}"
prices:
  my-model: {input: 0.10, cached_input: 0.05, output: 0.40}
"""


# -- defaults and the file's shape ---------------------------------------------------------------------


def test_no_file_gives_the_defaults(tmp_path: Path) -> None:
    settings = load(tmp_path)
    assert settings.run == RunDefaults()
    assert settings.source is None
    assert settings.prices == BUILTIN_PRICES
    assert settings.known_providers == frozenset(PRESETS)
    assert settings.rate_limits("openai").max_concurrency == 32


def test_settings_without_arguments_serve_the_fake_provider() -> None:
    settings = Settings()
    assert settings.provider_settings("fake").kind == "fake"
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        settings.provider_settings("openai")


@pytest.mark.parametrize(
    ("name", "text"), [("batchrunner.toml", EXAMPLE_TOML), ("batchrunner.yaml", EXAMPLE_YAML)]
)
def test_the_documented_file_in_toml_and_yaml(tmp_path: Path, name: str, text: str) -> None:
    path = write(tmp_path, name, text)
    settings = load(tmp_path, env={"OPENAI_API_KEY": CANARY})
    assert settings.source == path
    assert settings.run == RunDefaults(
        concurrency=8,
        max_attempts=3,
        timeout_s=60.0,
        max_cost_usd=Decimal("2.5"),
        provider="local-vllm",
        model="my-model",
        db="runs.db",
    )
    openai = settings.provider_settings("openai")
    assert (openai.api_key, openai.base_url, openai.timeout_s) == (
        Secret(CANARY),
        "https://proxy.example/v1",
        120.0,
    )
    limits = settings.rate_limits("openai")
    assert (limits.rpm, limits.tpm, limits.max_concurrency) == (500, 200_000, 8)
    vllm = settings.provider_settings("local-vllm")
    assert (vllm.kind, vllm.api_key, vllm.key_env, vllm.timeout_s) == (
        "openai",
        Secret("none"),
        "VLLM_KEY",
        60.0,
    )
    assert settings.known_providers == frozenset(PRESETS) | {"local-vllm"}
    assert settings.prices.price("my-model") == ModelPrice(
        input=Decimal("0.10"),
        cached_input=Decimal("0.05"),
        output=Decimal("0.40"),
        batch_input=Decimal("0.05"),  # no batch prices given: half the list prices
        batch_output=Decimal("0.20"),
    )


def test_toml_and_yaml_give_equal_settings(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    write(tmp_path / "a", "batchrunner.toml", EXAMPLE_TOML)
    write(tmp_path / "b", "batchrunner.yaml", EXAMPLE_YAML)
    env = {"OPENAI_API_KEY": CANARY}
    from_toml, from_yaml = load(tmp_path / "a", env=env), load(tmp_path / "b", env=env)
    assert from_toml.run == from_yaml.run
    assert from_toml.providers == from_yaml.providers
    assert from_toml.prices == from_yaml.prices


def test_an_empty_file_is_fine(tmp_path: Path) -> None:
    write(tmp_path, "batchrunner.yaml", "")
    assert load(tmp_path).run == RunDefaults()


# -- precedence -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("in_file", "in_dotenv", "in_env", "flag", "expected"),
    [
        (None, None, None, None, 32),  # the default
        (8, None, None, None, 8),  # the file beats the default
        (8, None, "16", None, 16),  # the environment beats the file
        (8, "12", None, None, 12),  # ... and so does .env
        (8, "12", "16", None, 16),  # the real environment beats .env
        (8, "12", "16", 4, 4),  # a flag beats everything
        (None, None, None, 4, 4),  # a flag alone
    ],
)
def test_precedence_of_run_options(
    tmp_path: Path,
    in_file: int | None,
    in_dotenv: str | None,
    in_env: str | None,
    flag: int | None,
    expected: int,
) -> None:
    if in_file is not None:
        write(tmp_path, "batchrunner.toml", f"[run]\nconcurrency = {in_file}\n")
    if in_dotenv is not None:
        write(tmp_path, ".env", f"BATCHRUNNER_CONCURRENCY={in_dotenv}\n")
    env = {} if in_env is None else {"BATCHRUNNER_CONCURRENCY": in_env}
    settings = load(tmp_path, env=env, flags={"concurrency": flag})
    assert settings.run.concurrency == expected
    assert settings.rate_limits("fake").max_concurrency == expected


def test_every_layer_sets_every_run_option(tmp_path: Path) -> None:
    write(tmp_path, "batchrunner.toml", '[run]\nmodel = "from-file"\ndb = "file.db"\nmax_cost_usd = 1\n')
    env = {"BATCHRUNNER_DB": "env.db", "BATCHRUNNER_MAX_COST": "2.50", "BATCHRUNNER_MODEL": ""}
    settings = load(tmp_path, env=env, flags={"max_cost_usd": Decimal("3"), "model": None})
    assert (settings.run.model, settings.run.db, settings.run.max_cost_usd) == (
        "from-file",
        "env.db",
        Decimal(3),
    )
    assert set(RUN_ENV_VARS) == {field for field in RunDefaults.__dataclass_fields__}
    assert (RUN_ENV_VARS["max_cost_usd"], RUN_ENV_VARS["timeout_s"]) == (
        "BATCHRUNNER_MAX_COST",
        "BATCHRUNNER_TIMEOUT",
    )


@pytest.mark.parametrize(
    ("flag", "in_file", "in_env", "expected"),
    [
        (None, None, None, "https://api.openai.com/v1"),  # the preset's default
        (None, None, "http://env/v1", "http://env/v1"),  # OPENAI_BASE_URL beats the default
        (None, "http://file/v1", "http://env/v1", "http://file/v1"),  # the file entry beats the variable
        ("http://flag/v1", "http://file/v1", "http://env/v1", "http://flag/v1"),  # the flag beats all
    ],
)
def test_precedence_of_base_url(
    tmp_path: Path, flag: str | None, in_file: str | None, in_env: str | None, expected: str
) -> None:
    if in_file is not None:
        write(tmp_path, "batchrunner.toml", f'[providers.openai]\nbase_url = "{in_file}"\n')
    env = {"OPENAI_API_KEY": CANARY} | ({"OPENAI_BASE_URL": in_env} if in_env else {})
    settings = load(tmp_path, env=env, flags={"base_url": flag})
    assert settings.provider_settings("openai").base_url == expected


def test_flag_limits_beat_the_providers_entry(tmp_path: Path) -> None:
    write(tmp_path, "batchrunner.toml", "[providers.openai]\nrpm = 500\ntpm = 1000\n")
    assert load(tmp_path).rate_limits("openai").rpm == 500
    limits = load(tmp_path, flags={"rpm": 60, "concurrency": 3}).rate_limits("openai")
    assert (limits.rpm, limits.tpm, limits.max_concurrency) == (60, 1000, 3)
    assert load(tmp_path).rate_limits("anthropic").rpm is None  # no entry: no limit


@pytest.mark.parametrize(
    ("run_timeout", "flag", "expected"),
    [
        (None, None, 120.0),  # the provider's entry beats the default
        (90, None, 120.0),  # ... and the file's [run] value
        (90, 30.0, 30.0),  # a flag beats the file, the provider's entry included
    ],
)
def test_precedence_of_timeouts(
    tmp_path: Path, run_timeout: int | None, flag: float | None, expected: float
) -> None:
    run = f"[run]\ntimeout_s = {run_timeout}\n" if run_timeout else ""
    write(tmp_path, "batchrunner.toml", run + "[providers.fake]\ntimeout_s = 120\n")
    settings = load(tmp_path, flags={"timeout_s": flag})
    assert settings.provider_settings("fake").timeout_s == expected


# -- ${VAR} and .env ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"HOST": "gpu-1", "PORT": "9000"}, "http://gpu-1:9000/v1"),
        ({"PORT": "9000"}, "http://localhost:9000/v1"),  # unset: the default
        ({"HOST": "", "PORT": "9000"}, "http://localhost:9000/v1"),  # empty: the default, as in the shell
    ],
)
def test_references_are_expanded(tmp_path: Path, env: dict[str, str], expected: str) -> None:
    write(
        tmp_path,
        "batchrunner.toml",
        '[providers.vllm]\nkind = "openai"\nbase_url = "http://${HOST:-localhost}:${PORT}/v1"\n'
        'rpm = "${RPM:-600}"\n',
    )
    settings = load(tmp_path, env={**env, "VLLM_API_KEY": CANARY})
    assert settings.provider_settings("vllm").base_url == expected
    assert settings.rate_limits("vllm").rpm == 600


def test_an_unset_variable_names_the_file_the_key_and_the_variable(tmp_path: Path) -> None:
    message = config_error(tmp_path, '[run]\ndb = "${DATA_DIR}/runs.db"\n')
    assert message.startswith("batchrunner.toml: run.db: ${DATA_DIR} is not set")


def test_a_malformed_reference_is_an_error(tmp_path: Path) -> None:
    assert "malformed reference" in config_error(tmp_path, '[run]\nmodel = "${not closed"\n')


def test_dotenv_supplies_keys_and_the_real_environment_beats_it(tmp_path: Path) -> None:
    write(tmp_path, ".env", f"OPENAI_API_KEY={CANARY}\nANTHROPIC_API_KEY=from-dotenv\nJUST_A_NAME\n")
    settings = load(tmp_path, env={"ANTHROPIC_API_KEY": "from-env"})
    assert settings.provider_settings("openai").api_key == Secret(CANARY)
    assert settings.provider_settings("anthropic").api_key == Secret("from-env")
    assert "JUST_A_NAME" not in os.environ
    assert os.environ.get("OPENAI_API_KEY") != CANARY  # .env is read, never written into os.environ


def test_dotenv_feeds_references(tmp_path: Path) -> None:
    write(tmp_path, ".env", "MODEL=from-dotenv\n")
    write(tmp_path, "batchrunner.toml", '[run]\nmodel = "${MODEL}"\n')
    assert load(tmp_path).run.model == "from-dotenv"
    assert load(tmp_path, env={"MODEL": "from-env"}).run.model == "from-env"


# -- keys -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("batchrunner.toml", f'[providers.openai]\napi_key = "{CANARY}"\n'),
        ("batchrunner.toml", f'[providers.openai]\napi_key = "${{OPENAI_API_KEY}}{CANARY}"\n'),
        ("batchrunner.yaml", f"providers:\n  anthropic:\n    api_key: {CANARY}\n"),
    ],
)
def test_a_literal_key_is_refused_without_repeating_it(tmp_path: Path, name: str, text: str) -> None:
    write(tmp_path, name, text)
    with pytest.raises(ConfigError) as info:
        load(tmp_path)
    message = str(info.value)
    assert f"{name}: providers." in message
    assert 'api_key = "${' in message
    assert CANARY not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__  # pydantic's text shows inputs


def test_a_key_under_a_misspelled_name_is_not_repeated_either(tmp_path: Path) -> None:
    message = config_error(tmp_path, f'[providers.openai]\napikey = "{CANARY}"\n')
    assert message.startswith("batchrunner.toml: providers.openai.apikey: unknown key (known: kind, api_key")
    assert CANARY not in message


def test_a_yaml_syntax_error_does_not_quote_the_line(tmp_path: Path) -> None:
    message = config_error(
        tmp_path, f"providers:\n  openai:\n    api_key: {CANARY}: [\n", name="batchrunner.yaml"
    )
    assert message.startswith("batchrunner.yaml: invalid YAML:")
    assert "line 3" in message
    assert CANARY not in message


def test_a_key_is_needed_only_by_a_provider_that_is_used(tmp_path: Path) -> None:
    write(
        tmp_path,
        "batchrunner.toml",
        '[providers.anthropic]\napi_key = "${TEAM_ANTHROPIC_KEY}"\n'
        '[providers.local]\nkind = "openai"\nbase_url = "http://127.0.0.1:8000/v1"\n',
    )
    settings = load(tmp_path, env={"OPENAI_API_KEY": CANARY})  # loads: nobody asked for anthropic yet
    assert settings.provider_settings("openai").api_key == Secret(CANARY)
    assert settings.provider_settings("fake").api_key is None
    with pytest.raises(ConfigError, match=r"provider anthropic: set TEAM_ANTHROPIC_KEY "):
        settings.provider_settings("anthropic")
    with pytest.raises(ConfigError, match=r"provider local: set LOCAL_API_KEY "):
        settings.provider_settings("local")
    assert settings.rate_limits("anthropic").rpm is None  # limits need no key
    local = load(tmp_path, env={"LOCAL_API_KEY": "x"}).provider_settings("local")
    assert (local.api_key, local.key_env) == (Secret("x"), "LOCAL_API_KEY")


def test_settings_mask_keys_in_their_repr(tmp_path: Path) -> None:
    write(tmp_path, "batchrunner.toml", EXAMPLE_TOML)
    settings = load(tmp_path, env={"OPENAI_API_KEY": CANARY, "VLLM_KEY": CANARY})
    for text in (repr(settings), str(settings), repr(settings.provider_settings("local-vllm"))):
        assert CANARY not in text
        assert "Secret('***')" in text


# -- custom providers -----------------------------------------------------------------------------------


def test_custom_providers_with_each_kind(tmp_path: Path) -> None:
    write(
        tmp_path,
        "batchrunner.yaml",
        "providers:\n"
        "  claude-proxy: {kind: anthropic, base_url: 'http://proxy', api_key: '${PROXY_KEY}'}\n"
        "  rehearsal: {kind: fake, fake_latency_ms: 25}\n",
    )
    settings = load(tmp_path, env={"PROXY_KEY": CANARY})
    proxy = settings.provider_settings("claude-proxy")
    assert (proxy.kind, proxy.base_url, proxy.api_key) == ("anthropic", "http://proxy", Secret(CANARY))
    rehearsal = settings.provider_settings("rehearsal")
    assert (rehearsal.kind, rehearsal.fake_latency_ms, rehearsal.api_key) == ("fake", 25.0, None)
    assert {"claude-proxy", "rehearsal"} <= settings.known_providers


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[providers.vllm]\nbase_url = "http://x"\n', "providers.vllm.kind: required"),
        (
            '[providers.openai]\nkind = "anthropic"\n',
            "providers.openai.kind: openai is a preset of kind openai",
        ),
        (
            '[providers.vllm]\nkind = "bedrock"\n',
            "providers.vllm.kind: Input should be 'openai', 'anthropic'",
        ),
        ('[providers."a.b"]\nkind = "fake"\n', 'providers."a.b": a provider name may hold'),
    ],
)
def test_bad_provider_entries(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in config_error(tmp_path, text)


def test_unknown_provider_names(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown provider 'nope'"):
        Settings().provider_settings("nope")
    assert "batchrunner.toml: run.provider: unknown provider 'nope'" in config_error(
        tmp_path, '[run]\nprovider = "nope"\n'
    )
    write(tmp_path, "batchrunner.toml", "")
    with pytest.raises(UsageError, match="--provider: unknown provider 'nope'"):
        load(tmp_path, flags={"provider": "nope"})


def test_which_providers_have_a_batch_api(tmp_path: Path) -> None:
    write(
        tmp_path,
        "batchrunner.toml",
        '[providers.vllm]\nkind = "openai"\nbase_url = "http://127.0.0.1:8000/v1"\nbatch_api = false\n'
        '[providers.proxy]\nkind = "openai"\nbase_url = "http://127.0.0.1:4000/v1"\n',
    )
    settings = load(tmp_path)
    has = {name: settings.provider_config(name).batch_api for name in sorted(settings.known_providers)}
    # the presets as the catalog says; a configured OpenAI-compatible server has one unless it says not
    assert has == {
        "anthropic": True, "cohere": False, "fake": False, "gemini": False, "openai": True,
        "proxy": True, "vllm": False,
    }  # fmt: skip


def test_the_fake_provider_cannot_claim_a_batch_api(tmp_path: Path) -> None:
    message = config_error(tmp_path, "[providers.fake]\nbatch_api = true\n")
    assert "providers.fake.batch_api" in message and "no batch API" in message
