"""The CLI: help with examples, one-sentence errors, and the demo command that `make demo` runs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_tree import COMMANDS, run_main

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "sightql"]


def run(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, **kwargs)


@pytest.mark.parametrize("command", [path for path, _ in COMMANDS], ids=" ".join)
def test_every_command_help_shows_examples(monkeypatch, capsys, command):
    code, out, err = run_main(monkeypatch, capsys, [*command, "--help"])
    assert code == 0, err
    assert "Example" in out and "sightql " in out


@pytest.mark.parametrize(
    "args, sentence",
    [
        (["sql", "SELECT * FROM no_such_table"], "no_such_table does not exist"),
        (["stage", "ls", "@nope"], "no stage named 'nope'"),
        (["stage", "ls", "@x/../../etc"], "goes outside the stage"),
        (["classify", "missing.jpg"], "is not a file"),
        (["sql", "SELECT 1", "--format", "xml"], "invalid value for '--format' / '-f': 'xml' is not one of"),
        (["load", "t;drop", "."], "not allowed"),
    ],
)
def test_mistakes_are_one_sentence_without_a_stack_trace(warehouse, args, sentence):
    result = run(*args, "-w", str(warehouse))
    assert result.returncode == 2
    assert sentence in result.stderr
    assert "Traceback" not in result.stderr and result.stderr.startswith("error: ")


def test_stage_and_classify_commands(warehouse, photos_dir, tmp_path):
    w = ["-w", str(warehouse)]
    assert run("stage", "create", "pics", *w).returncode == 0
    assert "put 9 file(s)" in run("stage", "put", "@pics/in", str(photos_dir), *w).stdout
    assert "in/coffee.jpg" in run("stage", "ls", "@pics", *w).stdout
    out = run("classify", "@pics/in/coffee.jpg", str(photos_dir / "notes.txt"), "-k", "2", *w).stdout
    assert re.search(r"@pics/in/coffee.jpg: espresso 0\.\d+", out)
    assert "notes.txt: ERROR not an image" in out
    assert "got 1 file(s)" in run("stage", "get", "@pics/in/chelsea.jpg", str(tmp_path / "dl"), *w).stdout
    assert (tmp_path / "dl" / "chelsea.jpg").exists()
    assert "removed 1 file(s)" in run("stage", "rm", "@pics/in/notes.txt", *w).stdout
    csv = run("sql", "SELECT relative_path, size FROM directory('@pics') ORDER BY 1 LIMIT 1", "-f", "csv", *w).stdout
    assert csv.splitlines() == ["relative_path,size", f"in/astronaut.jpg,{(photos_dir / 'astronaut.jpg').stat().st_size}"]


def _make_recipe(target: str) -> list[str]:
    """The command lines of a Makefile target, as `make -n` would print them."""
    text = (ROOT / "Makefile").read_text()
    body = re.search(rf"^{target}:.*\n((?:\t.*\n)+)", text, re.M)
    assert body, f"Makefile has no {target} target"
    return [line.strip() for line in body.group(1).splitlines()]


@pytest.mark.slow
def test_make_demo_command_path(tmp_path, model_cache):
    """Run exactly what `make demo` runs (after install), in a fresh folder."""
    (recipe,) = _make_recipe("demo")
    bin_dir = Path(sys.executable).parent
    command = recipe.replace("$(BIN)/", f"{bin_dir}/")
    # Share the exported bundled model so the test does not spend 15 s exporting it again.
    shutil.copytree(model_cache, tmp_path / "demo-warehouse" / "models", copy_function=os.link)
    result = subprocess.run(command, shell=True, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "loaded 8 image(s) into photos; skipped 1" in out
    assert re.search(r"coffee\.jpg\s*│\s*espresso", out)
    assert re.search(r"chelsea\.jpg\s*│\s*(tabby|tiger cat|Egyptian cat)", out)
    assert out.count("espresso") == 2  # once from the table, once from the stage
    assert "leaked" not in result.stderr


def test_sql_csv_lines_end_with_lf(tmp_path):
    query = "SELECT * FROM (VALUES (1, 'a,b'), (2, 'c')) t(n, s) ORDER BY n"
    result = subprocess.run([*CLI, "sql", query, "-f", "csv", "-w", str(tmp_path / "wh")], capture_output=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b'n,s\n1,"a,b"\n2,c\n'


def test_sql_file_runs_every_statement_and_prints_the_last_query(tmp_path):
    w = ["-w", str(tmp_path / "wh")]
    script = tmp_path / "notes.sql"
    script.write_text(
        "-- notes; a table of them\n"
        "CREATE TABLE notes (id INTEGER, body VARCHAR);\n"
        "INSERT INTO notes VALUES (1, 'a;b'), (2, 'it''s; fine');\n"
        "SELECT id, body FROM notes ORDER BY id;\n"
        "INSERT INTO notes VALUES (3, 'after the query');\n"
    )
    result = run("sql", "--file", str(script), "-f", "json", *w)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ['{"id": 1, "body": "a;b"}', '{"id": 2, "body": "it\'s; fine"}']
    assert run("sql", "SELECT count(*) AS n FROM notes", "-f", "csv", *w).stdout == "n\n3\n"


@pytest.mark.parametrize(
    "args, sentence",
    [
        (["--file", "{script}", "-p", "1"], "parameters bind to one statement and this script has 2"),
        (["SELECT 1", "--file", "{script}"], "give the SQL either as QUERY or as --file PATH"),
        ([], "give the SQL either as QUERY or as --file PATH"),
        (["--file", "{missing}"], "invalid value for '--file': file '{missing}' does not exist"),
        (["--file", "{failing}"], "statement 2 of 2: Catalog Error: Table with name no_such_table does not exist"),
    ],
)
def test_sql_file_mistakes_are_one_sentence(monkeypatch, capsys, tmp_path, args, sentence):
    paths = {"script": tmp_path / "two.sql", "missing": tmp_path / "missing.sql", "failing": tmp_path / "failing.sql"}
    paths["script"].write_text("SELECT 1; SELECT ?;")
    paths["failing"].write_text("CREATE TABLE t AS SELECT 1 AS x; SELECT * FROM no_such_table;")
    filled = [arg.format(**paths) for arg in args]
    code, out, err = run_main(monkeypatch, capsys, ["sql", *filled, "-w", str(tmp_path / "wh")])
    assert code == 2 and out == "", (out, err)
    assert err.startswith("error: ") and err.count("\n") == 1 and sentence.format(**paths) in err


def test_functions_create_ls_rm(monkeypatch, capsys, warehouse, photos_dir):
    w = ["-w", str(warehouse)]

    def cli(*args: str) -> tuple[int, str, str]:
        return run_main(monkeypatch, capsys, [*args, *w])

    assert cli("load", "photos", str(photos_dir / "coffee.jpg"))[0] == 0
    assert cli("functions", "create", "drink", "imagenet") == (0, "function drink -> imagenet\n", "")
    assert cli("functions", "ls") == (0, "drink\timagenet\tclassification\n", "")
    code, out, _ = cli("sql", "SELECT drink(image).label AS label FROM photos", "-f", "csv")
    assert (code, out) == (0, "label\nespresso\n")
    code, _, err = cli("functions", "create", "drink", "imagenet")
    assert code == 2 and "already exists" in err and err.count("\n") == 1
    assert cli("functions", "create", "drink", "imagenet", "--replace")[0] == 0
    assert cli("functions", "rm", "drink") == (0, "removed function drink\n", "")
    assert cli("functions", "ls") == (0, "", "")
    code, _, err = cli("functions", "rm", "drink")
    assert code == 2 and err.startswith("error: no function 'drink'")
