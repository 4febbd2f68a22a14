"""The package's shape: commands on top, one-way imports, cheap configs, task names kept inside."""

from __future__ import annotations

import ast
import glob
import os
import subprocess
import sys

from conftest import REPO

PACKAGE = os.path.join(REPO, "genres_jax")
COMMANDS = {"evaluate", "upscale", "sample", "report", "import_weights", "features", "export"}


def _modules() -> dict[str, ast.Module]:
    out = {}
    for path in glob.glob(os.path.join(PACKAGE, "**", "*.py"), recursive=True):
        rel = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
        name = rel.removesuffix(".__init__")
        with open(path) as f:
            out[name] = ast.parse(f.read())
    return out


def _imports(name: str, tree: ast.Module, known: set[str]) -> set[str]:
    """genres_jax modules ``name`` imports (anywhere in the file, deferred imports included)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in found if m in known and m != name}


def test_top_level_holds_the_commands_only():
    top = {os.path.basename(p)[:-3] for p in glob.glob(os.path.join(PACKAGE, "*.py"))}
    assert top - {"__init__"} == COMMANDS
    for name in COMMANDS:
        with open(os.path.join(PACKAGE, f"{name}.py")) as f:
            source = f.read()
        assert "def main(" in source and 'if __name__ == "__main__":' in source, name


def test_no_module_imports_a_command_and_there_are_no_cycles():
    modules = _modules()
    graph = {name: _imports(name, tree, set(modules)) for name, tree in modules.items()}
    commands = {f"genres_jax.{c}" for c in COMMANDS}
    for name, deps in graph.items():
        assert not deps & commands, (name, deps & commands)
    # A package's __init__ is imported with every module below it: count it with them.
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in graph[node]:
            if dep.startswith(node + "."):
                continue  # A package importing its own modules is not a cycle.
            assert state.get(dep) != 1, f"import cycle: {' -> '.join([*path, dep])}"
            if dep not in state:
                visit(dep, [*path, dep])
        state[node] = 2

    for name in graph:
        if name not in state:
            visit(name, [name])


def test_no_code_outside_tasks_tests_a_task_name():
    for name, tree in _modules().items():
        if name.startswith("genres_jax.tasks"):
            continue
        for node in ast.walk(tree):
            if not isinstance(node, ast.Compare):
                continue
            for side in (node.left, *node.comparators):
                is_attr = isinstance(side, ast.Attribute) and side.attr == "task"
                is_get = (
                    isinstance(side, ast.Call)
                    and isinstance(side.func, ast.Attribute)
                    and side.func.attr == "get"
                    and side.args
                    and isinstance(side.args[0], ast.Constant)
                    and side.args[0].value == "task"
                )
                assert not (is_attr or is_get), f"{name}:{node.lineno} compares a task name"


def test_loading_every_config_imports_no_tensorflow_tfds_or_orbax():
    code = (
        "import glob, importlib.util, os, sys\n"
        "for path in sorted(glob.glob('configs/*.py')):\n"
        "    spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)\n"
        "    module = importlib.util.module_from_spec(spec)\n"
        "    spec.loader.exec_module(module)\n"
        "    module.get_config()\n"
        "heavy = ('tensorflow', 'tensorflow_datasets', 'orbax', 'grain', 'jax')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"
