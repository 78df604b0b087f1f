"""The one definition of the embedded store's schema, and its ordered migrations.

Conventions every reader and writer relies on:

* Steps are stored exactly, as integers in micro-steps (``step * 1_000_000``, truncated the way
  the Neptune clients do), and returned as ``micro / 1e6``.
* Timestamps and datetimes are integers in epoch milliseconds.
* SQLite cannot store NaN (it binds NaN as NULL), so a float cell that is NULL where the type
  requires a value means NaN. ±inf is stored as is.
* ``attributes.num`` has no declared type on purpose: ints stay exact 64-bit integers and floats
  stay floats, and SQLite compares the two numerically.
* Series attributes carry aggregates over their committed points as seen through full lineage
  (inherited points up to each fork step plus the run's own): ``num`` = last value, ``count``,
  ``last_step``, ``last_ts`` and, over finite values only, ``fmin``, ``fmax``, ``fsum``,
  ``fsumsq``, ``fcount``. NQL filters on these without touching points.
* ``runs`` also holds the model registry's objects (``kind`` = ``model`` or
  ``model_version``); they log like runs and every run query keeps to ``kind = 'run'``.
* ``attributes_for_filters`` is ordered by ``(path, run_id)`` and covers the numeric columns:
  compiled NQL names it with ``INDEXED BY`` (see ``nql/compile.py``).
* ``set_members`` lists the elements of every ``string_set`` row (triggers keep it current):
  ``CONTAINS`` on tags is an index lookup, not a JSON walk.
* Float-series points live in ``chunks``: the row id is ``(attribute id << CHUNK_BITS) | chunk
  number``, so one range scan over the rowid reads a series in order. Statistics columns come
  before the blobs so that summaries never read blob pages.
"""

from __future__ import annotations

__all__ = ["ATTRIBUTE_TYPES", "CHUNK_BITS", "MIGRATIONS", "SCHEMA_VERSION", "SERIES_TYPES"]

CHUNK_BITS = 24
"""Bits of a chunk row id that hold the chunk number; the rest hold the attribute id."""

ATTRIBUTE_TYPES = (
    "float",
    "int",
    "bool",
    "string",
    "datetime",
    "string_set",
    "file",
    "float_series",
    "string_series",
    "histogram_series",
    "file_series",
    "artifact",
)
"""Attribute type names as stored in ``attributes.type`` (the query API's Python names)."""

SERIES_TYPES = frozenset({"float_series", "string_series", "histogram_series", "file_series"})

_V1 = """
CREATE TABLE projects (
    id INTEGER PRIMARY KEY,
    workspace TEXT NOT NULL,
    name TEXT NOT NULL,
    project_key TEXT NOT NULL,
    uuid TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    visibility TEXT NOT NULL DEFAULT 'priv',
    created_ms INTEGER NOT NULL,
    next_run_no INTEGER NOT NULL DEFAULT 1,
    UNIQUE (workspace, name)
);

CREATE TABLE runs (
    id INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL REFERENCES projects(id),
    run_id TEXT NOT NULL,                 -- sys/custom_run_id
    short_no INTEGER NOT NULL,            -- sys/id = <project key>-<short_no>
    uuid TEXT NOT NULL,                   -- sys/diagnostics/run_uuid
    family TEXT NOT NULL,                 -- sys/family
    experiment_name TEXT,                 -- sys/name and sys/experiment/name; NULL: none
    is_head INTEGER NOT NULL DEFAULT 0,   -- sys/experiment/is_head
    owner TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    creation_ms INTEGER NOT NULL,
    modification_ms INTEGER NOT NULL,
    ping_ms INTEGER NOT NULL,
    closed INTEGER NOT NULL DEFAULT 0,    -- the logging process closed the run
    failed INTEGER NOT NULL DEFAULT 0,
    trashed INTEGER NOT NULL DEFAULT 0,
    archived INTEGER NOT NULL DEFAULT 0,
    parent_id INTEGER REFERENCES runs(id),
    fork_step INTEGER,                    -- micro-steps; NULL for a root run
    depth INTEGER NOT NULL DEFAULT 0,     -- sys/forking/depth
    size_bytes INTEGER NOT NULL DEFAULT 0,
    revision INTEGER NOT NULL DEFAULT 0,  -- bumped by every write: writers detect others' writes
    UNIQUE (project_id, run_id)
);
CREATE INDEX runs_by_creation ON runs (project_id, creation_ms);
CREATE INDEX runs_by_experiment ON runs (project_id, experiment_name, is_head);

CREATE TABLE attributes (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    path TEXT NOT NULL,
    type TEXT NOT NULL,
    num,                                  -- float/int/bool/datetime value; series: last value
    text TEXT,                            -- string; string_set/file/last histogram or file: JSON
    count INTEGER,
    last_step INTEGER,
    last_ts INTEGER,
    fmin REAL,
    fmax REAL,
    fsum REAL,
    fsumsq REAL,
    fcount INTEGER,
    UNIQUE (run_id, path)
);
CREATE INDEX attributes_by_path ON attributes (path, type);

CREATE TABLE chunks (
    id INTEGER PRIMARY KEY,               -- (attribute id << CHUNK_BITS) | chunk number
    n INTEGER NOT NULL,
    step_first INTEGER NOT NULL,
    step_last INTEGER NOT NULL,
    ts_first INTEGER NOT NULL,
    ts_last INTEGER NOT NULL,
    vmin REAL,                            -- finite values only; NULL when none
    vmax REAL,
    steps BLOB NOT NULL,
    vals BLOB NOT NULL,
    ts BLOB NOT NULL
);

CREATE TABLE previews (
    attr_id INTEGER NOT NULL,
    step INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    value REAL,                           -- NULL = NaN
    completion REAL NOT NULL,
    PRIMARY KEY (attr_id, step)
) WITHOUT ROWID;

CREATE TABLE points (
    id INTEGER PRIMARY KEY,
    attr_id INTEGER NOT NULL,
    step INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    value NOT NULL                        -- string; histogram and file: JSON text
);
CREATE UNIQUE INDEX points_by_series ON points (attr_id, step);

CREATE TABLE blobs (
    project_id INTEGER NOT NULL,
    path TEXT NOT NULL,                   -- the storage key the client chose
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    mime_type TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (project_id, path)
) WITHOUT ROWID;
"""

_V2 = """
CREATE TABLE api_keys (
    key_id TEXT PRIMARY KEY,              -- 16 hex characters, public part of the API key
    secret_sha256 TEXT NOT NULL,          -- hex SHA-256 of the secret; the secret is never stored
    name TEXT NOT NULL DEFAULT '',
    username TEXT NOT NULL,               -- sys/owner of runs created with the key
    workspace TEXT NOT NULL,
    project TEXT,                         -- NULL: every project of the workspace
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER,                   -- NULL: never
    revoked_ms INTEGER                    -- NULL: valid
) WITHOUT ROWID;

CREATE TABLE refresh_tokens (
    token_sha256 TEXT PRIMARY KEY,
    key_id TEXT NOT NULL,
    expires_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX refresh_tokens_by_key ON refresh_tokens (key_id);

CREATE TABLE ingest_requests (
    request_id TEXT PRIMARY KEY,          -- UUID answered to the client
    project_id INTEGER NOT NULL,
    run_id TEXT NOT NULL,                 -- sys/custom_run_id the operation was for
    body_sha256 TEXT NOT NULL,            -- of the serialized RunOperation: re-sends are recognised
    status TEXT NOT NULL,                 -- JSON [[code, count, detail], ...]: rpc/IngestCode names
    created_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX ingest_requests_by_body ON ingest_requests (body_sha256);
CREATE INDEX ingest_requests_by_time ON ingest_requests (created_ms);
"""

_V3 = """
ALTER TABLE runs ADD COLUMN kind TEXT NOT NULL DEFAULT 'run';  -- run, model, model_version
ALTER TABLE runs ADD COLUMN object_id TEXT;  -- sys/id of models and versions (KEY-MODEL[-n])
ALTER TABLE runs ADD COLUMN model_pk INTEGER;  -- a model version's model
ALTER TABLE runs ADD COLUMN stage TEXT;  -- a model version's sys/stage
CREATE INDEX runs_by_kind ON runs (project_id, kind);
"""

# NQL filters scan one path across runs and probe (path, run) pairs; covering every column a
# clause compares keeps both to one index b-tree (no table lookups), about 1.7x faster on wide
# filters. Text values stay out of the index: they can be long, and text clauses are rarer.
_V4 = """
DROP INDEX attributes_by_path;
CREATE INDEX attributes_for_filters ON attributes
    (path, run_id, type, num, fmin, fmax, fsum, fsumsq, fcount, count);
"""

# String-set membership (NQL ``CONTAINS`` on tags) as an index: one row per element, kept in
# step with ``attributes`` by triggers, so every write path (writer, import, forks, deletes)
# maintains it without knowing about it. Only text elements count, as in ``json_each``.
_V5 = """
CREATE TABLE set_members (
    value TEXT NOT NULL,
    attr_id INTEGER NOT NULL,
    PRIMARY KEY (value, attr_id)
) WITHOUT ROWID;
CREATE INDEX set_members_by_attr ON set_members (attr_id);
INSERT OR IGNORE INTO set_members (value, attr_id)
    SELECT j.value, a.id FROM attributes a, json_each(a.text) j
    WHERE a.type = 'string_set' AND j.type = 'text';
CREATE TRIGGER set_members_on_insert AFTER INSERT ON attributes
WHEN NEW.type = 'string_set' BEGIN
    INSERT OR IGNORE INTO set_members (value, attr_id)
        SELECT value, NEW.id FROM json_each(NEW.text) WHERE type = 'text';
END;
CREATE TRIGGER set_members_on_update AFTER UPDATE OF text, type ON attributes
WHEN OLD.type = 'string_set' OR NEW.type = 'string_set' BEGIN
    DELETE FROM set_members WHERE attr_id = OLD.id;
    INSERT OR IGNORE INTO set_members (value, attr_id)
        SELECT value, NEW.id FROM json_each(NEW.text)
        WHERE NEW.type = 'string_set' AND type = 'text';
END;
CREATE TRIGGER set_members_on_delete AFTER DELETE ON attributes
WHEN OLD.type = 'string_set' BEGIN
    DELETE FROM set_members WHERE attr_id = OLD.id;
END;
"""

# Upload bookkeeping of the server's storage bridge (store/blobs.py): each signed write URL is
# good for one upload, and a multipart upload is tied to the project and storage key it was
# offered for.
_V6 = """
CREATE TABLE blob_url_uses (
    signature TEXT PRIMARY KEY,           -- of a signed write URL
    expires_ms INTEGER NOT NULL,          -- when the URL expires (then the row can go)
    state TEXT NOT NULL                   -- 'active' (an upload in progress) or 'done'
) WITHOUT ROWID;
CREATE INDEX blob_url_uses_by_expiry ON blob_url_uses (expires_ms);

CREATE TABLE blob_uploads (
    upload_id TEXT PRIMARY KEY,           -- 32 hex characters, chosen by the server
    project_id INTEGER NOT NULL,
    path TEXT NOT NULL,                   -- the storage key the upload was offered for
    size INTEGER NOT NULL,                -- the declared size of the whole file
    part_size INTEGER NOT NULL,
    key_id TEXT NOT NULL,                 -- the API key that asked for it
    created_ms INTEGER NOT NULL,
    completed_sha256 TEXT                 -- NULL until the parts are joined
) WITHOUT ROWID;
CREATE INDEX blob_uploads_by_time ON blob_uploads (created_ms);
"""

# Web UI sessions (store/sessions.py), so that signing out ends a session server-side. The
# browser's cookie holds a random id; only its hash is stored.
_V7 = """
CREATE TABLE ui_sessions (
    session_sha256 TEXT PRIMARY KEY,      -- hex SHA-256 of the session id; the id is never stored
    key_ids TEXT NOT NULL,                -- JSON list of the API key ids signed in with
    username TEXT NOT NULL,               -- of the first key, for the record
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    revoked_ms INTEGER                    -- NULL: live until expires_ms; set at sign-out
) WITHOUT ROWID;
CREATE INDEX ui_sessions_by_expiry ON ui_sessions (expires_ms);
"""

# Secrets every server process over the store shares (the signing key): in the store, so that
# the servers of a PostgreSQL store are interchangeable and the embedded store works the same way.
_V8 = """
CREATE TABLE server_secrets (
    name TEXT PRIMARY KEY,                -- e.g. 'server_key'
    value BLOB NOT NULL,
    created_ms INTEGER NOT NULL
) WITHOUT ROWID;
"""

# Saved views of the web UI (store/saved_views.py): a runs table or a charts page as its URL's
# query string, named per project and shared by everyone who reaches the project.
_V9 = """
CREATE TABLE saved_views (
    project_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,                   -- 'runs' (the runs table) or 'charts'
    query TEXT NOT NULL,                  -- the page's URL query string
    owner TEXT NOT NULL,                  -- who saved it last
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (project_id, name)
) WITHOUT ROWID;
"""

# One-time sign-in links of the web UI (store/sessions.py): in the store, so that a link printed
# by one server replica works on every replica behind the same URL.
_V10 = """
CREATE TABLE sign_in_codes (
    code_sha256 TEXT PRIMARY KEY,         -- the link's code is never stored
    key_ids TEXT NOT NULL,                -- JSON list of the API key ids it signs in with
    expires_ms INTEGER NOT NULL
) WITHOUT ROWID;
"""

# Block summaries of float series for the web UI's charts (store/chart_summaries.py): one row per
# series, valid while the series' chunk signature (chunks, points, last step) is the one stored;
# a cache that lives as long as the store, so the first chart view after a start reads no points.
_V11 = """
CREATE TABLE chart_summaries (
    attr_id INTEGER PRIMARY KEY,          -- the float series (attributes.id)
    chunks INTEGER NOT NULL,              -- the chunk signature the summary was made from
    points INTEGER NOT NULL,
    last_step INTEGER NOT NULL,
    blocks INTEGER NOT NULL,              -- how many blocks ``data`` holds
    data BLOB NOT NULL                    -- see chart_summaries.StoredSummary.encode
);
"""

# Attribute packs (store/sql/attribute_packs.py): a closed run's attribute rows as one encoded
# value, written when the run closes and used while the run's revision and uuid are the pack's,
# so that a first read of many runs reads one value per run instead of every row.
_V12 = """
CREATE TABLE attribute_packs (
    run_id INTEGER PRIMARY KEY REFERENCES runs(id),
    revision INTEGER NOT NULL,            -- runs.revision when packed
    uuid TEXT NOT NULL,                   -- runs.uuid when packed
    n INTEGER NOT NULL,                   -- rows packed
    data BLOB NOT NULL                    -- see store/attribute_codec.py
);
"""

MIGRATIONS: list[str] = [_V1, _V2, _V3, _V4, _V5, _V6, _V7, _V8, _V9, _V10, _V11, _V12]
"""Ordered schema steps; step ``i`` brings the database from version ``i`` to ``i + 1``."""

SCHEMA_VERSION = len(MIGRATIONS)
