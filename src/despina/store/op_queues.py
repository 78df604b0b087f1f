"""Local operation queues: the ``run_operations.sqlite3`` databases that neptune-scale leaves
in ``offline`` mode, or when a run's sync was cut off (logging-api.md §6).

``despina sync`` reads a queue through :class:`OperationQueue` and deletes what it applied; the
queue's own layout (tables ``metadata``, ``run_operations``, ``file_upload_requests``, format
``v5`` of neptune-scale 0.30) is known only here.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from despina.errors import ConfigError

__all__ = ["FileUpload", "OperationQueue"]


@dataclass(frozen=True, slots=True)
class FileUpload:
    """A file the queue still has to upload: its request id, the source path as the queue
    names it (relative to the queue's directory, or absolute), the destination attribute path,
    the MIME type, and whether the source is a temporary copy the queue owns."""

    id: int
    source_path: str
    destination: str
    mime_type: str
    is_temporary: bool


class OperationQueue:
    """One queue database, open until :meth:`close` (or the end of a ``with`` block).

    Opening does not check the file; :meth:`metadata` does. Statements run in autocommit mode:
    each delete is durable on its own, so an interrupted sync leaves only what it had not
    applied yet.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn = sqlite3.connect(path, isolation_level=None)

    def __enter__(self) -> OperationQueue:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the database (the file stays)."""
        self._conn.close()

    def metadata(self) -> tuple[str, str, str]:
        """``(project, run id, queue format version)`` of the queue.

        Raises:
            ConfigError: the file is not a queue database (no readable ``metadata`` row).
        """
        try:
            project, run_id, version = self._conn.execute(
                "SELECT project, run_id, version FROM metadata"
            ).fetchone()
        except (sqlite3.Error, TypeError) as exc:
            raise ConfigError(f"{str(self.path)!r} is not a run operations queue: {exc}") from None
        return project, run_id, version

    def operations(self) -> Iterator[tuple[int, int, bytes]]:
        """``(sequence id, operation type, serialized operation)`` of every queued operation, in
        sequence order, read lazily."""
        yield from self._conn.execute(
            "SELECT sequence_id, operation_type, operation FROM run_operations ORDER BY sequence_id"
        )

    def file_uploads(self) -> list[FileUpload]:
        """Every file upload the queue still holds."""
        return [
            FileUpload(i, source, destination, mime, bool(temporary))
            for i, source, destination, mime, temporary in self._conn.execute(
                "SELECT id, source_path, destination, mime_type, is_temporary "
                "FROM file_upload_requests"
            ).fetchall()
        ]

    def delete_operations(self, sequence_ids: Iterable[int]) -> None:
        """Remove applied operations (unknown sequence ids are ignored)."""
        self._conn.executemany(
            "DELETE FROM run_operations WHERE sequence_id = ?", [(s,) for s in sequence_ids]
        )

    def delete_file_uploads(self, ids: Iterable[int]) -> None:
        """Remove file uploads that were done (unknown ids are ignored)."""
        self._conn.executemany("DELETE FROM file_upload_requests WHERE id = ?", [(i,) for i in ids])

    def remaining(self) -> int:
        """How many operations and file uploads are still queued."""
        left = int(self._conn.execute("SELECT count(*) FROM run_operations").fetchone()[0])
        left += int(self._conn.execute("SELECT count(*) FROM file_upload_requests").fetchone()[0])
        return left
