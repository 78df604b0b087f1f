"""The ``sys/`` attributes of a run: their types and where each one lives in the store.

Most ``sys/`` values are columns of ``runs`` (and ``projects``); tags live as ordinary
``string_set`` rows of ``attributes`` (paths ``sys/tags`` and ``sys/group_tags``), created empty
with every run. The SQL expressions below assume the aliases ``r`` (runs) and ``p`` (projects,
joined on ``p.id = r.project_id``). An expression that evaluates to NULL means the attribute is
absent for that run (``sys/experiment/name`` without an experiment, ``sys/forking/*`` on roots).
Datetimes are epoch milliseconds; bools are 0/1.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from despina.errors import ConfigError

__all__ = ["SYS_COLUMNS", "SYS_STRING_SETS", "SysColumn", "ping_timeout_s", "run_state_sql"]


@dataclass(frozen=True, slots=True)
class SysColumn:
    """A ``sys/`` attribute computed from the runs row."""

    path: str
    type: str
    sql: str


SYS_COLUMNS: dict[str, SysColumn] = {
    c.path: c
    for c in (
        SysColumn("sys/id", "string", "COALESCE(r.object_id, p.project_key || '-' || r.short_no)"),
        SysColumn("sys/custom_run_id", "string", "r.run_id"),
        SysColumn("sys/name", "string", "COALESCE(r.experiment_name, '')"),
        SysColumn("sys/experiment/name", "string", "r.experiment_name"),
        SysColumn("sys/experiment/is_head", "bool", "r.is_head"),
        SysColumn("sys/family", "string", "r.family"),
        SysColumn("sys/owner", "string", "r.owner"),
        SysColumn("sys/description", "string", "r.description"),
        SysColumn("sys/diagnostics/project_uuid", "string", "p.uuid"),
        SysColumn("sys/diagnostics/run_uuid", "string", "r.uuid"),
        SysColumn("sys/creation_time", "datetime", "r.creation_ms"),
        SysColumn("sys/modification_time", "datetime", "r.modification_ms"),
        SysColumn("sys/ping_time", "datetime", "r.ping_ms"),
        SysColumn("sys/archived", "bool", "r.archived"),
        SysColumn("sys/trashed", "bool", "r.trashed"),
        SysColumn("sys/failed", "bool", "r.failed"),
        SysColumn("sys/forking/depth", "int", "r.depth"),
        SysColumn("sys/size", "int", "r.size_bytes"),
        SysColumn(
            "sys/forking/parent",
            "string",
            "(SELECT pr.run_id FROM runs pr WHERE pr.id = r.parent_id)",
        ),
        SysColumn("sys/forking/step", "float", "(r.fork_step / 1e6)"),
        # model registry objects only (NULL, i.e. absent, on runs)
        SysColumn("sys/stage", "string", "r.stage"),
        SysColumn(
            "sys/model_id",
            "string",
            "(SELECT m.object_id FROM runs m WHERE m.id = r.model_pk)",
        ),
    )
}
"""Every ``sys/`` attribute stored as a runs column, by path."""

SYS_STRING_SETS = ("sys/tags", "sys/group_tags")
"""``sys/`` string sets, stored as rows of ``attributes`` like user string sets."""

DEFAULT_PING_TIMEOUT_S = 300.0
"""A run whose process stopped pinging this long ago is ``inactive`` even if never closed."""


def ping_timeout_s() -> float:
    """The ping timeout in seconds: ``DESPINA_PING_TIMEOUT`` or 300 (5 minutes).

    Raises:
        ConfigError: the variable is not a positive number.
    """
    raw = os.environ.get("DESPINA_PING_TIMEOUT")
    if raw is None:
        return DEFAULT_PING_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ConfigError(f"DESPINA_PING_TIMEOUT has value {raw!r}; expected seconds > 0")
    return value


def run_state_sql(now_ms_param: str = "?") -> str:
    """SQL that is 1 when the run is ``running`` (``sys/state``), else 0.

    A run is running while it is not closed and its last ping is within the ping timeout of
    the evaluation time, bound through ``now_ms_param``. Logging processes ping at a third of
    the timeout, so a live run never looks inactive.
    """
    timeout_ms = int(ping_timeout_s() * 1000)
    return f"(r.closed = 0 AND r.ping_ms >= {now_ms_param} - {timeout_ms})"
