"""What every verb starts from: the settings (resolved as the CLI resolves them) and one open store."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from batchrunner.config import Settings, load_settings
from batchrunner.store.store import Store

DEFAULT_DB = "batchrunner.db"


def settings(*, config: str | os.PathLike[str] | None = None, **options: object) -> Settings:
    """Settings as ``batchrunner`` on the command line resolves them: defaults < config file
    (``config``, else ``$BATCHRUNNER_CONFIG``, else ``./batchrunner.toml``/``.yaml``) < the environment
    and ``./.env`` (API keys, ``OPENAI_BASE_URL``, ``BATCHRUNNER_*``) < ``options``.

    ``options`` are the run options by name, as the flags: ``db``, ``provider``, ``model``,
    ``concurrency``, ``max_attempts``, ``timeout_s``, ``max_cost_usd``, ``rpm``, ``tpm``, ``base_url``,
    ``no_stop_on_systematic``. This is the one place the library reads ``os.environ``: it is the Python
    API's edge, as the CLI's flags are the command line's.
    """
    return load_settings(
        flags=options,
        env=os.environ,
        cwd=Path.cwd(),
        config_path=Path(config) if config is not None else None,
    )


def resolved(given: Settings | None) -> Settings:
    """``given``, or the settings of the environment and config file."""
    return given if given is not None else settings()


@asynccontextmanager
async def open_store(db: str, *, create: bool = False) -> AsyncIterator[Store]:
    """The store at ``db``; only ``submit`` and ``run`` with jobs (``create=True``) may create a database."""
    store = await Store.open(db, create=create)
    try:
        yield store
    finally:
        await store.close()
