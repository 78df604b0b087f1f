"""Client-side validation and type mapping of logged values (logging-api.md §3–§5, §8).

Functions here either return the typed value or report a problem through a :class:`Reporter`,
which warns (default) or raises ``NeptuneUnableToLogData`` when
``NEPTUNE_LOG_FAILURE_ACTION=raise``. Argument errors that the spec makes ``ValueError`` /
``TypeError`` are raised directly.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import math
import mimetypes
import os
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from despina.exceptions import NeptuneUnableToLogData
from despina.types import as_histogram

__all__ = [
    "MAX_PATH_BYTES",
    "Reporter",
    "datetime_ms",
    "flatten_configs",
    "guess_mime_type",
    "histogram_json",
    "step_to_micro",
    "typed_config",
]

logger = logging.getLogger("despina")

MAX_PATH_BYTES = 1024
MAX_STEP = 1e12
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_HISTOGRAM_EDGES = 513
DEFAULT_MIME_TYPE = "application/octet-stream"

for _ext, _mime in (
    (".yaml", "application/x-yaml"),
    (".yml", "application/x-yaml"),
    (".md", "text/markdown"),
    (".ipynb", "application/x-ipynb+json"),
    (".sql", "application/sql"),
    (".r", "text/x-r"),
    (".webp", "image/webp"),
):
    if mimetypes.guess_type(f"x{_ext}")[0] is None:
        mimetypes.add_type(_mime, _ext)


class Reporter:
    """Where dropped values are reported: a warning, or an exception in ``raise`` mode."""

    def __init__(self) -> None:
        action = os.environ.get("NEPTUNE_LOG_FAILURE_ACTION", "drop").strip().lower()
        self.raise_on_drop = action == "raise"

    def dropped(self, message: str) -> None:
        """Report a value that will not be logged."""
        if self.raise_on_drop:
            raise NeptuneUnableToLogData(message)
        logger.warning("%s", message)


def step_to_micro(step: float | int | None) -> int | None:
    """Micro-steps of ``step`` with the Neptune client's truncation (``0.1234567`` → 123456).

    Raises:
        TypeError: the step is not an ``int`` or ``float`` (``numpy.int64`` is rejected too).
        ValueError: the step is negative, NaN or 1e12 or more.
    """
    if step is None:
        return None
    if not isinstance(step, int | float):
        raise TypeError(
            f"step must be an int or a float, got {type(step).__name__} {step!r}; "
            "convert NumPy integers with int(step)"
        )
    if not 0 <= step < MAX_STEP:  # also rejects NaN
        raise ValueError(f"step must be in [0, 1e12), got {step!r}")
    return int(step * 1_000_000)


def datetime_ms(value: datetime | None) -> int:
    """Epoch milliseconds of a datetime (naive = local time), truncated; now when ``None``.

    Raises:
        TypeError: the value is not a ``datetime``.
    """
    if value is None:
        return int(time.time() * 1000)
    if not isinstance(value, datetime):
        raise TypeError(f"timestamp must be a datetime, got {type(value).__name__} {value!r}")
    return math.floor(value.timestamp() * 1000)


def check_path(path: object, reporter: Reporter) -> bool:
    """Whether ``path`` is a usable attribute path (reporting it when not)."""
    if not isinstance(path, str):
        reporter.dropped(
            f"attribute path must be a str, got {type(path).__name__} {path!r}; value dropped"
        )
        return False
    if len(path.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        reporter.dropped(
            f"attribute path {path[:60]!r}… is longer than {MAX_PATH_BYTES} UTF-8 bytes; "
            "value dropped"
        )
        return False
    return True


def flatten_configs(data: Any, flatten: bool) -> dict[Any, Any]:
    """``log_configs`` input as a flat mapping (``a/b/c`` keys when ``flatten``).

    Raises:
        TypeError: the data is neither a mapping nor a dataclass instance.
    """
    if dataclasses.is_dataclass(data) and not isinstance(data, type):
        data = dataclasses.asdict(data)
    if not isinstance(data, Mapping):
        raise TypeError(
            f"log_configs expects a mapping or a dataclass instance, got {type(data).__name__}"
        )
    if not flatten:
        return dict(data)
    out: dict[Any, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = dataclasses.asdict(value)
        if isinstance(value, Mapping):
            for key, inner in value.items():
                walk(f"{prefix}/{key}" if prefix else str(key), inner)
        else:
            out[prefix] = value

    for key, value in data.items():
        walk(str(key), value)
    return out


def typed_config(path: str, value: Any, cast_unsupported: bool, reporter: Reporter) -> Any:
    """``(type, value)`` for a config value, or ``None`` when it is dropped.

    Raises:
        ValueError: an int outside the 64-bit range.
        TypeError: a list, set or tuple with a non-``str`` element.
    """
    if isinstance(value, float):
        return "float", float(value)
    if isinstance(value, bool):
        return "bool", value
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise ValueError(f"int value of {path!r} is outside the 64-bit range: {value}")
        return "int", value
    if isinstance(value, str):
        return "string", value
    if isinstance(value, datetime):
        return "datetime", datetime_ms(value)
    if isinstance(value, list | set | tuple | frozenset):
        if all(isinstance(item, str) for item in value):
            return "string_set", frozenset(value)
        if not cast_unsupported:
            bad = next(item for item in value if not isinstance(item, str))
            raise TypeError(
                f"string set {path!r} may hold only str elements, got {type(bad).__name__} "
                f"{bad!r}; pass cast_unsupported=True to log it as its str()"
            )
    if cast_unsupported:
        return "string", "" if value is None else str(value)
    reporter.dropped(
        f"config {path!r} has unsupported type {type(value).__name__} ({value!r:.80}); "
        "dropped (pass cast_unsupported=True to log it as its str())"
    )
    return None


def histogram_json(path: str, histogram: Any, reporter: Reporter) -> str | None:
    """The stored JSON of a histogram, or ``None`` (reported) when it breaks a rule."""
    ours = as_histogram(histogram)  # a neptune_scale.types.Histogram is accepted too
    if ours is None:
        reporter.dropped(f"{path!r}: expected a despina.types.Histogram, got {histogram!r:.80}")
        return None
    try:
        edges = ours.edges_as_list()
        counts = ours.counts_as_list()
        densities = ours.densities_as_list()
    except (TypeError, ValueError) as exc:
        reporter.dropped(f"histogram {path!r} has non-numeric edges or values: {exc}")
        return None
    problem = None
    if (counts is None) == (densities is None):
        problem = "exactly one of counts and densities must be given"
    elif not 1 <= len(edges) <= MAX_HISTOGRAM_EDGES:
        problem = f"it has {len(edges)} bin edges; 1 to {MAX_HISTOGRAM_EDGES} are allowed"
    elif any(e != e for e in edges):
        problem = "a bin edge is NaN"
    elif any(b <= a for a, b in itertools.pairwise(edges)):
        problem = "bin edges must strictly increase"
    else:
        values = counts if counts is not None else densities
        assert values is not None
        if len(values) != len(edges) - 1:
            problem = f"it has {len(values)} values for {len(edges)} edges (need edges - 1)"
        elif counts is not None and not all(
            isinstance(c, int) and not isinstance(c, bool) for c in counts
        ):
            problem = "counts must be ints"
    if problem is not None:
        reporter.dropped(f"histogram {path!r} dropped: {problem}")
        return None
    kind, values = ("COUNTING", counts) if counts is not None else ("DENSITY", densities)
    return json.dumps({"type": kind, "edges": edges, "values": [float(v) for v in values or []]})


def guess_mime_type(name: str | None, data_head: bytes | None = None) -> str:
    """MIME type from a file name, else sniffed from the first bytes, else octet-stream."""
    if name:
        guessed = mimetypes.guess_type(name)[0]
        if guessed:
            return guessed
    if data_head:
        for magic, mime in (
            (b"\x89PNG", "image/png"),
            (b"\xff\xd8\xff", "image/jpeg"),
            (b"GIF8", "image/gif"),
            (b"%PDF", "application/pdf"),
            (b"PK\x03\x04", "application/zip"),
        ):
            if data_head.startswith(magic):
                return mime
    return DEFAULT_MIME_TYPE


def local_file(source: str | Path) -> Path | None:
    """The path if it names a readable regular file, else ``None``."""
    path = Path(source)
    return path if path.is_file() and os.access(path, os.R_OK) else None
