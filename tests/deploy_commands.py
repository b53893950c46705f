"""Scheduler and worker commands, read from the compose deployment.

The multi-process cluster tests run exactly the commands that
``deploy/compose/docker-compose.yml`` gives its ``scheduler`` and ``worker``
services, with host names and ports replaced for 127.0.0.1, so the deployment
and the tests cannot drift apart.
"""

from __future__ import annotations

from pathlib import Path

import yaml

COMPOSE = Path(__file__).resolve().parents[1] / "deploy" / "compose" / "docker-compose.yml"


def _service_command(name: str) -> list[str]:
    spec = yaml.safe_load(COMPOSE.read_text())
    return [str(x) for x in spec["services"][name]["command"]]


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
