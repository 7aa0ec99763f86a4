"""Settings resolved once, at the edge: defaults < config file < environment < flags (STYLE habit 19).

The CLI calls :func:`load_settings` with ``os.environ``, the working directory and its flags, and passes
the frozen :class:`Settings` down; nothing else in the package reads the environment.

**Where settings come from**, lowest first:

1. built-in defaults (:class:`RunDefaults`, the provider presets, the built-in price table);
2. the config file: ``--config FILE``, else ``$BATCHRUNNER_CONFIG``, else ``batchrunner.toml`` or
   ``batchrunner.yaml`` (``.yml``) in the working directory (two of them is an error);
3. the environment: the process environment over ``.env`` in the working directory (read, never
   written into ``os.environ``; its values are literal, without interpolation). It supplies API keys,
   preset base URLs (``OPENAI_BASE_URL``...), ``${VAR}`` references and a ``BATCHRUNNER_`` variable
   for each run option (:data:`RUN_ENV_VARS`: ``BATCHRUNNER_CONCURRENCY``, ``BATCHRUNNER_TIMEOUT``...);
4. flags, which the CLI passes as a mapping (``None``: not given).

**The file** (the same shape in TOML and YAML; every key optional)::

    [run]                      # defaults of `batchrunner run`; each is also a flag and a variable
    concurrency = 32           # most requests in flight per provider (default 32)
    max_attempts = 6           # default 6
    timeout_s = 300            # per-attempt timeout in seconds (default 300)
    max_cost_usd = 25.0        # budget cap in USD (default: none)
    provider = "openai"        # provider of lines that name none
    model = "gpt-4o-mini"      # model of simple lines that name none
    db = "batchrunner.db"      # database path or SQLAlchemy URL
    transport = "http"         # http (aiohttp, the default) or sdk (the official SDKs)

    [providers.openai]         # adjust a preset: openai, anthropic, gemini, cohere, fake ...
    api_key = "${OPENAI_API_KEY}"          # a ${VAR} reference, never the key itself
    base_url = "https://..."
    rpm = 500                  # requests per minute (default: no limit)
    tpm = 200000               # tokens per minute (default: no limit)
    timeout_s = 120            # this provider's per-attempt timeout
    connect_timeout_s = 10
    # fake_latency_ms = 50     # latency per call, for kind "fake"

    [providers.local-vllm]     # ... or define a new one: kind is then required
    kind = "openai"            # openai | anthropic | fake
    base_url = "http://127.0.0.1:8000/v1"
    api_key = "${VLLM_KEY:-none}"

    [prices."my-model"]        # USD per 1M tokens; adds to or replaces the built-in table
    input = 0.10
    cached_input = 0.05        # optional; default: the input price
    output = 0.40

In YAML the tables are nested mappings (``run:``, ``providers: {local-vllm: {kind: openai}}``,
``prices: {my-model: {input: 0.1, output: 0.4}}``).

**Rules**

- ``${VAR}`` and ``${VAR:-default}`` work in every string value (the default also replaces an empty
  value, as in the shell). An unset variable without a default is an error naming the file, the key
  and the variable -- except in ``api_key``, where it means "no key": that is reported only if a run
  uses the provider, so a shared file may list providers some users have no key for.
- ``api_key`` must be a whole ``${VAR}`` reference: a literal key is refused, and the error does not
  repeat it. Without ``api_key``, a preset reads its variable (``OPENAI_API_KEY``) and a new provider
  ``NAME_API_KEY`` (``LOCAL_VLLM_API_KEY``). Keys live only in :class:`~batchrunner.secret.Secret`\\ s.
- Unknown keys are errors naming the file and the dotted key; so are bad values.
- Per provider, flags beat the file: ``--base-url`` beats the entry's ``base_url``, which beats the
  preset's variable (``OPENAI_BASE_URL``), which beats its default; ``--rpm``/``--tpm`` beat the
  entry's; ``--timeout`` (or ``BATCHRUNNER_TIMEOUT``) beats the entry's ``timeout_s``, which beats
  ``[run] timeout_s``.
"""

from batchrunner.config.load import RUN_ENV_VARS, load_settings
from batchrunner.config.settings import ProviderConfig, RunDefaults, Settings

__all__ = ["RUN_ENV_VARS", "ProviderConfig", "RunDefaults", "Settings", "load_settings"]
