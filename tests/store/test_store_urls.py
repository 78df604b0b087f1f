"""Store URLs: directories, sqlite://, postgresql:// and the clear refusal of anything else."""

from __future__ import annotations

from pathlib import Path

import pytest

from despina.errors import ConfigError
from despina.store.urls import mask_url, parse_store_url


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("/data/despina", Path("/data/despina")),
        ("runs/here", Path("runs/here")),
        ("sqlite:///data/despina", Path("/data/despina")),
        ("sqlite:////data/despina", Path("/data/despina")),
        ("SQLITE:///data/despina", Path("/data/despina")),
        ("sqlite://runs/here", Path("runs/here")),
        ("a:b/c", Path("a:b/c")),  # a colon without // is part of a path
    ],
)
def test_directories_and_sqlite_urls_name_the_embedded_store(given: str, expected: Path) -> None:
    location = parse_store_url(given)
    assert location.kind == "sqlite"
    assert location.path == expected
    assert location.url is None


def test_home_relative_paths_are_expanded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert parse_store_url("~/st").path == tmp_path / "st"
    assert parse_store_url("sqlite://~/st").path == tmp_path / "st"
    assert parse_store_url(tmp_path / "p").path == tmp_path / "p"  # os.PathLike


@pytest.mark.parametrize(
    ("given", "url"),
    [
        ("postgresql://u@127.0.0.1:5433/db", "postgresql://u@127.0.0.1:5433/db"),
        ("postgres://u@127.0.0.1/db", "postgresql://u@127.0.0.1/db"),
        ("PostgreSQL://h/db?sslmode=disable", "postgresql://h/db?sslmode=disable"),
        ("postgresql:///db", "postgresql:///db"),
    ],
)
def test_postgres_urls(given: str, url: str) -> None:
    location = parse_store_url(given)
    assert location.kind == "postgresql"
    assert location.url == url
    assert location.path is None


def test_passwords_are_masked_for_display() -> None:
    location = parse_store_url("postgresql://me:s3cr%40t@h:5432/db?password=other&sslmode=require")
    assert location.display == "postgresql://me:***@h:5432/db?password=***&sslmode=require"
    assert mask_url("postgresql://a:b@h1:1,h2:2/d") == "postgresql://a:***@h1:1,h2:2/d"
    assert mask_url("postgresql://a@h/d") == "postgresql://a@h/d"
    assert mask_url("/plain/path") == "/plain/path"


@pytest.mark.parametrize(
    "given", ["mysql://u@h/db", "s3://bucket/prefix", "http://127.0.0.1:1/", "file:///tmp/x"]
)
def test_other_schemes_are_refused_with_the_accepted_forms(given: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_store_url(given)
    message = str(caught.value)
    assert "unsupported store URL" in message
    assert "sqlite:///path/to/dir" in message and "postgresql://user@host:port/database" in message


def test_a_password_in_a_refused_url_is_masked() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_store_url("mysql://root:topsecret@h/db")
    assert "topsecret" not in str(caught.value)


@pytest.mark.parametrize("given", ["", "   ", "sqlite://"])
def test_empty_locations_are_refused(given: str) -> None:
    with pytest.raises(ConfigError, match=r"empty|names no directory"):
        parse_store_url(given)


def test_a_file_is_refused_naming_the_directory(tmp_path: Path) -> None:
    db = tmp_path / "despina.db"
    db.write_bytes(b"")
    with pytest.raises(ConfigError) as caught:
        parse_store_url(f"sqlite://{db}")
    assert f"the store is the directory that holds it: {str(tmp_path)!r}" in str(caught.value)


@pytest.mark.parametrize(
    ("given", "detail"),
    [
        ("postgresql://me:pw123@host:notaport/db", "port 'notaport' is not a number"),
        ("postgresql://me:pw123@host:70000/db", "port '70000' is not a number"),
        ("postgresql://me:pw123@host/db?colour=red", 'invalid URI query parameter: "colour"'),
        ("postgresql://me:pw123@host/d%zz", "invalid percent-encoded token"),
    ],
)
def test_a_malformed_postgres_url_names_it_without_the_password(given: str, detail: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_store_url(given)
    message = str(caught.value)
    assert f"malformed PostgreSQL URL {given.replace(':pw123', ':***')!r}" in message
    assert detail in message
    assert "pw123" not in message
