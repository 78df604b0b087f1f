"""Helpers for the server tests: a real ``despina serve`` process, tokens, logging scripts.

The server runs as a subprocess exactly as users start it; tests talk to it over loopback with
``neptune-scale`` (in subprocesses, since it spawns its own sync process), ``neptune-query`` and
plain ``httpx``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

from serving import ServerProcess, free_port, mint

__all__ = ["ServerProcess", "Tokens", "free_port", "mint", "run_logging_script"]

PROJECT = "ws/proj"
OTHER_PROJECT = "ws/other"
FOREIGN_PROJECT = "elsewhere/proj"


@dataclass
class Tokens:
    project: str
    workspace: str
    other_project: str
    foreign: str


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
