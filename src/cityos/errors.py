"""Errors raised by CityOS.

Every error CityOS raises derives from :class:`CityOSError`, so callers can catch one type.
The hierarchy::

    CityOSError
    ├── ConfigError            settings missing, inconsistent or unsafe
    ├── DatasetError           about a dataset as a whole
    │   ├── DatasetNotFound    no dataset of that name (also a KeyError)
    │   └── DatasetExists      creating a name that is taken
    ├── ValidationError        a record or value breaks its schema (names dataset, row, field)
    ├── QueryError             a query that cannot be planned or run as asked
    │   └── QueryTimeout       a query ran past its time budget (and was cancelled)
    ├── EngineError            an execution engine (DuckDB, Spark) failed or is unavailable
    ├── ConflictError          a concurrent writer changed what this write was based on
    └── MissingDependency      an optional package is not installed (also an ImportError)

Messages say what was wrong, where (dataset, row or record key, field) and what to do.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CityOSError",
    "ConfigError",
    "ConflictError",
    "DatasetError",
    "DatasetExists",
    "DatasetNotFound",
    "EngineError",
    "MissingDependency",
    "QueryError",
    "QueryTimeout",
    "ValidationError",
]


class CityOSError(Exception):
    """Root of every error raised by CityOS."""


class ConfigError(CityOSError):
    """Settings are missing, inconsistent or unsafe for the environment."""


class DatasetError(CityOSError):
    """A problem with a dataset as a whole."""


class DatasetNotFound(DatasetError, KeyError):
    """No dataset with the given name exists in the catalog."""

    def __init__(self, name: str, known: list[str] | None = None) -> None:
        self.name = name
        #: Names of existing datasets, as a hint for whoever may see them all (the CLI
        #: and the plain Python store). Code answering a less trusted caller (the HTTP
        #: API, ``SecureStore``) shows :meth:`public` instead.
        self.known = sorted(known or [])
        hint = ""
        if self.known:
            hint = f"; known datasets: {', '.join(self.known[:20])}"
        super().__init__(f"unknown dataset {name!r}{hint} (create it with `cityos dataset create`)")

    def public(self) -> DatasetNotFound:
        """The same error without the names of other datasets.

        Examples
        --------
        >>> str(DatasetNotFound("nosuch", ["secret_cases"]).public())
        "unknown dataset 'nosuch' (create it with `cityos dataset create`)"
        """
        return DatasetNotFound(self.name)

    def __str__(self) -> str:  # KeyError would quote the message again
        return str(self.args[0])


class DatasetExists(DatasetError):
    """A dataset with that name already exists."""


class ValidationError(CityOSError, ValueError):
    """A record breaks its dataset's schema.

    Attributes name the place: ``dataset``, ``row`` (0-based position in the batch),
    ``key`` (the record key when known), ``field`` and ``expected``. ``problems`` holds
    every problem found in the batch (the message shows the first few).
    """

    def __init__(
        self,
        message: str,
        *,
        dataset: str | None = None,
        row: int | None = None,
        key: Any = None,
        field: str | None = None,
        expected: str | None = None,
        problems: list[dict[str, Any]] | None = None,
    ) -> None:
        self.dataset = dataset
        self.row = row
        self.key = key
        self.field = field
        self.expected = expected
        self.problems = problems or [
            {
                "dataset": dataset,
                "row": row,
                "key": key,
                "field": field,
                "expected": expected,
                "message": message,
            }
        ]
        super().__init__(message)


class QueryError(CityOSError, ValueError):
    """A query that cannot be planned or executed as asked."""


class QueryTimeout(QueryError):
    """A query ran past its time budget and was cancelled; narrow it or raise the budget."""


class EngineError(CityOSError):
    """An execution engine failed or is not available."""


class ConflictError(CityOSError):
    """A concurrent change invalidated this write; retry it."""


class MissingDependency(CityOSError, ImportError):
    """An optional dependency is needed for this feature."""

    def __init__(self, package: str, feature: str, extra: str) -> None:
        super().__init__(
            f"{feature} needs the Python package {package!r}; install it with "
            f"`pip install 'cityos[{extra}]'`"
        )


# -- exit codes of the command line ---------------------------------------------------------
#: Every ``cityos`` command exits with the same code for the same kind of failure.
EXIT_OK = 0
EXIT_FAILED = 1  # the operation failed (a CityOS error of no more specific kind)
EXIT_USAGE = 2  # wrong command-line usage: unknown command or option, bad value
EXIT_NOT_FOUND = 3  # a dataset, user, key or record that does not exist
EXIT_BAD_INPUT = 4  # data, a mapping or a request that breaks its schema or rules
EXIT_DENIED = 5  # not authenticated, or not allowed
EXIT_CONFLICT = 6  # exists already, or changed concurrently
EXIT_ENVIRONMENT = 7  # configuration, a missing optional package, an unavailable engine
EXIT_INTERNAL = 70  # an unexpected error (a bug): rerun with --debug and report it

# access errors are classified by name so that this module imports nothing
_DENIED_NAMES = frozenset({"AuthenticationError", "PermissionDenied"})


def exit_code(exc: BaseException) -> int:
    """The command-line exit code for a failure.

    Examples
    --------
    >>> exit_code(DatasetNotFound("roads")), exit_code(ValidationError("bad speed"))
    (3, 4)
    >>> exit_code(DatasetExists("roads")), exit_code(RuntimeError("bug"))
    (6, 70)
    """
    if isinstance(exc, KeyboardInterrupt):
        return 130
    if not isinstance(exc, CityOSError):
        return EXIT_INTERNAL
    names = {c.__name__ for c in type(exc).__mro__}
    if names & _DENIED_NAMES:
        return EXIT_DENIED
    if isinstance(exc, DatasetExists | ConflictError) or "AccessConflict" in names:
        return EXIT_CONFLICT
    if isinstance(exc, KeyError):
        return EXIT_NOT_FOUND
    if isinstance(exc, ConfigError | MissingDependency | EngineError):
        return EXIT_ENVIRONMENT
    if isinstance(exc, ValueError | OSError) or "IngestError" in names:
        return EXIT_BAD_INPUT
    return EXIT_FAILED
