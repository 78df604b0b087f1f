"""``despina serve``: the Neptune-compatible HTTP server over a store (one of any number of
replicas over a PostgreSQL store)."""

from __future__ import annotations

import gc
import logging
from typing import TYPE_CHECKING

import click

from despina.cli.locations import store_options
from despina.config import resolve_home
from despina.server.settings import ServerSettings

if TYPE_CHECKING:
    from despina.store import Store

__all__ = ["serve"]

D = ServerSettings()
"""The defaults, shown in ``--help``."""


@click.command()
@store_options
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--home",
    type=click.Path(file_okay=False),
    default=None,
    help="Store directory (default: DESPINA_HOME or ~/.despina); with a PostgreSQL --store, "
    "this replica's local directory (no shared state is kept there).",
)
@click.option(
    "--public-url",
    default=None,
    help="Base URL clients use to reach the server (default: taken from each request).",
)
@click.option(
    "--auto-create-projects",
    is_flag=True,
    default=None,
    help="Create a missing project when a workspace token's client asks for it.",
)
@click.option(
    "--max-connections",
    type=click.IntRange(1),
    default=None,
    help=f"Open connections at most; more are closed at once.  [default: {D.max_connections}]",
)
@click.option(
    "--max-read-requests",
    type=click.IntRange(1),
    default=None,
    help="Reads (query API, web UI, downloads) in progress at most; more are answered 429 "
    f"with Retry-After.  [default: {D.max_read_requests}]",
)
@click.option(
    "--max-write-requests",
    type=click.IntRange(1),
    default=None,
    help="Ingest, upload, token and project requests in progress at most; more are answered "
    f"429 with Retry-After.  [default: {D.max_write_requests}]",
)
@click.option(
    "--read-threads",
    type=click.IntRange(1),
    default=None,
    help="Worker threads for reads; they share Python's interpreter lock with ingest, so "
    f"fewer favour ingest under heavy reads.  [default: {D.read_threads}]",
)
@click.option(
    "--write-threads",
    type=click.IntRange(1),
    default=None,
    help="Worker threads for ingest, uploads, tokens and projects (reads never use them).  "
    f"[default: {D.write_threads}]",
)
@click.option(
    "--write-queue-timeout",
    type=click.FloatRange(min=0.1),
    default=None,
    help="Seconds a write waits for a worker thread before a 429.  "
    f"[default: {D.write_queue_seconds:g}]",
)
@click.option(
    "--store-busy-timeout",
    type=click.FloatRange(min=0.1),
    default=None,
    help="Seconds a request waits for the store's write lock before a 429 with Retry-After "
    f"(keep it under the clients' 30 s timeout).  [default: {D.store_busy_seconds:g}]",
)
@click.option(
    "--header-timeout",
    type=click.FloatRange(min=0.1),
    default=None,
    help="Seconds a request's line and headers may take to arrive; slower connections are "
    f"closed.  [default: {D.header_timeout_seconds:g}]",
)
@click.option(
    "--body-timeout",
    type=click.FloatRange(min=0.1),
    default=None,
    help="Seconds of grace to send a request body, plus one per --body-min-rate bytes "
    f"received; a slower body is answered 408.  [default: {D.body_timeout_seconds:g}]",
)
@click.option(
    "--body-min-rate",
    type=click.IntRange(1),
    default=None,
    help=f"Bytes per second a long request body must average.  [default: {D.body_min_rate}]",
)
@click.option(
    "--keep-alive-timeout",
    type=click.FloatRange(min=0.1),
    default=None,
    help="Seconds an idle connection is kept open between requests.  "
    f"[default: {D.keep_alive_seconds:g}]",
)
@click.option(
    "--auth-rate",
    type=click.FloatRange(min=0.01),
    default=None,
    help="Token requests (exchange, refresh) per second per client address; more are "
    f"answered 429 with Retry-After.  [default: {D.auth_rate:g}, in bursts of {D.auth_burst}]",
)
@click.option(
    "--sign-in-link/--no-sign-in-link",
    default=True,
    show_default=True,
    help="Print a one-time web UI sign-in link for the operator (every workspace) at start.",
)
@click.option("--no-access-log", is_flag=True, help="Do not log one line per request.")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
def serve(
    host: str,
    port: int,
    home: str | None,
    public_url: str | None,
    auto_create_projects: bool | None,
    max_connections: int | None,
    max_read_requests: int | None,
    max_write_requests: int | None,
    read_threads: int | None,
    write_threads: int | None,
    write_queue_timeout: float | None,
    store_busy_timeout: float | None,
    header_timeout: float | None,
    body_timeout: float | None,
    body_min_rate: int | None,
    keep_alive_timeout: float | None,
    auth_rate: float | None,
    sign_in_link: bool,
    no_access_log: bool,
    log_level: str,
) -> None:
    """Serve the store (--store, else HOME) to the official Neptune clients (neptune-scale,
    neptune-query).

    Stops gracefully on Ctrl-C or SIGTERM: requests in flight finish first.

    Any number of servers over one PostgreSQL store (--store postgresql://...) and one blob
    store (--blobs s3://... or a shared directory) are interchangeable replicas: put them behind
    one URL (a load balancer) or point clients at any of them. Tokens, sign-ins, request
    statuses and uploads live in the store; background jobs run on one replica at a time.
    Request limits below are per replica.

    Limits keep one client, a slow connection or a busy store from taking the server down:
    beyond a limit the server answers 429 with Retry-After (both official clients back off and
    resend), 408 for a body that arrives too slowly, or closes the connection (too many
    connections, headers too slow). Reads and writes have their own worker threads, so heavy
    reads (the web UI's charts, large fetches) never hold up ingest.
    """
    import uvicorn

    from despina.server.app import create_app
    from despina.server.limits import guarded_h11_protocol
    from despina.server.logs import configure_logging
    from despina.server.ui import start_up_message
    from despina.store import Store

    configure_logging(getattr(logging, log_level.upper()), access=not no_access_log)
    settings = ServerSettings.from_env(
        public_url=public_url,
        auto_create_projects=auto_create_projects,
        max_connections=max_connections,
        max_read_requests=max_read_requests,
        max_write_requests=max_write_requests,
        read_threads=read_threads,
        write_threads=write_threads,
        write_queue_seconds=write_queue_timeout,
        store_busy_seconds=store_busy_timeout,
        header_timeout_seconds=header_timeout,
        body_timeout_seconds=body_timeout,
        body_min_rate=body_min_rate,
        keep_alive_seconds=keep_alive_timeout,
        auth_rate=auth_rate,
    )
    # a short lock wait: a writer kept out is answered 429 well before the clients time out
    store = Store.open(resolve_home(home), busy_timeout_ms=int(settings.store_busy_seconds * 1000))
    app = create_app(store, settings)
    _warn_of_local_blobs(store)
    link_host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    ui_url = settings.public_url or f"http://{link_host}:{port}"
    click.echo(start_up_message(app, ui_url, link=sign_in_link))
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http=guarded_h11_protocol(settings),  # connection cap, header deadline
        ws="none",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=15,
        timeout_keep_alive=max(1, round(settings.keep_alive_seconds)),
        server_header=False,
    )
    logging.getLogger("despina.server").info(
        "serving",
        extra={
            "fields": {
                "home": str(store.home),
                "store": store.display,
                "url": f"http://{host}:{port}",
            }
        },
    )
    _raise_open_files_limit(settings.max_connections + 256)
    config.load()  # import the protocol modules now, so that the freeze below covers them
    _tune_garbage_collection()
    uvicorn.Server(config).run()


def _warn_of_local_blobs(store: Store) -> None:
    """A replica of a PostgreSQL store whose file contents stay in its own home: the other
    replicas cannot serve them. Legitimate for a single server, so a warning, not an error."""
    from pathlib import Path

    root = getattr(store.blobs, "root", None)
    if store.dialect == "postgresql" and root is not None and Path(root) == store.blobs_dir:
        logging.getLogger("despina.server").warning(
            "file contents go to %s on this machine only; with more than one replica, give "
            "every replica the same --blobs (s3://bucket/prefix or a shared directory)",
            root,
        )


def _raise_open_files_limit(wanted: int) -> None:
    """Raise the soft limit on open files to ``wanted`` (connections plus the store's files)
    when the hard limit allows: the common default of 1024 is close to ``max_connections``."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < wanted:
        logging.getLogger("despina.server").warning(
            "the open-files limit (%d) is low for max_connections; lower --max-connections "
            "or raise 'ulimit -n'",
            target,
        )


def _tune_garbage_collection() -> None:
    """Keep the objects that live as long as the process out of garbage collection, and
    collect the young generation every 10 000 allocations instead of 700.

    Modules, classes and the app are permanent, yet every full collection walks all of them;
    and a request that builds many objects (the JSON of 10 000 series: 30 000 dicts) set off
    dozens of collections: about a fifth of the server's CPU when neptune-query fetches 1000
    runs × 1000 metrics (13.5-14 s → 11 s). Cycles are rare in the server; the larger threshold
    only delays their collection.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
