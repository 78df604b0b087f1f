"""Helpers for the web UI tests: a small demo home, a real ``despina serve`` process, tokens.

The server runs as a subprocess on 127.0.0.1 with a free port, exactly as users start it; its
standard output (where the one-time sign-in link is printed) goes to a log file.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import httpx

from despina.demo import DEMO_PROJECT, demo_plan, log_demo, log_demo_extras
from despina.server.auth import mint_api_token
from despina.store.sqlite import Store

STEPS = 400
FORK_STEP = 200
HISTOGRAM_RUN = "kittiwake-lr0.001-s1"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def small_plan() -> list:
    """Two experiments of the demo: three roots each, and four forks (at step 200) in the first."""
    plan = []
    forks = 0
    for run in demo_plan():
        if run.experiment == "albatross":
            continue
        if run.fork_of is None and run.run_id.endswith(("s0", "s1", "s2")):
            plan.append(run)
        elif run.fork_of is not None and run.fork_of.endswith(("s0", "s1")) and forks < 4:
            forks += 1
            name = run.run_id.rsplit("-at", 1)[0] + f"-at{FORK_STEP}"
            plan.append(replace(run, run_id=name, fork_step=FORK_STEP))
    return plan


def log_small_demo(home: Path) -> None:
    """The small demo plus the demo's extras (a failed run, a trashed run, a model) and a run
    with histograms and a file."""
    import despina
    from despina.types import Histogram

    log_demo(home, plan=small_plan(), steps=STEPS)
    log_demo_extras(home)
    with despina.Run(
        project=DEMO_PROJECT,
        run_id=HISTOGRAM_RUN,
        home=home,
        enable_console_log_capture=False,
        source_tracking_config=None,
    ) as run:  # resumes the demo run: histograms and a file beside its metrics
        for step in range(0, 40, 10):
            run.log_histograms(
                {"weights/hist": Histogram(bin_edges=[0, 1, 2, 3], counts=[step, 5, 40 - step])},
                step=step,
            )
        run.assign_files({"artifacts/notes": b"learning rate 1e-3 looks best\n"})


@dataclass
class Tokens:
    workspace: str
    """A workspace token for ``demo``: reaches demo/despina and demo/other."""
    other_project: str
    """A project token for ``demo/other`` only."""
    foreign: str
    """A workspace token for ``elsewhere``."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    """One ``despina serve`` subprocess over ``home``."""

    home: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
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
                "--no-access-log",
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
                if httpx.get(self.url + "/sign-in", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"despina serve did not start in {timeout} s:\n{self.log()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def sign_in_link(self) -> str | None:
        found = re.search(r"(http://\S+/sign-in/link\?code=\S+)", self.log())
        return found.group(1) if found else None


def mint(home: Path, url: str, *, workspace: str, project: str | None = None) -> str:
    store = Store.open(home)
    try:
        token, _ = mint_api_token(store, url=url, workspace=workspace, project=project)
    finally:
        store.close()
    return token


def chromium_path() -> str | None:
    """Debian's Chromium, when installed."""
    for name in ("/usr/bin/chromium", "/usr/bin/chromium-browser"):
        if Path(name).exists():
            return name
    return shutil.which("chromium")
