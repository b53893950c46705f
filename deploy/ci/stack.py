"""Host-side helper of ``deploy/ci/deploy-test.sh`` (``make deploy-test``).

The deployment test runs ``deploy/compose/docker-compose.yml`` unchanged,
plus an override that puts every service into the host's network namespace
on 127.0.0.1 (the CI host has no bridge networking) and uses the locally
built images.  The override is derived here from the compose file itself
with the same host/port substitutions the cluster tests use
(``tests/deploy_commands.py``), so it cannot drift from the file users run.

    python deploy/ci/stack.py ports N                        # N free ports, one a line
    python deploy/ci/stack.py subset SRC DEST N              # Emotify subset, N tracks per genre
    python deploy/ci/stack.py compose DIR --image I --moto-image M --s3-port P \\
        --scheduler-port P --dashboard-port P --data DIR      # DIR/{docker-compose.yml,override,.env}
    python deploy/ci/stack.py job-argv DIR --store URL --out DIR [EXTRA ...]
    python deploy/ci/stack.py progress URL                  # "done total" of a store
    python deploy/ci/stack.py check URL [--same-as URL] [--tracks N]
    python deploy/ci/stack.py report DIR|URL [--compose DIR] # report.json/report.md present
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests import deploy_commands as dc

HOST = "127.0.0.1"
EMODIST_SERVICES = ("seed", "scheduler", "worker", "job")


def free_ports(n: int, start: int = 47800, stop: int = 48000) -> list[int]:
    """``n`` ports in ``[start, stop)`` that nothing listens on at 127.0.0.1."""
    found = []
    for port in range(start, stop):
        with socket.socket() as s:
            try:
                s.bind((HOST, port))
            except OSError:
                continue
        found.append(port)
        if len(found) == n:
            return found
    raise SystemExit(f"stack: fewer than {n} free ports in {start}-{stop - 1}")


def make_subset(src: Path, dest: Path, per_genre: int) -> int:
    """Emotify-layout subset: ``data.csv`` and the first tracks of each genre.

    Files are hard-linked when ``dest`` is on the same file system (else
    copied); ``dest`` must lie outside the repository.
    """
    if ROOT in dest.resolve().parents:
        raise SystemExit("stack: the audio subset must not be written into the repository")
    music = src / "emotifymusic"
    if not (src / "data.csv").is_file() or not music.is_dir():
        raise SystemExit(f"stack: {src} is not an Emotify folder (data.csv + emotifymusic/)")
    dest.mkdir(parents=True, exist_ok=True)
    _link(src / "data.csv", dest / "data.csv")
    n = 0
    for genre in sorted(p for p in music.iterdir() if p.is_dir()):
        tracks = sorted(genre.glob("*.mp3"), key=lambda p: (len(p.stem), p.stem))[:per_genre]
        (dest / "emotifymusic" / genre.name).mkdir(parents=True, exist_ok=True)
        for track in tracks:
            _link(track, dest / "emotifymusic" / genre.name / track.name)
            n += 1
    for path in [dest, *dest.rglob("*")]:  # the containers run as uid 1000
        path.chmod(0o755 if path.is_dir() else 0o644)
    return n


def _link(src: Path, dest: Path) -> None:
    if dest.exists():
        return
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)


def _replace(argv: list[str], old: str, new: str) -> list[str]:
    return [a.replace(old, new) for a in argv]


def without_ports() -> dict:
    """The compose file with every service's ``ports:`` removed."""
    import copy

    spec = copy.deepcopy(dc.compose_spec())
    for svc in spec["services"].values():
        svc.pop("ports", None)
    return {k: v for k, v in spec.items() if not k.startswith("x-")}


def override(image: str, moto_image: str, s3_port: int, sched_port: int, dash_port: int) -> dict:
    """The compose override for a bridge-less host (see the module docstring)."""
    spec = dc.compose_spec()
    services = spec["services"]
    scheduler_url = "tcp://scheduler:8786"
    local = f"tcp://{HOST}:{sched_port}"
    out: dict = {"services": {}}
    for name in EMODIST_SERVICES:
        out["services"][name] = {"image": image, "network_mode": "host"}
    # the scheduler: the compose command bound to 127.0.0.1, as in the cluster tests
    sched = out["services"]["scheduler"]
    sched["command"] = dc.scheduler_command(HOST, sched_port, dash_port)
    health = list(services["scheduler"]["healthcheck"]["test"])
    health[-1] = health[-1].replace(":8787", f":{dash_port}")
    sched["healthcheck"] = {"test": health}
    # workers: the compose command pointed at that scheduler, listening on 127.0.0.1
    worker = _replace(list(services["worker"]["command"]), scheduler_url, local)
    worker += ["--host", HOST, "--dashboard-address", f"{HOST}:0"]
    out["services"]["worker"]["command"] = worker
    # the job: the compose command (variables as compose would expand them)
    job = _replace(list(services["job"]["command"]), scheduler_url, local)
    out["services"]["job"]["command"] = job
    out["services"]["objectstore"] = {
        "image": moto_image, "network_mode": "host",
        "command": ["-H", HOST, "-p", str(s3_port)],
    }
    return out


def write_compose(
    folder: Path, image: str, moto_image: str, s3_port: int, sched_port: int, dash_port: int,
    data: Path,
) -> None:
    """Copy the compose files into ``folder`` and write the override and ``.env``."""
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(dc.COMPOSE.parent / "seed_s3.py", folder / "seed_s3.py")
    # the compose file as it is, less its published ports: there are none in
    # the host's network namespace, and compose refuses them with network_mode
    # host (an override can add to `ports:` but not remove them)
    (folder / "docker-compose.yml").write_text(yaml.safe_dump(without_ports(), sort_keys=False))
    text = yaml.safe_dump(override(image, moto_image, s3_port, sched_port, dash_port),
                          sort_keys=False)
    (folder / "docker-compose.override.yml").write_text(text)
    endpoint = f"http://{HOST}:{s3_port}"
    env = {
        "EMODIST_DATA_DIR": str(data),
        "EMODIST_BUCKET": "emodist",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ENDPOINT_URL_S3": endpoint,
        "AWS_DEFAULT_REGION": "us-east-1",
        # moto accepts any pair; a fresh random one per run, never stored
        "AWS_ACCESS_KEY_ID": "test" + secrets.token_hex(8),
        "AWS_SECRET_ACCESS_KEY": secrets.token_hex(20),
    }
    (folder / ".env").write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    (folder / ".env").chmod(0o600)


def _env(folder: Path) -> dict[str, str]:
    env = {}
    for line in (folder / ".env").read_text().splitlines():
        key, _, value = line.partition("=")
        env[key] = value
    return env


def job_argv(folder: Path, store: str, out: str, extra: list[str]) -> list[str]:
    """The override's job command with another store and report folder."""
    import yaml

    spec = yaml.safe_load((folder / "docker-compose.override.yml").read_text())
    env = _env(folder)
    argv = [dc.interpolate(a, env) for a in spec["services"]["job"]["command"]]
    for option, value in (("--store", store), ("--out", out)):
        argv[argv.index(option) + 1] = value
    return argv + extra


def storage_options(folder: Path) -> dict:
    """s3fs options for the stack's object store, from its ``.env``."""
    env = _env(folder)
    return {"key": env["AWS_ACCESS_KEY_ID"], "secret": env["AWS_SECRET_ACCESS_KEY"],
            "client_kwargs": {"endpoint_url": env["AWS_ENDPOINT_URL"],
                              "region_name": env["AWS_DEFAULT_REGION"]}}


def _status(url: str, options: dict):
    """Per segment, the lowest status over the feature groups (1 only when all are done)."""
    import numpy as np
    import zarr

    group = zarr.open_group(url, mode="r", storage_options=options)
    names = list(group.attrs.get("feature_groups") or {})
    return np.min(np.stack([group[f"{n}_status"][:] for n in names]), axis=0)


def progress(url: str, options: dict) -> tuple[int, int]:
    """(segments done, segments planned) of a store; (0, 0) before it exists."""
    try:
        status = _status(url, options)
    except Exception:  # noqa: BLE001 - not created yet
        return 0, 0
    return int((status == 1).sum()), int(status.size)


def check_store(url: str, options: dict, same_as: str | None, min_tracks: int) -> list[str]:
    """Problems with the store at ``url`` (empty: complete, finite and, with
    ``same_as``, equal to that store)."""
    import numpy as np

    from emodist.store import open_store

    problems = []
    ds = open_store(url, options)
    groups = ds.emodist.groups
    if len(groups) < 2:
        problems.append(f"{url}: feature groups {groups}")
    for name in groups:
        status = ds[f"{name}_status"].values
        if not status.size or not (status == 1).all():
            counts = dict(zip(*np.unique(status, return_counts=True)))
            problems.append(f"{url}: {name} status {counts}")
        if not np.isfinite(ds[name].values).all():
            problems.append(f"{url}: {name} has non-finite values")
    n_tracks = len(set(ds["track_id"].values.tolist()))
    if n_tracks < min_tracks:
        problems.append(f"{url}: {n_tracks} tracks, expected {min_tracks}")
    if same_as:
        ref = open_store(same_as, options)
        for name in ("segment", "track_id", "start_s", "duration_s", "label", "path"):
            if name in ds and not np.array_equal(ds[name].values, ref[name].values):
                problems.append(f"{name} differs between {url} and {same_as}")
        for name in groups:
            a, b = ds[name].values, ref[name].values
            if a.shape != b.shape or not np.allclose(a, b, rtol=1e-5, atol=1e-5):
                diff = np.abs(a - b).max() if a.shape == b.shape else a.shape
                problems.append(f"{name} differs between {url} and {same_as}: {diff}")
    print(f"stack: {url}: {ds.sizes['segment']} segments, {n_tracks} tracks, groups {groups}"
          + (f", equal to {same_as}" if same_as and not problems else ""))
    return problems


def check_report(where: str, options: dict | None = None) -> list[str]:
    """Problems with a report written by ``emodist run --out``: a folder or an ``s3://`` URL."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(str(where), **dict(options or {}))
    root = root.rstrip("/")
    names = {p.rsplit("/", 1)[-1] for p in fs.ls(root, detail=False)} if fs.exists(root) else set()
    problems = [f"{where}: no {n}" for n in ("report.json", "report.md") if n not in names]
    if not problems:
        report = json.loads(fs.cat_file(f"{root}/report.json"))
        pngs = [n for n in names if n.endswith(".png")]
        if not pngs:
            problems.append(f"{where}: no figures")
        print(f"stack: report {where}: report.json ({len(report)} keys), {len(pngs)} PNGs")
    return problems


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("ports")
    s.add_argument("n", type=int)
    s = sub.add_parser("subset")
    s.add_argument("src", type=Path)
    s.add_argument("dest", type=Path)
    s.add_argument("per_genre", type=int)
    s = sub.add_parser("compose")
    s.add_argument("folder", type=Path)
    for opt in ("--image", "--moto-image"):
        s.add_argument(opt, required=True)
    for opt in ("--s3-port", "--scheduler-port", "--dashboard-port"):
        s.add_argument(opt, type=int, required=True)
    s.add_argument("--data", type=Path, required=True)
    s = sub.add_parser("job-argv")
    s.add_argument("folder", type=Path)
    s.add_argument("--store", required=True)
    s.add_argument("--out", required=True)
    for name in ("progress", "check"):
        s = sub.add_parser(name)
        s.add_argument("folder", type=Path)
        s.add_argument("url")
        if name == "check":
            s.add_argument("--same-as")
            s.add_argument("--tracks", type=int, default=1)
    s = sub.add_parser("report")
    s.add_argument("where", help="report folder, or an s3:// URL (then give --compose)")
    s.add_argument("--compose", type=Path, help="compose folder: the S3 endpoint and keys")
    # job-argv passes the emodist options it does not know on to the job's command
    args, extra = p.parse_known_args(argv)
    if extra and args.cmd != "job-argv":
        p.error(f"unrecognized arguments: {' '.join(extra)}")

    if args.cmd == "ports":
        print("\n".join(map(str, free_ports(args.n))))
    elif args.cmd == "subset":
        print(make_subset(args.src, args.dest, args.per_genre))
    elif args.cmd == "compose":
        write_compose(args.folder, args.image, args.moto_image, args.s3_port,
                      args.scheduler_port, args.dashboard_port, args.data.resolve())
    elif args.cmd == "job-argv":
        print("\n".join(job_argv(args.folder, args.store, args.out, extra)))
    elif args.cmd == "progress":
        print(*progress(args.url, storage_options(args.folder)))
    elif args.cmd == "check":
        problems = check_store(args.url, storage_options(args.folder), args.same_as, args.tracks)
        for line in problems:
            print(f"stack: {line}", file=sys.stderr)
        return 1 if problems else 0
    elif args.cmd == "report":
        problems = check_report(args.where, storage_options(args.compose) if args.compose else None)
        for line in problems:
            print(f"stack: {line}", file=sys.stderr)
        return 1 if problems else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
