"""``NeptuneLoggingHandler``: Python ``logging`` records into a string series of a run."""

from __future__ import annotations

import logging
import threading
import time

from despina.client.run import Run
from despina.store.batch import PointAppend

__all__ = ["NeptuneLoggingHandler"]

MAX_LINE_BYTES = 1024 * 1024 - 1


def _split(line: str) -> list[str]:
    """Pieces of ``line`` of at most ``MAX_LINE_BYTES`` UTF-8 bytes, never inside a character."""
    data = line.encode("utf-8", "surrogatepass")
    if len(data) <= MAX_LINE_BYTES:
        return [line]
    pieces = []
    while data:
        cut = min(MAX_LINE_BYTES, len(data))
        while cut < len(data) and data[cut] & 0xC0 == 0x80:  # a continuation byte: step back
            cut -= 1
        pieces.append(data[:cut].decode("utf-8", "surrogatepass"))
        data = data[cut:]
    return pieces


class NeptuneLoggingHandler(logging.Handler):
    """Writes each formatted record to ``attribute_path`` (default ``runtime/logs``).

    Each line is one point; steps advance by one micro-step per line, starting just after the
    run's fork step (or at 0), so lines keep their order.

    Raises:
        TypeError: ``run`` is not a ``despina.Run`` or ``attribute_path`` not a str.
    """

    def __init__(
        self, *, run: Run, level: int = logging.NOTSET, attribute_path: str | None = None
    ) -> None:
        if not isinstance(run, Run):
            raise TypeError(f"run must be a despina.Run, got {type(run).__name__}")
        if attribute_path is not None and not isinstance(attribute_path, str):
            raise TypeError(f"attribute_path must be a str, got {attribute_path!r}")
        super().__init__(level=level)
        self._run = run
        self._path = attribute_path or "runtime/logs"
        fork = run._fork_step if getattr(run, "_fork_step", None) is not None else None
        self._step = 0 if fork is None else fork + 1
        self._lock_steps = threading.Lock()
        self._inside = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(self._inside, "active", False):  # logging from inside our own write
            return
        self._inside.active = True
        try:
            text = self.format(record)
            stamp = int(time.time() * 1000)
            points = []
            with self._lock_steps:
                for line in text.split("\n"):
                    for piece in _split(line):
                        points.append(
                            PointAppend(self._path, "string_series", self._step, stamp, piece)
                        )
                        self._step += 1
            if not self._run._closed:
                self._run._buffer.add("points", points)
        except Exception:
            self.handleError(record)
        finally:
            self._inside.active = False
