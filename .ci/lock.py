"""Write constraints.txt: the tested version of every package `make install` installs.

    python3 .ci/lock.py > constraints.txt     (or: make lock)

Pins the whole requirement closure of the runtime, dev and docs dependencies in
pyproject.toml at the versions installed in the running environment, using
the closure walker of deploy/docker/lock.py.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "deploy" / "docker"))
from lock import closure

HEADER = """\
# Tested versions of every package `make install` puts in .venv (runtime + dev + docs).
# Used as pip constraints so a fresh install resolves at once and runs what the
# suite ran. Regenerate after an upgrade: make lock
"""


def main() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra in ("dev", "docs"):
        reqs += [Requirement(r) for r in project["optional-dependencies"][extra]]
    pins = closure(reqs)
    sys.stdout.write(HEADER + "".join(f"{k}=={v}\n" for k, v in sorted(pins.items())))


if __name__ == "__main__":
    main()
