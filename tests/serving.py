"""A real ``despina serve`` subprocess on 127.0.0.1, shared by the server and web UI tests.

The server runs exactly as users start it; its output (request logs, the one-time sign-in link)
goes to a log file beside the home.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from despina.server.auth import mint_api_token
from despina.store import Store

__all__ = ["ServerProcess", "free_port", "hold_store_writes", "mint", "serving_new_store"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    """One ``despina serve`` subprocess over ``home``; restartable on the same port."""

    home: Path
    port: int = field(default_factory=free_port)
    extra_args: tuple[str, ...] = ()
    ready_path: str = "/api/backend/v1/clients/config"
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    _started: bool = field(default=False, repr=False)  # a restart keeps its port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        """Start the server and wait until it answers on its port.

        The port was free when chosen, but another process (a test running in parallel) may
        take it before the server binds it: on the first start a new port is then tried, and
        the server counts as started only once its own log says it listens (a 200 alone may
        come from the other process's server).
        """
        for _ in range(3):
            if self._start_once(timeout):
                self._started = True
                return
            self.port = free_port()
        raise RuntimeError(f"despina serve found no free port:\n{self.log()}")

    def _start_once(self, timeout: float) -> bool:
        """False when the port was taken (first start only); raises on any other failure."""
        self.log_path = self.home.parent / f"server-{self.port}.log"
        log = self.log_path.open("ab")
        offset = log.tell()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from despina.cli import main; main()",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--home",
                str(self.home),
                *self.extra_args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={k: v for k, v in os.environ.items() if not k.startswith("NEPTUNE_")},
        )
        log.close()  # the child has its own descriptor
        listening = f"running on {self.url}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                if "address already in use" in self._log_since(offset) and not self._started:
                    return False
                raise RuntimeError(f"despina serve exited early:\n{self.log()}")
            try:
                if httpx.get(
                    self.url + self.ready_path, timeout=1
                ).status_code == 200 and listening in self._log_since(offset):
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"despina serve did not start in {timeout} s:\n{self.log()}")

    def _log_since(self, offset: int) -> str:
        assert self.log_path is not None
        with self.log_path.open("rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no cleanup at all."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> int:
        """SIGTERM and wait for the graceful shutdown; returns the exit code."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return int(self.process.returncode or 0)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def sign_in_link(self) -> str | None:
        """The one-time sign-in link the server printed, if any."""
        found = re.search(r"(http://\S+/sign-in/link\?code=\S+)", self.log())
        return found.group(1) if found else None


def mint(
    home: Path,
    url: str,
    *,
    workspace: str,
    project: str | None = None,
    user: str = "tester",
) -> str:
    """An API token for ``workspace`` (or one ``project`` of it), minted in the store."""
    store = Store.open(home)
    try:
        token, _ = mint_api_token(
            store,
            url=url,
            workspace=workspace,
            project=project,
            username=user,
        )
    finally:
        store.close()
    return token


@contextlib.contextmanager
def serving_new_store(
    home: Path,
    projects: Iterable[str],
    *,
    extra_args: tuple[str, ...] = (),
    fill: Callable[[Path], None] | None = None,
) -> Iterator[ServerProcess]:
    """A running server over a new store at ``home`` holding ``projects`` (and what ``fill``
    logs into it before the server starts); stopped at the end of the block."""
    store = Store.open(home)
    for name in projects:
        store.create_project(name)
    store.close()
    if fill is not None:
        fill(home)
    proc = ServerProcess(home, extra_args=extra_args)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@contextlib.contextmanager
def hold_store_writes(home: Path) -> Iterator[None]:
    """Keep every writer of the store out (readers still read) until the block ends, as another
    process holding the write lock would.

    The embedded store at ``home``: ``BEGIN IMMEDIATE`` on its database file. PostgreSQL (the
    test's ``DESPINA_STORE``): a transaction holding every table in ``EXCLUSIVE`` mode, which
    conflicts with inserts, updates, deletes and row locks but not with plain reads.
    """
    url = os.environ.get("DESPINA_STORE") or ""
    if not url.startswith("postgresql://"):
        import sqlite3

        holder = sqlite3.connect(home / "despina.db", isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        return
    import psycopg

    with psycopg.connect(url) as conn:  # a transaction until the block ends (rolled back)
        tables = [
            name
            for (name,) in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
            )
        ]
        conn.execute(
            "LOCK TABLE " + ", ".join(f'"{name}"' for name in tables) + " IN EXCLUSIVE MODE"
        )
        try:
            yield
        finally:
            conn.rollback()
