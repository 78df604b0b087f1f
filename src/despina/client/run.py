"""``despina.Run``: the logging API of ``neptune_scale.Run``, writing to the embedded store.

Every logging call validates its arguments in the caller's thread, appends to an in-memory
buffer and returns; a background thread flushes the buffer to the store every
``FLUSH_INTERVAL`` seconds in one short transaction (see ``buffer.py``). Store-side rejections
(a non-increasing step, a type conflict, …) reach ``on_error_callback`` / ``on_warning_callback``
with the exception classes of ``neptune_scale.exceptions``; by default they are logged.

With the embedded store, ``mode="offline"`` behaves like ``"async"``: the store is already on
the local disk, so there is nothing to sync later.

With an API token (see :func:`despina.client.remote.remote_token`) the flusher appends each
flush to a durable queue on the local disk instead, and a sender thread sends the queue to the
server the token names (``despina.client.remote``, docs/remote-logging.md); ``mode="offline"``
then only queues, for ``despina sync``.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import random
import string
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, cast

from despina.client.artifacts import artifact_value
from despina.client.buffer import (
    CLOSE_RETRY_SECONDS,
    FLUSH_EARLY_POINTS,
    REMOTE_FLUSH_EARLY_POINTS,
    FileRequest,
    Flusher,
    LagMonitor,
    LogBuffer,
    MetricValues,
    row_packer,
)
from despina.client.console import ConsoleCapture
from despina.client.files import storage_key
from despina.client.source import GitLookup, SourceTrackingConfig, git_lookup
from despina.client.stores import acquire_store, close_idle_stores, release_store
from despina.client.values import (
    Reporter,
    check_path,
    datetime_ms,
    flatten_configs,
    guess_mime_type,
    histogram_json,
    local_file,
    step_to_micro,
    typed_config,
)
from despina.config import resolve_project
from despina.errors import ConfigError, StoreError
from despina.exceptions import (
    CODE_TO_EXCEPTION,
    NeptuneConnectionLostError,
    NeptuneProjectNotProvided,
    NeptuneScaleWarning,
    NeptuneUnexpectedError,
)
from despina.store import Store
from despina.store.batch import NO_STEP, Assign, IngestIssue, ModifySet, PointAppend, PreviewPoint
from despina.store.runs import CreatedRun, RunSpec, create_run, mark_closed, record_close
from despina.store.writer import RunWriter
from despina.types import File, as_file

if TYPE_CHECKING:  # the HTTP store (and httpx) loads only when a run logs to a server
    from despina.store.http.queue import LogQueue

__all__ = ["Run"]

logger = logging.getLogger("despina")

Callback = Callable[[BaseException, float | None], None]

_ADJECTIVES = ("swift", "calm", "bold", "bright", "keen", "quiet", "brave", "eager", "noble")
_NOUNS = ("heron", "otter", "falcon", "lynx", "orca", "puffin", "ibex", "tern", "wren")

_open_runs: weakref.WeakSet[Run] = weakref.WeakSet()


def generate_run_id() -> str:
    """``adjective-noun-YYYYMMDDHHMMSSmmm-xxxxx`` (UTC time with milliseconds)."""
    now = datetime.now(UTC)
    stamp = now.strftime("%Y%m%d%H%M%S") + f"{now.microsecond // 1000:03d}"
    suffix = "".join(random.choices(string.ascii_lowercase + string.digits, k=5))
    return f"{random.choice(_ADJECTIVES)}-{random.choice(_NOUNS)}-{stamp}-{suffix}"


class Run:
    """A training run: log configs, tags, metrics, string series, histograms and files.

    All arguments are keyword-only and mirror ``neptune_scale.Run``. Extensions: ``description``
    (``sys/description``), ``home`` (the store directory; default ``DESPINA_HOME`` or
    ``~/.despina``) and ``store`` (a store URL: a directory, ``sqlite:///path`` or
    ``postgresql://user@host:port/db``; default ``DESPINA_STORE``; wins over ``home``).

    With an API token (``api_token``, ``despina.query.set_api_token`` or ``DESPINA_API_TOKEN`` /
    ``NEPTUNE_API_TOKEN``, unless ``home``/``store`` name a local store) the run logs to the
    server the token names, through a durable queue under ``log_directory`` (default
    ``DESPINA_LOG_DIRECTORY`` or ``.despina``): see docs/remote-logging.md.

    Raises:
        NeptuneProjectNotProvided: no project argument and no ``DESPINA_PROJECT`` /
            ``NEPTUNE_PROJECT``.
        ValueError: an invalid run id, experiment name, fork arguments or mode.
    """

    _console: ConsoleCapture | None
    _lag_monitor: LagMonitor | None
    _store: Store | None
    _flusher: Flusher | None
    _source: tuple[GitLookup, SourceTrackingConfig] | None
    _remote: tuple[LogQueue, Any] | None

    def __init__(
        self,
        *,
        run_id: str | None = None,
        project: str | None = None,
        api_token: str | None = None,
        mode: Literal["async", "offline", "disabled"] | None = None,
        experiment_name: str | None = None,
        creation_time: datetime | None = None,
        fork_run_id: str | None = None,
        fork_step: int | float | None = None,
        log_directory: str | Path | None = None,
        max_queue_size: int | None = None,
        async_lag_threshold: float | None = None,
        on_async_lag_callback: Callable[[], None] | None = None,
        on_queue_full_callback: Callback | None = None,
        on_network_error_callback: Callback | None = None,
        on_error_callback: Callback | None = None,
        on_warning_callback: Callback | None = None,
        enable_console_log_capture: bool = True,
        runtime_namespace: str | None = None,
        source_tracking_config: SourceTrackingConfig | None = SourceTrackingConfig(),  # noqa: B008
        inherit_configs: bool = True,
        description: str | None = None,
        home: str | os.PathLike[str] | None = None,
        store: str | None = None,
        **kwargs: Any,
    ) -> None:
        system_namespace = kwargs.pop("system_namespace", None)
        kwargs.pop("resume", None)
        if kwargs:
            raise TypeError(f"Run() got unexpected keyword arguments: {', '.join(sorted(kwargs))}")
        if max_queue_size is not None:
            logger.warning("max_queue_size is deprecated and ignored")
        self._setup(
            project, mode, on_error_callback, on_warning_callback, on_network_error_callback
        )
        self._run_id = run_id if run_id is not None else generate_run_id()
        _check_name("run_id", self._run_id, allow_slash=False)
        if experiment_name is not None:
            _check_name("experiment_name", experiment_name, allow_slash=True)
        if (fork_run_id is None) != (fork_step is None):
            raise ValueError("fork_run_id and fork_step must be given together (or neither)")
        fork_micro = step_to_micro(fork_step)
        if (async_lag_threshold is None) != (on_async_lag_callback is None):
            raise ValueError("async_lag_threshold and on_async_lag_callback must be given together")
        self._experiment_name = experiment_name
        self._fork_step = fork_micro
        self._lag = (
            None
            if async_lag_threshold is None or on_async_lag_callback is None
            else (float(async_lag_threshold), on_async_lag_callback)
        )
        del on_queue_full_callback  # the queue is on disk: it is never full
        if self._mode == "disabled":
            return  # stays "closed": arguments are still checked, nothing is stored
        from despina.store.http.tokens import remote_token

        token = remote_token(api_token, home, store)
        if token is not None:
            self._open_remote(
                token,
                log_directory,
                "create",
                {
                    "run_id": self._run_id,
                    "experiment_name": experiment_name,
                    "creation_ms": None if creation_time is None else datetime_ms(creation_time),
                    "fork_run_id": fork_run_id,
                    "fork_step": fork_micro,
                    "inherit_configs": inherit_configs,
                    "description": description or "",
                },
            )
            self._start_extras(
                source_tracking_config,
                enable_console_log_capture,
                runtime_namespace or system_namespace,
                fork_micro,
            )
            return
        opened = acquire_store(home, url=store)  # opened once per process, shared by its runs
        try:
            created = create_run(
                opened,
                RunSpec(
                    project=self._project,
                    run_id=self._run_id,
                    experiment_name=experiment_name,
                    creation_ms=None if creation_time is None else datetime_ms(creation_time),
                    fork_run_id=fork_run_id,
                    fork_step=fork_micro,
                    inherit_configs=inherit_configs,
                    owner=_os_user(),
                    description=description or "",
                ),
            )
        except BaseException:
            release_store(opened)
            raise
        self._attach(opened, created)
        self._start_extras(
            source_tracking_config,
            enable_console_log_capture,
            runtime_namespace or system_namespace,
            fork_micro,
        )

    def _start_extras(
        self,
        source_tracking_config: SourceTrackingConfig | None,
        enable_console_log_capture: bool,
        namespace: str | None,
        fork_micro: int | None,
    ) -> None:
        """Source tracking, the lag monitor and console capture of an attached run."""
        if source_tracking_config is not None:
            # git runs once per process, in the background; logged when known (see source.py)
            self._source = (git_lookup(source_tracking_config), source_tracking_config)
        if self._lag is not None:
            self._lag_monitor = LagMonitor(self._buffer, *self._lag, oldest=self._oldest_unsent)
            self._lag_monitor.start()
        self._log_source(wait=False)
        namespace = namespace or "runtime"
        if enable_console_log_capture:
            start = 0 if fork_micro is None else fork_micro + 1
            console = ConsoleCapture(
                lambda points: self._buffer.add("points", points), namespace, start
            )
            console.start()
            self._console = console

    def _setup(
        self,
        project: str | None,
        mode: str | None,
        on_error: Callback | None,
        on_warning: Callback | None,
        on_network_error: Callback | None,
    ) -> None:
        """State every logging object has, before it is attached to a stored object."""
        self._closed = True  # until attached: calls on a half-built object are ignored
        self._reporter = Reporter()
        self._mode = mode or os.environ.get("NEPTUNE_MODE") or "async"
        if self._mode not in ("async", "offline", "disabled"):
            raise ValueError(f"mode must be 'async', 'offline' or 'disabled', got {self._mode!r}")
        try:
            self._project = resolve_project(project)
        except ConfigError as exc:
            raise NeptuneProjectNotProvided(str(exc)) from None
        self._callbacks = {"error": on_error, "warning": on_warning, "network": on_network_error}
        self._last_seen: dict[type, float] = {}
        self._callbacks_done = False
        self._lock = threading.Lock()
        self._known_paths: set[str] = set()
        self._last_keys: tuple[str, ...] = ()
        self._last_packer = row_packer(0)  # packs the values of a call with ``_last_keys``
        self._failed = False
        self._console = None
        self._lag_monitor = None
        self._store = None
        self._flusher = None
        self._source = None
        self._remote = None
        self._flush_early = FLUSH_EARLY_POINTS
        self._buffer = LogBuffer(on_full=self._buffer_full)

    def _attach(self, store: Store, created: CreatedRun) -> None:
        """Start logging into the stored object ``created``."""
        self._store = store
        self._deliver(created.issues)
        self._writer = RunWriter(store, created.pk)
        self._start_flushing(store.blobs)

    def _start_flushing(self, blobs: Any) -> None:
        """Start the flusher into ``self._writer`` (file contents into ``blobs``): logging on."""
        self._flusher = Flusher(
            self._buffer,
            self._writer,
            blobs,
            on_issues=self._deliver,
            on_failure=self._flush_failed,
            dropped=self._reporter.dropped,
            before_flush=self._before_flush,
        )
        self._flusher.start()
        self._closed = False
        _open_runs.add(self)

    def _open_remote(
        self, token: str, log_directory: str | Path | None, kind: str, body: dict[str, Any]
    ) -> None:
        """Log to the server ``token`` names through a new queue whose first operation is
        ``kind`` (``create`` a run, ``open`` a model or version) with ``body``.

        The first operation is sent at once (unless offline): a refused token, a missing
        project or bad creation parameters raise here. An unreachable server only warns: the
        run is created from the queue once the server answers, and logging goes on meanwhile.

        Raises:
            TokenRefused: the server refused the token.
            AuthError, ProjectNotFound, RunNotFound, ConfigError: the server refused the
                operation (nothing stays queued).
        """
        from despina.client.remote import QueueFiles, QueueSink, Sender, send_leftovers
        from despina.store.http.connection import ServerUnreachable, connection_for
        from despina.store.http.queue import LogQueue, resolve_log_directory

        connection = connection_for(token)
        directory = resolve_log_directory(log_directory)
        queue = LogQueue.create(
            directory,
            self._run_id,
            {"server": connection.server, "project": self._project, "run_id": self._run_id},
        )
        queue.append(kind, json.dumps(body).encode())
        sender = Sender(
            connection,
            queue,
            on_issues=self._deliver,
            on_network_error=self._network_error,
            on_refused=lambda exc: self._call("error", NeptuneUnexpectedError(str(exc))),
        )
        if self._mode != "offline":
            try:
                sender.send_first()
            except ServerUnreachable as exc:
                self._call(
                    "warning",
                    NeptuneScaleWarning(
                        f"{exc}. Logging goes on into the local queue {str(queue.directory)!r}; "
                        "it is sent once the server answers (or by 'despina sync')"
                    ),
                )
            except BaseException:
                queue.remove()
                raise
            sender.start(f"despina-sender-{self._run_id}")
            send_leftovers(directory, connection, skip=queue.directory)
        self._remote = (queue, sender)
        # flushed sooner than in-process: the server writes one part while the next is logged
        self._flush_early = REMOTE_FLUSH_EARLY_POINTS
        self._writer = QueueSink(queue, sender)  # type: ignore[assignment]
        self._start_flushing(QueueFiles(queue))

    def _oldest_unsent(self) -> float | None:
        """Monotonic time of the oldest data not stored (remote: not acknowledged) yet."""
        times = [self._buffer.first_unstored_at]
        if self._remote is not None:
            times.append(self._remote[1].oldest_unacked())
        known = [t for t in times if t is not None]
        return min(known) if known else None

    def _network_error(self, exc: BaseException) -> None:
        self._call(
            "network",
            NeptuneConnectionLostError(
                f"{exc} (run {self._run_id!r}: the data stays in the local queue and is retried)"
            ),
        )

    # -- identity ----------------------------------------------------------------------------

    @property
    def run_id(self) -> str:
        return self._run_id

    @property
    def project(self) -> str:
        return self._project

    # -- logging -----------------------------------------------------------------------------

    def log_metrics(
        self,
        data: dict[str, float | int],
        step: float | int | None,
        *,
        timestamp: datetime | None = None,
        preview: bool = False,
        preview_completion: float | None = None,
    ) -> None:
        """Append one point per key to float series at ``step`` (same step and time for all).

        Raises:
            TypeError: ``step`` is not an int or float, or ``timestamp`` not a datetime.
            ValueError: ``step`` outside [0, 1e12); ``preview_completion`` outside [0, 1] or
                given without ``preview=True``.
        """
        # the common case (an int or float step, no preview) without calls: this is the hot path
        if type(step) is int and 0 <= step < 1_000_000_000_000:
            micro = step * 1_000_000
        else:
            micro = _or_no_step(step_to_micro(step))
        if preview or preview_completion is not None:
            self._check_preview(preview, preview_completion)
        ts = int(time.time() * 1000) if timestamp is None else datetime_ms(timestamp)
        if self._closed or not data:
            return
        keys = tuple(data)
        if keys == self._last_keys:
            # every call of a loop queues the one tuple: a new one each call would wait in the
            # buffer for the cyclic GC to scan (a thousand items each, at the flush)
            keys = self._last_keys
        else:
            keys, data = self._checked_keys(keys, data)
        if self._reporter.raise_on_drop:
            for key, value in zip(keys, data.values(), strict=True):
                _to_float_or_report(key, value, self._reporter)
        if preview:
            completion = 0.0 if preview_completion is None else float(preview_completion)
            points = []
            for key, value in zip(keys, data.values(), strict=True):
                number = _to_float_or_report(key, value, self._reporter)
                if number is not None:
                    points.append(PreviewPoint(key, micro, number, ts, completion))
            self._buffer.add("previews", points)
            return
        # packed as float64 now: bytes are not tracked by the cyclic GC (a tuple of the values
        # is, until a collection scans it) and the flush joins them into its matrix as they are
        packer = self._last_packer if keys is self._last_keys else row_packer(len(keys))
        values: MetricValues
        try:
            values = packer.pack(*data.values())
        except Exception:  # a value float() may convert (a string) or refuse: checked at the flush
            values = tuple(data.values())
        if self._buffer.add_metrics(keys, values, micro, ts) > self._flush_early:
            self._wake()

    @staticmethod
    def _check_preview(preview: bool, completion: float | None) -> None:
        if completion is None:
            return
        if not 0.0 <= completion <= 1.0:
            raise ValueError(f"preview_completion must be in [0, 1], got {completion!r}")
        if not preview and completion != 1.0:
            raise ValueError(
                "preview_completion is only allowed with preview=True (got "
                f"{completion!r} without it)"
            )

    def _wake(self) -> None:
        if self._flusher is not None:
            self._flusher.wake()

    def _before_flush(self, final: bool) -> None:
        self._log_source(wait=final)

    def _log_source(self, *, wait: bool) -> None:
        """Queue the source-tracking configs once known (``wait``: until they are)."""
        source = self._source
        if source is None:
            return
        lookup, config = source
        if not (lookup.done.is_set() or (wait and lookup.done.wait())):
            return
        with self._lock:
            if self._source is None:  # queued by another thread meanwhile
                return
            self._source = None
        ops = self._config_ops(lookup.configs(config), False, False)
        if ops:  # queued even while closing: close() waits for it
            self._buffer.add("ops", ops)

    def _checked_keys(
        self, keys: tuple[str, ...], data: dict[str, Any]
    ) -> tuple[tuple[str, ...], dict[str, Any]]:
        """Validate keys not seen before; returns the keys and data without the bad ones."""
        bad = [k for k in keys if k not in self._known_paths and not check_path(k, self._reporter)]
        if bad:
            data = {k: v for k, v in data.items() if k not in bad}
            return tuple(data), data
        self._known_paths.update(keys)
        self._last_keys = keys
        self._last_packer = row_packer(len(keys))
        return keys, data

    def log_configs(
        self,
        data: Mapping[str, Any] | Any = None,
        flatten: bool = False,
        cast_unsupported: bool = False,
    ) -> None:
        """Assign single values (overwriting), typed as in the logging spec §4.

        Raises:
            TypeError: ``data`` is not a mapping or dataclass; a string set with a non-str item.
            ValueError: an int outside 64 bits.
        """
        if data is None:
            return
        ops = self._config_ops(data, flatten, cast_unsupported)
        if ops and not self._closed:
            self._buffer.add("ops", ops)

    def _config_ops(
        self, data: Any, flatten: bool, cast_unsupported: bool
    ) -> list[Assign | ModifySet]:
        flat = flatten_configs(data, flatten)
        ops: list[Assign | ModifySet] = []
        for path, value in flat.items():
            if not check_path(path, self._reporter):
                continue
            typed = typed_config(path, value, cast_unsupported, self._reporter)
            if typed is not None:
                ops.append(Assign(path, typed[0], typed[1]))
        return ops

    def add_tags(
        self, tags: list[str] | set[str] | tuple[str, ...], group_tags: bool = False
    ) -> None:
        """Add tags to ``sys/tags`` (or ``sys/group_tags``)."""
        self._modify_tags(tags, group_tags, add=True)

    def remove_tags(
        self, tags: list[str] | set[str] | tuple[str, ...], group_tags: bool = False
    ) -> None:
        """Remove tags from ``sys/tags`` (or ``sys/group_tags``); absent tags are ignored."""
        self._modify_tags(tags, group_tags, add=False)

    def _modify_tags(self, tags: Any, group_tags: bool, add: bool) -> None:
        path = "sys/group_tags" if group_tags else "sys/tags"
        values = self._string_collection(path, tags)
        if values is None or self._closed:
            return
        op = ModifySet(path, values, []) if add else ModifySet(path, [], values)
        self._buffer.add("ops", [op])

    def _string_collection(self, path: str, tags: Any) -> list[str] | None:
        if isinstance(tags, str) or not isinstance(tags, list | set | tuple | frozenset):
            self._reporter.dropped(
                f"tags for {path!r} must be a list, set or tuple of str, got {tags!r:.80}; "
                "wrap a single tag in a list"
            )
            return None
        bad = [t for t in tags if not isinstance(t, str)]
        if bad:
            self._reporter.dropped(f"tags for {path!r} must be str, got {bad[0]!r:.80}; dropped")
            return None
        return list(tags)

    def log_string_series(
        self, data: dict[str, str], step: float | int, *, timestamp: datetime | None = None
    ) -> None:
        """Append one string per key at ``step``; non-str values and values ≥ 1 MiB are dropped."""
        micro = step_to_micro(step)
        ts = datetime_ms(timestamp)
        points = []
        for path, value in data.items():
            if not check_path(path, self._reporter):
                continue
            if not isinstance(value, str):
                self._reporter.dropped(
                    f"string series {path!r} takes str values, got {type(value).__name__}; dropped"
                )
                continue
            if len(value.encode("utf-8", "surrogatepass")) >= 1024 * 1024:
                self._reporter.dropped(f"string-series value of {path!r} is 1 MiB or more; dropped")
                continue
            points.append(PointAppend(path, "string_series", _or_no_step(micro), ts, value))
        if points and not self._closed:
            self._buffer.add("points", points)

    def log_histograms(
        self, histograms: dict[str, Any], step: float | int, *, timestamp: datetime | None = None
    ) -> None:
        """Append one histogram per key at ``step``; invalid histograms are dropped."""
        micro = step_to_micro(step)
        ts = datetime_ms(timestamp)
        points = []
        for path, histogram in histograms.items():
            if not check_path(path, self._reporter):
                continue
            encoded = histogram_json(path, histogram, self._reporter)
            if encoded is not None:
                points.append(
                    PointAppend(path, "histogram_series", _or_no_step(micro), ts, encoded)
                )
        if points and not self._closed:
            self._buffer.add("points", points)

    def assign_files(self, files: dict[str, str | Path | bytes | File]) -> None:
        """Assign one file per key (overwrite); unreadable paths are skipped with a warning."""
        self._files(files, None, int(time.time() * 1000))

    def log_files(
        self,
        files: dict[str, str | Path | bytes | File],
        step: float | int,
        *,
        timestamp: datetime | None = None,
    ) -> None:
        """Append one file per key to file series at ``step``."""
        micro = step_to_micro(step)
        self._files(files, _or_no_step(micro), datetime_ms(timestamp))

    def _files(
        self, files: dict[str, str | Path | bytes | File], step: int | None, ts: int
    ) -> None:
        requests = []
        for path, item in files.items():
            if not check_path(path, self._reporter):
                continue
            # a neptune_scale.types.File is accepted too (code moved from neptune-scale)
            spec = as_file(item) or File(source=cast("str | Path | bytes", item))
            source: Path | bytes
            if isinstance(spec.source, bytes):
                source = spec.source
                name = spec.destination
                head = spec.source[:16]
            else:
                found = local_file(spec.source)
                if found is None:
                    self._reporter.dropped(
                        f"file {str(spec.source)!r} for {path!r} cannot be read; skipped"
                    )
                    continue
                source = found.resolve()
                name = spec.destination or found.name
                head = None
            mime = spec.mime_type or guess_mime_type(name, head)
            key = spec.destination or storage_key(
                self._run_id, path, step, name if isinstance(spec.source, bytes) else str(source)
            )
            requests.append(FileRequest(path, source, key, mime, step, ts))
        if requests and not self._closed:
            self._buffer.add("files", requests)

    def track_artifact(self, path: str, *files_or_dirs: str | os.PathLike[str]) -> str:
        """Record the content hash and file list of files or directories under ``path``.

        Extension (the old ``neptune`` client's ``track_files``): runs that used the same data
        can then be found with ``` `path`:artifact = "<hash>" ```. Returns the hash.

        Raises:
            FileNotFoundError: a source does not exist.
            ValueError: no source, or two sources with the same relative file path.
        """
        value = artifact_value(files_or_dirs)
        if check_path(path, self._reporter) and not self._closed:
            self._buffer.add("ops", [Assign(path, "artifact", value)])
        return str(value["hash"])

    def log(
        self,
        step: float | int | None = None,
        timestamp: datetime | None = None,
        configs: dict[str, Any] | None = None,
        metrics: dict[str, float | int] | None = None,
        tags_add: dict[str, list[str] | set[str] | tuple[str, ...]] | None = None,
        tags_remove: dict[str, list[str] | set[str] | tuple[str, ...]] | None = None,
    ) -> None:
        """The backwards-compatible catch-all: configs, metrics and string-set changes."""
        if configs:
            self.log_configs(configs)
        if metrics:
            self.log_metrics(metrics, step, timestamp=timestamp)
        for changes, add in ((tags_add, True), (tags_remove, False)):
            for path, values in (changes or {}).items():
                collected = self._string_collection(path, values)
                if collected is not None and not self._closed:
                    op = ModifySet(path, collected, []) if add else ModifySet(path, [], collected)
                    self._buffer.add("ops", [op])

    # -- waiting and closing -----------------------------------------------------------------

    def wait_for_submission(self, timeout: float | None = None, verbose: bool = True) -> bool:
        """Wait until everything logged so far is in the store (same as processing here);
        logging to a server: until it is in the local queue on disk."""
        if self._remote is None or self._flusher is None:
            return self.wait_for_processing(timeout, verbose)
        if self._console is not None:
            self._console.flush()
        done = self._flusher.wait_for(self._buffer.enqueued, timeout)
        if not done and verbose:
            logger.warning("despina: not everything logged was queued within %s s", timeout)
        return done

    def wait_for_processing(self, timeout: float | None = None, verbose: bool = True) -> bool:
        """Wait until everything logged so far is stored; ``False`` on timeout."""
        if self._flusher is None:
            return True
        if self._console is not None:
            self._console.flush()
        if not self._closed:
            self._log_source(wait=True)
        sequence = self._buffer.enqueued
        start = time.monotonic()
        try:
            done = self._flusher.wait_for(sequence, timeout)
            if done and self._remote is not None:
                queue, sender = self._remote
                left = None if timeout is None else max(0.0, timeout - (time.monotonic() - start))
                done = sender.wait_acked(queue.last_seq(), left)
        except KeyboardInterrupt:
            return False
        if done and self._store is not None:
            try:
                self._store.sync()  # a durable write: what was stored survives a power loss
            except StoreError as exc:
                self._flush_failed(exc)
                done = False
        if not done and verbose:
            logger.warning("despina: not everything logged was stored within %s s", timeout)
        return done

    def close(self, timeout: float | None = None) -> None:
        """Store everything logged (waiting at most ``timeout`` seconds) and stop the run.

        No callback is called once this returns: what the threads still sending or storing
        report afterwards (a ``close(timeout=...)`` that stopped waiting) goes to the
        ``despina`` logger instead.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        _open_runs.discard(self)
        try:
            self._close(timeout)
        finally:
            self._callbacks_done = True

    def _close(self, timeout: float | None) -> None:
        if self._flusher is None:
            return
        if self._console is not None:
            self._console.stop()
        if self._remote is None:
            self._stop_lag_monitor()
        # remote: the lag monitor watches close() too, which waits on the server (as
        # neptune-scale's lag tracker runs until its close stops waiting)
        flusher = self._flusher
        # a failing store is retried until the timeout (or CLOSE_RETRY_SECONDS without one)
        give_up_at = time.monotonic() + (CLOSE_RETRY_SECONDS if timeout is None else timeout)
        self._buffer.release()  # calls waiting for room: their data is queued already
        if timeout is None:
            # the final flush in this thread: no hand-off to the flusher thread and back
            flusher.stop(give_up_at, wake=False)
            try:
                # embedded: the final flush's commit also closes the run (durably)
                closed = flusher.finish_inline(None if self._remote else self._close_writes)
            finally:
                if flusher.is_alive():  # it failed: the flusher thread retries until give_up_at
                    flusher.wake()
        else:
            closed = False
            flusher.stop(give_up_at)
        # a callback of a flush closing its run cannot wait for the thread that runs it
        flusher.join(0 if flusher.on_flusher_thread() else timeout)
        if flusher.is_alive():
            self._stop_lag_monitor()
            logger.warning(
                "despina: run %r closed before everything was stored (timeout %s s)",
                self._run_id,
                timeout,
            )
            return  # the store stays acquired: the flusher thread still writes to it
        if flusher.unstored():  # the store kept failing until the flusher gave up
            self._call(
                "error",
                NeptuneUnexpectedError(
                    f"run {self._run_id!r} closed while the store kept failing; what was "
                    "logged since the last successful write is lost"
                ),
            )
        if self._remote is not None:
            try:
                self._close_remote(timeout, give_up_at)
            finally:
                self._stop_lag_monitor()
            return
        assert self._store is not None
        try:
            # one durable commit: the run marked closed, and with it everything stored before
            # is on stable storage (the fsync of the WAL covers every earlier commit)
            if not closed:
                mark_closed(self._store, self._writer.run_pk, failed=self._failed)
        except Exception as exc:
            self._flush_failed(exc)
        finally:
            # the store stays open for the process's next run; the last close at exit folds
            # the WAL back into the database and removes it
            release_store(self._store)

    def _stop_lag_monitor(self) -> None:
        if self._lag_monitor is not None:
            self._lag_monitor.stopping.set()

    def _close_writes(self, conn: Any) -> None:
        record_close(conn, self._writer.run_pk, failed=self._failed)

    def _close_remote(self, timeout: float | None, give_up_at: float) -> None:
        """Queue the close, wait for the sender (at most ``timeout``; without one, until
        sending has failed for ``CLOSE_GIVE_UP_SECONDS``) and remove the sent queue."""
        from despina.client.remote import CLOSE_GIVE_UP_SECONDS

        assert self._remote is not None
        queue, sender = self._remote
        try:
            sender.queued(
                queue.append(
                    "close", json.dumps({"run_id": self._run_id, "failed": self._failed}).encode()
                )
            )
        except StoreError as exc:
            self._flush_failed(exc)
        if self._mode == "offline":
            left = queue.remaining()
            queue.close()
            logger.warning(
                "despina: run %r was logged offline: %d operation(s) are queued in %s; send "
                "them with 'despina sync %s'",
                self._run_id,
                left,
                queue.directory,
                queue.directory,
            )
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        sender.stop(deadline)
        while not sender.join(0.2):
            if deadline is not None and time.monotonic() > deadline + 1.0:
                break  # a request begun before close() may wait out its connect timeout
            failing = sender.failing_since
            if (
                deadline is None
                and failing is not None
                and (time.monotonic() - failing > CLOSE_GIVE_UP_SECONDS)
            ):
                sender.stop(time.monotonic())
                sender.join(5.0)
                break
        del give_up_at
        if not sender.finished.is_set():
            logger.warning(
                "despina: run %r closed while its sender still waits on server %s; what is not "
                "sent stays in %s ('despina sync %s' sends it)",
                self._run_id,
                sender.connection.server,
                queue.directory,
                queue.directory,
            )
            return
        left = queue.remaining()
        if left == 0:
            queue.remove()
            return
        queue.close()
        logger.warning(
            "despina: %d operation(s) of run %r were not sent to server %s (%s); they stay in "
            "%s: 'despina sync %s' sends them, as does the next despina.Run started from this "
            "directory",
            left,
            self._run_id,
            sender.connection.server,
            sender._last_error or "timeout",
            queue.directory,
            queue.directory,
        )

    def terminate(self) -> None:
        """Stop without waiting for buffered data (safe inside callbacks)."""
        self.close(timeout=0)

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self._failed = True
        self.close()

    def __repr__(self) -> str:
        return f"Run(project={self._project!r}, run_id={self._run_id!r})"

    # -- reporting ---------------------------------------------------------------------------

    def _deliver(self, issues: list[IngestIssue]) -> None:
        for issue in issues:
            cls = CODE_TO_EXCEPTION.get(issue.code, NeptuneUnexpectedError)
            exc = cls(f"{issue.code}: {issue.message}")
            kind = "warning" if isinstance(exc, NeptuneScaleWarning) else "error"
            self._call(kind, exc)

    def _buffer_full(self, unstored: int, limit: int) -> None:
        """A logging call waits for the store: say so once per episode (from that call)."""
        self._call(
            "warning",
            NeptuneScaleWarning(
                f"despina: {unstored / 2**20:.0f} MiB logged to run {self._run_id!r} is not "
                f"stored yet (bound {limit / 2**20:.0f} MiB): the store is slow or failing, so "
                "logging calls wait until it takes data again; nothing is dropped"
            ),
        )

    def _flush_failed(self, exc: BaseException) -> None:
        self._call(
            "error", NeptuneUnexpectedError(f"storing logged data failed, will retry: {exc}")
        )

    def _call(self, kind: str, exc: BaseException) -> None:
        now = time.time()
        last = self._last_seen.get(type(exc))
        self._last_seen[type(exc)] = now
        callback = None if self._callbacks_done else self._callbacks.get(kind)
        if callback is None:
            (logger.warning if kind == "warning" else logger.error)("%s", exc)
            return
        try:
            callback(exc, last)
        except Exception:
            logger.exception("despina: an %s callback raised", kind)


def _to_float_or_report(key: str, value: Any, reporter: Reporter) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        reporter.dropped(f"metric {key!r}: cannot convert {value!r:.80} to float; dropped")
        return None


def _or_no_step(micro: int | None) -> int:
    return NO_STEP if micro is None else micro


def _check_name(what: str, value: Any, allow_slash: bool) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty str, got {value!r}")
    if not allow_slash and "/" in value:
        raise ValueError(f"{what} must not contain '/', got {value!r}")
    if len(value.encode("utf-8")) > 730:
        raise ValueError(f"{what} must be at most 730 UTF-8 bytes, got {len(value.encode())}")


def _os_user() -> str:
    """``getpass.getuser()`` for every run: the environment, then the password database (its
    lookup costs tens of microseconds; caching it per uid would keep a name that code running
    the process changed, as a test or a launcher does through ``getpass``)."""
    try:
        import getpass

        return getpass.getuser()
    except Exception:
        return os.environ.get("USER", "")


@atexit.register
def _close_open_runs() -> None:
    for run in list(_open_runs):
        try:
            run.close()
        except Exception:
            logger.exception("despina: closing run %r at exit failed", run.run_id)
    close_idle_stores()
