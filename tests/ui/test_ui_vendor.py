"""The chart library ships inside the package: ``pip install .`` without make (or npm) gives
working charts. The built uPlot files are committed under ``static/vendor`` with the version in
their names and the MIT licence beside them, and the package data includes them."""

from __future__ import annotations

import json
import shutil
import subprocess
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import httpx
import pytest
from ui_helpers import ServerProcess, Tokens, sign_in

import despina

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = Path(despina.__file__).parent
VENDOR = PACKAGE / "server" / "ui" / "static" / "vendor"


def _version() -> str:
    return str(json.loads((ROOT / "package.json").read_text())["dependencies"]["uplot"])


def test_vendored_files_carry_the_pinned_version_and_licence() -> None:
    version = _version()
    names = {path.name for path in VENDOR.iterdir()}
    assert {
        f"uPlot-{version}.min.js",
        f"uPlot-{version}.min.css",
        f"uPlot-{version}.LICENSE",
    } <= names
    assert "MIT License" in (VENDOR / f"uPlot-{version}.LICENSE").read_text()
    assert len([n for n in names if n.endswith(".min.js")]) == 1  # one version only


def test_package_data_includes_the_vendored_files() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = config["tool"]["setuptools"]["package-data"]["despina"]
    for path in VENDOR.iterdir():
        relative = path.relative_to(PACKAGE).as_posix()
        assert any(fnmatch(relative, glob) for glob in globs), relative


def test_vendored_files_are_not_git_ignored() -> None:
    git = shutil.which("git")
    if git is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    paths = [str(p) for p in VENDOR.iterdir()]
    ignored = subprocess.run(
        [git, "check-ignore", *paths], cwd=ROOT, capture_output=True, text=True
    ).stdout.split()
    assert ignored == []


def test_make_needs_no_npm_for_demo_and_test() -> None:
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    for target in ("demo", "test"):
        plan = subprocess.run(
            [make, "-n", "-B", target], cwd=ROOT, capture_output=True, text=True
        ).stdout
        assert "npm" not in plan, plan
    demo = subprocess.run([make, "-n", "-B", "demo"], cwd=ROOT, capture_output=True, text=True)
    assert "pip install -q -e .\n" in demo.stdout and "[test" not in demo.stdout


def test_charts_page_loads_the_vendored_library(server: ServerProcess, tokens: Tokens) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert sign_in(client, tokens.workspace).status_code == 303
        page = client.get("/p/demo/despina/charts?run=kittiwake-lr0.001-s1&metric=train/loss")
        assert page.status_code == 200
        assert "is missing" not in page.text
        src = f"/ui/static/vendor/uPlot-{_version()}.min.js"
        assert f'<script src="{src}">' in page.text
        script = client.get(src)
        assert script.status_code == 200 and "uPlot" in script.text
