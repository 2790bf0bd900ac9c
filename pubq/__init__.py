"""pubq: a job-queue toolkit and the content-publishing pipeline built on it."""

from __future__ import annotations

from .errors import PermanentError, RetryableError
from .job import Job

__version__ = "0.1.0"

__all__ = ["Job", "PermanentError", "RetryableError", "__version__"]
