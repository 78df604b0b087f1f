"""Helpers for the server tests: a real ``despina serve`` process, tokens, logging scripts.

The server runs as a subprocess exactly as users start it; tests talk to it over loopback with
``neptune-scale`` (in subprocesses, since it spawns its own sync process), ``neptune-query`` and
plain ``httpx``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from despina.server.auth import mint_api_token
from despina.store.sqlite import Store

PROJECT = "ws/proj"
OTHER_PROJECT = "ws/other"
FOREIGN_PROJECT = "elsewhere/proj"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    """One ``despina serve`` subprocess; restartable on the same port."""

    home: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        self.log_path = self.home.parent / f"server-{self.port}.log"
        log = self.log_path.open("ab")
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
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={k: v for k, v in os.environ.items() if not k.startswith("NEPTUNE_")},
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"despina serve exited early:\n{self.log()}")
            try:
                response = httpx.get(self.url + "/api/backend/v1/clients/config", timeout=1)
                if response.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"despina serve did not start in {timeout} s:\n{self.log()}")

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


@dataclass
class Tokens:
    project: str
    workspace: str
    other_project: str
    foreign: str


def mint(home: Path, url: str, *, project: str | None, workspace: str, user: str = "tester") -> str:
    store = Store.open(home)
    try:
        token, _ = mint_api_token(
            store, url=url, workspace=workspace, project=project, username=user
        )
    finally:
        store.close()
    return token


def run_logging_script(
    body: str, cwd: Path, token: str, project: str = PROJECT, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``body`` (the inside of ``main()``) in a fresh interpreter with neptune-scale."""
    script = "def main():\n" + textwrap.indent(textwrap.dedent(body), "    ")
    script += '\n\nif __name__ == "__main__":\n    main()\n'
    path = cwd / f"log_{abs(hash(body))}.py"
    path.write_text(script)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEPTUNE_")}
    env.update(NEPTUNE_API_TOKEN=token, NEPTUNE_PROJECT=project)
    result = subprocess.run(
        [sys.executable, str(path)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise AssertionError(f"logging script failed:\n{result.stdout}\n{result.stderr}")
    return result
