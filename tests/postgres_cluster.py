"""One real PostgreSQL cluster per test session, and a fresh database per test (a pytest plugin).

Under pytest-xdist each worker process is a session of its own and starts its own cluster
(a few seconds; `make test` runs two): no database names, roles or connection slots shared
between workers, and a worker's transaction ids move only with its own tests (tests/conftest.py
relies on it to keep a database no test wrote to).

The cluster lives in a temporary directory, listens on 127.0.0.1 on a free port (plus a Unix
socket in the same directory) and runs without fsync: it is thrown away at the end of the session
(``pg_ctl stop -m immediate``, then the directory is removed). PostgreSQL refuses to run as root,
so under root ``initdb`` and ``pg_ctl`` run as the ``postgres`` user through ``runuser`` and the
directory is handed to that user.

Fixtures:

* ``postgres_cluster`` (session): the running :class:`PostgresCluster`.
* ``postgres_url`` (function): a new empty database for this test, as a ``postgresql://`` URL;
  dropped after the test.
* ``postgres_module_url`` (module): the same, shared by the tests of one module.

When PostgreSQL is not installed or does not start, the tests that use these fixtures are skipped
with the reason, unless ``DESPINA_REQUIRE_POSTGRES=1`` (set by CI), which makes them fail.

Authentication is ``trust`` for every user except :data:`PASSWORD_USER`, a role that must give
its password (:data:`PASSWORD`) over TCP, for tests of authentication failures.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = [
    "PASSWORD",
    "PASSWORD_USER",
    "SUPERUSER",
    "ClusterUnavailable",
    "PostgresCluster",
    "postgres_cluster",
    "postgres_module_url",
    "postgres_url",
]

SUPERUSER = "despina"
PASSWORD_USER = "despina_pw"
PASSWORD = "right-pw-7f3a"
MIN_MAJOR = 15
START_TIMEOUT_S = 60
REQUIRE_ENV = "DESPINA_REQUIRE_POSTGRES"

_HBA = f"""\
# written by tests/postgres_cluster.py
local   all   all                              trust
host    all   {PASSWORD_USER}   127.0.0.1/32   scram-sha-256
host    all   all               127.0.0.1/32   trust
"""


class ClusterUnavailable(RuntimeError):
    """PostgreSQL is not installed here or did not start; the message says why."""


class PostgresCluster:
    """A running throw-away PostgreSQL cluster on 127.0.0.1."""

    def __init__(
        self, bindir: Path, root: Path, port: int, run_as: str | None, *, fsync: bool = False
    ) -> None:
        self.fsync = fsync
        self.bindir = bindir
        self.root = root
        self.data = root / "data"
        self.log = root / "postgres.log"
        self.port = port
        self.run_as = run_as
        self.start_seconds = 0.0  # initdb + start, measured by start()
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()
        self._stopped = False

    # -- life cycle ----------------------------------------------------------------------------

    @classmethod
    def start(cls, *, fsync: bool = False) -> PostgresCluster:
        """initdb a new cluster in a temporary directory and start it.

        Tests run without fsync (the cluster is thrown away); benchmarks of writes ask for it.

        Raises:
            ClusterUnavailable: no PostgreSQL 15+ binaries, no way to drop root, or the server
                did not start (the reason includes the end of its log).
        """
        began = time.perf_counter()
        bindir = find_bindir()
        run_as = None
        if os.geteuid() == 0:
            if shutil.which("runuser") is None:
                raise ClusterUnavailable("running as root and runuser is not installed")
            try:
                account = pwd.getpwnam("postgres")
            except KeyError:
                raise ClusterUnavailable(
                    "running as root and there is no postgres user to run the server as "
                    "(apt-get install postgresql creates it)"
                ) from None
            run_as = "postgres"
        # a short path: the Unix socket path must stay under ~100 bytes
        base = "/tmp" if os.path.isdir("/tmp") else None
        root = Path(tempfile.mkdtemp(prefix="despina-pg-", dir=base))
        cluster: PostgresCluster | None = None
        try:
            if run_as is not None:
                os.chown(root, account.pw_uid, account.pw_gid)
            cluster = cls(bindir, root, 0, run_as, fsync=fsync)
            cluster._initdb()
            last = ""
            for _ in range(3):  # the free port may be taken between choosing and binding it
                cluster.port = _free_port()
                try:
                    cluster._pg_ctl_start()
                    break
                except ClusterUnavailable as exc:
                    last = str(exc)
                    if "already in use" not in last and "could not bind" not in last:
                        raise
            else:
                raise ClusterUnavailable(last)
            cluster._create_password_role()
        except BaseException:
            if cluster is not None:
                cluster.stop()
            else:
                shutil.rmtree(root, ignore_errors=True)
            raise
        cluster.start_seconds = time.perf_counter() - began
        atexit.register(cluster.stop)  # also when the session ends without running finalizers
        return cluster

    def _run(self, *args: str, timeout: float = START_TIMEOUT_S) -> str:
        command = list(args)
        if self.run_as is not None:
            command = ["runuser", "-u", self.run_as, "--", *command]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        try:
            done = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=timeout,
                env=env,
                cwd=self.root,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ClusterUnavailable(f"{Path(args[0]).name} failed: {exc}") from exc
        if done.returncode != 0:
            log = ""
            with contextlib.suppress(OSError):
                log = "\n".join(self.log.read_text(errors="replace").splitlines()[-8:])
            raise ClusterUnavailable(
                f"{Path(args[0]).name} exited with {done.returncode}: "
                f"{(done.stderr or done.stdout).strip()[-800:]}\n{log}".rstrip()
            )
        return done.stdout

    def _initdb(self) -> None:
        self._run(
            str(self.bindir / "initdb"),
            "--no-sync",
            "-D",
            str(self.data),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        )
        (self.data / "pg_hba.conf").write_text(_HBA)

    def _pg_ctl_start(self) -> None:
        options = f"-h 127.0.0.1 -p {self.port} -k {self.root} -c max_connections=200" + (
            "" if self.fsync else " -c fsync=off -c full_page_writes=off"
        )
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-w",
            "-t",
            str(START_TIMEOUT_S),
            "-o",
            options,
            "start",
        )

    def _create_password_role(self) -> None:
        self.execute(
            f"CREATE ROLE {PASSWORD_USER} LOGIN PASSWORD '{PASSWORD}'",
        )

    def stop(self) -> None:
        """Stop the server at once and remove its directory (idempotent)."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(ClusterUnavailable):
                self._run(
                    str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"
                )
        shutil.rmtree(self.root, ignore_errors=True)

    # -- databases -----------------------------------------------------------------------------

    def url(self, dbname: str = "postgres", *, user: str = SUPERUSER, password: str = "") -> str:
        """The URL of database ``dbname`` over TCP on 127.0.0.1."""
        auth = f"{user}:{password}" if password else user
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{dbname}"

    def execute(self, sql: str, dbname: str = "postgres") -> None:
        """Run one statement as the superuser, outside a transaction."""
        import psycopg

        with psycopg.connect(self.url(dbname), autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.encode())

    def create_database(self, prefix: str = "test") -> str:
        """Create a new empty database and return its URL."""
        with self._lock:
            name = f"{_identifier(prefix)}_{next(self._numbers)}"
        self.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        """Drop the database of ``url``, ending any connection a test left open."""
        name = url.rsplit("/", 1)[-1]
        self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def find_bindir() -> Path:
    """The directory of PostgreSQL 15+'s ``initdb`` and ``pg_ctl``.

    Tried in order: ``pg_config --bindir``, ``/usr/lib/postgresql/<newest>/bin`` (Debian), the
    directory of ``initdb`` on PATH.
    """
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
            candidates.append(Path(out))
    debian = Path("/usr/lib/postgresql")
    if debian.is_dir():
        versions = sorted(
            (p for p in debian.iterdir() if p.name.isdigit()), key=lambda p: -int(p.name)
        )
        candidates.extend(p / "bin" for p in versions)
    initdb = shutil.which("initdb")
    if initdb is not None:
        candidates.append(Path(initdb).resolve().parent)
    seen: list[str] = []
    for bindir in candidates:
        if not ((bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file()):
            continue
        major = _major_version(bindir / "initdb")
        seen.append(f"{bindir} ({major or 'unknown version'})")
        if major is not None and major >= MIN_MAJOR:
            return bindir
    if seen:
        raise ClusterUnavailable(f"PostgreSQL {MIN_MAJOR}+ is needed; found only {', '.join(seen)}")
    raise ClusterUnavailable(
        "PostgreSQL is not installed (no initdb/pg_ctl found through pg_config, "
        "/usr/lib/postgresql or PATH); install it: apt-get install -y postgresql"
    )


def _major_version(initdb: Path) -> int | None:
    try:
        out = subprocess.run(
            [str(initdb), "--version"], capture_output=True, text=True, timeout=10, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r"(\d+)(?:\.\d+)?", out)
    return int(found.group(1)) if found else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _identifier(text: str) -> str:
    cleaned = re.sub(r"[^a-z0-9_]", "_", text.lower())[:40]
    return cleaned or "test"


# -- pytest fixtures ---------------------------------------------------------------------------

_state: dict[str, object] = {}


def _unavailable(reason: str) -> None:
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{REQUIRE_ENV}=1 but PostgreSQL is unavailable: {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL is unavailable: {reason}")


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """The session's PostgreSQL cluster, started on first use."""
    failure = _state.get("failure")
    if isinstance(failure, str):
        _unavailable(failure)
    try:
        cluster = PostgresCluster.start()
    except ClusterUnavailable as exc:
        _state["failure"] = str(exc)
        _unavailable(str(exc))
        raise  # not reached: skip or fail raised
    try:
        yield cluster
    finally:
        _close_open_pools()
        cluster.stop()


def _close_open_pools() -> None:
    """Close the connection pools still open at the session's end (a store a module-level cache
    kept, say), before the cluster stops: an open pool reconnects in the background and prints
    a connection error each time until the process exits."""
    import gc

    from psycopg_pool import ConnectionPool

    gc.collect()
    for thing in gc.get_objects():
        if isinstance(thing, ConnectionPool) and not thing.closed:
            thing.close(timeout=1)


@pytest.fixture
def postgres_url(postgres_cluster: PostgresCluster) -> Iterator[str]:
    """A new empty database for this test (dropped afterwards), as a ``postgresql://`` URL."""
    url = postgres_cluster.create_database()
    yield url
    postgres_cluster.drop_database(url)


@pytest.fixture(scope="module")
def postgres_module_url(postgres_cluster: PostgresCluster) -> Iterator[str]:
    """A new empty database shared by the tests of one module."""
    url = postgres_cluster.create_database("module")
    yield url
    postgres_cluster.drop_database(url)
