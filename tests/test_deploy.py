"""The deployment files under deploy/: parse, agree with each other and run.

What cannot run here (docker, Kubernetes) is checked for the invariants that
break real deployments: one image tag equal to the package version, worker
threads and memory set and consistent with the container limits, no
credentials in files, the compose scheduler/worker commands being the ones
the cluster tests start, and the driver commands being valid emodist
command lines.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from dask.utils import parse_bytes

from emodist._version import __version__
from tests import deploy_commands as dc

ROOT = dc.ROOT
DEPLOY = dc.DEPLOY
YAML_FILES = sorted([*DEPLOY.rglob("*.yml"), *DEPLOY.rglob("*.yaml")])
K8S = DEPLOY / "kubernetes"


def _module(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


seed_s3 = _module(DEPLOY / "compose" / "seed_s3.py")
lock = _module(DEPLOY / "docker" / "lock.py")


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def _walk(node, path=()):
    """Yield ``(path, key, value)`` for every mapping entry in a YAML tree."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield path, k, v
            yield from _walk(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, (*path, i))


def _mappings(node):
    """Every mapping in a YAML tree, including those inside lists."""
    if isinstance(node, dict):
        yield node
    for _, _, value in _walk(node):
        if isinstance(value, dict):
            yield value
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, dict):
                    yield from _mappings(item)


def _images(node) -> list[str]:
    """Every container image named in a YAML tree (``image:`` strings and
    Helm ``image: {repository, tag}`` mappings)."""
    out = []
    for _, key, value in _walk(node):
        if key == "image" and isinstance(value, str):
            out.append(value)
        elif key == "image" and isinstance(value, dict) and "repository" in value:
            out.append(f"{value['repository']}:{value.get('tag', '')}")
    return out


def _split_image(ref: str) -> tuple[str, str]:
    name, _, tag = ref.rpartition(":") if ":" in ref.split("/")[-1] else (ref, "", "")
    return name, tag


def _option(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


def _containers(node) -> list[dict]:
    return [c for _, k, v in _walk(node) if k == "containers" for c in v]


def _by_name(containers: list[dict], name: str) -> dict:
    (found,) = [c for c in containers if c["name"] == name]
    return found


# --- every file parses ----------------------------------------------------


def test_deploy_tree_has_all_paths():
    for rel in ("docker/Dockerfile", "docker/constraints.txt", "compose/docker-compose.yml",
                "compose/.env.example", "kubernetes/daskjob.yaml",
                "kubernetes/helm-values.yaml", "kubernetes/driver-job.yaml", "README.md"):
        assert (DEPLOY / rel).is_file(), rel


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_yaml_parses_to_a_mapping(path):
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert docs and all(isinstance(d, dict) for d in docs)


def test_kubernetes_kinds():
    job = _load(K8S / "daskjob.yaml")
    assert (job["apiVersion"], job["kind"]) == ("kubernetes.dask.org/v1", "DaskJob")
    assert {"job", "cluster"} <= set(job["spec"])
    assert job["spec"]["cluster"]["spec"]["worker"]["replicas"] >= 1
    driver = _load(K8S / "driver-job.yaml")
    assert (driver["apiVersion"], driver["kind"]) == ("batch/v1", "Job")
    values = _load(K8S / "helm-values.yaml")
    assert values["jupyter"]["enabled"] is False


# --- one image, tagged with the package version ---------------------------


def test_image_tag_is_package_version_everywhere():
    seen = {}
    for path in YAML_FILES:
        ours = [i for i in _images(_load(path)) if _split_image(i)[0].split("/")[-1] == "emodist"]
        seen[path.name] = ours
        for ref in ours:
            assert _split_image(ref)[1] == __version__, f"{path.name}: {ref}"
    # every deployment path names the image
    for name in ("docker-compose.yml", "daskjob.yaml", "helm-values.yaml", "driver-job.yaml"):
        assert seen[name], f"{name} does not use the emodist image"
    # and `make image` tags the build with the same version
    makefile = (ROOT / "Makefile").read_text()
    assert "deploy/docker/Dockerfile" in makefile and "_version.py" in makefile


def test_every_compose_service_but_the_store_runs_the_emodist_image():
    services = dc.compose_spec()["services"]
    assert {"scheduler", "worker", "job", "objectstore"} <= set(services)
    for name, svc in services.items():
        if name != "objectstore":
            assert svc["image"] == f"emodist:{__version__}", name


def test_third_party_images_are_pinned():
    for path in YAML_FILES:
        for ref in _images(_load(path)):
            _, tag = _split_image(ref)
            assert tag and tag != "latest", f"{path.name}: {ref} is not pinned"


def test_image_tag_helper_detects_mismatch():
    assert _split_image("registry.example.com:5000/emodist:9.9") == (
        "registry.example.com:5000/emodist", "9.9")
    assert _split_image("emodist") == ("emodist", "")
    assert _images({"a": {"image": {"repository": "emodist", "tag": "0.0"}}}) == ["emodist:0.0"]


# --- worker threads and memory --------------------------------------------

#: Dask's --memory-limit at most this share of the container's memory limit.
HEADROOM = 0.9


def _limits_consistent(argv: list[str], cpus: str | float, memory: str) -> None:
    nthreads, mem = _option(argv, "--nthreads"), _option(argv, "--memory-limit")
    assert nthreads and mem, f"--nthreads/--memory-limit missing in {argv}"
    assert 1 <= int(nthreads) <= float(cpus)
    memory = str(memory).replace("G", "GiB") if str(memory).endswith("G") else str(memory)
    # headroom: Dask spills and pauses at fractions of its limit; below the
    # container's limit it does so before the kernel kills the worker
    assert 0 < parse_bytes(mem) <= HEADROOM * parse_bytes(memory)


def test_compose_worker_threads_and_memory_match_limits():
    worker = dc.compose_spec()["services"]["worker"]
    limits = worker["deploy"]["resources"]["limits"]
    _limits_consistent(worker["command"], limits["cpus"], limits["memory"])
    assert worker["deploy"]["replicas"] >= 1


def test_daskjob_worker_threads_and_memory_match_limits():
    spec = _load(K8S / "daskjob.yaml")["spec"]["cluster"]["spec"]["worker"]["spec"]
    worker = _by_name(spec["containers"], "worker")
    limits = worker["resources"]["limits"]
    _limits_consistent(worker["args"], limits["cpu"], limits["memory"])
    assert worker["resources"]["requests"] == limits  # guaranteed QoS, no overcommit


def test_helm_worker_threads_and_memory_set():
    worker = _load(K8S / "helm-values.yaml")["worker"]
    limits = worker["resources"]["limits"]
    assert 1 <= int(worker["threads_per_worker"]) <= float(limits["cpu"])
    assert parse_bytes(limits["memory"]) > 0
    # the chart's own --memory-limit (= limits.memory) comes first, extraArgs last: last wins
    extra = worker["extraArgs"]
    assert extra.count("--memory-limit") == 1
    _limits_consistent(["dask-worker", "--nthreads", str(worker["threads_per_worker"]), *extra],
                       limits["cpu"], limits["memory"])
    assert worker["image"]["dask_worker"] == "dask-worker"
    assert "dask-worker" in (DEPLOY / "docker" / "Dockerfile").read_text()


def test_limit_check_catches_too_many_threads():
    with pytest.raises(AssertionError):
        _limits_consistent(["dask", "worker", "--nthreads", "4", "--memory-limit", "4GiB"], 1, "4G")
    with pytest.raises(AssertionError):
        _limits_consistent(["dask", "worker", "--nthreads", "1", "--memory-limit", "8GiB"], 1, "4G")
    with pytest.raises(AssertionError):
        _limits_consistent(["dask", "worker"], 1, "4G")
    with pytest.raises(AssertionError):  # no headroom
        _limits_consistent(["dask", "worker", "--nthreads", "1", "--memory-limit", "4GiB"], 1, "4G")
    _limits_consistent(["dask", "worker", "--nthreads", "1", "--memory-limit", "3400MiB"], 1, "4G")


# --- the compose commands are the cluster tests' commands -----------------


def test_scheduler_command_is_the_compose_command():
    compose = dc.compose_spec()["services"]["scheduler"]["command"]
    cmd = dc.scheduler_command("127.0.0.1", 1234, 1235, dask="/x/dask")
    assert cmd[0] == "/x/dask" and cmd[1:2] == compose[1:2] == ["scheduler"]
    assert _option(cmd, "--host") == "127.0.0.1"
    assert _option(cmd, "--port") == "1234"
    assert _option(cmd, "--dashboard-address") == "127.0.0.1:1235"
    # nothing else changed or added
    assert len(cmd) == len(compose)


def test_worker_command_is_the_compose_command():
    compose = dc.compose_spec()["services"]["worker"]["command"]
    cmd = dc.worker_command("tcp://127.0.0.1:999", 3, "1GiB", "w-0", dask="dask")
    assert cmd[:3] == ["dask", "worker", "tcp://127.0.0.1:999"]
    assert compose[2] == "tcp://scheduler:8786"
    assert (_option(cmd, "--nthreads"), _option(cmd, "--memory-limit")) == ("3", "1GiB")
    assert (_option(cmd, "--name"), _option(cmd, "--host")) == ("w-0", "127.0.0.1")
    # compose options other than those the tests set are carried over verbatim
    rest = [c for c in compose[3:] if c.startswith("--")]
    assert set(rest) <= set(cmd)


def test_kubernetes_commands_match_compose():
    compose = dc.compose_spec()["services"]
    spec = _load(K8S / "daskjob.yaml")["spec"]["cluster"]["spec"]
    sched = _by_name(spec["scheduler"]["spec"]["containers"], "scheduler")["args"]
    assert sched == compose["scheduler"]["command"]
    worker = _by_name(spec["worker"]["spec"]["containers"], "worker")["args"]
    base = compose["worker"]["command"]
    assert worker[:2] == base[:2]
    for opt in ("--nthreads", "--memory-limit"):
        assert _option(worker, opt) == _option(base, opt)
    ports = {p["name"]: p["containerPort"]
             for p in _by_name(spec["scheduler"]["spec"]["containers"], "scheduler")["ports"]}
    assert ports == {"tcp-comm": 8786, "http-dashboard": 8787}


def test_interpolate_compose_variables():
    env = {"A": "x", "E": ""}
    assert dc.interpolate("s3://${A}/in", env) == "s3://x/in"
    assert dc.interpolate("${B:-dflt}/${E:-e}/${E-f}", env) == "dflt/e/"
    assert dc.interpolate("$${A}", env) == "${A}"
    with pytest.raises(KeyError, match="B"):
        dc.interpolate("${B:?set B}", env)


def test_env_example_defines_every_compose_variable():
    env = _env_example()
    text = (DEPLOY / "compose" / "docker-compose.yml").read_text()
    names = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", text))
    assert names and names <= set(env), names - set(env)
    for var in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert var in env
    # with the example's values the job command resolves to s3:// URLs
    job = dc.service_command("job", {**env, "EMODIST_DATA_DIR": "/data"})
    assert job[:3] == ["emodist", "run", "s3://emodist/input"]
    assert _option(job, "--store") == "s3://emodist/features.zarr"
    assert _option(job, "--scheduler") == "tcp://scheduler:8786"


def _env_example() -> dict[str, str]:
    env = {}
    for line in (DEPLOY / "compose" / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    return env


# --- the driver commands are real emodist command lines --------------------


def _emodist_parser_with(command: str):
    from emodist.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert command in sub.choices, f"the deployment runs `emodist {command}`, which does not exist"
    return parser


def _driver_commands() -> dict[str, list[str]]:
    env = {**_env_example(), "EMODIST_DATA_DIR": "/data"}
    job = _load(K8S / "daskjob.yaml")["spec"]["job"]["spec"]["containers"]
    driver = _load(K8S / "driver-job.yaml")["spec"]["template"]["spec"]["containers"]
    return {
        "compose": dc.service_command("job", env),
        "daskjob": _by_name(job, "job")["args"],
        "driver-job": _by_name(driver, "driver")["args"],
    }


@pytest.mark.parametrize("where", ["compose", "daskjob", "driver-job"])
def test_driver_command_parses(where):
    argv = _driver_commands()[where]
    assert argv[:2] == ["emodist", "run"] and _option(argv, "--scheduler")
    parser = _emodist_parser_with("run")
    args = parser.parse_args(argv[1:])
    assert args.func is not None


def test_kubernetes_reports_go_to_object_storage():
    """Pods keep nothing: the report goes to the bucket, no emptyDir for it."""
    for where in ("daskjob", "driver-job"):
        argv = _driver_commands()[where]
        assert _option(argv, "--out").startswith("s3://"), where
        assert _option(argv, "--store").startswith("s3://"), where
    for name in ("daskjob.yaml", "driver-job.yaml"):
        assert "emptyDir" not in (K8S / name).read_text(), name


def test_dockerfile_model_build_command_parses():
    text = (DEPLOY / "docker" / "Dockerfile").read_text()
    m = re.search(r"emodist model build --out \"\$\{EMODIST_MODEL\}\"", text)
    assert m, "the Dockerfile must build the model into $EMODIST_MODEL"
    parser = _emodist_parser_with("model")
    args = parser.parse_args(["model", "build", "--out", "/opt/emodist/models/m.onnx"])
    assert args.func is not None
    # the build is verified in the image, with the model found through $EMODIST_MODEL
    assert re.search(r"&& emodist model check \\\n", text)
    assert parser.parse_args(["model", "check"]).func is not None


# --- the image ------------------------------------------------------------


def _dockerfile() -> str:
    return (DEPLOY / "docker" / "Dockerfile").read_text()


def test_dockerfile_base_user_and_writable_cache():
    text = _dockerfile()
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11-slim$", text, re.MULTILINE)
    assert re.search(r"^FROM \$\{BASE_IMAGE\}$", text, re.MULTILINE)
    # no frontend image to pull (no registry in CI): BuildKit's built-in one
    assert "# syntax=" not in text
    users = re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)
    assert users and users[-1] not in ("root", "0"), "the image must run as a non-root user"
    env = dict(re.findall(r"(NUMBA_CACHE_DIR|EMODIST_MODEL)=(\S+)", text))
    assert env["NUMBA_CACHE_DIR"] and env["EMODIST_MODEL"].endswith(".onnx")
    assert re.search(r"chown -R \S+ \"\$\{NUMBA_CACHE_DIR\}\"", text)
    # dependencies come from the lock, emodist is installed without others
    assert "--requirement /opt/emodist/constraints.txt" in text
    assert "--no-deps --constraint /opt/emodist/constraints.txt" in text
    # the image's Python is the one lock.py pins for
    assert lock.IMAGE_MARKERS["python_version"] == "3.11"


def test_constraints_pin_every_runtime_dependency():
    pins = lock.read_pins()
    for req in lock.project_requirements():
        name = lock.canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not pinned"
        assert req.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]}"
        for extra in req.extras:  # dask[distributed]
            assert lock.canonicalize_name(extra) in pins
    # client and workers: dask and distributed always released together
    assert pins["dask"] == pins["distributed"]
    assert "bokeh" in pins  # dashboard
    assert all(re.fullmatch(r"[0-9][0-9A-Za-z.+!-]*", v) for v in pins.values())


def test_lock_render_round_trips(tmp_path):
    text = lock.render({"numpy": "2.0.0", "dask": "1.0"}, {"bokeh": "3.0", "numpy": "9"})
    path = tmp_path / "c.txt"
    path.write_text(text)
    assert lock.read_pins(path) == {"numpy": "2.0.0", "dask": "1.0", "bokeh": "3.0"}


def test_lock_closure_matches_this_environment():
    pins = lock.read_pins()
    here = lock.closure(lock.project_requirements())
    assert set(here) <= set(pins)
    drift = {n: (pins[n], v) for n, v in here.items() if pins[n] != v}
    # a drift means the image would not run what the tests ran: re-lock (make lock)
    assert not drift, f"this environment differs from the image lock: {sorted(drift.items())[:5]}"


# --- no credentials in files ----------------------------------------------

SECRET_NAME = re.compile(r"(SECRET|PASSWORD|TOKEN|ACCESS_KEY|PRIVATE_KEY|_KEY_ID)", re.IGNORECASE)
AWS_KEY_ID = re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b")


def credential_problems(name: str, text: str) -> list[str]:
    """Literal credentials in a deployment file's text (empty list: none)."""
    problems = [f"{name}: AWS key id {m.group(0)}" for m in AWS_KEY_ID.finditer(text)]
    if name.endswith((".yml", ".yaml")):
        for doc in yaml.safe_load_all(text):
            for node in _mappings(doc):
                if SECRET_NAME.search(str(node.get("name", ""))) and node.get("value"):
                    problems.append(f"{name}: literal value for {node['name']}")
            for _, key, value in _walk(doc):
                literal = isinstance(value, str) and value and not value.startswith("${")
                if SECRET_NAME.search(str(key)) and literal:
                    problems.append(f"{name}: literal {key}")
    else:
        for line in text.splitlines():
            m = re.match(r"\s*(?:ENV\s+|export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(\S*)", line)
            value = m.group(2) if m else ""
            if m and SECRET_NAME.search(m.group(1)) and value and not re.match(r"[\"']?[$<]", value):
                problems.append(f"{name}: literal {m.group(1)}")
    return problems


def test_no_credentials_in_deploy_files():
    files = [p for p in DEPLOY.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    assert len(files) >= 8
    problems = [p for f in files for p in credential_problems(f.name, f.read_text())]
    assert not problems


@pytest.mark.parametrize("name,text", [
    ("x.yaml", "env:\n  - name: AWS_SECRET_ACCESS_KEY\n    value: abc123\n"),
    ("x.yml", "services:\n  s:\n    environment:\n      MINIO_ROOT_PASSWORD: hunter22\n"),
    (".env.example", "AWS_SECRET_ACCESS_KEY=abc123\n"),
    ("Dockerfile", "ENV AWS_ACCESS_KEY_ID=AKIAABCDEFGHIJKLMNOP\n"),
])
def test_credential_check_finds_planted_secrets(name, text):
    assert credential_problems(name, text)


def test_credential_check_accepts_references():
    ok = ("env:\n  - name: AWS_SECRET_ACCESS_KEY\n    valueFrom: {secretKeyRef: {name: s, key: k}}\n"
          "x:\n  MINIO_ROOT_PASSWORD: ${AWS_SECRET_ACCESS_KEY:?set it}\n")
    assert credential_problems("x.yaml", ok) == []
    assert credential_problems(".env.example", "AWS_SECRET_ACCESS_KEY=\n") == []


# --- the seed script, against a real S3 server ----------------------------


def test_seed_split_url_and_plan(tmp_path):
    assert seed_s3.split_url("s3://bkt/a/b/") == ("bkt", "a/b")
    assert seed_s3.split_url("s3://bkt") == ("bkt", "")
    with pytest.raises(ValueError):
        seed_s3.split_url("/local/path")
    (tmp_path / "sub").mkdir()
    (tmp_path / "data.csv").write_text("x")
    (tmp_path / "sub" / "1.mp3").write_bytes(b"123")
    todo = seed_s3.plan_upload(tmp_path, "in", {"in/data.csv": 1})
    assert [k for _, k in todo] == ["in/sub/1.mp3"]
    assert len(seed_s3.plan_upload(tmp_path, "", {"data.csv": 99})) == 2


def test_seed_rejects_bad_arguments(tmp_path):
    script = str(DEPLOY / "compose" / "seed_s3.py")
    bad = subprocess.run([sys.executable, script, str(tmp_path / "nope"), "s3://b/x"],
                         capture_output=True, text=True, check=False, timeout=60)
    assert bad.returncode == 2 and "not a folder" in bad.stderr
    bad = subprocess.run([sys.executable, script, str(tmp_path), "/tmp/x"],
                         capture_output=True, text=True, check=False, timeout=60)
    assert bad.returncode == 2 and "s3://" in bad.stderr


# --- the compose commands start a working cluster on 127.0.0.1 ------------


@pytest.mark.cluster
def test_compose_commands_run_a_cluster():
    from distributed import Client

    from tests.servers import dask_cluster

    cluster = dask_cluster(n_workers=1, nthreads=1, memory_limit="1GiB")
    with cluster as (address, _), Client(address, timeout=60) as client:
        info = client.scheduler_info()
        (worker,) = info["workers"].values()
        assert worker["name"] == "worker-0"
        assert worker["nthreads"] == 1
        assert worker["memory_limit"] == parse_bytes("1GiB")
        # a real computation runs in the worker process, not here
        pid = client.submit(os.getpid, pure=False).result(timeout=60)
        assert pid != os.getpid()
        assert client.submit(sum, range(10)).result(timeout=60) == 45


@pytest.mark.cluster
def test_compose_scheduler_serves_the_healthcheck_url():
    import urllib.request

    from tests.servers import _bin, free_port, stop, wait_port

    health = dc.compose_spec()["services"]["scheduler"]["healthcheck"]["test"]
    assert "http://127.0.0.1:8787/health" in health[-1]
    port, dash = free_port(), free_port()
    cmd = dc.scheduler_command("127.0.0.1", port, dash, dask=_bin("dask"))
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        wait_port(dash, 60, proc)
        url = health[-1].split("'")[1].replace(":8787", f":{dash}")
        with urllib.request.urlopen(url, timeout=10) as resp:
            assert resp.status == 200 and resp.read().strip() == b"ok"
    finally:
        stop(proc)


@pytest.mark.cluster
@pytest.mark.s3
def test_compose_path_with_environment_credentials_only(demo_dataset, tmp_path):
    """The compose data path on 127.0.0.1: seed -> S3, driver and workers in
    separate processes that know the store only from AWS_* variables (as
    env_file gives them), the dataset and store URLs of the compose job."""
    from emodist.store import open_store
    from tests.servers import dask_cluster, moto_server, s3_env

    with moto_server() as (endpoint, options):
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(s3_env(endpoint))
        job = dc.service_command("job", {"EMODIST_BUCKET": "emodist-e2e"})
        dataset, store = job[2], _option(job, "--store")
        seed = subprocess.run(
            [sys.executable, str(DEPLOY / "compose" / "seed_s3.py"), str(demo_dataset),
             dataset, "--timeout", "20"],
            env=env, capture_output=True, text=True, check=False, timeout=120)
        assert seed.returncode == 0, seed.stderr
        n_files = sum(1 for p in demo_dataset.rglob("*") if p.is_file())
        assert f"uploaded {n_files} files" in seed.stdout
        again = subprocess.run(seed.args, env=env, capture_output=True, text=True, check=False,
                               timeout=120)
        assert "uploaded 0 files" in again.stdout  # a rerun uploads nothing new
        with dask_cluster(n_workers=1, nthreads=1, memory_limit="1GiB",
                          env=s3_env(endpoint)) as (address, _):
            argv = [sys.executable, "-m", "emodist", "extract", dataset, "--store", store,
                    "--scheduler", address, "--features", "handcrafted", "--quiet"]
            proc = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True,
                                  check=False, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        ds = open_store(store, options)
        n_tracks = len(list((demo_dataset / "emotifymusic").rglob("*.*")))
        assert ds.sizes["segment"] >= n_tracks > 0
        values = ds["handcrafted"].values
        assert values.shape[0] == ds.sizes["segment"] and np.isfinite(values).all()
        assert all(str(p).startswith(dataset + "/") for p in ds["path"].values)
        import s3fs

        fs = s3fs.S3FileSystem(**options)
        assert fs.cat(f"{dataset[5:]}/data.csv") == (demo_dataset / "data.csv").read_bytes()


def test_image_lock_agrees_with_the_development_lock():
    """The image runs the versions `make install` gives developers and CI."""
    dev = ROOT / "constraints.txt"
    assert dev.is_file(), "no constraints.txt at the repository root"
    image, tested = lock.read_pins(), lock.read_pins(dev)
    shared = set(image) & set(tested)
    assert {"dask", "distributed", "numpy", "onnxruntime", "librosa"} <= shared
    assert {n: (image[n], tested[n]) for n in shared if image[n] != tested[n]} == {}


def test_lock_write_keeps_image_only_pins(tmp_path, monkeypatch):
    """--write rewrites the file from this environment; an image-only package
    that is not installed here (bokeh) keeps its pin instead of vanishing."""
    target = tmp_path / "constraints.txt"
    target.write_text("bokeh==1.2.3\nxyzservices==4.5\nnumpy==0.0.1\n")
    monkeypatch.setattr(lock, "CONSTRAINTS", target)
    missing = [n for n in lock.IMAGE_EXTRAS if importlib.util.find_spec(n) is None]
    assert lock.main(["--write"]) == 0
    pins = lock.read_pins(target)
    assert pins["numpy"] == lock.closure(lock.project_requirements())["numpy"] != "0.0.1"
    for name, old in (("bokeh", "1.2.3"), ("xyzservices", "4.5")):
        assert (pins[name] == old) == (name in missing)
    target.write_text("numpy==1\n")
    if missing:
        assert lock.main(["--write"]) == 1  # nothing to keep: refuse
        assert target.read_text() == "numpy==1\n"


# --- packaging: license, extras, lowest versions ----------------------------


def _pyproject() -> dict:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_license_file_matches_pyproject():
    assert _pyproject()["project"]["license"] == "MIT"
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "WITHOUT WARRANTY OF ANY KIND" in text
    assert "!LICENSE" in (DEPLOY / "docker" / "Dockerfile.dockerignore").read_text()


def test_dashboard_and_test_tools_are_extras():
    project = _pyproject()["project"]
    names = {lock.canonicalize_name(lock.Requirement(r).name) for r in project["dependencies"]}
    assert not names & {"bokeh", "moto", "pytest", "ruff"}, names
    extras = project["optional-dependencies"]
    assert [lock.Requirement(r).name for r in extras["dashboard"]] == ["bokeh"]
    assert "bokeh" in lock.IMAGE_EXTRAS  # the image still has the dashboard


def _lower_bounds() -> dict[str, str]:
    project = _pyproject()["project"]
    reqs = [*project["dependencies"], *project["optional-dependencies"]["dashboard"]]
    bounds = {}
    for text in reqs:
        req = lock.Requirement(text)
        (low,) = [s.version for s in req.specifier if s.operator == ">="]
        bounds[lock.canonicalize_name(req.name)] = low
        for extra in req.extras:  # dask[distributed]: released together, same bound
            bounds[lock.canonicalize_name(extra)] = low
    return bounds


def test_constraints_min_pins_every_lower_bound():
    """`make test-min` installs exactly the lowest versions pyproject.toml allows."""
    from packaging.version import Version

    pins = lock.read_pins(ROOT / "constraints-min.txt")
    bounds = _lower_bounds()
    assert set(pins) == set(bounds), set(pins) ^ set(bounds)
    assert {n: (pins[n], b) for n, b in bounds.items() if Version(pins[n]) != Version(b)} == {}
    # and the tested lock satisfies every bound
    tested = lock.read_pins(ROOT / "constraints.txt")
    assert all(Version(tested[n]) >= Version(b) for n, b in bounds.items())


# --- the deployment test's compose override ---------------------------------

stack = _module(DEPLOY / "ci" / "stack.py")


def test_deploy_test_override_is_the_compose_file_on_localhost():
    """make deploy-test runs the compose file plus an override that changes
    addresses, ports and images only."""
    over = stack.override("x/emodist:1", "x/moto:1", 1001, 1002, 1003)["services"]
    services = dc.compose_spec()["services"]
    assert set(over) == set(services)
    for name, svc in over.items():
        assert svc["network_mode"] == "host" and svc["image"].startswith("x/"), name
    text = yaml.safe_dump(over)
    assert "scheduler:8786" not in text and "0.0.0.0" not in text
    worker = over["worker"]["command"]
    base = services["worker"]["command"]
    assert worker[:3] == ["dask", "worker", "tcp://127.0.0.1:1002"]
    for opt in ("--nthreads", "--memory-limit"):
        assert _option(worker, opt) == _option(base, opt)
    job = over["job"]["command"]
    base = services["job"]["command"]
    assert _option(job, "--scheduler") == "tcp://127.0.0.1:1002"
    assert [a for a in job if a != _option(job, "--scheduler")] == [
        a for a in base if a != _option(base, "--scheduler")]
    assert "127.0.0.1:1003" in over["scheduler"]["healthcheck"]["test"][-1]
    assert over["objectstore"]["command"] == ["-H", "127.0.0.1", "-p", "1001"]


def test_deploy_test_compose_copy_differs_only_by_ports():
    spec = stack.without_ports()
    services = dc.compose_spec()["services"]
    assert set(spec["services"]) == set(services)
    for name, svc in services.items():
        assert spec["services"][name] == {k: v for k, v in svc.items() if k != "ports"}, name


def test_deploy_test_subset_stays_outside_the_repository(tmp_path):
    src = tmp_path / "src"
    for genre in ("pop", "rock"):
        (src / "emotifymusic" / genre).mkdir(parents=True)
        for i in (1, 2, 10):
            (src / "emotifymusic" / genre / f"{i}.mp3").write_bytes(b"x")
    (src / "data.csv").write_text("track id\n")
    assert stack.make_subset(src, tmp_path / "out", 2) == 4
    assert sorted(p.name for p in (tmp_path / "out/emotifymusic/pop").iterdir()) == [
        "1.mp3", "2.mp3"]
    with pytest.raises(SystemExit, match="repository"):
        stack.make_subset(src, ROOT / "build" / "subset", 2)


def _worker_envs():
    """Every worker environment of the deployments: compose, DaskJob, Helm values."""
    compose = _load(DEPLOY / "compose" / "docker-compose.yml")["services"]["worker"]["environment"]
    yield "compose", {k: str(v) for k, v in compose.items()}
    job = _load(K8S / "daskjob.yaml")
    (worker,) = job["spec"]["cluster"]["spec"]["worker"]["spec"]["containers"]
    yield "daskjob", {e["name"]: e["value"] for e in worker["env"] if "value" in e}
    helm = _load(K8S / "helm-values.yaml")["worker"]["env"]
    yield "helm", {e["name"]: e["value"] for e in helm if "value" in e}


@pytest.mark.parametrize("where,env", list(_worker_envs()), ids=lambda x: x if isinstance(x, str) else "")
def test_deployed_workers_get_the_local_cluster_worker_settings(where, env):
    """The malloc and Dask settings emodist gives its own workers, in every deployment."""
    from emodist.runtime.cluster import WORKER_CONFIG, WORKER_ENV

    for key, value in WORKER_ENV.items():
        assert env.get(key) == value, (where, key)
    for key, value in WORKER_CONFIG.items():  # Dask reads DASK_A__B_C as a.b-c
        name = "DASK_" + key.upper().replace(".", "__").replace("-", "_")
        assert env.get(name) == str(value), (where, name)
    assert env.get("DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED") == "False", where
