"""The one exception tree of batchrunner.

Every error the library raises on purpose derives from :class:`BatchrunnerError`; the CLI maps each
branch to one exit code (see docs/design.md "Exit codes"). The docstring of each class is its default message.

::

    BatchrunnerError
    ├── UsageError                   exit 2: bad options, unknown run
    │   └── ConfigError              exit 3: bad configuration, missing key (the run cannot start)
    ├── ManifestError                exit 2: the manifest has invalid lines (each one a ManifestIssue)
    ├── ConflictError                exit 2: a re-submitted id exists with different content
    ├── StoreError                   the database failed (driver errors are translated here)
    │   └── StoreFullError           the disk or the database's page limit is full
    ├── ExportError                  an export could not be written (nothing was left behind)
    └── ProviderError                one provider call failed; subclasses say what to do next
        ├── RateLimited              429/529: wait (retry_after) and slow the provider down
        │   └── Overloaded           529 / overloaded_error
        ├── TransientError           408, 409, >=500, connection errors: retry with backoff
        │   ├── ProviderTimeout      the attempt timed out; possibly billed
        │   └── InvalidResponse      a 200 whose body is not what the API promises
        ├── PermanentError           400, 404, 422: this job fails, no retry
        └── RunStoppingError         401/403, quota, billing: every job would fail alike; stop the run
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from batchrunner.models import RateLimitInfo


class BatchrunnerError(Exception):
    """batchrunner failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class UsageError(BatchrunnerError):
    """Bad usage."""


class ConfigError(UsageError):
    """The configuration is invalid."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ManifestIssue:
    """One rejected manifest line: where it is and what is wrong with it."""

    file: str
    line: int
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.field}: {self.reason}"


class ManifestError(BatchrunnerError):
    """The manifest has invalid lines; nothing was inserted."""

    def __init__(self, issues: list[ManifestIssue], total: int, *, shown: int = 20) -> None:
        self.issues = issues
        self.total = total
        lines = [str(issue) for issue in issues[:shown]]
        if total > len(lines):
            lines.append(f"... and {total - len(lines)} more invalid line(s)")
        summary = f"{total} invalid line(s); nothing was inserted (use --skip-invalid to load the valid ones)"
        super().__init__("\n".join([*lines, summary]))


class ConflictError(BatchrunnerError):
    """Some ids already exist in this run with different content."""

    def __init__(self, run: str, custom_ids: list[str], total: int) -> None:
        self.run = run
        self.custom_ids = custom_ids
        self.total = total
        listed = ", ".join(custom_ids[:20]) + (f" (+{total - 20} more)" if total > 20 else "")
        super().__init__(
            f"run {run!r} already has {total} id(s) with different content: {listed}; "
            "nothing was inserted (submit to a new --run, or give the changed lines new ids)"
        )


class StoreError(BatchrunnerError):
    """The job database failed."""


class StoreFullError(StoreError):
    """The job database is full (disk full or page limit reached)."""


class ExportError(BatchrunnerError):
    """The export could not be written; no partial file was left."""


class ProviderError(BatchrunnerError):
    """A provider call failed."""

    def __init__(
        self,
        message: str | None = None,
        *,
        status_code: int | None = None,
        request_id: str | None = None,
        possibly_billed: bool = False,
        rate_limits: RateLimitInfo | None = None,
        error_body: str | None = None,
        error_type: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.error_type = error_type
        """The provider's own name for the error (its ``code``, else its ``type``: ``model_not_found``)."""
        self.request_id = request_id
        self.possibly_billed = possibly_billed
        self.rate_limits = rate_limits
        self.error_body = error_body
        """The provider's error answer as JSON text, ``{"error": {...}}``, redacted (None: no answer)."""

    @property
    def error_class(self) -> str:
        """A short, stable name recorded with each attempt (``rate_limited``, ``transient`` ...)."""
        return _ERROR_CLASS_NAMES.get(type(self), type(self).__name__)


class RateLimited(ProviderError):
    """The provider rate-limited the request (429)."""

    def __init__(self, message: str | None = None, *, retry_after: float | None = None, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.retry_after = retry_after


class Overloaded(RateLimited):
    """The provider is overloaded (529)."""


class TransientError(ProviderError):
    """A transient provider failure (408, 409, >=500 or a connection error)."""


class ProviderTimeout(TransientError):
    """The provider did not answer in time; the request may have been billed."""


class InvalidResponse(TransientError):
    """The provider answered 200 with a body that is not the expected JSON."""


class PermanentError(ProviderError):
    """The provider rejected this request (400, 404, 422); retrying will not help."""


class RunStoppingError(ProviderError):
    """The provider refused the credentials, quota or billing; every job would fail alike."""


_ERROR_CLASS_NAMES: dict[type[ProviderError], str] = {
    ProviderError: "provider_error",
    RateLimited: "rate_limited",
    Overloaded: "overloaded",
    TransientError: "transient",
    ProviderTimeout: "timeout",
    InvalidResponse: "invalid_response",
    PermanentError: "permanent",
    RunStoppingError: "run_stopping",
}
