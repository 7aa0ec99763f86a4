"""Each provider's batch API for one command (``run --mode batch``, ``cancel``): opened once, closed at
the end; built from the settings, so the key comes from where every key comes from."""

from __future__ import annotations

from batchrunner.config import Settings
from batchrunner.providers.batchapi import BatchApi, open_batch_api

__all__ = ["BatchApis"]


class BatchApis:
    """``apis(name)``: provider ``name``'s batch API (a ValueError for a provider without one)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.opened: dict[str, BatchApi] = {}

    def __call__(self, name: str) -> BatchApi:
        api = self.opened.get(name)
        if api is None:
            built = open_batch_api(self.settings.provider_settings(name))
            if built is None:
                raise ValueError(f"provider {name} has no batch API")
            api = self.opened[name] = built
        return api

    async def aclose(self) -> None:
        for api in self.opened.values():
            await api.aclose()
