"""Console capture: tee ``sys.stdout`` / ``sys.stderr`` into string series.

Each complete line becomes one point of ``<namespace>/stdout`` (or ``/stderr``); steps advance
by one micro-step per line, starting at 0 (or just after the fork step), so lines keep their
order. Partial lines wait for their newline or for :meth:`ConsoleCapture.flush`.
"""

from __future__ import annotations

import functools
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

from despina.store.batch import PointAppend

__all__ = ["ConsoleCapture"]

MAX_LINE = 1024 * 1024 - 1


class _Tee:
    def __init__(self, original: TextIO, sink: Callable[[str], None]) -> None:
        self._original = original
        self._sink = sink
        self.active = True

    def write(self, text: str) -> int:
        written = self._original.write(text)
        if self.active:
            self._sink(text)
        return written

    def flush(self) -> None:
        self._original.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._original, name)


class ConsoleCapture:
    """Captures the process's console output for one run while started."""

    def __init__(
        self, emit: Callable[[list[PointAppend]], None], namespace: str, first_step: int
    ) -> None:
        self._emit = emit
        self._namespace = namespace
        self._step = first_step
        self._lock = threading.Lock()
        self._partial = {"stdout": "", "stderr": ""}
        self._tees: dict[str, _Tee] = {}

    def start(self) -> None:
        for stream in ("stdout", "stderr"):
            original = getattr(sys, stream)
            tee = _Tee(original, functools.partial(self._write, stream))
            self._tees[stream] = tee
            setattr(sys, stream, tee)

    def stop(self) -> None:
        self.flush()
        for stream, tee in self._tees.items():
            tee.active = False
            if getattr(sys, stream) is tee:  # someone else may have wrapped it since
                setattr(sys, stream, tee._original)
        self._tees.clear()

    def flush(self) -> None:
        """Emit partial lines too (at close and before waiting for processing)."""
        with self._lock:
            points = []
            for stream, partial in self._partial.items():
                if partial:
                    points.append(self._point(stream, partial))
                    self._partial[stream] = ""
        if points:
            self._emit(points)

    def _write(self, stream: str, text: str) -> None:
        if not text:
            return
        with self._lock:
            pending = self._partial[stream] + text
            *lines, rest = pending.split("\n")
            self._partial[stream] = rest
            points = [self._point(stream, line) for line in lines]
        if points:
            self._emit(points)

    def _point(self, stream: str, line: str) -> PointAppend:
        self._step += 1
        return PointAppend(
            f"{self._namespace}/{stream}",
            "string_series",
            self._step - 1,
            int(time.time() * 1000),
            line[:MAX_LINE],
        )
