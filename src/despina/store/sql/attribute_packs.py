"""Attribute packs: a closed run's ``attributes`` rows kept as one encoded value
(``attribute_packs``), so that a fresh process's first read of many runs reads one value per run
instead of every row.

Reading a million ``attributes`` rows costs about a second whatever the packing of the
statement (:mod:`despina.store.sql.attribute_columns`); a pack holds every column
:class:`~despina.store.sql.attribute_columns.AttrRows` has, encoded by
:mod:`despina.store.attribute_codec` (the format of the query layer's cache files), and is
decoded in tens of microseconds.

* Written by :func:`write_pack` in the transaction that marks a run closed (``runs.mark_closed``:
  a local ``despina.Run`` and the server's close route alike), from the rows as
  :func:`~despina.store.sql.attribute_columns.read_columns` reads them, with the run's
  ``revision`` and ``uuid`` of that moment (and rewritten at a later close when its format is
  not this version's); runs with fewer than :data:`PACK_MIN_ROWS` rows are
  not packed (their rows read as fast as a pack decodes).
* Used by ``read_columns`` only while the run's ``revision`` and ``uuid`` are still the pack's
  (checked in the statement that reads the packs): every write to a run bumps its revision, a run
  deleted and replaced has another uuid, so a run written since its close (resumed, tags changed,
  moved to the trash) is read from its rows, as are runs still open and runs that never close
  (the Neptune wire). A stale pack is never read and is replaced at the run's next close.
* Runs that never close (the Neptune wire, a killed process) are packed once idle for
  :data:`PACK_IDLE_SECONDS` by a server's ``pack-idle-runs`` job (:func:`pack_idle_runs`).
* A copy (``despina store copy``) packs the closed runs it copies anew: attribute ids differ
  between stores. Deleting a run deletes its pack.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np

from despina.store.sql import dialect_of

if TYPE_CHECKING:
    from despina.store.sql.attribute_columns import AttrRows

__all__ = [
    "PACK_HORIZON_SECONDS",
    "PACK_IDLE_SECONDS",
    "PACK_MIN_ROWS",
    "PACK_SPAN",
    "pack_idle_runs",
    "read_packs",
    "write_pack",
]

PACK_MIN_ROWS = 16
"""Runs with fewer ``attributes`` rows are not packed: reading 1,000 runs of 7 rows each took
22 ms from the rows and 35 ms from packs, of 22 rows 28 and 18 ms (packs decode in bulk, about
15 µs per run plus the rows), and a run as small as a few configs and metrics (6 rows with its
sys rows) is closed without the 0.3-0.6 ms that packing costs."""
PACK_IDLE_SECONDS = 600
"""A run with no write for this long is packed by :func:`pack_idle_runs` (runs logged through
the Neptune wire never close; a run whose process was killed never did)."""
PACK_HORIZON_SECONDS = 7 * 86400
"""...and written within this long: the job looks at the runs that stopped in the last week, so
that a store's many small runs (never packed) are not counted again every minute."""
PACK_SPAN = 8
"""A read naming ``k`` paths uses the packs of runs with at most ``PACK_SPAN * k`` rows; the
rows of bigger runs are read by (run, path) index seeks, which cost less than decoding them."""


def write_pack(conn: Any, run_pk: int) -> bool:
    """Pack the rows of run ``run_pk`` as of now, inside the caller's write transaction; whether
    a pack was written (not when the run is small, or its current pack is still valid)."""
    found = conn.execute(
        "SELECT r.revision, r.uuid, p.revision, p.uuid, "
        "(SELECT count(*) FROM attributes a WHERE a.run_id = r.id), substr(p.data, 1, 16) "
        "FROM runs r LEFT JOIN attribute_packs p ON p.run_id = r.id WHERE r.id = ?",
        (run_pk,),
    ).fetchone()
    if found is None:
        return False
    revision, uuid, pack_revision, pack_uuid, size, head = found
    if int(size) < PACK_MIN_ROWS:
        return False
    # imported here: closing a small run (most closes) needs neither
    from despina.store import attribute_codec
    from despina.store.sql.attribute_columns import read_columns

    current = head is not None and bytes(head).startswith(attribute_codec.MAGIC)
    if current and pack_revision == revision and pack_uuid == uuid:
        return False

    rows = read_columns(conn, [run_pk], packs=False)
    parts = attribute_codec.encode({run_pk: (int(revision), str(uuid))}, rows)
    if parts is None:
        return False
    conn.execute(
        "INSERT OR REPLACE INTO attribute_packs (run_id, revision, uuid, n, data) "
        "VALUES (?, ?, ?, ?, ?)",
        (run_pk, int(revision), str(uuid), len(rows), b"".join(parts)),
    )
    return True


def pack_idle_runs(store: Any, *, idle_seconds: float = PACK_IDLE_SECONDS, limit: int = 500) -> int:
    """Pack up to ``limit`` runs that no process wrote for ``idle_seconds`` and whose pack is
    missing or stale (the server's ``pack-idle-runs`` job); each run in a write transaction of
    its own, so that writers wait for one run's packing at most. Returns the runs packed.

    Runs with fewer than :data:`PACK_MIN_ROWS` rows are looked at and left, as at a close;
    runs last written before :data:`PACK_HORIZON_SECONDS` are not looked at (read from their
    rows, as before packs existed).
    """
    import time

    idle_before = int((time.time() - idle_seconds) * 1000)
    horizon = int((time.time() - PACK_HORIZON_SECONDS) * 1000)
    with store.read() as conn:
        candidates = [
            int(run_pk)
            for (run_pk,) in conn.execute(
                "SELECT r.id FROM runs r LEFT JOIN attribute_packs p ON p.run_id = r.id "
                "WHERE r.ping_ms < ? AND r.ping_ms >= ? "
                "AND (p.run_id IS NULL OR p.revision <> r.revision "
                "OR p.uuid <> r.uuid) AND (SELECT count(*) FROM attributes a "
                f"WHERE a.run_id = r.id) >= {PACK_MIN_ROWS} ORDER BY r.id LIMIT ?",
                (idle_before, horizon, limit),
            )
        ]
    packed = 0
    for run_pk in candidates:
        with store.write() as conn:
            packed += write_pack(conn, run_pk)
    return packed


def read_packs(
    conn: Any,
    run_pks: list[int],
    *,
    paths: list[str] | None,
    types: list[str] | None,
    values: bool,
    text: bool,
    series: bool,
    skip_empty: bool,
) -> tuple[AttrRows, list[int]]:
    """The rows of the runs among ``run_pks`` with a current pack, as ``read_columns`` reads
    them for the same arguments (rows of other paths and types left out, columns not asked for
    as zeros), and the runs left to read from their rows."""
    from despina.store import attribute_codec
    from despina.store.sql.attribute_columns import READ_STATS, AttrRows

    sql = (
        "SELECT p.run_id, p.data FROM attribute_packs p JOIN runs r ON r.id = p.run_id "
        "WHERE p.run_id IN (SELECT value FROM json_each(?)) "
        "AND p.revision = r.revision AND p.uuid = r.uuid "
        f"AND substr(p.data, 1, {len(attribute_codec.MAGIC)}) = ?"  # this version's format
    )
    params: list[Any] = [run_pks, attribute_codec.MAGIC]
    if paths is not None:
        sql += " AND p.n <= ?"
        params.append(PACK_SPAN * len(paths))
    sql += " ORDER BY p.run_id"
    if dialect_of(conn) == "postgresql":
        sql = sql.replace("IN (SELECT value FROM json_each(?))", "= ANY(%s)").replace("?", "%s")
        found = conn.raw.cursor(binary=True).execute(sql, params).fetchall()
    else:
        params[0] = json.dumps(run_pks)
        found = conn.execute(sql, params).fetchall()
    READ_STATS.statements += 1
    if not found:
        return AttrRows.empty(), run_pks
    # only the columns the read asks for (the others are zeros in its answer anyway)
    columns = {"num_f", "num_i"} if values else set()
    if series:
        columns |= {"attr_id", "count", "last_step", "last_ts"}
    columns |= {"last_step"} if text else set()
    columns |= {"count"} if skip_empty else set()
    datas = [data for _, data in found]
    try:
        every = attribute_codec.decode_many(datas, text=text, columns=columns)
    except attribute_codec.DECODE_ERRORS:  # one unreadable (another version): its rows instead
        found = [(pk, data) for pk, data in found if _readable(data)]
        datas = [data for _, data in found]
        every = attribute_codec.decode_many(datas, text=text, columns=columns)
    packed = {int(pk) for pk, _ in found}
    READ_STATS.packs += len(found)
    rows = _serve(every, paths, types, values, text, series, skip_empty)
    READ_STATS.rows += len(rows)
    return rows, [pk for pk in run_pks if pk not in packed]


def _readable(data: bytes) -> bool:
    from despina.store import attribute_codec

    try:
        attribute_codec.decode(data)
    except attribute_codec.DECODE_ERRORS:
        return False
    return True


def _serve(
    rows: AttrRows,
    paths: list[str] | None,
    types: list[str] | None,
    values: bool,
    text: bool,
    series: bool,
    skip_empty: bool,
) -> AttrRows:
    """The rows and columns a read asks for, from every row and column of its runs."""
    from despina.store.sql.attribute_columns import _TEXT_CODES, TYPE_CODE, AttrRows

    keep = np.ones(len(rows), bool)
    if paths is not None and len(rows):
        wanted = set(paths)
        keep &= np.fromiter((p in wanted for p in rows.paths), bool, len(rows.paths))[rows.path]
    if types is not None:
        keep &= np.isin(rows.type, [TYPE_CODE[t] for t in types])
    if skip_empty:
        keep &= rows.count != 0
    rows = rows.take(keep)  # a copy: the columns are writable, not views of the packs
    n = len(rows)
    # only the paths the rows hold, as the row reads name them
    used = np.bincount(rows.path, minlength=len(rows.paths)) > 0
    codes = (np.cumsum(used) - 1).astype(np.int32)
    path_names = tuple(p for p, u in zip(rows.paths, used.tolist(), strict=True) if u)
    num_f, num_i = rows.num_f, rows.num_i
    if not values:
        num_f, num_i = np.full(n, np.nan), np.zeros(n, np.int64)
    attr_id, count, last_step, last_ts = rows.attr_id, rows.count, rows.last_step, rows.last_ts
    if not series:
        attr_id, last_ts = np.zeros(n, np.int64), np.zeros(n, np.int64)
        count = np.full(n, -1, np.int64)
        if text:  # the last step of rows with text is read with it
            last_step = np.where(np.isin(rows.type, _TEXT_CODES), last_step, -1)
        else:
            last_step = np.full(n, -1, np.int64)
    cells = rows.text if text else np.full(n, None, dtype=object)
    return AttrRows(
        attr_id,
        rows.run,
        codes[rows.path] if n else rows.path,
        rows.type,
        num_f,
        num_i,
        cells,
        count,
        last_step,
        last_ts,
        path_names,
    )
