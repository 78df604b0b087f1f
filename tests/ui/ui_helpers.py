"""Helpers for the web UI tests: a small demo home, a real ``despina serve`` process, tokens.

The server runs as a subprocess on 127.0.0.1 with a free port, exactly as users start it; its
standard output (where the one-time sign-in link is printed) goes to a log file.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx

import serving
from despina.demo import DEMO_PROJECT, demo_plan, log_demo, log_demo_extras
from despina.store import Store
from serving import mint

__all__ = [
    "CHROMIUM_ARGS",
    "FORK_STEP",
    "HISTOGRAM_RUN",
    "STEPS",
    "ServerProcess",
    "Tokens",
    "chromium_path",
    "csrf_field",
    "log_small_demo",
    "mint",
    "serve_demo",
    "sign_in",
    "sign_in_tab",
    "small_plan",
    "watch_errors",
]

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


def serve_demo(home: Path) -> ServerProcess:
    """A started server over ``home`` after :func:`log_small_demo`, with the projects the
    narrow tokens reach (``demo/other``, ``elsewhere/proj``) created empty."""
    log_small_demo(home)
    store = Store.open(home)
    store.create_project("demo/other")
    store.create_project("elsewhere/proj")
    store.close()
    proc = ServerProcess(home)
    proc.start()
    return proc


@dataclass
class Tokens:
    workspace: str
    """A workspace token for ``demo``: reaches demo/despina and demo/other."""
    other_project: str
    """A project token for ``demo/other`` only."""
    foreign: str
    """A workspace token for ``elsewhere``."""


@dataclass
class ServerProcess(serving.ServerProcess):
    """``despina serve`` for the UI tests: quiet, and ready when the sign-in page answers."""

    extra_args: tuple[str, ...] = ("--no-access-log",)
    ready_path: str = "/sign-in"


def chromium_path() -> str | None:
    """Debian's Chromium, when installed."""
    for name in ("/usr/bin/chromium", "/usr/bin/chromium-browser"):
        if Path(name).exists():
            return name
    return shutil.which("chromium")


def csrf_field(html: str) -> str | None:
    """The CSRF token in a page's forms (the hidden ``csrf`` input), if any."""
    found = re.search(r'<input type="hidden" name="csrf" value="([^"]*)"', html)
    return found.group(1) if found else None


def sign_in(client: httpx.Client, token: str, target: str = "/projects") -> httpx.Response:
    """Sign in as a browser does: load the sign-in form (its CSRF cookie and field), post it."""
    form = client.get("/sign-in")
    data = {"token": token, "next": target}
    csrf = csrf_field(form.text)
    if csrf is not None:
        data["csrf"] = csrf
    return client.post("/sign-in", data=data)


def sign_in_tab(tab: Any, server: ServerProcess, token: str) -> None:
    """Sign a Playwright tab in with ``token`` through the sign-in form."""
    tab.goto(server.url + "/sign-in")
    tab.fill("textarea[name=token]", token)
    tab.click("form[action='/sign-in'] button[type=submit]")
    tab.wait_for_url(server.url + "/projects")


def watch_errors(tab: Any) -> list[str]:
    """Collect a Playwright tab's script errors and console errors (CSP violations among them)
    into a list, also kept as ``tab.errors``; HTTP error statuses are left to the tests."""
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))

    def console(message: Any) -> None:
        # a 4xx page (an NQL error, an unknown project) logs its status: not an error here
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            errors.append(f"console {message.type}: {message.text}")

    tab.on("console", console)
    tab.errors = errors
    return errors
