"""The CLI: help with examples, one-sentence errors, and the demo command that `make demo` runs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "sightql"]
COMMANDS = [["init"], ["load"], ["sql"], ["classify"], ["demo"], ["stage", "create"], ["stage", "put"],
            ["stage", "ls"], ["stage", "get"], ["stage", "rm"], ["models", "ls"], ["models", "show"],
            ["models", "log"], ["models", "alias"], ["models", "rm"], ["predict"],
            ["train"], ["runs", "ls"], ["runs", "show"], ["app"], ["serve"]]


def run(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, **kwargs)


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_help_shows_examples(command):
    result = run(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert "Example" in result.stdout and "sightql " in result.stdout


@pytest.mark.parametrize(
    "args, sentence",
    [
        (["sql", "SELECT * FROM no_such_table"], "no_such_table does not exist"),
        (["stage", "ls", "@nope"], "no stage named 'nope'"),
        (["stage", "ls", "@x/../../etc"], "goes outside the stage"),
        (["classify", "missing.jpg"], "is not a file"),
        (["sql", "SELECT 1", "--format", "xml"], "--format 'xml' is not known"),
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
