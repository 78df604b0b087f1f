"""Artifacts: a content hash over a set of files, so runs can be found by the data they used.

The artifact hash is the SHA-256 of the sorted lines ``<path>\\0<sha256 of content>\\0<size>\\n``,
one per file, where a file given directly is named by its file name and a file found under a
directory by its path relative to that directory (with ``/`` separators). The same files give
the same hash wherever they live.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

__all__ = ["artifact_value"]

_BLOCK = 1024 * 1024


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while block := stream.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def artifact_value(sources: tuple[str | os.PathLike[str], ...]) -> dict[str, Any]:
    """``{"hash": ..., "files": [{"path", "size", "sha256"}, ...]}`` for files and directories.

    Raises:
        FileNotFoundError: a source does not exist.
        ValueError: no source was given, or two sources contribute the same relative path.
    """
    if not sources:
        raise ValueError("track_artifact needs at least one file or directory")
    entries: dict[str, tuple[int, str]] = {}
    for source in sources:
        root = Path(source)
        if root.is_dir():
            files = sorted(p for p in root.rglob("*") if p.is_file())
            named = [(p.relative_to(root).as_posix(), p) for p in files]
        elif root.is_file():
            named = [(root.name, root)]
        else:
            raise FileNotFoundError(f"artifact source {str(root)!r} does not exist")
        for name, path in named:
            if name in entries:
                raise ValueError(
                    f"two artifact sources contain {name!r}; track them under separate paths"
                )
            entries[name] = (path.stat().st_size, _sha256(path))
    listing = [
        {"path": name, "size": size, "sha256": sha} for name, (size, sha) in sorted(entries.items())
    ]
    digest = hashlib.sha256()
    for entry in listing:
        digest.update(f"{entry['path']}\0{entry['sha256']}\0{entry['size']}\n".encode())
    return {"hash": digest.hexdigest(), "files": listing}
