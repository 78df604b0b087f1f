"""Counts in user-facing text: "1 run", "2 runs" (never "1 runs")."""

from __future__ import annotations

__all__ = ["counted"]


def counted(count: int, singular: str, plural: str | None = None) -> str:
    """``count`` with thousands separators and the noun in the form it takes.

    >>> counted(1, "run"), counted(1200, "run"), counted(0, "series", "series")
    ('1 run', '1,200 runs', '0 series')
    """
    noun = singular if count == 1 else (plural if plural is not None else singular + "s")
    return f"{count:,} {noun}"
