"""``despina.legacy.Run``: the dict-like style of the old ``neptune`` client on ``despina.Run``.

``run["a/b"] = v`` assigns (nested dicts become paths), ``run["m"].append(v, step=...)`` and
``.extend(values, steps=...)`` log metrics, ``run["sys/tags"].add(...)`` / ``.remove(...)`` change
string sets (a bare ``str`` is one tag). Paths are cleaned: a leading ``/`` is dropped; a trailing
``/``, an empty component or a component with surrounding whitespace raises ``ValueError``.
"""

from __future__ import annotations

import functools
import itertools
import warnings
from collections.abc import Callable, Collection, Mapping
from datetime import datetime
from typing import Any, TypeVar

from despina.client.run import Run as _Run

__all__ = ["Attribute", "Run"]

_KNOWN = {
    "wait",
    "step",
    "timestamp",
    "steps",
    "timestamps",
    "preview",
    "previews",
    "preview_completion",
    "preview_completions",
}
F = TypeVar("F", bound=Callable[..., Any])


def _warn_unsupported(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("wait") is not None:
            warnings.warn("the `wait` parameter is ignored", stacklevel=2)
        extra = set(kwargs) - _KNOWN
        if extra:
            warnings.warn(
                f"`{fn.__name__}()` got unsupported keyword argument(s) "
                f"{', '.join(sorted(extra))}; they are ignored",
                stacklevel=2,
            )
            for name in extra:
                kwargs.pop(name)
        return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def clean_path(path: str) -> str:
    """The path with a leading ``/`` dropped.

    Raises:
        ValueError: a trailing ``/``, an empty component, or whitespace around a component.
    """
    if not isinstance(path, str):
        raise TypeError(f"attribute path must be a str, got {path!r}")
    if path.startswith("/"):
        path = path[1:]
    if not path or path.endswith("/"):
        raise ValueError(f"invalid attribute path {path!r}: it must not be empty or end with '/'")
    for part in path.split("/"):
        if not part or part != part.strip():
            raise ValueError(
                f"invalid attribute path {path!r}: empty component or whitespace around "
                f"component {part!r}"
            )
    return path


def _flatten(value: Any, path: str) -> dict[str, Any]:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, inner in value.items():
            out.update(_flatten(inner, f"{path}/{key}"))
        return out
    return {path: value}


class Attribute:
    """What ``run[path]`` returns: logs values under ``path``."""

    def __init__(self, run: Run, path: str) -> None:
        self._run = run
        self._path = path

    @_warn_unsupported
    def assign(self, value: Any, *, wait: bool = False) -> None:
        self._run.log_configs(_flatten(value, self._path))

    @_warn_unsupported
    def append(
        self,
        value: dict[str, Any] | float,
        *,
        step: float | int | None = None,
        preview: bool = False,
        preview_completion: float | None = None,
        timestamp: float | datetime | None = None,
        wait: bool = False,
    ) -> None:
        if isinstance(timestamp, int | float):
            timestamp = datetime.fromtimestamp(timestamp)
        self._run.log_metrics(
            _flatten(value, self._path),
            step=step,
            timestamp=timestamp,
            preview=preview,
            preview_completion=preview_completion,
        )

    @_warn_unsupported
    def extend(
        self,
        values: Collection[float | int],
        *,
        steps: Collection[float | int],
        timestamps: Collection[float | datetime] | None = None,
        previews: Collection[bool] | None = None,
        preview_completions: Collection[float] | None = None,
        wait: bool = False,
    ) -> None:
        for name, other in (
            ("steps", steps),
            ("timestamps", timestamps),
            ("previews", previews),
            ("preview_completions", preview_completions),
        ):
            if other is not None and len(other) != len(values):
                raise ValueError(
                    f"all lists given to extend must have the same length; "
                    f"len(values) = {len(values)} but len({name}) = {len(other)}"
                )
        stamps = timestamps if timestamps is not None else [datetime.now()] * len(values)
        rows = itertools.zip_longest(
            values, steps, stamps, previews or [], preview_completions or []
        )
        for value, step, stamp, preview, completion in rows:
            self.append(
                value,
                step=step,
                timestamp=stamp,
                preview=bool(preview),
                preview_completion=completion,
            )

    @_warn_unsupported
    def add(
        self, values: str | list[str] | set[str] | tuple[str, ...], *, wait: bool = False
    ) -> None:
        self._run.log(tags_add={self._path: (values,) if isinstance(values, str) else values})

    @_warn_unsupported
    def remove(
        self, values: str | list[str] | set[str] | tuple[str, ...], *, wait: bool = False
    ) -> None:
        self._run.log(tags_remove={self._path: (values,) if isinstance(values, str) else values})


class Run(_Run):
    """``despina.Run`` with dict-like access (``run["path"]``)."""

    def __getitem__(self, path: str) -> Attribute:
        return Attribute(self, clean_path(path))

    def __setitem__(self, path: str, value: Any) -> None:
        self[path].assign(value)
