"""The adapters as the wire tests build them (a pytest plugin loaded by conftest.py): ``make_provider``
for one API over one transport, and the ``transport`` fixture that runs a test over each."""

from __future__ import annotations

import pytest

from batchrunner.providers.base import Provider
from batchrunner.providers.registry import TRANSPORTS, ProviderSettings, Transport, build_provider
from batchrunner.secret import Secret


def make_provider(api: str, base_url: str, transport: Transport, key: str) -> Provider:
    """The adapter ``build_provider`` builds for ``api`` (``openai`` or ``anthropic``) over ``transport``."""
    settings = ProviderSettings(
        name=api,
        kind="openai" if api == "openai" else "anthropic",
        api_key=Secret(key),
        base_url=base_url,
        transport=transport,
    )
    return build_provider(api, settings)


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> Transport:
    """Each transport in turn (``sdk`` and ``http``): a test using it runs over both."""
    value: Transport = request.param
    return value
