"""The suite's own policy.

Real-audio tests are marked by their fixture and never skip under CI; the tests
are laid out like the package, and no test module imports from another (shared
fixtures live in ``conftest.py``, shared helpers in plain modules).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"

#: The test modules at the top of tests/: the tests of the whole project.  The
#: tests of ``emodist/<stage>/`` go into ``tests/<stage>/``.
PROJECT_TESTS = {"test_benchmarks_smoke.py", "test_deploy.py", "test_docs.py",
                 "test_import_contract.py", "test_suite_policy.py"}

PROBE = '''
def test_reads_audio(emotify_root):
    assert emotify_root.is_dir()

def test_needs_no_audio():
    pass
'''


def _run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    (tmp_path / "conftest.py").write_text("from tests.conftest import *  # noqa: F403\n")
    (tmp_path / "test_probe.py").write_text(PROBE)
    full = {k: v for k, v in os.environ.items() if k not in ("CI", "EMODIST_EMOTIFY_ROOT")}
    full.update(env, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                           "--rootdir", str(tmp_path), str(tmp_path), *args],
                          capture_output=True, text=True, env=full, cwd=tmp_path, timeout=120,
                          check=False)


def test_a_missing_emotify_folder_skips_on_a_developers_machine(tmp_path):
    res = _run(tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1 passed, 1 skipped" in res.stdout
    assert "EMODIST_EMOTIFY_ROOT is not set" in res.stdout


def test_a_missing_emotify_folder_fails_under_ci(tmp_path):
    res = _run(tmp_path, CI="true")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "1 passed" in res.stdout and "1 error" in res.stdout
    assert "CI=true but EMODIST_EMOTIFY_ROOT is not set" in res.stdout


def test_a_folder_without_data_csv_fails_under_ci(tmp_path):
    res = _run(tmp_path, CI="true", EMODIST_EMOTIFY_ROOT=str(tmp_path))
    assert res.returncode == 1 and "holds no data.csv" in res.stdout, res.stdout


def test_the_fixture_marks_its_tests_emotify(tmp_path):
    res = _run(tmp_path, "-m", "not emotify", CI="true")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1 passed, 1 deselected" in res.stdout


# ------------------------------------------------------------------ layout


def _stages() -> set[str]:
    """The stage packages of emodist (``emodist/<stage>/__init__.py``)."""
    return {p.parent.name for p in (REPO / "emodist").glob("*/__init__.py")}


def imported_test_modules(source: str, package: str) -> list[str]:
    """The test modules (``tests...test_*``) that ``source``, a module of ``package``, imports."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the module's package
                parts = package.split(".")
                base = ".".join(filter(None, [*parts[: len(parts) - node.level + 1], base]))
            if base.rsplit(".", 1)[-1].startswith("test_"):
                found.append(base)
            else:
                found += [f"{base}.{alias.name}" for alias in node.names]
    return [m for m in found
            if m.split(".")[0] == "tests" and m.rsplit(".", 1)[-1].startswith("test_")]


def test_the_top_level_holds_only_the_whole_project_tests():
    stray = sorted({p.name for p in TESTS.glob("test_*.py")} - PROJECT_TESTS)
    assert not stray, (
        f"{', '.join(f'tests/{name}' for name in stray)}: move each into tests/<stage>/, the "
        f"folder of the emodist stage it tests ({', '.join(sorted(_stages()))})")


def test_test_folders_are_stage_packages():
    stages = _stages()
    folders = {p.parent for p in TESTS.rglob("test_*.py")} - {TESTS}
    for folder in folders:
        rel = folder.relative_to(TESTS)
        assert len(rel.parts) == 1 and rel.name in stages, (
            f"tests/{rel}/ holds tests but emodist/{rel}/ is no stage package")
        # test modules of different folders share names (test_predict.py): only
        # a package keeps them apart under pytest's default import mode
        assert (folder / "__init__.py").is_file(), f"tests/{rel}/ lacks __init__.py"


def test_no_module_of_the_suite_imports_a_test_module():
    offenders = {}
    for path in sorted(TESTS.rglob("*.py")):
        package = ".".join(path.relative_to(REPO).parent.parts)
        if names := imported_test_modules(path.read_text(), package):
            offenders[str(path.relative_to(REPO))] = names
    assert not offenders, (
        "test modules imported by other modules: move their fixtures into the nearest "
        f"conftest.py and their helpers into a helper module: {offenders}")


@pytest.mark.parametrize(("source", "package", "expected"), [
    ("from tests.store.test_query import N, done", "tests.store", ["tests.store.test_query"]),
    ("from .test_query import N", "tests.store", ["tests.store.test_query"]),
    ("from . import test_query, query_store", "tests.store", ["tests.store.test_query"]),
    ("from ..engine.test_heads import softmax_model", "tests.store", ["tests.engine.test_heads"]),
    ("from tests.engine import test_heads", "tests", ["tests.engine.test_heads"]),
    ("import tests.test_docs", "tests", ["tests.test_docs"]),
    ("def f():\n    from tests.test_docs import ROOT\n", "tests", ["tests.test_docs"]),
    (("from tests.stores import make_store\nfrom tests.engine.heads import CLASSES\n"
      "from emodist.learn import test_scores\nimport pytest"), "tests.engine", []),
], ids=["absolute", "relative", "relative-names", "relative-up", "package-names", "import",
        "in-a-function", "helpers-only"])
def test_the_import_check_finds_imported_test_modules(source, package, expected):
    assert imported_test_modules(source, package) == expected
