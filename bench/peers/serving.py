"""The servers of the "through a server" rows: started by the runner on 127.0.0.1, untimed.

Each (contender, read job, round) gets a server of its own over the tool's cached read data
set, so that the timed call is also the server's first read. A server runs in a process group
of its own: ``mlflow server`` and ``aim server`` start uvicorn (and MLflow its job runners) as
child processes, which must go when the server goes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"  # the only address any server of the benchmark listens on or is sent to
START_S = 120.0


@dataclass(frozen=True)
class Served:
    """How to start a tool's server and what its client needs to reach it."""

    command: list[str]
    ready: str  # a path of the server that answers (any status below 500) once it serves
    client: dict[str, str]  # handed to the worker: the URL, a token, …
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _answers(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=2, trust_env=False).status_code < 500
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def running(spec: Served, port: int, env: dict[str, str], log: Path) -> Iterator[None]:
    """Start ``spec`` (listening on ``port``), wait until it answers, stop it at the end."""
    with log.open("a") as sink:
        sink.write(f"\n=== server: {' '.join(spec.command)}\n")
        sink.flush()
        process = subprocess.Popen(
            spec.command,
            env={**env, **spec.env},
            cwd=spec.cwd,
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + START_S
        while not _answers(f"http://{HOST}:{port}{spec.ready}"):
            if process.poll() is not None:
                raise RuntimeError(f"server exited early (exit {process.returncode}); see {log}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not answer in {START_S:.0f} s; see {log}")
            time.sleep(0.2)
        yield
    finally:
        _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the group, then SIGKILL to whatever of it is left (uvicorn workers, job
    runners) once the leader is gone or after 20 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(20)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)
