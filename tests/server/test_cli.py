"""``despina token``, ``despina project`` and ``despina serve`` (graceful stop, request logs)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
from click.testing import CliRunner
from server_helpers import ServerProcess

from despina.cli import cli
from despina.store import Store


def _run(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def _stored_bytes(backend: str, home: Path) -> str:
    """Everything the store holds about API keys: the embedded store's whole file, or the rows
    of PostgreSQL's ``api_keys`` table."""
    if backend == "sqlite":
        return (home / "despina.db").read_bytes().decode("latin-1")
    store = Store.open(home)
    try:
        return repr(store.connection().execute("SELECT * FROM api_keys").fetchall())
    finally:
        store.close()


def test_token_and_project_commands(tmp_path: Path, store_backend: str) -> None:
    home = str(tmp_path / "home")
    assert "created project ws/p1" in _run("project", "create", "ws/p1", "--home", home)
    _run("project", "create", "ws/p2", "--key", "TWO", "--home", home)
    listed = _run("project", "list", "--home", home)
    assert "ws/p1" in listed and "ws/p2\tTWO" in listed
    failed = CliRunner().invoke(cli, ["project", "create", "ws/p1", "--home", home])
    assert failed.exit_code != 0 and "already exists" in failed.output

    output = _run(
        "token",
        "create",
        "--project",
        "ws/p1",
        "--name",
        "ci",
        "--user",
        "alice",
        "--url",
        "http://127.0.0.1:9999/prefix",
        "--home",
        home,
    )
    token = output.strip().splitlines()[-1]
    payload = json.loads(base64.b64decode(token))
    assert payload["api_url"] == payload["api_address"] == "http://127.0.0.1:9999/prefix"
    key_id, secret = payload["api_key"].split(".")
    assert len(key_id) == 16 and len(secret) == 43
    workspace = _run("token", "create", "--workspace", "ws", "--home", home)
    assert json.loads(base64.b64decode(workspace.strip().splitlines()[-1]))["api_key"]

    table = _run("token", "list", "--home", home)
    assert key_id in table and "ws/p1" in table and "alice" in table and "ws/*" in table
    assert secret not in table and secret not in _stored_bytes(store_backend, tmp_path / "home")
    assert f"revoked {key_id}" in _run("token", "revoke", key_id, "--home", home)
    assert "revoked" in _run("token", "list", "--home", home)
    missing = CliRunner().invoke(cli, ["token", "revoke", "nope", "--home", home])
    assert missing.exit_code != 0

    both = CliRunner().invoke(
        cli, ["token", "create", "--project", "ws/p1", "--workspace", "ws", "--home", home]
    )
    assert both.exit_code != 0
    bad = CliRunner().invoke(cli, ["token", "create", "--project", "nope", "--home", home])
    assert bad.exit_code != 0


def test_serve_logs_and_stops_gracefully(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "home")
    server.start()
    assert httpx.get(server.url + "/no/such/route").status_code == 404
    assert httpx.get(server.url + "/api/backend/v1/clients/config").json()["apiUrl"] == server.url
    # uvicorn finishes the graceful shutdown, then re-raises SIGTERM (exit status 143)
    assert server.stop() in (0, -15)
    lines = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    requests = [line for line in lines if line.get("msg") == "request"]
    assert {"method", "path", "status", "ms", "in", "out", "client"} <= set(requests[0])
    assert any(r["status"] == 404 and r["path"] == "/no/such/route" for r in requests)
    assert any(line.get("msg") == "despina server stopping" for line in lines)
    assert any(line.get("msg") == "Application shutdown complete." for line in lines)
