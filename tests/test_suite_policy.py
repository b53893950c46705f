"""The suite's own policy: real-audio tests are marked by their fixture and never skip under CI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

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
