"""Every error tailorlm raises on purpose, in one small hierarchy.

Callers catch :class:`TailorlmError` to handle anything of ours; the service maps each
class to one HTTP status (``serve/errors.py``). Each class also derives from the
built-in exception it refines, so code that catches ``ValueError`` or ``LookupError``
keeps working::

    TailorlmError
    ├── ConfigError(ValueError)          a setting, option or method spec is invalid       -> 400
    ├── DataError(ValueError)            input data is malformed (a loader's file, a record) -> 400
    │   └── LoadError                    one line/field of a dataset file (path, line, field)
    ├── SchemaVersionError(RuntimeError) the store was written by a newer tailorlm           -> 500
    ├── NotFoundError(LookupError)       something named does not exist                      -> 404
    │   ├── NoAdapterError               no registered adapter can serve a user (names the train command)
    │   └── NoProjectorError             no soft-prompt projector is registered for a task/model
    ├── BackendError(RuntimeError)       the model backend failed (HTTP error, bad response) -> 502
    └── FetchError(RuntimeError)         a dataset download failed                           -> 502

What this module leaves out: errors of the libraries we call (pydantic's
``ValidationError``, SQLAlchemy's, httpx's) are translated where they are caught, not
wrapped here.
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "ConfigError",
    "DataError",
    "FetchError",
    "NoAdapterError",
    "NoProjectorError",
    "NotFoundError",
    "SchemaVersionError",
    "TailorlmError",
]


class TailorlmError(Exception):
    """Base of every error tailorlm raises deliberately."""


class ConfigError(TailorlmError, ValueError):
    """A setting, option, method spec or config field is invalid (the message names it)."""


class DataError(TailorlmError, ValueError):
    """Input data is malformed; the message says what and where."""


class SchemaVersionError(TailorlmError, RuntimeError):
    """The store's schema is newer than this tailorlm understands."""


class NotFoundError(TailorlmError, LookupError):
    """Something named (a user, an adapter, a projector) does not exist."""


class NoAdapterError(NotFoundError):
    """No registered adapter can serve the request (the message names the train command)."""


class NoProjectorError(NotFoundError):
    """No soft-prompt projector is registered for the task and base model."""


class BackendError(TailorlmError, RuntimeError):
    """The model backend failed (connection, HTTP error, malformed response).

    ``status_code`` carries the HTTP status when there is one, so a proxy (such as the test
    server in :mod:`tailorlm.testing`) can pass an upstream failure on unchanged.
    """

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class FetchError(TailorlmError, RuntimeError):
    """A dataset could not be downloaded or verified."""
