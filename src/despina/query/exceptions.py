"""Exceptions of the query API, with the class names of ``neptune_query.exceptions``.

``except neptune_query.exceptions.X`` code ported to ``despina.query.exceptions.X`` keeps
working. The tree (spec/query-api.md §15)::

    NeptuneError (DespinaError)
    ├── NeptuneUserError
    │   ├── NeptuneProjectNotProvided       no project= and no DESPINA_/NEPTUNE_PROJECT at import
    │   ├── NeptuneApiTokenNotProvided      a store that needs a token has none
    │   └── NeptuneInvalidCredentialsError  the token was rejected
    ├── NeptuneProjectInaccessible          the project does not exist in the store
    ├── NeptuneFailedToFetchClientConfig    compatibility only; never raised by queries
    ├── AttributeTypeInferenceError         a filter attribute has conflicting types (§6)
    ├── ConflictingAttributeTypes           one column name, several types, no suffixes (§8.3)
    ├── NeptuneUnexpectedResponseError      the query was rejected at evaluation (bad regex, …)
    ├── NeptuneRetryError                   remote stores only
    └── NeptuneFileDownloadError            a file could not be copied out of the store

Argument errors are plain ``ValueError`` / ``TypeError``, as in ``neptune_query``. Importing this
module installs ``warnings.simplefilter("once", NeptuneWarning)``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence

from despina.errors import DespinaError

__all__ = [
    "AttributeTypeInferenceError",
    "ConflictingAttributeTypes",
    "NeptuneApiTokenNotProvided",
    "NeptuneError",
    "NeptuneFailedToFetchClientConfig",
    "NeptuneFileDownloadError",
    "NeptuneInvalidCredentialsError",
    "NeptuneProjectInaccessible",
    "NeptuneProjectNotProvided",
    "NeptuneRetryError",
    "NeptuneUnexpectedResponseError",
    "NeptuneUserError",
    "NeptuneWarning",
]


class NeptuneError(DespinaError):
    """Base of the query API's errors."""


class NeptuneWarning(Warning):
    """A value of an unsupported type was skipped (emitted once per type)."""


class NeptuneUserError(NeptuneError):
    """The caller asked for something that cannot work; the message says how to fix it."""

    status = 400


class NeptuneProjectNotProvided(NeptuneUserError):
    """No ``project=`` argument and no ``DESPINA_PROJECT`` / ``NEPTUNE_PROJECT`` at import."""

    def __init__(self) -> None:
        super().__init__(
            "NeptuneProjectNotProvided: The project name was not provided.\n\n"
            "Make sure to specify a valid project in one of the following ways:\n\n"
            "- Pass the project path to the `project` argument of the fetching method, "
            "e.g. project='workspace/project'\n"
            "- Set the `DESPINA_PROJECT` (or `NEPTUNE_PROJECT`) environment variable before "
            "importing despina.query"
        )


class NeptuneApiTokenNotProvided(NeptuneUserError):
    """The configured store needs an API token and none was set."""

    def __init__(self) -> None:
        super().__init__(
            "NeptuneApiTokenNotProvided: The API token was not provided.\n\n"
            "Call `set_api_token()` or set the `NEPTUNE_API_TOKEN` environment variable."
        )


class NeptuneInvalidCredentialsError(NeptuneUserError):
    """The API token was rejected."""

    def __init__(self) -> None:
        super().__init__(
            "NeptuneInvalidCredentialsError: Your API token was rejected.\n\n"
            "Check the token passed to `set_api_token()` or `NEPTUNE_API_TOKEN`."
        )


class NeptuneProjectInaccessible(NeptuneError):
    """The project does not exist in the store (or cannot be read)."""

    status = 404

    def __init__(self, detail: str = "") -> None:
        message = (
            "NeptuneProjectInaccessible: You don't have access to the project or it doesn't exist."
        )
        if detail:
            message += f"\n\n{detail}"
        super().__init__(message)


class NeptuneFailedToFetchClientConfig(NeptuneError):
    """Defined for compatibility with ``neptune_query``; despina queries never raise it."""

    def __init__(self, exception: Exception | None = None) -> None:
        super().__init__(
            "NeptuneFailedToFetchClientConfigException: Failed to fetch the client "
            f"configuration.\n\n{exception or ''}"
        )


class AttributeTypeInferenceError(NeptuneError):
    """A filter names an attribute whose type cannot be inferred (§6).

    Example message::

        AttributeTypeInferenceError: Failed to infer types for attribute cfg/lr
        cfg/lr: Neptune found the attribute name in multiple runs and experiments across the
        project with conflicting types: float, int
    """

    status = 400

    def __init__(self, attribute_names: Sequence[str], details: Iterable[str] | None = None):
        self.attribute_names = list(attribute_names)
        subject = (
            f"attribute {self.attribute_names[0]}"
            if len(self.attribute_names) == 1
            else f"attributes [{', '.join(self.attribute_names)}]"
        )
        lines = list(details or [])
        super().__init__(
            f"AttributeTypeInferenceError: Failed to infer types for {subject}\n"
            + "".join(f"{line}\n" for line in lines)
            + "\nTo resolve this ambiguity, give the attribute type explicitly, e.g. "
            'Filter.eq(Attribute("config/batch_size", type="int"), 64)'
        )


class ConflictingAttributeTypes(NeptuneError):
    """Stripping type suffixes would give two table columns the same name (§8.3)."""

    status = 400

    def __init__(self, attribute_names: Iterable[str]) -> None:
        self.attribute_names = list(attribute_names)
        super().__init__(
            "ConflictingAttributeTypes: Multiple types detected for attributes "
            f"[{', '.join(self.attribute_names)}]\n\n"
            "The attribute name is used with different types in different runs.\n"
            "- To present each type as a separate column, use "
            "type_suffix_in_column_names=True.\n"
            "- Alternatively, select one type with AttributeFilter(..., type=[...])."
        )


class NeptuneUnexpectedResponseError(NeptuneError):
    """The query was rejected at evaluation: a non-finite filter value, an invalid regex, an
    operator a type does not support. The message carries the reason."""

    status = 400

    def __init__(self, message: str, status_code: int = 400) -> None:
        self.status_code = status_code
        super().__init__(
            "NeptuneUnexpectedResponseError: The query was rejected.\n\n"
            f"Response status: {status_code}\nResponse content: {message}"
        )


class NeptuneRetryError(NeptuneError):
    """A remote store kept failing past the retry timeouts (never raised in-process)."""

    def __init__(self, message: str = "") -> None:
        super().__init__(f"NeptuneRetryError: {message}")


class NeptuneFileDownloadError(NeptuneError):
    """A file could not be copied out of the store after 3 attempts."""

    def __init__(self, details: str | None = None) -> None:
        super().__init__(
            "NeptuneFileDownloadError: File download ended in an unexpected error.\n\n"
            f"{details or ''}"
        )


warnings.simplefilter("once", category=NeptuneWarning)
