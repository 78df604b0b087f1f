"""``despina store copy``: a whole store into another (embedded <-> PostgreSQL), resumable,
idempotent, into a non-empty destination with conflicts reported."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pandas as pd
import psycopg
import pytest
from click.testing import CliRunner
from pandas.testing import assert_frame_equal

import despina
import despina.query as nq
from despina.cli import cli
from despina.errors import ConfigError, SchemaTooNew, StoreError
from despina.query import runs as nq_runs
from despina.query.filters import Filter
from despina.store import Store
from despina.store.copy import copy_store
from despina.store.schema import CHUNK_BITS

sys.path.insert(0, str(Path(__file__).parent.parent / "query"))
import query_data as data

QUIET = data.QUIET
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An embedded store with three projects: every attribute type, forks, previews, files,
    histograms, a model with versions and API keys (one revoked)."""
    home = tmp_path_factory.mktemp("copy-source")
    with mock.patch.dict(os.environ, {"DESPINA_STORE": ""}):
        os.environ.pop("DESPINA_STORE")
        data.log_example(home)
        data.log_seed(home)
        data.log_rich(home)
        _log_models(home)
        _log_long(home)
        _add_keys(home)
    return home


def _log_long(home: Path) -> None:
    """Series over several full chunks plus pieces (short rows of later flushes)."""
    run = despina.Run(project="ws/long", run_id="long", home=home, **QUIET)
    odd = "tab\there, new\nline, back\\slash \\N, quote ' \" é 🦜"  # COPY's escapes
    run.log_configs({"odd/text": odd, "odd/set": {odd, "plain"}})
    run.log_string_series({"odd/series": odd}, step=0)
    for step in range(5000):
        run.log_metrics({"a": step * 0.5, "b": 1.0 / (step + 1)}, step=step)
        if step % 1500 == 1499:
            run.wait_for_processing()
    run.close()


def _log_models(home: Path) -> None:
    model = despina.init_model(key="NET", project="ws/proj", home=home)
    model.log_configs({"spec/layers": 4})
    model.close()
    version = despina.init_model_version(model="PROJ-NET", project="ws/proj", home=home)
    version.log_configs({"val/acc": 0.75})
    version.change_stage("staging")
    version.close()


def _add_keys(home: Path) -> None:
    from despina.store.access import ApiKey, add_api_key, revoke_api_key, save_refresh_token

    store = Store.open(url=str(home))
    try:
        for n in range(3):
            add_api_key(
                store,
                ApiKey(f"{n:016x}", f"{n:064x}", f"key {n}", "ada", "ws", None, 1, None, None),
            )
        revoke_api_key(store, f"{1:016x}")
        save_refresh_token(store, "refresh-me", f"{0:016x}", 2**62)
        from despina.store.saved_views import save_view

        save_view(store, "ws/rich", "losses", "charts", "attributes=m%2Floss", "ada")
        save_view(store, "ws/proj", "heads", "runs", "query=cfg%2Flr+%3E+0", "ada")
    finally:
        store.close()


@pytest.fixture(autouse=True)
def no_store_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """These tests name their stores; the suite's DESPINA_STORE must not pick one for them."""
    monkeypatch.delenv("DESPINA_STORE", raising=False)
    monkeypatch.delenv("DESPINA_BLOBS", raising=False)
    yield
    nq.set_store(None)


# -- what a store holds, by natural keys ------------------------------------------------------


def dump(url: str | Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every copied table, ids replaced by the names they stand for."""
    store = Store.open(url=str(url))
    try:
        with store.read() as conn:
            projects = {
                r[0]: f"{r[1]}/{r[2]}"
                for r in conn.execute("SELECT id, workspace, name FROM projects")
            }
            runs = {
                r[0]: (projects[r[1]], r[2])
                for r in conn.execute("SELECT id, project_id, run_id FROM runs")
            }
            attrs = {
                r[0]: (*runs[r[1]], r[2])
                for r in conn.execute("SELECT id, run_id, path FROM attributes")
            }
            out: dict[str, list[tuple[Any, ...]]] = {}
            out["projects"] = _rows(
                conn,
                "SELECT workspace, name, project_key, uuid, description, visibility, created_ms, "
                "next_run_no FROM projects",
            )
            out["runs"] = [
                (
                    runs[r[0]],
                    *r[1:-2],
                    runs.get(r[-2]),
                    runs.get(r[-1]),
                )
                for r in conn.execute(
                    "SELECT id, short_no, uuid, family, experiment_name, is_head, owner, "
                    "description, creation_ms, modification_ms, ping_ms, closed, failed, "
                    "trashed, archived, fork_step, depth, size_bytes, revision, kind, "
                    "object_id, stage, parent_id, model_pk FROM runs"
                )
            ]
            out["attributes"] = [
                (attrs[r[0]], *r[1:])
                for r in conn.execute(
                    "SELECT id, type, num, text, count, last_step, last_ts, fmin, fmax, fsum, "
                    "fsumsq, fcount FROM attributes"
                )
            ]
            out["chunks"] = [
                (
                    attrs[r[0] >> CHUNK_BITS],
                    r[0] & ((1 << CHUNK_BITS) - 1),
                    *r[1:-3],
                    *(bytes(b) for b in r[-3:]),
                )
                for r in conn.execute(
                    "SELECT id, n, step_first, step_last, ts_first, ts_last, vmin, vmax, steps, "
                    "vals, ts FROM chunks"
                )
            ]
            out["previews"] = [
                (attrs[r[0]], *r[1:])
                for r in conn.execute("SELECT attr_id, step, ts, value, completion FROM previews")
            ]
            out["points"] = [
                (attrs[r[0]], *r[1:])
                for r in conn.execute("SELECT attr_id, step, ts, value FROM points")
            ]
            out["set_members"] = [
                (attrs[r[1]], r[0]) for r in conn.execute("SELECT value, attr_id FROM set_members")
            ]
            out["blobs"] = [
                (projects[r[0]], *r[1:])
                for r in conn.execute(
                    "SELECT project_id, path, sha256, size, mime_type, created_ms FROM blobs"
                )
            ]
            out["saved_views"] = [
                (projects[r[0]], *r[1:])
                for r in conn.execute(
                    "SELECT project_id, name, kind, query, owner, created_ms, updated_ms "
                    "FROM saved_views"
                )
            ]
            out["api_keys"] = _rows(
                conn,
                "SELECT key_id, secret_sha256, name, username, workspace, project, created_ms, "
                "expires_ms, revoked_ms FROM api_keys",
            )
            out["refresh_tokens"] = _rows(
                conn, "SELECT token_sha256, key_id, expires_ms FROM refresh_tokens"
            )
    finally:
        store.close()
    return {name: sorted(rows, key=repr) for name, rows in out.items()}


def _rows(conn: Any, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in conn.execute(sql)]


# -- the query API on both sides ----------------------------------------------------------------


def _queries(tmp: Path) -> dict[str, Any]:
    """Calls of the query API: metrics (with previews, without lineage), tables with NQL,
    string series, histograms, files (and their contents), forks."""

    def download() -> list[tuple[str, bytes]]:
        table = nq_runs.fetch_runs_table(project="ws/rich", runs=["a1"], attributes=["f/file"])
        target = tmp / f"files-{len(list(tmp.glob('files-*')))}"
        nq_runs.download_files(files=table, destination=target)
        return sorted(
            (p.relative_to(target).as_posix(), p.read_bytes())
            for p in target.rglob("*")
            if p.is_file()
        )

    return {
        "metrics": lambda: nq.fetch_metrics(
            project="ws/rich",
            experiments=["alpha", "beta"],
            attributes=r"^m/",
            include_time="absolute",
            include_point_previews=True,
        ),
        "metrics_no_lineage": lambda: nq.fetch_metrics(
            project="ws/seed",
            experiments=["kittiwake_week-1", "kittiwake_week-2"],
            attributes="loss",
            lineage_to_the_root=False,
        ),
        "runs_metrics": lambda: nq_runs.fetch_metrics(
            project="ws/proj", runs=["r1", "r2", "r3"], attributes=r".*"
        ),
        "long_metrics": lambda: nq_runs.fetch_metrics(
            project="ws/long", runs=["long"], attributes=["a", "b"]
        ),
        "experiments_table": lambda: nq.fetch_experiments_table(
            project="ws/rich", attributes=r".*", type_suffix_in_column_names=True
        ),
        "runs_table_nql": lambda: nq_runs.fetch_runs_table(
            project="ws/rich",
            runs=Filter.nql("`m/loss`:float_series > 0.1 AND `cfg/int`:int >= 3"),
            attributes=r"^(cfg|sys/(id|custom_run_id|name|forking))",
            type_suffix_in_column_names=True,
        ),
        "runs_table_tags": lambda: nq_runs.fetch_runs_table(
            project="ws/rich",
            runs=Filter.nql('`sys/tags`:string_set CONTAINS "t2"'),
            attributes=["sys/custom_run_id"],
        ),
        "runs_table_forks": lambda: nq_runs.fetch_runs_table(
            project="ws/proj",
            attributes=r"^(cfg|sys/(id|name|custom_run_id|forking))",
            type_suffix_in_column_names=True,
        ),
        "strings": lambda: nq.fetch_series(
            project="ws/rich",
            experiments=["alpha", "beta"],
            attributes=r"^log/",
            include_time="absolute",
        ),
        "histograms": lambda: nq_runs.fetch_series(
            project="ws/rich", runs=["a1"], attributes=r"^h/"
        ),
        "file_series": lambda: nq_runs.fetch_series(
            project="ws/rich", runs=["a1"], attributes=r"^f/series"
        ),
        "file_contents": download,
    }


def frames(where: str | Path, tmp: Path) -> dict[str, Any]:
    """What each query answers over the store at ``where`` (an error: its message)."""
    nq.set_store(where)
    out: dict[str, Any] = {}
    try:
        for name, query in _queries(tmp).items():
            try:
                out[name] = query()
            except Exception as exc:  # compared (and shown) like an answer
                out[name] = f"error: {type(exc).__name__}: {exc}"
    finally:
        nq.set_store(None)
    return out


def assert_same_frames(a: dict[str, Any], b: dict[str, Any]) -> None:
    """Every answer equal; the message lists every query that differs."""
    differ = []
    for name in a:
        if isinstance(a[name], pd.DataFrame) and isinstance(b[name], pd.DataFrame):
            try:
                assert_frame_equal(a[name], b[name], obj=name)
            except AssertionError as exc:
                differ.append(f"{name}: {exc}")
        elif not isinstance(a[name], pd.DataFrame) and a[name] == b[name]:
            continue
        else:
            differ.append(f"{name}: {str(a[name])[:300]} != {str(b[name])[:300]}")
    assert differ == []


# -- tests --------------------------------------------------------------------------------------


def test_sqlite_to_postgres_and_back_gives_the_same_answers(
    source: Path, postgres_url: str, tmp_path: Path
) -> None:
    report = copy_store(source, postgres_url)
    assert report.conflicts == []
    assert report.runs_copied == report.runs > 10
    assert report.projects_created == 4
    assert report.points > 10_000
    assert report.files > 0 and report.file_bytes > 0
    assert report.api_keys == 3 and report.refresh_tokens == 1 and report.views == 2
    assert any("--blobs" in note for note in report.notes)  # contents stayed on this machine

    back = tmp_path / "back"
    again = copy_store(postgres_url, back)
    assert again.conflicts == [] and again.runs_copied == report.runs

    expected = dump(source)
    assert dump(postgres_url) == expected
    assert dump(back) == expected

    answers = frames(source, tmp_path)
    assert not [a for a in answers.values() if isinstance(a, str)]  # every query answered
    assert answers["file_contents"] and len(answers["long_metrics"]) == 5000
    assert_same_frames(answers, frames(back, tmp_path))


def test_the_query_api_answers_the_same_over_the_copy_in_postgres(
    source: Path, postgres_url: str, tmp_path: Path
) -> None:
    copy_store(source, postgres_url)
    assert_same_frames(frames(source, tmp_path), frames(postgres_url, tmp_path))
    # the planner knows the loaded rows at once, not after autovacuum's next pass
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        analyzed = conn.execute(
            "SELECT relname FROM pg_stat_user_tables WHERE last_analyze IS NOT NULL "
            "AND relname IN ('runs', 'attributes', 'chunks')"
        ).fetchall()
    assert sorted(name for (name,) in analyzed) == ["attributes", "chunks", "runs"]


def test_a_second_copy_changes_nothing(source: Path, tmp_path: Path) -> None:
    target = tmp_path / "target"
    first = copy_store(source, target)
    assert first.changed
    before = dump(target)
    second = copy_store(source, target)
    assert not second.changed
    assert second.runs_copied == 0 and second.runs_present == first.runs_copied
    assert second.files == 0 and second.file_contents == 0 and second.files_present == first.files
    assert dump(target) == before
    result = CliRunner().invoke(cli, ["store", "copy", "--quiet", str(source), str(target)])
    assert result.exit_code == 0, result.output
    assert "nothing to copy" in result.output
    assert dump(target) == before


def test_embedded_to_embedded_through_the_command(source: Path, tmp_path: Path) -> None:
    target = tmp_path / "t"
    result = CliRunner().invoke(cli, ["store", "copy", str(source), f"sqlite://{target}"])
    assert result.exit_code == 0, result.output
    assert "runs:" in result.output and "0 conflicts" in result.output
    assert "points/s" in result.output
    assert dump(target) == dump(source)


CLI = "import sys; from despina.cli import cli; cli(sys.argv[1:])"

KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from despina.store.copy import copier as copy_module
    from despina.store.copy import copy_store

    original = copy_module.Copier._copy_chunks
    calls = 0

    def killing(self, *args):
        # die inside the third run's transaction, after some of its rows were written
        global calls
        calls += 1
        points = original(self, *args)
        if calls == 3:
            os.kill(os.getpid(), signal.SIGKILL)
        return points

    copy_module.Copier._copy_chunks = killing
    copy_store(sys.argv[1], sys.argv[2])
    """
)


@pytest.mark.parametrize("kind", ["postgresql", "sqlite"])
def test_a_killed_copy_resumes_to_the_same_result(
    source: Path, postgres_url: str, postgres_cluster: Any, tmp_path: Path, kind: str
) -> None:
    if kind == "postgresql":
        killed, clean = postgres_url, postgres_cluster.create_database("copyclean")
    else:
        killed, clean = str(tmp_path / "killed"), str(tmp_path / "clean")
    env = {k: v for k, v in os.environ.items() if k not in ("DESPINA_STORE", "DESPINA_BLOBS")}
    done = subprocess.run(
        [sys.executable, "-c", KILLER, str(source), killed], env=env, cwd=ROOT, timeout=120
    )
    assert done.returncode == -signal.SIGKILL
    partial = dump(killed)
    assert 0 < len(partial["runs"]) < len(dump(source)["runs"])
    # the run being copied when the process died left nothing behind: each run is whole
    with_rows = {a[0][:2] for a in partial["attributes"]}
    assert with_rows == {r[0] for r in partial["runs"]}

    resumed = subprocess.run(
        [sys.executable, "-c", CLI, "store", "copy", "--quiet", str(source), killed],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "already there" in resumed.stdout
    copy_store(source, clean)
    assert dump(killed) == dump(clean) == dump(source)


def test_a_conflicting_run_is_reported_and_left_alone(source: Path, tmp_path: Path) -> None:
    target = tmp_path / "busy"
    # the destination already has its own r1 in ws/proj (another uuid), and a project of its own
    run = despina.Run(project="ws/proj", run_id="r1", store=str(target), **QUIET)
    run.log_metrics({"loss": 42.0}, step=0)
    run.close()
    other = despina.Run(project="ws/other", run_id="x", store=str(target), **QUIET)
    other.close()
    theirs = [r for r in dump(target)["runs"] if r[0] == ("ws/proj", "r1")]

    report = copy_store(source, target)
    names = sorted((c.kind, c.name) for c in report.conflicts)
    # r2 forks from r1: copying it over another r1 would graft it onto the wrong history
    assert names == [("run", "ws/proj/r1"), ("run", "ws/proj/r2")]
    assert "uuid" in report.conflicts[0].reason or "uuid" in report.conflicts[1].reason
    assert "conflict" in "\n".join(report.lines())
    after = dump(target)
    assert [r for r in after["runs"] if r[0] == ("ws/proj", "r1")] == theirs
    assert ("ws/other", "x") in {r[0] for r in after["runs"]}
    # r3 was copied; its sys/id number was taken by the destination's r1, so it got the next one
    r3 = next(r for r in after["runs"] if r[0] == ("ws/proj", "r3"))
    numbers = [r[1] for r in after["runs"] if r[0][0] == "ws/proj" and r[-4] == "run"]
    assert len(numbers) == len(set(numbers))
    assert r3[1] >= 2
    again = copy_store(source, target)
    assert not again.changed and len(again.conflicts) == 2


def test_runs_keep_their_heads_when_merged(source: Path, tmp_path: Path) -> None:
    """A destination head of the same experiment that is newer stays the head; an older one
    gives way."""
    target = tmp_path / "heads"
    from datetime import UTC, datetime

    newer = despina.Run(
        project="ws/proj",
        run_id="z9",
        experiment_name="exp-b",
        store=str(target),
        creation_time=datetime(2030, 1, 1, tzinfo=UTC),
        **QUIET,
    )
    newer.close()
    older = despina.Run(
        project="ws/proj",
        run_id="z0",
        experiment_name="exp-a",
        store=str(target),
        creation_time=datetime(2000, 1, 1, tzinfo=UTC),
        **QUIET,
    )
    older.close()
    copy_store(source, target)
    runs = dump(target)["runs"]
    assert {r[0][1] for r in runs if r[4] == "exp-b" and r[5] == 1} == {"z9"}
    assert {r[0][1] for r in runs if r[4] == "exp-a" and r[5] == 1} == {"r2"}


def test_bad_input_is_refused_with_the_fix(source: Path, tmp_path: Path, postgres_url: str) -> None:
    with pytest.raises(ConfigError, match="unsupported store URL"):
        copy_store("ftp://host/x", tmp_path / "d")
    missing = tmp_path / "missing"
    with pytest.raises(StoreError, match="does not exist"):
        copy_store(missing, tmp_path / "d")
    assert not missing.exists()  # no empty source store was created
    with pytest.raises(StoreError, match="holds no despina store"):
        copy_store(postgres_url, tmp_path / "d")  # an empty database is not a store
    with pytest.raises(ConfigError, match="same store"):
        copy_store(source, f"sqlite://{source}")
    copy_store(source, postgres_url)
    with pytest.raises(ConfigError, match="same store"):
        copy_store(postgres_url, postgres_url.replace("127.0.0.1", "localhost"))
    newer = tmp_path / "newer"
    Store.open(url=str(newer)).close()
    import sqlite3

    with sqlite3.connect(newer / "despina.db") as db:
        db.execute("UPDATE schema_version SET version = 999")
    with pytest.raises(SchemaTooNew):
        copy_store(source, newer)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("UPDATE schema_version SET version = 999")
        before = conn.execute("SELECT count(*) FROM runs").fetchone()
    with pytest.raises(SchemaTooNew, match="newer despina"):
        copy_store(source, postgres_url)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM runs").fetchone() == before
    result = CliRunner().invoke(cli, ["store", "copy", str(missing), str(tmp_path / "d")])
    assert result.exit_code != 0 and "does not exist" in result.output


def test_file_contents_go_to_the_destination_blob_store(
    source: Path, tmp_path: Path, postgres_url: str, s3_blobs: str
) -> None:
    """Embedded -> PostgreSQL with the contents in S3, then back to an embedded store whose
    contents come from that bucket (--source-blobs)."""
    result = CliRunner().invoke(
        cli, ["store", "copy", "--quiet", str(source), postgres_url, "--blobs", s3_blobs]
    )
    assert result.exit_code == 0, result.output
    assert "note:" not in result.output
    from despina.store.blobs import open_blob_store

    bucket = open_blob_store(s3_blobs, default=tmp_path / "unused")
    wanted = {row[2] for row in dump(source)["blobs"]}
    assert wanted and wanted <= set(bucket.keys())
    back = tmp_path / "back"
    report = copy_store(postgres_url, back, source_blobs=s3_blobs)
    assert report.file_contents == len(wanted) and report.files_missing == 0
    for sha in wanted:
        assert (back / "blobs" / sha[:2] / sha).read_bytes() == bucket.read(sha)


def test_missing_contents_are_counted_and_copied_once_repaired(
    source: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    copy_store(source, broken)
    shas = sorted({row[2] for row in dump(broken)["blobs"]})
    lost = broken / "blobs" / shas[0][:2] / shas[0]
    kept = lost.read_bytes()
    lost.unlink()
    target = tmp_path / "target"
    report = copy_store(broken, target)
    assert report.files_missing == 1 and not (target / "blobs" / shas[0][:2] / shas[0]).exists()
    lost.write_bytes(kept)  # the source is repaired: the next copy brings the content
    again = copy_store(broken, target)
    assert again.file_contents == 1 and again.files == 0 and again.files_missing == 0
    assert (target / "blobs" / shas[0][:2] / shas[0]).read_bytes() == kept


def test_api_keys_keep_their_state(source: Path, tmp_path: Path) -> None:
    from despina.store.access import ApiKey, add_api_key, find_api_key

    target = tmp_path / "keys"
    store = Store.open(url=str(target))
    try:
        # key 1 is revoked in the source only; key 2's id is taken by another secret
        add_api_key(store, ApiKey(f"{1:016x}", f"{1:064x}", "k1", "ada", "ws", None, 1, None, None))
        add_api_key(store, ApiKey(f"{2:016x}", "f" * 64, "other", "bob", "ws", None, 1, None, None))
    finally:
        store.close()
    report = copy_store(source, target)
    assert [(c.kind, c.name) for c in report.conflicts] == [("api_key", f"{2:016x}")]
    store = Store.open(url=str(target))
    try:
        revoked = find_api_key(store, f"{1:016x}")
        assert revoked is not None and revoked.revoked_ms is not None
        other = find_api_key(store, f"{2:016x}")
        assert other is not None and other.secret_sha256 == "f" * 64
        assert find_api_key(store, f"{0:016x}") is not None
    finally:
        store.close()
    assert not copy_store(source, target).changed


def test_progress_is_told_every_run_and_point(source: Path, tmp_path: Path) -> None:
    seen: list[tuple[str, int, int]] = []

    class Recorder:
        def begin(self, runs: int, points: int) -> None:
            seen.append(("begin", runs, points))

        def advance(self, runs: int, points: int) -> None:
            seen.append(("advance", runs, points))

    report = copy_store(source, tmp_path / "p", progress=Recorder())
    assert seen[0] == ("begin", report.runs, report.points)
    assert sum(s[1] for s in seen[1:]) == report.runs
    assert sum(s[2] for s in seen[1:]) == report.points


def test_small_pages_copy_the_same(
    source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows are read a page at a time (keyset pagination): pages of two rows lose nothing."""
    from despina.store.copy import copier

    monkeypatch.setattr(copier, "_BATCH", 2)
    monkeypatch.setattr(copier, "_CHUNK_BATCH", 2)
    target = tmp_path / "paged"
    copy_store(source, target)
    assert dump(target) == dump(source)


def test_every_table_is_copied_or_left_on_purpose(tmp_path: Path, postgres_url: str) -> None:
    """A table added to either schema must be added to the copy (or to the tables it leaves)."""
    from despina.store.copy.copier import COPIED_TABLES, LEFT_TABLES

    known = set(COPIED_TABLES) | set(LEFT_TABLES)
    embedded = Store.open(url=str(tmp_path / "fresh"))
    try:
        names = {
            r[0]
            for r in embedded.connection().execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
            )
        }
    finally:
        embedded.close()
    assert names == known
    database = Store.open(url=postgres_url)
    try:
        names = {
            r[0]
            for r in database.connection().execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            )
        }
    finally:
        database.close()
    assert names == known


def test_postgres_to_postgres(source: Path, postgres_url: str, postgres_cluster: Any) -> None:
    other = postgres_cluster.create_database("copyother")
    copy_store(source, postgres_url)
    report = copy_store(postgres_url, other)
    assert report.runs_copied == report.runs and report.conflicts == []
    assert dump(other) == dump(postgres_url) == dump(source)
    # the same database however it is named is refused, by what the server says it is
    from despina.store.copy import _database_identity

    stores = [Store.open(url=url) for url in (postgres_url, postgres_url + "?connect_timeout=5")]
    stores.append(Store.open(url=other))
    try:
        first, again, third = (_database_identity(s) for s in stores)
        assert first is not None and first == again and first != third
    finally:
        for store in stores:
            store.close()
    postgres_cluster.drop_database(other)
