"""``emodist extract`` under sustained load, its workers restarted every minute.

What is measured
----------------
:data:`N_TRACKS` generated short tracks (2,000 of 20 s: 10,000 segments
of 4 s; ``quick``: :data:`N_QUICK` tracks of 8 s, 800 segments) are listed
in a manifest and extracted twice (the handcrafted group, and MusiCNN MSD where its model is
built: ``emodist model build musicnn-msd``; ``quick``: handcrafted alone),
each time by ``python -m emodist extract --scheduler`` in its own process against a real ``dask scheduler``
and one ``dask worker --nworkers 2 --nthreads 1`` (a nanny per worker
process, as a deployment runs them):

- **steady**: the workers live for the whole run;
- **restarted**: the same command, the workers started with Dask's lifetime
  options (``--lifetime 60s --lifetime-stagger 10s --lifetime-restart``),
  so each worker retires gracefully about once a minute and its nanny
  starts a new one while the run goes on.  ``quick`` sizes the lifetime by
  the steady run (:func:`quick_lifetime`), so that the restarted run sees
  restarts on a fast machine and still makes progress on a slow one.

Rows: wall time and segments per second of both runs and their ratio, the
worker restarts counted in the scheduler's log (``Register worker`` lines
past the first two), and whether the two stores are equal: every stored
array, values and statuses, bit for bit (:func:`stores_equal`).  The
benchmark raises when a store is incomplete or the stores differ, so a
result table exists only for a run where the restarted store equals the
steady one.

Environment: ``EMODIST_BENCH_DIR`` (where the tracks and stores go;
default a temporary folder), ``EMODIST_BENCH_TRACKS`` (another number of
tracks), ``EMODIST_BENCH_LIFETIME`` (another lifetime, e.g. ``30s``).
"""

from __future__ import annotations

import concurrent.futures
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine, row

ROOT = Path(__file__).resolve().parents[1]
#: Tracks, track length and segment length of the full run.
N_TRACKS, TRACK_S, SEGMENT_S = 2000, 20.0, 4
#: Workers (processes of one ``dask worker``), one thread each: the 2-core machine.
N_WORKERS = 2
#: Tracks of the quick run and their length.
N_QUICK, QUICK_TRACK_S = 400, 8.0
#: Lifetime and stagger of the full run's restarted workers.  A worker must
#: live long enough to start, import its libraries and finish a chunk: a
#: chunk running when its worker retires is computed again elsewhere.
LIFETIME = ("60s", "10s")
#: The quick run's shortest lifetime (s): a worker's start-up and a chunk or two.
MIN_QUICK_LIFETIME_S = 6.0


def quick_lifetime(steady_s: float) -> tuple[str, str]:
    """Lifetime and stagger of the quick run's workers: half the steady run's wall time.

    A run takes about as long with restarts as without, so each worker
    retires at least once; :data:`MIN_QUICK_LIFETIME_S` keeps a worker alive
    long enough to finish chunks on a slow machine.
    """
    return f"{max(MIN_QUICK_LIFETIME_S, steady_s / 2):.1f}s", "1s"
SAMPLE_RATE = 22050


def _track(args) -> tuple[str, str]:
    """Write generated track ``i`` of style ``label``; its path and label."""
    folder, i, label, seconds = args
    import numpy as np
    import soundfile as sf

    from emodist.data.demo import STYLES, synthesize

    y = synthesize(STYLES[label], seconds, SAMPLE_RATE, np.random.default_rng([7, i]))
    path = Path(folder) / f"{i // 500:02d}" / f"{i:05d}.mp3"
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, y, SAMPLE_RATE, format="MP3")
    return str(path), label


def make_tracks(folder: Path, n: int, seconds: float) -> Path:
    """``n`` generated tracks of ``seconds`` (the demo's styles in turn) and their manifest.

    They go to ``folder/tracks-<n>x<seconds>s``, kept there for another run.
    """
    from emodist.data.demo import STYLES

    folder = folder / f"tracks-{n}x{seconds:g}s"
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / "manifest.csv"
    if manifest.exists() and len(manifest.read_text().splitlines()) == n + 1:
        return manifest  # made by an earlier run
    labels = list(STYLES)
    jobs = [(str(folder / "audio"), i, labels[i % len(labels)], seconds) for i in range(n)]
    with concurrent.futures.ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        rows = list(pool.map(_track, jobs, chunksize=16))
    manifest.write_text("path,label\n" + "".join(f"{p},{lab}\n" for p, lab in rows))
    return manifest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """A ``dask scheduler`` and a ``dask worker`` of :data:`N_WORKERS` processes."""

    def __init__(self, logs: Path, lifetime: tuple[str, str] | None):
        self.logs, self.lifetime = logs, lifetime
        self.procs: list[subprocess.Popen] = []
        self.address = ""

    def __enter__(self):
        dask = str(Path(sys.executable).with_name("dask"))
        port = _free_port()
        self.address = f"tcp://127.0.0.1:{port}"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.sched_log = self.logs / "scheduler.log"
        self._start([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                     "--no-dashboard"], self.sched_log)
        worker = [dask, "worker", self.address, "--host", "127.0.0.1", "--nworkers",
                  str(N_WORKERS), "--nthreads", "1", "--memory-limit", "3GiB", "--no-dashboard"]
        if self.lifetime:
            worker += ["--lifetime", self.lifetime[0], "--lifetime-stagger", self.lifetime[1],
                       "--lifetime-restart"]
        self._start(worker, self.logs / "worker.log")
        from distributed import Client

        with Client(self.address, timeout=60) as c:
            c.wait_for_workers(N_WORKERS, timeout=120)
        return self

    def _start(self, cmd: list[str], log: Path) -> None:
        from emodist.runtime.cluster import WORKER_ENV

        env = dict(os.environ, PYTHONPATH=str(ROOT), **WORKER_ENV)
        with open(log, "w") as out:
            self.procs.append(subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                               start_new_session=True))

    def registrations(self) -> int:
        """Workers the scheduler registered so far (the first ones and every restart)."""
        return len(re.findall(r"Register worker", self.sched_log.read_text()))

    def __exit__(self, *exc):
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


def groups(quick: bool) -> tuple[list[str], str]:
    """The groups a run extracts, and a note on what was left out."""
    if quick:
        return ["handcrafted"], "MusiCNN MSD left out of the quick run"
    from emodist.errors import EmodistError
    from emodist.features import REGISTRY, make_group

    if "musicnn_msd" not in REGISTRY:
        return ["handcrafted"], "musicnn_msd not registered"
    try:
        make_group("musicnn_msd").resolve()
    except EmodistError as exc:
        return ["handcrafted"], f"musicnn_msd skipped ({exc.message})"
    return ["handcrafted", "musicnn_msd"], ""


def extract(manifest: Path, store: Path, address: str, features: list[str],
            timeout: float) -> float:
    """``emodist extract`` as a user runs it; its wall time (raises with its output on failure)."""
    cmd = [sys.executable, "-m", "emodist", "extract", str(manifest), "--store", str(store),
           "--features", *features, "--segment-seconds", str(SEGMENT_S), "--scheduler",
           address, "--quiet", "--log", str(store.with_suffix(".log"))]
    t0 = time.perf_counter()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=ROOT,
                              env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"extract did not finish in {timeout:.0f} s") from None
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"extract exited {done.returncode}: {done.stderr[-2000:]}")
    return seconds


def stores_equal(a: Path, b: Path) -> tuple[bool, str]:
    """Whether two stores hold the same arrays (names, values, statuses), bit for bit."""
    import numpy as np
    import zarr

    ga, gb = zarr.open_group(str(a), mode="r"), zarr.open_group(str(b), mode="r")
    names = sorted(k for k, _ in ga.arrays())
    if names != sorted(k for k, _ in gb.arrays()):
        return False, "different arrays"
    for name in names:
        x, y = np.asarray(ga[name][...]), np.asarray(gb[name][...])
        if x.dtype != y.dtype or not np.array_equal(x, y, equal_nan=x.dtype.kind == "f"):
            return False, name
    return True, f"{len(names)} arrays"


def _done(store: Path, features: list[str]) -> tuple[int, int]:
    """Segments, and those done in every group."""
    import numpy as np
    import zarr

    from emodist.store.layout import STATUS_DONE, status_name

    g = zarr.open_group(str(store), mode="r")
    done = np.logical_and.reduce([np.asarray(g[status_name(f)][...]) == STATUS_DONE
                                  for f in features])
    return len(done), int(done.sum())


def run(quick: bool = False) -> dict:
    n = int(os.environ.get("EMODIST_BENCH_TRACKS", N_QUICK if quick else N_TRACKS))
    seconds = QUICK_TRACK_S if quick else TRACK_S
    lifetime = None if quick else LIFETIME
    features, left_out = groups(quick)
    if os.environ.get("EMODIST_BENCH_LIFETIME"):
        lifetime = (os.environ["EMODIST_BENCH_LIFETIME"], LIFETIME[1])
    base = os.environ.get("EMODIST_BENCH_DIR")
    tmp = Path(base) if base else Path(tempfile.mkdtemp(prefix="emodist-sustained-"))
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        reused = (tmp / f"tracks-{n}x{seconds:g}s" / "manifest.csv").exists()
        manifest = make_tracks(tmp, n, seconds)
        gen_s = time.perf_counter() - t0
        wall, restarts = {}, 0
        for name in ("steady", "restarted"):
            life = None if name == "steady" else lifetime or quick_lifetime(wall["steady"])
            store = tmp / f"{name}.zarr"
            shutil.rmtree(store, ignore_errors=True)
            with Cluster(tmp / f"{name}-logs", life) as cluster:
                wall[name] = extract(manifest, store, cluster.address, features,
                                     timeout=600 if quick else 7200)
                started = cluster.registrations() - N_WORKERS
            if life:
                restarts = started
                if not restarts:
                    raise RuntimeError("no worker was restarted: the run was shorter than the "
                                       f"lifetime {life[0]}")
            elif started:
                raise RuntimeError(f"{started} workers were restarted in the steady run")
            segments, done = _done(store, features)
            if done != segments:
                raise RuntimeError(f"{name}: {done} of {segments} segments done")
        same, what = stores_equal(tmp / "steady.zarr", tmp / "restarted.zarr")
        if not same:
            raise RuntimeError(f"the restarted run's store differs from the steady one's: {what}")
    finally:
        if not base:
            shutil.rmtree(tmp, ignore_errors=True)
    note = (f"{n} tracks of {seconds:g} s, {segments} segments of {SEGMENT_S} s, "
            f"{' + '.join(features)}, {N_WORKERS} worker processes x 1 thread"
            + (f"; {left_out}" if left_out else ""))
    rows = [
        row("steady run: wall time", wall["steady"], 0, "s", note),
        row("restarted run: wall time", wall["restarted"], 0, "s",
            f"--lifetime {life[0]} --lifetime-stagger {life[1]} --lifetime-restart"),
        row("steady run: segments per second", segments / wall["steady"], 0, "segments/s", ""),
        row("restarted run: segments per second", segments / wall["restarted"], 0,
            "segments/s", ""),
        row("restarted / steady wall time", wall["restarted"] / wall["steady"], 0, "x", ""),
        row("worker restarts during the restarted run", restarts, 0, "count",
            "scheduler log: registrations past the first workers"),
        row("restarted store equals the steady store", 1.0, 0, "bool",
            f"{what}, values and statuses bit for bit"),
        row("generating the tracks", gen_s, 0, "s", "not part of either run"
            + ("; kept from an earlier run" if reused else "")),
    ]
    summary = (f"{segments} segments: steady {wall['steady']:.0f} s, with workers restarted "
               f"every {life[0]} {wall['restarted']:.0f} s ({restarts} restarts); "
               "the two stores are identical")
    return {"name": "extract under sustained load, workers restarted", "machine": machine(),
            "rows": rows, "summary": summary}


if __name__ == "__main__":
    from benchmarks.common import main

    main(run)
