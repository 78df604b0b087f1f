"""The PostgreSQL dialect: the store's shared SQL (SQLite's spelling) in PostgreSQL's form."""

from __future__ import annotations

import pytest

from despina.store.postgres.dialect import translate


def test_placeholders_and_percent_signs() -> None:
    plan = translate("SELECT a % 2 FROM t WHERE x = ? AND y LIKE 'a%' AND z = ?")
    assert plan.sql == "SELECT a %% 2 FROM t WHERE x = %s AND y ILIKE 'a%%' AND z = %s"


def test_question_marks_inside_literals_stay() -> None:
    assert translate("SELECT 'why?' FROM t WHERE x = ?").sql == "SELECT 'why?' FROM t WHERE x = %s"


def test_insert_or_ignore() -> None:
    plan = translate("INSERT OR IGNORE INTO set_members (value, attr_id) VALUES (?, ?)")
    assert plan.sql == (
        "INSERT INTO set_members (value, attr_id) VALUES (%s, %s) ON CONFLICT DO NOTHING"
    )


def test_insert_or_replace_updates_every_column_but_the_key() -> None:
    plan = translate("INSERT OR REPLACE INTO chunks (id, n, vals) VALUES (?, ?, ?)")
    assert plan.sql == (
        "INSERT INTO chunks (id, n, vals) VALUES (%s, %s, %s) "
        "ON CONFLICT (id) DO UPDATE SET n = EXCLUDED.n, vals = EXCLUDED.vals"
    )


def test_insert_or_replace_of_an_unknown_table_is_refused() -> None:
    with pytest.raises(ValueError, match="no conflict key"):
        translate("INSERT OR REPLACE INTO nowhere (a, b) VALUES (?, ?)")


def test_inserts_of_generated_ids_return_them() -> None:
    plan = translate("INSERT INTO runs (project_id, run_id) VALUES (?, ?)")
    assert plan.returns_id and plan.sql.endswith(" RETURNING id")
    assert not translate("INSERT INTO blobs (project_id, path) VALUES (?, ?)").returns_id


def test_json_lists_become_arrays() -> None:
    plan = translate("SELECT id FROM runs WHERE id IN (SELECT value FROM json_each(?)) AND x = ?")
    assert plan.sql == "SELECT id FROM runs WHERE id = ANY(%s) AND x = %s"
    assert plan.json_lists == (0,)


def test_sqlite_functions() -> None:
    plan = translate(
        "SELECT ifnull(a, -1), group_concat(ifnull(b, 0)), group_concat(c, char(1)), "
        "MAX(0.0, d - e), max(f), CAST(g AS REAL) FROM t INDEXED BY t_index WHERE h IS ?"
    )
    assert plan.sql == (
        "SELECT COALESCE(a, -1), string_agg((COALESCE(b, 0))::text, ','), "
        "string_agg((c)::text, chr(1)), GREATEST(0.0, d - e), max(f), "
        "CAST(g AS double precision) FROM t WHERE h IS NOT DISTINCT FROM %s"
    )


def test_chunk_reads_ask_for_binary_results() -> None:
    assert translate("SELECT vals FROM chunks WHERE id BETWEEN ? AND ?").binary
    assert not translate("SELECT num FROM attributes").binary
