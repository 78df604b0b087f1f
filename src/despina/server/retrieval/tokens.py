"""Paging tokens of the retrieval endpoints: opaque to clients, checked when they come back.

Definitions and attribute values page by keyset (the token carries the last sort key sent);
string, histogram and file series carry ``(points sent, last step sent)``.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from despina.server.errors import bad_request
from despina.server.retrieval.fields import show

__all__ = ["key_token", "make_key_token", "make_series_token", "series_token"]


def key_token(token: object, where: str, shape: tuple[type, ...]) -> list[Any] | None:
    """The sort key a continuation token carries (keyset paging), checked against ``shape``."""
    if token in (None, ""):
        return None
    if not isinstance(token, str):
        raise bad_request(f"{where}.nextPageToken must be a string, got {show(token)}")
    try:
        key = json.loads(base64.urlsafe_b64decode(token.encode() + b"==").decode())
    except (ValueError, binascii.Error, UnicodeDecodeError):
        key = None
    if not (
        isinstance(key, list)
        and len(key) == len(shape)
        and all(type(k) is t for k, t in zip(key, shape, strict=True))
    ):
        raise bad_request(f"{where}.nextPageToken {token[:40]!r} is not a token this server issued")
    return key


def make_key_token(key: list[Any]) -> str:
    text = json.dumps(key, separators=(",", ":"), ensure_ascii=False)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def series_token(after: dict[str, Any] | None, where: str) -> tuple[int, int | None]:
    """``(points sent so far, last step sent)`` from a ``searchAfter``."""
    if after is None:
        return 0, None
    token = after.get("token")
    if token in (None, ""):
        return 0, None
    if not isinstance(token, str):
        raise bad_request(f"{where}.searchAfter.token must be a string")
    try:
        sent_text, _, last_text = (
            base64.urlsafe_b64decode(token.encode() + b"==").decode().partition(":")
        )
        sent = int(sent_text)
        last = int(last_text) if last_text else None
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise bad_request(
            f"{where}.searchAfter.token {token[:40]!r} is not a token this server issued"
        ) from None
    return max(0, sent), last


def make_series_token(sent: int, last: int | None) -> str:
    text = f"{sent}:{'' if last is None else last}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")
