"""``download_files``: copy files out of the store (spec/query-api.md §8.7)."""

from __future__ import annotations

import hashlib
import mimetypes
import os
import pathlib
import shutil
from typing import Any

import pandas as pd

from despina.errors import StoreError
from despina.query import frames
from despina.query.api import check_file_labels, open_snapshot, resolve_files
from despina.query.exceptions import NeptuneFileDownloadError
from despina.query.resolve import Kind
from despina.query.service import Snapshot
from despina.query.types import File
from despina.store.blobs import BlobStore

__all__ = ["download_files", "target_path"]

_ATTEMPTS = 3
_BLOCK = 1024 * 1024


def _sanitize(part: str, max_length: int = 255) -> str:
    part = "".join(c if c.isalnum() or c in ("_", "-") else "_" for c in part)
    if len(part) > max_length:
        digest = hashlib.blake2b(part.encode("utf-8"), digest_size=8).hexdigest()
        part = f"{part[: max_length - len(digest) - 1]}_{digest}"
    return part


def target_path(destination: pathlib.Path, file: File) -> pathlib.Path:
    """``destination/<label>/<attribute path parts>[/step_<step:f>]<extension>``, every part
    sanitised (characters other than alphanumerics, ``_`` and ``-`` become ``_``)."""
    relative = pathlib.Path(".") / file.container_identifier / file.attribute_path
    if file.step is not None:
        relative = relative / f"step_{file.step:f}"
    relative = pathlib.Path(*[_sanitize(part) for part in relative.parts])
    extension = mimetypes.guess_extension(file.mime_type)
    if extension:
        relative = relative.with_suffix(extension)
    return destination / relative


def _destination(destination: str | os.PathLike[str] | None) -> pathlib.Path:
    if destination is None:
        return pathlib.Path.cwd()
    return pathlib.Path(destination).resolve()


def _ensure_writable(destination: pathlib.Path) -> None:
    if not destination.exists():
        destination.mkdir(parents=True, exist_ok=True)
    if not destination.is_dir():
        raise NotADirectoryError(f"Destination is not a directory: {destination}")
    if not os.access(destination, os.W_OK):
        raise PermissionError(f"No write access to the directory: {destination}")


def _copy(blobs: BlobStore, sha256: str, target: pathlib.Path) -> None:
    """Copy the blob to ``target``, streamed a block at a time (S3 included); a local blob is
    copied by the file system."""
    error: Exception | None = None
    for _ in range(_ATTEMPTS):
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            local = blobs.local_path(sha256)
            if local is not None:
                shutil.copyfile(local, target)
                return
            with blobs.open(sha256) as source, target.open("wb") as out:
                shutil.copyfileobj(source, out, _BLOCK)
            return
        except (OSError, StoreError) as exc:
            error = exc
    raise NeptuneFileDownloadError(
        f"Failed to copy blob {sha256} from {blobs.url} to {str(target)!r} after {_ATTEMPTS} "
        f"attempts: {error}"
    )


def _fetch(snap: Any, storage_key: str, target: pathlib.Path) -> bool:
    """Download the content stored under ``storage_key`` from the server to ``target``
    (``False``: the server holds none); a broken transfer is tried again."""
    error: Exception | None = None
    for _ in range(_ATTEMPTS):
        try:
            return bool(snap.download(storage_key, target))
        except (OSError, StoreError) as exc:
            error = exc
    raise NeptuneFileDownloadError(
        f"Failed to download {storage_key!r} from server {snap.connection.server} to "
        f"{str(target)!r} after {_ATTEMPTS} attempts: {error}"
    )


def download_files(*, files: Any, destination: Any, kind: Kind) -> pd.DataFrame:
    """Copy ``files`` into ``destination`` and return the frame of their paths.

    Raises:
        ValueError: ``files`` has an unsupported type.
        NeptuneUserError: files of the other API (experiments vs runs) were passed.
        NotADirectoryError, PermissionError: ``destination`` is unusable.
        NeptuneFileDownloadError: a file could not be copied after 3 attempts.
    """
    file_list = resolve_files(files)
    target_dir = _destination(destination)
    check_file_labels(file_list, kind)
    _ensure_writable(target_dir)
    results: dict[File, str | None] = {}
    by_project: dict[str, list[File]] = {}
    for file in file_list:
        by_project.setdefault(file.project_identifier, []).append(file)
    for project, group in by_project.items():
        with open_snapshot(project) as snap:
            if not isinstance(snap, Snapshot):  # a server's: its contents come over HTTP
                for file in group:
                    target = target_path(target_dir, file)
                    results[file] = str(target) if _fetch(snap, file.path, target) else None
                continue
            blobs = snap.service.store.blobs
            sources = [(file, snap.blob(file.path)) for file in group]
        for file, source in sources:
            if source is None:
                results[file] = None
                continue
            target = target_path(target_dir, file)
            _copy(blobs, source[0], target)
            results[file] = str(target)
    return frames.files_frame(list(results.items()), label=kind.name)
