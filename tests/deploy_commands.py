"""Scheduler and worker commands, read from the compose deployment.

The multi-process cluster tests run exactly the commands that
``deploy/compose/docker-compose.yml`` gives its ``scheduler`` and ``worker``
services, with host names and ports replaced for 127.0.0.1, so the deployment
and the tests cannot drift apart.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose" / "docker-compose.yml"

# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?message}, ${VAR?message}
_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


@cache
def _load(path: str, mtime: float) -> dict:
    return yaml.safe_load(Path(path).read_text())


def compose_spec(path: Path = COMPOSE) -> dict:
    """The parsed compose file (re-read when the file changes)."""
    return _load(str(path), path.stat().st_mtime)


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Expand compose-style ``${VAR...}`` references in ``text`` from ``env``.

    Parameters
    ----------
    text : str
        A compose value.
    env : mapping
        Variables, as the ``.env`` file would give them.

    Returns
    -------
    str
        ``text`` with every reference replaced; ``$$`` becomes ``$``.

    Raises
    ------
    KeyError
        For ``${VAR:?message}`` (or ``${VAR?message}``) when ``VAR`` is unset.
    """

    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name, op, arg = m.group(1), m.group(2), m.group(3) or ""
        value = env.get(name)
        empty = value is None or (op is not None and op.startswith(":") and value == "")
        if op in (":-", "-") and empty:
            return arg
        if op in (":?", "?") and empty:
            raise KeyError(f"{name}: {arg}")
        return value or ""

    return _VAR.sub(sub, text)


def service_command(name: str, env: Mapping[str, str] | None = None) -> list[str]:
    """The ``command:`` list of compose service ``name``, interpolated with ``env``."""
    spec = compose_spec()
    return [interpolate(str(x), env or {}) for x in spec["services"][name]["command"]]


def _service_command(name: str) -> list[str]:
    return service_command(name)


def _set_option(cmd: list[str], option: str, value: str) -> None:
    if option in cmd:
        cmd[cmd.index(option) + 1] = value
    else:
        cmd.extend([option, value])


def scheduler_command(host: str, port: int, dashboard_port: int, dask: str = "dask") -> list[str]:
    """The compose scheduler command, bound to ``host:port``."""
    cmd = _service_command("scheduler")
    cmd[0] = dask
    _set_option(cmd, "--host", host)
    _set_option(cmd, "--port", str(port))
    _set_option(cmd, "--dashboard-address", f"{host}:{dashboard_port}")
    return cmd


def worker_command(
    address: str,
    nthreads: int,
    memory_limit: str,
    name: str,
    host: str = "127.0.0.1",
    dask: str = "dask",
) -> list[str]:
    """The compose worker command, pointed at ``address``."""
    cmd = _service_command("worker")
    cmd[0] = dask
    cmd = [address if c.startswith("tcp://") else c for c in cmd]
    _set_option(cmd, "--nthreads", str(nthreads))
    _set_option(cmd, "--memory-limit", memory_limit)
    _set_option(cmd, "--name", name)
    _set_option(cmd, "--host", host)
    return cmd
