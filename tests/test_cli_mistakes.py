"""Every command-line mistake is one line on stderr and exit code 2, never a Python traceback.

The walk introspects the Typer app's command tree, so a command added later is covered without
touching this file. It runs main() in-process (fast); a sample runs the real `sightql` in subprocesses.
"""

from __future__ import annotations

import enum
import importlib.metadata
import subprocess
import sys
import typing

import pytest

from tests.cli_tree import COMMANDS, GROUPS, run_main

CLI = [sys.executable, "-m", "sightql"]
UNKNOWN = "--no-such-option"


def _kind(param) -> str | None:
    """'number' or 'choice' for a parameter that rejects some text, else None."""
    annotation = param.type_descriptor.annotation
    if annotation in (int, float):
        return "number"
    if typing.get_origin(annotation) is typing.Literal or (isinstance(annotation, type) and issubclass(annotation, enum.Enum)):
        return "choice"
    return None


def _good_value(param) -> str:
    annotation = param.type_descriptor.annotation
    if _kind(param) == "number":
        return "1"
    if _kind(param) == "choice":
        first = (typing.get_args(annotation) or list(annotation))[0]
        return str(getattr(first, "value", first))
    return "x"


def _required(command) -> list[str]:
    """Arguments that fill every required parameter with an acceptable value."""
    args: list[str] = []
    for param in command.params:
        if param.required:
            value = _good_value(param)
            args += [value] if param.param_type_name == "argument" else [param.opts[0], value]
    return args


def _cases():
    for path, command in COMMANDS:
        name = " ".join(path)
        if any(p.required for p in command.params):
            yield pytest.param([*path], f"see sightql {name} --help", id=f"{name}: missing argument")
        yield pytest.param([*path, *_required(command), UNKNOWN], UNKNOWN, id=f"{name}: unknown option")
        for param in command.params:
            kind = _kind(param)
            if kind and param.param_type_name == "option":
                bad = "abc" if kind == "number" else "no-such-choice"
                yield pytest.param([*path, *_required(command), param.opts[0], bad], param.opts[0],
                                   id=f"{name}: {param.opts[0]} {bad}")
    for path in GROUPS:
        name = " ".join(("sightql", *path))
        yield pytest.param([*path, UNKNOWN], UNKNOWN, id=f"{name}: unknown option")
        yield pytest.param([*path, "no-such-command"], "no such command", id=f"{name}: unknown command")


def _assert_one_line_mistake(code: int, out: str, err: str, expected: str) -> None:
    assert code == 2, (code, out, err)
    assert "Traceback" not in out + err
    assert out == ""
    assert err.startswith("error: ") and err.endswith("\n") and err.count("\n") == 1, err
    assert expected in err, err


@pytest.mark.parametrize("args, expected", list(_cases()))
def test_every_command_refuses_a_mistake_in_one_line(monkeypatch, capsys, tmp_path, args, expected):
    monkeypatch.chdir(tmp_path)  # nothing may be written, but if it were, not into the checkout
    monkeypatch.setenv("SIGHTQL_HOME", str(tmp_path / "wh"))
    _assert_one_line_mistake(*run_main(monkeypatch, capsys, args), expected)
    assert not (tmp_path / "wh").exists()  # refused before any command ran


def test_the_walk_sees_typed_options():
    """If Typer changed how parameters describe their type, the walk would silently test less."""
    kinds = {(path, p.opts[0]): _kind(p) for path, command in COMMANDS for p in command.params if p.param_type_name == "option"}
    assert kinds[("serve",), "--port"] == "number"
    assert kinds[("predict",), "--top-k"] == "number"
    assert kinds[("train",), "--batch-size"] == "number"
    assert kinds[("sql",), "--format"] == "choice"
    assert {("functions", "create"), ("functions", "ls"), ("functions", "rm"), ("stage", "rm")} <= {p for p, _ in COMMANDS}


@pytest.mark.parametrize("group", GROUPS, ids=lambda path: " ".join(("sightql", *path)))
def test_a_group_without_a_command_prints_its_help(monkeypatch, capsys, group):
    code, out, err = run_main(monkeypatch, capsys, list(group))
    assert code == 0 and err == ""
    assert f"Usage: sightql {' '.join(group)}".rstrip() in out and "Commands" in out


@pytest.mark.parametrize(
    "args, expected",
    [
        (["load"], "error: missing argument 'table'; see sightql load --help"),
        (["sql", "SELECT 1", "--bogus"], "error: no such option: --bogus; see sightql sql --help"),
        (["predict", "-m", "imagenet", "-t", "photos", "--top-k", "abc"], "invalid value for '--top-k'"),
        (["serve", "--port", "x"], "invalid value for '--port'"),
        (["sql", "SELECT 1", "-f", "xml"], "'xml' is not one of 'table', 'csv', 'json'"),
        (["nosuch"], "error: no such command 'nosuch'; see sightql --help"),
    ],
)
def test_real_cli_mistakes_exit_2_with_one_line(tmp_path, args, expected):
    result = subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=tmp_path)
    _assert_one_line_mistake(result.returncode, result.stdout, result.stderr, expected)


def test_version():
    result = subprocess.run([*CLI, "--version"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"sightql {importlib.metadata.version('sightql')}\n"


def test_no_arguments_prints_help_and_exits_0():
    result = subprocess.run(CLI, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "Usage: sightql" in result.stdout and "Start with: sightql demo" in result.stdout


def test_a_library_mistake_is_still_error_and_exit_2(monkeypatch, capsys, tmp_path):
    code, out, err = run_main(monkeypatch, capsys, ["sql", "SELECT * FROM no_such_table", "-w", str(tmp_path / "wh")])
    _assert_one_line_mistake(code, out, err, "no_such_table does not exist")
