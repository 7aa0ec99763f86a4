"""Limits learned from the provider: the per-minute limits its rate-limit headers advertise for the key.

A user who gives no ``--rpm``/``--tpm`` usually still has a limit (their tier, a proxy's ``rpm:``), and
most providers say it on every answer: ``x-ratelimit-limit-requests`` / ``x-ratelimit-limit-tokens``
(OpenAI, LiteLLM, vLLM behind a gateway, batchrunner's fake server) or
``anthropic-ratelimit-requests-limit`` / ``anthropic-ratelimit-tokens-limit`` (parsed into
:class:`~batchrunner.models.RateLimitInfo` by the provider adapters). The rules, per dimension
(requests and tokens apart):

- **No limit configured**: the advertised one is adopted from the first answer that carries it, and
  followed when it changes, up or down (a tier upgrade mid-run, a proxy reconfigured).
- **A limit configured**: it stays a ceiling -- a higher advertised limit never raises it -- but a
  *lower* advertised limit lowers it: the provider refuses what is above its own limit anyway, so
  keeping ours would only buy 429s.
- An answer without the header changes nothing (a proxy's 502 says nothing about the key's limit).

Until the first answer, a dimension that may still be learned has no known limit, and a run's first
instant would send a whole ``--concurrency`` of requests at once (32 at once against a 10-requests-a-
second window: 22 refusals). So until the first answer arrives (with or without headers) the limiter
**probes**: it sends at most ``PROBE_REQUESTS`` (4) requests a window (the runners of a run share them),
then adopts what the answer says. Why 4 and not 1: a provider without such headers (a local vLLM) then
loses little of its first round trip, and a limit below 4 a second costs at most a few early 429s, well
inside 2% of a batch (LiteLLM at ``rpm: 120``, 2 a second: 2 refusals); from 4 a second up (OpenAI's
lowest paid tier is 500 RPM), none. Requests admitted before a limit was known are remembered for one
window, so that a window created from the headers counts them.

A limit that counts over a longer period (some providers advertise requests *per day* in the same
header) is taken as per minute: that is never stricter than the provider, only less useful.
"""

from __future__ import annotations

import math
from collections import deque

from batchrunner.models import RateLimitInfo

__all__ = ["PROBE_REQUESTS", "LearnedLimits"]

PROBE_REQUESTS = 4
"""Requests a window before the first answer, where a limit may still be learned (see above)."""


class LearnedLimits:
    """The per-minute limits in force for one provider: the configured ones, lowered or filled in by the
    limits its answers advertise; and the probe that holds a run back until the first answer."""

    __slots__ = ("_advertised", "_configured", "_heard", "_probes", "_recent", "_span", "learn")

    def __init__(self, *, rpm: float | None, tpm: float | None, learn: bool, span: float) -> None:
        self._configured = (rpm, tpm)
        self.learn = learn
        self._span = span
        self._advertised: tuple[int | None, int | None] = (None, None)
        self._heard = not learn
        self._probes: deque[float] = deque()
        self._recent: deque[tuple[float, int]] = deque()

    @property
    def probing(self) -> bool:
        """True until the first answer, where a limit may be learned (nothing is configured for it)."""
        return not self._heard and None in self._configured

    @property
    def advertised(self) -> tuple[int | None, int | None]:
        """``(rpm, tpm)`` as the provider last advertised them (``None``: never said)."""
        return self._advertised

    def in_force(self) -> tuple[float | None, float | None]:
        """``(rpm, tpm)`` to enforce: the lower of the configured and the advertised (``None``: no limit)."""
        rpm, tpm = self._configured
        return _lower(rpm, self._advertised[0]), _lower(tpm, self._advertised[1])

    def observe(self, info: RateLimitInfo | None) -> bool:
        """An answer came back with these headers (``None``: none): True when the limits in force changed."""
        if not self.learn:
            return False
        self._heard = True
        if info is None:
            return False
        before = self.in_force()
        rpm, tpm = self._advertised
        self._advertised = (info.limit_requests or rpm, info.limit_tokens or tpm)
        return self.in_force() != before

    def probe_delay(self, now: float, parts: int) -> float:
        """Seconds until the probe lets the next request go (<= 0: now): this runner's part of
        ``PROBE_REQUESTS`` a window, in whole requests (fewer than one: one for a longer window)."""
        if not self.probing:
            return 0.0
        share = PROBE_REQUESTS / parts
        whole = max(1, math.floor(share))
        span = self._span * max(1.0, 1.0 / share)
        sent = [at for at in self._probes if at > now - span]
        if len(sent) < whole:
            return 0.0
        return sent[-whole] + span - now

    def admitted(self, now: float, tokens: int) -> None:
        """A request was admitted; remembered for one window while some limit is still unknown."""
        if not self.learn:
            return
        if self.probing:
            self._probes.append(now)
            while len(self._probes) > PROBE_REQUESTS:
                self._probes.popleft()
        if None in self.in_force():
            recent = self._recent
            recent.append((now, tokens))
            while recent and recent[0][0] <= now - self._span:
                recent.popleft()
        elif self._recent:
            self._recent.clear()

    def recent(self, now: float) -> list[tuple[float, int]]:
        """``(admitted at, tokens)`` of the requests admitted in the last window."""
        return [(at, tokens) for at, tokens in self._recent if at > now - self._span]


def _lower(configured: float | None, advertised: int | None) -> float | None:
    if configured is None:
        return None if advertised is None else float(advertised)
    return configured if advertised is None else min(configured, float(advertised))
