"""Type-aware display and JSON encoding of attribute values.

Values arrive as the query service gives them (``Column`` in ``despina.query.service``): floats
(possibly NaN or ±inf), ints, bools, datetimes as epoch milliseconds, strings, sorted tag lists,
file dicts (``path``, ``size_bytes``, ``mime_type``) and histogram dicts (``type``, ``edges``,
``values``). Series show their last value.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

__all__ = ["display", "human_bytes", "iso_time", "json_safe", "json_value", "short_time"]


def iso_time(ms: int | float) -> str:
    """Epoch milliseconds as ISO 8601 in UTC with milliseconds (``2026-03-01T12:00:00.000Z``)."""
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def short_time(ms: int | float) -> str:
    """Epoch milliseconds as ``2026-03-01 12:00:00`` (UTC)."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def human_bytes(size: int | float) -> str:
    """``1.5 MiB``-style sizes."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover


def _float_text(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    if value != 0 and (abs(value) >= 1e6 or abs(value) < 1e-4):
        return f"{value:.4e}"
    return f"{value:.6g}"


def display(type_: str, value: Any) -> str:
    """The text a table cell shows for ``value`` of attribute type ``type_``."""
    if value is None:
        return ""
    if type_ in ("float", "float_series"):
        return _float_text(float(value))
    if type_ == "datetime":
        return short_time(value)
    if type_ == "bool":
        return "true" if value else "false"
    if type_ == "int":
        return str(int(value))
    if type_ == "string_set":
        return ", ".join(str(v) for v in value)
    if type_ in ("file", "file_series") and isinstance(value, dict):
        name = str(value.get("path", "")).rsplit("/", 1)[-1]
        size = value.get("size_bytes")
        return f"{name} ({human_bytes(size)})" if isinstance(size, int | float) else name
    if type_ == "histogram_series" and isinstance(value, dict):
        return f"histogram, {len(value.get('values') or [])} bins"
    return str(value)


def json_safe(value: Any) -> Any:
    """``value`` with non-finite floats as the strings ``NaN``, ``Infinity``, ``-Infinity``
    (JSON has no such numbers), recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def json_value(type_: str, value: Any) -> Any:
    """A cell value for the JSON twins: datetimes as ISO 8601 UTC, non-finite floats as
    strings, the rest as is."""
    if value is None:
        return None
    if type_ == "datetime":
        return iso_time(value)
    return json_safe(value)
