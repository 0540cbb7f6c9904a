"""Session.sql_script: a file of statements split by DuckDB's parser, run in order, one result kept."""

from __future__ import annotations

import pytest

import sightql
from sightql.errors import ConfigError, SightQLError


@pytest.fixture
def s(tmp_path):
    with sightql.connect(tmp_path / "wh") as session:
        yield session


def test_semicolons_in_strings_names_and_comments_do_not_split(s):
    script = """-- a comment; still a comment
    SELECT 'a;b' AS "x;y";
    /* block; comment */ SELECT 'it''s; one' AS v, 2 AS n"""
    assert s.sql_script(script).to_pylist() == [{"v": "it's; one", "n": 2}]


def test_the_last_query_is_kept_and_every_statement_runs(s):
    result = s.sql_script(
        "CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1), (2);"
        "FROM t ORDER BY x; INSERT INTO t VALUES (3); CREATE VIEW v AS FROM t;"
    )
    assert result.to_pylist() == [{"x": 1}, {"x": 2}]
    assert s.sql("SELECT count(*) AS n FROM t").to_pylist() == [{"n": 3}]


def test_a_script_without_a_query_keeps_its_last_statement_result(s):
    result = s.sql_script("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1), (2)")
    assert result.to_pylist() == s.sql("INSERT INTO t VALUES (3), (4)").to_pylist() == [{"Count": 2}]


def test_transactions_span_statements(s):
    s.sql_script("CREATE TABLE t (x INTEGER); BEGIN; INSERT INTO t VALUES (1); ROLLBACK;")
    assert s.sql("SELECT count(*) AS n FROM t").to_pylist() == [{"n": 0}]


def test_parameters_bind_to_a_script_of_one_statement(s):
    assert s.sql_script("SELECT ? + 1 AS n;", [41]).to_pylist() == [{"n": 42}]
    with pytest.raises(ConfigError, match="parameters bind to one statement and this script has 2"):
        s.sql_script("SELECT 1; SELECT ?", [1])


def test_a_failing_statement_is_named_and_the_ones_before_it_stay_done(s):
    with pytest.raises(SightQLError, match=r"^statement 2 of 3: Catalog Error: Table with name nope does not exist"):
        s.sql_script("CREATE TABLE t AS SELECT 1 AS x; SELECT * FROM nope; CREATE TABLE u (y INTEGER)")
    assert s.sql("SELECT table_name FROM duckdb_tables() WHERE table_name IN ('t', 'u')").to_pylist() == [{"table_name": "t"}]


@pytest.mark.parametrize("script, message", [("", "holds no SQL statement"), ("-- only a comment\n", "holds no SQL statement"),
                                             ("SELECT 1; SELEC 2", "syntax error at or near")])
def test_scripts_that_cannot_run_are_one_sentence(s, script, message):
    with pytest.raises(SightQLError, match=message):
        s.sql_script(script)
