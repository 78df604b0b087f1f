"""Coercion of NQL literal text to typed values (``spec/nql.md`` §5).

Each ``coerce_*`` function returns the value in the store's representation (numbers as ``int``
or ``float``, datetimes as epoch milliseconds, booleans as ``bool``) or raises
:class:`NotCoercible` with a reason that completes "<literal> is not a valid <type> value: ...".
"""

from __future__ import annotations

import calendar
import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

__all__ = [
    "MAX_MS",
    "MIN_MS",
    "NonFinite",
    "NotCoercible",
    "UnknownUnit",
    "coerce_bool",
    "coerce_datetime",
    "coerce_number",
    "coerce_state",
]

_INT64_MAX = 2**63 - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
MIN_MS = (date(1, 1, 1).toordinal() - _EPOCH_ORDINAL) * 86_400_000
"""Earliest datetime literal accepted (0001-01-01T00:00:00Z) in epoch milliseconds."""
MAX_MS = (date(9999, 12, 31).toordinal() - _EPOCH_ORDINAL + 1) * 86_400_000 - 1
"""Latest datetime literal accepted (9999-12-31T23:59:59.999Z) in epoch milliseconds."""

_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_NUMBER_RE = re.compile(_NUMBER)
_SIZE_RE = re.compile(rf"({_NUMBER}) *(kb|mb|gb)", re.IGNORECASE)
_SIZE_UNITS = {"kb": 1_000, "mb": 1_000_000, "gb": 1_000_000_000}
_NON_FINITE = frozenset(
    sign + word for sign in ("", "+", "-") for word in ("nan", "inf", "infinity")
)
_ISO_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?"
    r"(Z|[+-]\d{2}(?::?\d{2})?)?"
)
_RELATIVE_RE = re.compile(r"-(\d+)([A-Za-z]+)")
_FIXED_UNITS_MS = {"h": 3_600_000, "d": 86_400_000, "w": 7 * 86_400_000}
_UNIT_HINT = "use h, d, w, M (months) or y"
_STATES = {
    "running": "running",
    "active": "running",
    "inactive": "inactive",
    "idle": "inactive",
    "succeeded": None,
    "aborted": None,
    "failed": None,
}


class NotCoercible(ValueError):
    """The literal is not a value of the requested type; ``str()`` is the reason."""


class UnknownUnit(NotCoercible):
    """A relative time with a unit other than h, d, w, M, y; the reason carries the hint."""


class NonFinite(NotCoercible):
    """The literal is ``nan``/``inf``: never comparable, an error for typed references."""


def coerce_number(text: str) -> int | float:
    """A number, with optional size unit (``kb``/``mb``/``gb``, base 1000, any case).

    Integral literals without ``.`` or exponent stay exact ``int`` (falling back to ``float``
    beyond 64 bits, which SQLite cannot bind).

    Raises:
        NonFinite: ``nan``, ``inf``, ``-inf``, ``infinity`` in any case.
        NotCoercible: anything else that is not a number, or a number beyond the float range.
    """
    body = text.strip()
    if body.lower() in _NON_FINITE:
        raise NonFinite("filtering by non-finite values is not supported")
    multiplier = 1
    m = _SIZE_RE.fullmatch(body)
    if m is not None:
        body, multiplier = m.group(1), _SIZE_UNITS[m.group(2).lower()]
    elif _NUMBER_RE.fullmatch(body) is None:
        raise NotCoercible("expected a number such as 0.5, -3, 1e-3 or 50MB")
    if not any(ch in body for ch in ".eE"):
        value: int | float = _integer(body) * multiplier
    elif multiplier != 1:
        exact = Decimal(body) * multiplier  # "1.5kb" is exactly 1500
        value = int(exact) if exact == exact.to_integral_value() else float(exact)
    else:
        value = float(body)
    if isinstance(value, int) and abs(value) > _INT64_MAX:
        try:
            value = float(value)
        except OverflowError:
            raise NotCoercible("the number is out of range") from None
    if value in (float("inf"), float("-inf")):
        raise NotCoercible("the number is out of range")
    return value


def _integer(digits: str) -> int:
    """``int(digits)``, where more digits than Python converts (4,300) is out of range too."""
    try:
        return int(digits)
    except ValueError:
        raise NotCoercible(f"the number has {len(digits)} digits: out of range") from None


def coerce_bool(text: str) -> bool:
    """``true`` / ``false`` in any case.

    Raises:
        NotCoercible: any other text.
    """
    lowered = text.strip().lower()
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    raise NotCoercible("expected true or false")


def coerce_datetime(text: str, now_ms: int) -> int:
    """Epoch milliseconds of an ISO 8601 datetime or of a relative time before ``now_ms``.

    Absolute values without an offset are UTC; fractions of a second are truncated to
    milliseconds. Relative values are ``-<n><unit>`` with unit ``h``, ``d``, ``w``, ``M``
    (calendar months) or ``y`` (calendar years); month and year arithmetic clamps the day to
    the end of the target month.

    Raises:
        NotCoercible: not a datetime, an unknown relative unit (``m`` gets a hint) or a value
            outside years 1–9999.
    """
    body = text.strip()
    relative = _RELATIVE_RE.fullmatch(body)
    if relative is not None:
        return _relative_ms(_integer(relative.group(1)), relative.group(2), now_ms)
    m = _ISO_RE.fullmatch(body)
    if m is None:
        raise NotCoercible(
            "expected an ISO 8601 datetime such as 2024-01-31T12:00:00Z "
            "or a relative time such as -2h"
        )
    year, month, day, hour, minute, second, fraction, offset = m.groups()
    try:
        day_ordinal = date(int(year), int(month), int(day)).toordinal()
    except ValueError as exc:
        raise NotCoercible(f"invalid date: {exc}") from None
    h, mi, s = int(hour or 0), int(minute or 0), int(second or 0)
    if h > 23 or mi > 59 or s > 59:
        raise NotCoercible("invalid time of day")
    ms = (day_ordinal - _EPOCH_ORDINAL) * 86_400_000 + ((h * 60 + mi) * 60 + s) * 1000
    ms += int((fraction or "").ljust(3, "0")[:3])
    if offset and offset != "Z":
        digits = offset[1:].replace(":", "")
        off_h, off_m = int(digits[:2]), int(digits[2:] or 0)
        if off_h > 23 or off_m > 59:
            raise NotCoercible(f"invalid time zone offset {offset}")
        sign = 1 if offset[0] == "+" else -1
        ms -= sign * (off_h * 60 + off_m) * 60_000
    return _in_range(ms)


def _relative_ms(n: int, unit: str, now_ms: int) -> int:
    if unit in _FIXED_UNITS_MS:
        return _in_range(now_ms - n * _FIXED_UNITS_MS[unit])
    if unit not in ("M", "y"):
        hint = " ('m' is ambiguous between minutes and months)" if unit == "m" else ""
        raise UnknownUnit(f"unknown relative-time unit {unit!r}: {_UNIT_HINT}{hint}")
    months = n * (12 if unit == "y" else 1)
    now = _EPOCH + timedelta(milliseconds=now_ms)
    index = now.year * 12 + (now.month - 1) - months
    year, month0 = divmod(index, 12)
    if year < 1:
        raise NotCoercible("the relative time is before year 1")
    day = min(now.day, calendar.monthrange(year, month0 + 1)[1])
    shifted = now.replace(year=year, month=month0 + 1, day=day)
    return (shifted - _EPOCH) // timedelta(milliseconds=1)


def _in_range(ms: int) -> int:
    if not MIN_MS <= ms <= MAX_MS:
        raise NotCoercible("the datetime is outside years 1 to 9999")
    return ms


def coerce_state(text: str) -> str | None:
    """A ``sys/state`` value: ``"running"`` or ``"inactive"``; ``None`` for the legacy values
    ``succeeded``/``aborted``/``failed``, which no run has. Any case.

    Raises:
        NotCoercible: any other text.
    """
    lowered = text.strip().lower()
    if lowered not in _STATES:
        raise NotCoercible("expected running, active, inactive or idle")
    return _STATES[lowered]
