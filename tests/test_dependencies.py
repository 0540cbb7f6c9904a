"""Every third-party package SightQL imports is declared in pyproject.toml: as a core dependency, or in
an extra that a MissingDependencyError in the same part of the package names (so a user without it is
told what to install), imported only when that feature is used."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions, requires
from pathlib import Path

from packaging.requirements import Requirement  # pytest's own dependency


ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "sightql"
# What the CLI and `import sightql` load; an optional package imported at module level must not be in these.
EAGER = "import sightql, sightql.cli"


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement(text: str) -> tuple[str, list[str]]:
    """('dask', ['distributed']) from 'dask[distributed]>=2024.1'."""
    match = re.match(r"\s*([A-Za-z0-9._-]+)\s*(?:\[([^\]]*)\])?", text)
    assert match, text
    return normalized(match.group(1)), [e.strip() for e in (match.group(2) or "").split(",") if e.strip()]


def _with_extras(name: str, extras: list[str]) -> set[str]:
    """The distribution and those its named extras add (pip installs them together)."""
    found = {name}
    for line in requires(name) or []:
        marker = re.search(r"""extra\s*==\s*["']([^"']+)["']""", line)
        if marker and normalized(marker.group(1)) in map(normalized, extras):
            found.add(_requirement(line)[0])
    return found


def declared() -> tuple[set[str], dict[str, set[str]]]:
    """(core distributions, extra -> distributions it installs), names normalized."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = set().union(*(_with_extras(*_requirement(r)) for r in project["dependencies"]))
    raw = project["optional-dependencies"]

    def expand(extra: str) -> set[str]:
        names: set[str] = set()
        for text in raw[extra]:
            marker = Requirement(text).marker
            if marker is not None and not marker.evaluate():
                continue  # for another platform (e.g. `tensorflow` on macOS, `tensorflow-cpu` elsewhere)
            name, extras = _requirement(text)
            names |= set().union(*map(expand, extras)) if name == "sightql" else _with_extras(name, extras)
        return names

    return core, {extra: expand(extra) for extra in raw}


def imports() -> list[tuple[str, str, int, bool]]:
    """(top-level module, file relative to the package, line, at module level) for each absolute import
    that runs (not those under ``if TYPE_CHECKING:``)."""
    found = []

    def visit(node: ast.AST, path: str, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and getattr(child.test, "id", None) == "TYPE_CHECKING":
                continue
            if isinstance(child, ast.Import):
                found.extend((a.name.split(".")[0], path, child.lineno, not in_function) for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                found.append((child.module.split(".")[0], path, child.lineno, not in_function))
            visit(child, path, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    for file in sorted(PACKAGE.rglob("*.py")):
        visit(ast.parse(file.read_text()), file.relative_to(PACKAGE).as_posix(), False)
    return found


def unit(path: str) -> str:
    """The part of the package a guard covers: a subpackage (``app``, ``api``, ``models``), or a lone module."""
    return path.split("/")[0]


def guarded_extras() -> dict[str, set[str]]:
    """unit -> the extras a ``MissingDependencyError(package, extra)`` in that unit names, or a message
    text of it names as ``pip install 'sightql[extra]'`` (images: a row's error, e.g. "HEIC needs: ...")."""
    extras: dict[str, set[str]] = {}
    for file in PACKAGE.rglob("*.py"):
        named = extras.setdefault(unit(file.relative_to(PACKAGE).as_posix()), set())
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "MissingDependencyError":
                extra = node.args[1] if len(node.args) > 1 else None
                if isinstance(extra, ast.Constant):
                    named.add(extra.value)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                named.update(re.findall(r"pip install 'sightql\[(\w+)\]'", node.value))
    return extras


def eager_modules() -> set[str]:
    """Files of the package that ``import sightql, sightql.cli`` loads."""
    code = f"{EAGER}; import sys; print('\\n'.join(m.__file__ for n, m in list(sys.modules.items()) " \
           "if n.startswith('sightql') and getattr(m, '__file__', None)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return {Path(line).resolve().relative_to(PACKAGE.resolve()).as_posix() for line in out.split()}


def test_every_imported_package_is_declared_and_optional_ones_are_guarded():
    core, extras = declared()
    guards = guarded_extras()
    eager = eager_modules()
    distributions = {name: set(map(normalized, dists)) for name, dists in packages_distributions().items()}
    problems = []
    for module, path, line, module_level in imports():
        if module in sys.stdlib_module_names or module in ("sightql", "__future__"):
            continue
        where = f"{path}:{line} imports {module}"
        dists = distributions.get(module)
        if not dists:
            problems.append(f"{where}, which no installed distribution provides")
        elif dists & core:
            continue
        elif not (declaring := {e for e, names in extras.items() if dists & names and e not in ("all", "dev")}):
            problems.append(f"{where} ({', '.join(sorted(dists))}), declared by no extra and not a core dependency")
        elif not declaring & guards.get(unit(path), set()):
            problems.append(f"{where}: no MissingDependencyError in {unit(path)} names an extra that declares "
                            f"it ({', '.join(sorted(declaring))}), so a user without it gets a bare ImportError")
        elif module_level and path in eager:
            problems.append(f"{where} at module level, and `{EAGER}` loads that module")
    assert not problems, "\n".join(problems)


def test_the_scan_sees_the_imports_it_judges():
    found = {(module, path) for module, path, _, _ in imports()}
    assert {("duckdb", "sql/warehouse.py"), ("streamlit", "app/common.py"), ("fastapi", "api/app.py")} <= found
    assert ("fastapi", "api/__init__.py") not in found  # under `if TYPE_CHECKING:` only
    core, extras = declared()
    assert {"duckdb", "torch", "pillow"} <= core and "distributed" in extras["dask"]  # dask[distributed]
    assert {"streamlit", "s3fs", "keras"} <= extras["all"]
    guards = guarded_extras()
    assert "app" in guards["app"] and "s3" in guards["stages"] and "demo" in guards["cli"]


def test_training_evaluation_runs_without_scikit_learn():
    """scikit-learn is only in the demo and dev extras; a core install trains (and evaluates) without it."""
    code = ("import sys; sys.modules['sklearn'] = None\n"  # any `import sklearn...` now raises ImportError
            "import numpy as np\n"
            "from sightql.train.evaluate import report\n"
            "r = report(np.array([0, 1, 1]), np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4]]), ['a', 'b'])\n"
            "print(r['accuracy'], r['roc_auc'])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(2 / 3), "1.0"]
