"""batchrunner: run large batches of LLM API calls reliably, fast and cheaply."""

from importlib.metadata import PackageNotFoundError, version

from batchrunner.errors import BatchrunnerError
from batchrunner.models import JobSpec, JobState

try:
    __version__ = version("batchrunner")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

__all__ = ["BatchrunnerError", "JobSpec", "JobState", "__version__"]
