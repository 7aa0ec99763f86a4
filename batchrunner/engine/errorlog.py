"""What the log says about attempts and their errors (``batchrunner run -v`` / ``-vv``).

- ``-vv`` (DEBUG): one line per attempt: job, attempt number, status, latency, error class;
- ``-v`` (INFO): each kind of error (provider, error class, HTTP status) the first time it appears,
  naming the provider's endpoint URL and the provider's own text, then a count of each kind at most
  every ``interval_s`` (10 s) while more of them come, and once at the end (:meth:`ErrorLog.close`).

A run against a dead endpoint thus shows at once what is wrong, instead of 178 silent retries. The
texts are the adapters' messages, already redacted (no key, no header); URLs lose any user:password.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from batchrunner.models import ClaimedJob, Outcome

log = logging.getLogger(__name__)

SUMMARY_INTERVAL_S = 10.0

_NO_STATUS_LABELS = {"transient": "connection error", "timeout": "timeout"}


@dataclass(slots=True)
class _Kind:
    url: str
    count: int = 0
    reported: int = 0
    """``count`` at the last line about this kind."""
    latest: str = ""


class ErrorLog:
    """Fed every outcome of the runner's attempts; see the module docstring."""

    def __init__(
        self,
        *,
        where: Callable[[str], str],
        interval_s: float = SUMMARY_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        run: str | None = None,
    ) -> None:
        """``where(provider)`` is the provider's endpoint URL; ``run`` names the run in each record."""
        self._where = where
        self._run = run
        self._interval_s = interval_s
        self._clock = clock
        self._kinds: dict[tuple[str, str], _Kind] = {}
        self._last_summary = clock()

    def attempt(self, job: ClaimedJob, outcome: Outcome | None) -> None:
        """One attempt of ``job`` ended in ``outcome`` (``None``: nothing was sent)."""
        if outcome is None:
            return
        record = outcome.attempt
        if log.isEnabledFor(logging.DEBUG):
            latency = "-" if record.latency_ms is None else f"{record.latency_ms:.0f} ms"
            log.debug(
                "job %s attempt %d: %s, %s, %s -> %s",
                job.custom_id,
                record.number,
                record.status_code if record.status_code is not None else "no status",
                latency,
                record.error_class or "ok",
                outcome.state.value,
                extra={
                    "event": "attempt",
                    "run": self._run,
                    "job": job.custom_id,
                    "attempt": record.number,
                    "provider": job.provider,
                    "model": job.model,
                    "status": record.status_code,
                    "latency_ms": None if record.latency_ms is None else round(record.latency_ms, 1),
                    "ttft_ms": None if record.ttft_ms is None else round(record.ttft_ms, 1),
                    "input_tokens": record.input_tokens,
                    "output_tokens": record.output_tokens,
                    "error_class": record.error_class,
                    "state": outcome.state.value,
                },
            )
        if record.error_class is not None:
            self._error(job.provider, label(record.error_class, record.status_code), outcome)

    def close(self) -> None:
        """The end of the run: a last count of every kind with errors not yet counted."""
        self._summarise()

    def _error(self, provider: str, kind_label: str, outcome: Outcome) -> None:
        text = (outcome.error or outcome.attempt.error_message or "").removeprefix(f"{provider}: ")
        kind = self._kinds.get((provider, kind_label))
        if kind is None:
            kind = self._kinds[provider, kind_label] = _Kind(url=safe_url(self._where(provider)))
            log.info(
                "%s: %s from %s: %s", provider, kind_label, kind.url, text,
                extra={"event": "error_kind", "run": self._run, "provider": provider, "url": kind.url,
                       "error_class": kind_label, "count": 1},
            )  # fmt: skip
            kind.reported = 1
        kind.count += 1
        kind.latest = text
        if self._clock() - self._last_summary >= self._interval_s:
            self._summarise()

    def _summarise(self) -> None:
        self._last_summary = self._clock()
        for (provider, kind_label), kind in self._kinds.items():
            if kind.count > kind.reported:
                log.info(
                    "%s: %s x%d from %s: %s", provider, kind_label, kind.count, kind.url, kind.latest,
                    extra={"event": "error_count", "run": self._run, "provider": provider, "url": kind.url,
                           "error_class": kind_label, "count": kind.count},
                )  # fmt: skip
                kind.reported = kind.count


def label(error_class: str, status_code: int | None) -> str:
    """A kind of error as the log names it: ``HTTP 503 transient``, ``connection error``, ``timeout``."""
    if status_code is None:
        return _NO_STATUS_LABELS.get(error_class, error_class)
    return f"HTTP {status_code} {error_class}"


def safe_url(url: str) -> str:
    """``url`` without any ``user:password@`` part."""
    try:
        parts = urlsplit(url)
        if "@" not in parts.netloc:
            return url
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port is not None else host
    except ValueError:
        return "(an invalid URL)"
    return urlunsplit(parts._replace(netloc=netloc))
