"""The documentation site builds with warnings as errors, and a broken reference fails it.

Each build runs ``mkdocs build --strict`` in a fresh process (about 20-60 s on a
2-core machine), so the module is marked ``slow``.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from argparse import SUPPRESS
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]

try:
    import material  # noqa: F401
    import mkdocs  # noqa: F401
    import mkdocstrings  # noqa: F401
except ImportError:  # pragma: no cover - make install and CI install the docs extra
    pytest.skip("the docs extra is not installed (pip install -e '.[docs]')",
                allow_module_level=True)


def build(config: Path, site: Path, *, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
        check=False, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def public_modules() -> dict[str, list[str] | None]:
    """Dotted name -> its ``__all__`` (None when it declares none), read from the files."""
    out = {}
    for path in sorted((ROOT / "emodist").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if any(p.startswith("_") for p in parts):
            continue
        exports = None
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
                exports = list(ast.literal_eval(node.value))
        out[".".join(parts)] = exports
    return out


def test_each_module_declares_its_all_once():
    """A second ``__all__`` silently replaces the first (the reference shows only the last)."""
    twice = []
    for path in sorted((ROOT / "emodist").rglob("*.py")):
        n = sum(1 for node in ast.parse(path.read_text()).body if isinstance(node, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets))
        if n > 1:
            twice.append(f"{path.relative_to(ROOT)}: {n}")
    assert not twice


def html_ids(page: Path) -> set[str]:
    return set(re.findall(r'id="([^"]+)"', page.read_text()))


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    site = tmp_path_factory.mktemp("site")
    done = build(ROOT / "mkdocs.yml", site, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    return site


def test_cli_reference_has_every_sub_command(site):
    from emodist.cli import build_parser

    page = (site / "reference" / "cli" / "index.html").read_text()
    parser = build_parser()
    subs = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    assert len(subs.choices) >= 10
    for name, sub in subs.choices.items():
        assert f"emodist {name}</code>" in page, name
        for action in sub._actions:
            for flag in action.option_strings:
                if flag.startswith("--") and flag != "--help" and action.help != SUPPRESS:
                    assert f"<code>{flag}</code>" in page, (name, flag)


def test_api_reference_shows_exactly_each_modules_all(site):
    modules = public_modules()
    assert len(modules) > 50
    api = site / "reference" / "api"
    index = (api / "index.html").read_text()
    for module, exports in modules.items():
        page = api / module / "index.html"
        assert page.is_file(), f"no API page for {module}"
        assert f">{module}</code>" in index, module
        if exports is None:
            continue
        shown = {i[len(module) + 1:] for i in html_ids(page)
                 if i.startswith(module + ".") and "." not in i[len(module) + 1:]}
        lazy = {n for n in exports if n not in shown}
        # a name served by a lazy module __getattr__ is documented from its real object
        for name in lazy:
            obj = getattr(__import__(module, fromlist=[name]), name)
            if not hasattr(obj, "__qualname__"):  # a constant: its name and value on the page
                assert f"<code>{name}</code>" in page.read_text(), (module, name)
                continue
            assert f"{obj.__module__}.{obj.__qualname__}" in html_ids(page), (module, name)
        assert shown <= set(exports), (module, shown - set(exports))


def test_benchmarks_page_is_the_results_file(site):
    page = (site / "benchmarks" / "index.html").read_text()
    results = (ROOT / "benchmarks" / "results" / "RESULTS.md").read_text()
    headings = re.findall(r"^### (.+)$", results, flags=re.MULTILINE)
    assert headings
    for heading in headings:
        assert heading.replace("&", "&amp;") in page, heading


#: a module whose docstring still names a parameter that was renamed
RENAMED_PARAMETER = '''"""A module whose docstring names a parameter the function no longer has."""


def scale(values, *, factor=2.0):
    """Scale values.

    Parameters
    ----------
    values : list of float
        The values.
    gain : float
        Renamed to ``factor``; the docstring was not updated.

    Returns
    -------
    list of float
        The scaled values.
    """
    return [v * factor for v in values]
'''


@pytest.mark.parametrize("broken, expected, module", [
    ("[a page that is not there](no-such-page.md)", "no-such-page.md", None),
    ("[a heading that is not there](DESIGN.md#no-such-heading)", "no-such-heading", None),
    ("::: emodist.no_such_module", "emodist.no_such_module", None),
    ("::: docs_renamed_parameter", "Parameter 'gain' does not appear", RENAMED_PARAMETER),
], ids=["missing-page", "missing-anchor", "unknown-module", "renamed-parameter"])
def test_a_broken_reference_fails_the_build(tmp_path, broken, expected, module):
    copy = tmp_path / "repo"
    shutil.copytree(ROOT / "docs", copy / "docs", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "mkdocs.yml", copy / "mkdocs.yml")
    (copy / "benchmarks" / "results").mkdir(parents=True)
    shutil.copy(ROOT / "benchmarks" / "results" / "RESULTS.md", copy / "benchmarks" / "results")
    shutil.copy(ROOT / "CHANGELOG.md", copy / "CHANGELOG.md")
    if module:  # found through mkdocstrings' paths: ["."], the config's folder
        (copy / "docs_renamed_parameter.py").write_text(module)
    index = copy / "docs" / "index.md"
    index.write_text(index.read_text() + f"\n{broken}\n")
    done = build(copy / "mkdocs.yml", tmp_path / "site", cwd=copy)
    assert done.returncode != 0
    assert expected in done.stdout + done.stderr
