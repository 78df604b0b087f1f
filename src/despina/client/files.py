"""Storage keys for logged files, in the layout of logging-api.md §6.3.

``<run id>-<h>/<attribute path>-<h>/<step as %019.6f, or "none">/<uuid4><ext>``, where ``/`` and
``.`` in the run id and path become ``_`` and ``<h>`` is 16 hex characters of a blake2b digest of
the original text, so distinct paths never collide after the replacement.
"""

from __future__ import annotations

import hashlib
import uuid
from pathlib import PurePath

__all__ = ["storage_key"]

_REPLACE = str.maketrans({"/": "_", ".": "_"})
_MAX_EXTENSION = 18


def _component(text: str, limit: int) -> str:
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).hexdigest()
    return text.translate(_REPLACE)[: limit - 17] + "-" + digest


def storage_key(run_id: str, attribute_path: str, step: int | None, filename: str | None) -> str:
    """The key a file is stored under; ``step`` in micro-steps (``None`` for file attributes)."""
    step_part = "none" if step is None else f"{step / 1e6:019.6f}".replace(".", "_")
    extension = PurePath(filename).suffix[:_MAX_EXTENSION] if filename else ""
    return (
        f"{_component(run_id, 300)}/{_component(attribute_path, 280)}/{step_part}/"
        f"{uuid.uuid4()}{extension}"
    )
