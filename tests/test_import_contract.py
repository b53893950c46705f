"""Imports go one way down the stages (docs/DESIGN.md), with no cycles.

:func:`import_problems` reads every ``import`` of an ``emodist`` module, at
module level and inside functions (not under ``if TYPE_CHECKING:``), and names
each edge that closes a cycle or goes up the stage order. The synthetic
packages below reproduce the shapes it must catch.
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

# bottom to top; ``emodist/__init__.py`` and ``__main__.py`` are on top
STAGES = ["base", "data", "models", "features", "store", "runtime", "learn", "engine", "cli", "top"]
BASE = {"_version", "errors", "progress", "spec"}


def _stage(module: str) -> int:
    """Position in :data:`STAGES` of a module (``emodist.data.audio`` -> data)."""
    part = (module.split(".") + ["__main__"])[1]
    stage = "base" if part in BASE else "top" if part == "__main__" else part
    assert stage in STAGES, f"{module}: its package has no place in STAGES"
    return STAGES.index(stage)


def _imported(node: ast.Import | ast.ImportFrom, name: str, is_package: bool) -> list[str]:
    """What an import statement of module ``name`` names (modules, or names in them)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if node.level:  # relative: from the module's own package, up ``level - 1``
        parts = name.split(".")[: len(name.split(".")) - node.level + is_package]
        base = ".".join(parts + ([node.module] if node.module else []))
    else:
        base = node.module or ""
    return [f"{base}.{a.name}" for a in node.names]


def import_problems(root: Path, package: str = "emodist") -> list[str]:
    """One line per edge (``file:line importer -> imported: why``) in a cycle or going up.

    Every ``import``/``from ... import`` counts, at module level and inside
    functions, except under ``if TYPE_CHECKING:``.
    """
    files = {".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__"): p
             for p in sorted((root / package).rglob("*.py"))}
    edges = set()  # (file, line, importer, imported)
    for name, path in files.items():
        tree = ast.parse(path.read_text(), str(path))
        hidden = {id(n) for t in ast.walk(tree) if isinstance(t, ast.If)
                  and "TYPE_CHECKING" in ast.unparse(t.test) for b in t.body for n in ast.walk(b)}
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)) or id(node) in hidden:
                continue
            for target in _imported(node, name, path.stem == "__init__"):
                while target not in files and "." in target:  # a name in a module
                    target = target.rsplit(".", 1)[0]
                if target in files and target != name:
                    edges.add((path.relative_to(root).as_posix(), node.lineno, name, target))
    after = {m: {b for *_, a, b in edges if a == m} for m in files}
    reachable = {}  # module -> every module its imports lead to
    for start in files:
        seen, todo = set(), [start]
        while todo:
            if (m := todo.pop()) not in seen:
                seen.add(m)
                todo.extend(after[m])
        reachable[start] = seen
    problems = []
    for file, line, a, b in sorted(edges):
        if a in reachable[b]:
            problems.append(f"{file}:{line} {a} -> {b}: cycle")
        elif _stage(a) < _stage(b):
            problems.append(f"{file}:{line} {a} -> {b}: {STAGES[_stage(a)]} imports "
                            f"{STAGES[_stage(b)]} above it")
    return problems


def test_emodist_imports_go_one_way_down_without_cycles():
    problems = import_problems(Path(__file__).resolve().parents[1])
    assert not problems, "imports against the stage order:\n" + "\n".join(problems)


def _package(root: Path, files: dict[str, str]) -> Path:
    for rel, source in {"emodist/__init__.py": "", **files}.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        for parent in path.relative_to(root).parents[:-1]:
            (root / parent / "__init__.py").touch()
        path.write_text(textwrap.dedent(source))
    return root


# today's five cycle shapes (commit 109c9db), each reduced to its two imports
CYCLES = {
    "function-level both ways (data.segments <-> engine.planning)": {
        "emodist/data/segments.py": "def f():\n    from emodist.engine.planning import g\n",
        "emodist/engine/planning.py": "from emodist.data.segments import f\n",
    },
    "module and function level (models.musicnn <-> models.musicnn_graph)": {
        "emodist/models/musicnn.py": "def f():\n    from emodist.models import musicnn_graph\n",
        "emodist/models/musicnn_graph.py": "from emodist.models.musicnn import N_MELS\n",
    },
    "within a stage (engine.extract <-> engine.planning)": {
        "emodist/engine/extract.py": "from emodist.engine.planning import plan\n",
        "emodist/engine/planning.py": (
            "def f():\n    from emodist.engine.extract import scheduler_lost\n"),
    },
    "package and its submodule (features <-> features.card)": {
        "emodist/features/__init__.py": "def f():\n    from emodist.features.card import g\n",
        "emodist/features/card.py": "def g():\n    from emodist.features import get_group\n",
    },
    "root package (emodist <-> store.layout)": {
        "emodist/__init__.py": "def f():\n    from emodist.store import open_store\n",
        "emodist/store/__init__.py": "from .layout import open_store\n",
        "emodist/store/layout.py": "from emodist import __version__\n",
    },
}


@pytest.mark.parametrize("files", CYCLES.values(), ids=CYCLES.keys())
def test_checker_names_each_edge_of_a_cycle(tmp_path, files):
    problems = import_problems(_package(tmp_path, files))
    cycles = [p for p in problems if p.endswith(": cycle")]
    assert len(cycles) == len(files), problems  # every edge of the loop, each with file:line
    assert all(p.split(" ", 1)[0].rsplit(":", 1)[1].isdigit() for p in cycles)


def test_checker_names_an_upward_edge_with_its_line(tmp_path):
    root = _package(tmp_path, {
        "emodist/learn/fits.py": "import numpy\n\n\ndef f():\n    import emodist.engine.executor\n",
        "emodist/engine/executor.py": "",
        "emodist/engine/pipeline.py": "from emodist.learn import fits\n",
    })
    want = ("emodist/learn/fits.py:5 emodist.learn.fits -> emodist.engine.executor: "
            "learn imports engine above it")
    assert import_problems(root) == [want]


def test_checker_leaves_type_checking_and_downward_imports_alone(tmp_path):
    root = _package(tmp_path, {
        "emodist/data/audio.py": (
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
            "    from emodist.engine.plan import Plan\n"),
        "emodist/engine/plan.py": "from emodist.data import audio\nfrom ..errors import E\n",
        "emodist/errors.py": "E = 1\n",
    })
    assert import_problems(root) == []
