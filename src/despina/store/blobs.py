"""File contents, kept content-addressed beside the database: ``blobs/<sha[:2]>/<sha256>``.

The ``blobs`` table maps a project's storage key (the path a client chose, see
logging-api.md §6.3) to the content hash, so identical files are stored once.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO

__all__ = ["blob_path", "put_blob"]

_COPY_CHUNK = 1024 * 1024


def blob_path(blobs_dir: Path, sha256: str) -> Path:
    """Where the content with this hash lives."""
    return blobs_dir / sha256[:2] / sha256


def put_blob(blobs_dir: Path, source: Path | bytes | BinaryIO) -> tuple[str, int]:
    """Store content (a file path, bytes or a readable stream) and return ``(sha256, size)``.

    The content is written to a temporary file and renamed into place, so a reader never sees
    a partial blob and a crash leaves at most a stray temporary file.

    Raises:
        OSError: the source cannot be read or the store cannot be written.
    """
    digest = hashlib.sha256()
    size = 0
    blobs_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=blobs_dir, prefix=".incoming-")
    try:
        with os.fdopen(fd, "wb") as out:
            if isinstance(source, bytes):
                digest.update(source)
                out.write(source)
                size = len(source)
            else:
                stream = open(source, "rb") if isinstance(source, Path) else source  # noqa: SIM115
                try:
                    while block := stream.read(_COPY_CHUNK):
                        digest.update(block)
                        out.write(block)
                        size += len(block)
                finally:
                    if isinstance(source, Path):
                        stream.close()
        sha = digest.hexdigest()
        target = blob_path(blobs_dir, sha)
        if target.exists():
            os.unlink(tmp_name)
        else:
            target.parent.mkdir(exist_ok=True)
            shutil.move(tmp_name, target)
        return sha, size
    except BaseException:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        raise
