"""Warnings of the query API, with the class names of ``neptune_query.warnings``.

All are ``UserWarning`` subclasses. :func:`emit` applies the reference's throttling:
``ExperimentalWarning`` once per message per process, the ``Http*`` warnings at most once per
type every 20 seconds (they are only raised by remote stores).
"""

from __future__ import annotations

import threading
import time
import warnings

__all__ = [
    "AttributeWarning",
    "ExperimentalWarning",
    "Http5xxWarning",
    "Http429Warning",
    "Http503Warning",
    "HttpOtherWarning",
]


class AttributeWarning(UserWarning):
    """An attribute of a filter or ``sort_by`` fell back to type ``string`` (§6)."""


class ExperimentalWarning(UserWarning):
    """An experimental function was used (once per message per process)."""


class Http429Warning(UserWarning):
    """A remote store rate-limited a request (HTTP 429); the request is retried."""


class Http503Warning(UserWarning):
    """A remote store was unavailable (HTTP 503); the request is retried."""


class Http5xxWarning(UserWarning):
    """A remote store failed with another 5xx status; the request is retried."""


class HttpOtherWarning(UserWarning):
    """Another retryable failure talking to a remote store."""


_ONCE_PER_MESSAGE = (ExperimentalWarning,)
_ONCE_PER_WHILE = (Http429Warning, Http503Warning, Http5xxWarning, HttpOtherWarning)
_SUPPRESSION_SECONDS = 20.0
_lock = threading.Lock()
_seen_messages: set[tuple[type[Warning], str]] = set()
_silent_until: dict[type[Warning], float] = {}


def emit(warning: Warning, stacklevel: int = 3) -> None:
    """Issue ``warning`` unless the throttling rules above silence it."""
    with _lock:
        if isinstance(warning, _ONCE_PER_MESSAGE):
            key = (type(warning), str(warning))
            if key in _seen_messages:
                return
            _seen_messages.add(key)
        if isinstance(warning, _ONCE_PER_WHILE):
            now = time.monotonic()
            if _silent_until.get(type(warning), 0.0) > now:
                return
            _silent_until[type(warning)] = now + _SUPPRESSION_SECONDS
    warnings.warn(warning, stacklevel=stacklevel)
