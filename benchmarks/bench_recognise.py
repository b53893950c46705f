"""Recognition throughput: ``emodist predict`` into a store against musicnn's own pipeline.

What is measured
----------------
Side by side in one run, on the same tracks (the 100 Emotify tracks of
``$EMODIST_EMOTIFY_ROOT``; quick mode: 8 generated tracks):

- **emodist**: a model trained (:func:`emodist.learn.train.run_train`) on the
  ``musicnn_msd`` group of 16 Emotify tracks (4 per genre, among those
  recognised: the figure is throughput, not accuracy), then the recognition path as
  ``emodist predict DATA --model M --store S --workers W --threads-per-worker 1
  --quiet`` runs it (:func:`emodist.engine.predict.run_predict` in a fresh
  Python process: imports, local cluster start, planning, decode, MusiCNN MSD,
  the model's ONNX head, region writes into a new store, per-track results),
  with 1 and with 2 workers;
- **the peer**: musicnn's own pipeline (``benchmarks/peer_musicnn.py``: its
  ``batch_data`` and its original TensorFlow graph under ``compat.v1``,
  intra/inter-op threads 1, oneDNN as TensorFlow sets it), run by
  ``$EMODIST_PEER_PYTHON`` (a Python that has TensorFlow and the ``musicnn``
  wheel, outside the project) over the same tracks and the same 15 s
  segments: 1 process, and 2 processes in parallel each on half the tracks.
  Without ``$EMODIST_PEER_PYTHON`` (and always in quick mode) the peer rows are
  left out, with the reason in the summary.

Per run: the **whole process** (launch to exit, wall clock; CPU seconds of
the process and everything it started, from ``getrusage`` of the children)
and the **steady state**: each process stamps every finished unit (emodist:
a chunk of segments, from ``run_predict``'s ``on_result``; the peer: a
track), and the steady rate is the work done between the k-th and the
(n-k+1)-th stamp over that time (k: workers or processes), each unit counted
by the share of its own time that falls inside (emodist's chunks report their
seconds; a peer process's track began at its previous stamp).  That leaves
out one-off start-up (imports, TensorFlow graph and checkpoint, cluster
start, ONNX session creation, the first unit's warm-up) and the ragged end.
Counting whole units only between two stamps is biased: k workers that
finish their chunks at nearly the same moments stamp in bursts of k, and a
window from one burst's last stamp to the last burst's first stamp holds one
whole unit less than the time it spans (with emodist's 16 chunks of 100
tracks, about 7 % of the 2-worker rate).

**Same cores**: each run is pinned (``os.sched_setaffinity``) to as many
cores as its workers or processes: the 1-worker emodist run (driver,
scheduler, nanny and worker together) and the 1-process peer to core 0, the
2-worker and 2-process runs to cores 0 and 1.  Unpinned, TensorFlow's
"1 thread" process used about 1.6 cores here, and emodist's driver and
scheduler ran on the core its single worker left free.  The scaling figure
(2 workers against 1) takes as its baseline an emodist run with 1 worker on
both cores, so that the single worker has a core of its own; the ratio to
the pinned 1-worker run is reported beside it.  The machine's speed drifts
by several per cent between runs of a minute or two (the same 48 tracks
gave 1.68x and 1.88x in two back-to-back pairs), so the scaling pair is run
``$EMODIST_BENCH_SCALING_PAIRS`` times (default 3; once in quick mode), each
pair in the opposite order to the one before, and the ratio reported is the
median over the pairs, its spread the largest minus the smallest.
**Start-up** is the whole process wall time minus the time the steady rate
needs for all the tracks.  "Per core": divided by the workers or processes
(each 1 thread); per CPU-second: the work over the CPU time it took, which
other load on the machine distorts less than wall time.

**Agreement**: per 15 s segment, the cosine between emodist's stored
``musicnn_msd`` row (the mean over the segment's 3 s patches of each output)
and the peer's mean over the same segment's patches of the same output
(``taggram`` 50, ``penultimate`` 200, ``max_pool`` and ``mean_pool`` 753 each),
per output; the minimum over all segments and outputs is reported.  Both
sides decode the whole track once and cut the segment from it (emodist:
its decoder, resampled to 16 kHz; the peer: ``librosa.load(sr=16000)``), so
the patches differ only by the resampling path (``tests/test_musicnn.py``
compares the network itself against TensorFlow's outputs).

Targets (issue): emodist at least 2.5x the peer per core in steady state and
2x as whole processes, cosine >= 0.999 per segment, 2 workers at least 1.8x
the throughput of 1.  The machine's other load moves absolute figures; the
ratios come from the same run, the runs in the order emodist 1, peer 1,
peer 2, then the scaling pairs (emodist 2 and emodist 1 on 2 cores,
alternating).

The peer environment (once, outside the project)::

    python3 -m venv ../peer-venv
    ../peer-venv/bin/pip install tensorflow-cpu==2.21.0 tf_keras==2.21.0 librosa==0.11.0 \\
        soundfile soxr
    ../peer-venv/bin/pip install numpy==1.26.4 ml_dtypes==0.5.1
    pip download --no-deps musicnn==0.1.0 -d ../musicnn-wheel
    ../peer-venv/bin/pip install --no-deps ../musicnn-wheel/musicnn-0.1.0-py3-none-any.whl
    EMODIST_PEER_PYTHON=../peer-venv/bin/python python -m benchmarks --only recognise

(numpy 1.x: musicnn's float16 log-mel overflows under numpy 2's casting rules;
see ``tests/data/musicnn_reference_tf.py``.)
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import machine, median_spread, row

GENRES = ("classical", "rock", "electronic", "pop")
ROOT = Path(__file__).resolve().parents[1]
PEER_SCRIPT = Path(__file__).resolve().parent / "peer_musicnn.py"
PEER_ENV = "EMODIST_PEER_PYTHON"
OUTPUTS = ("taggram", "penultimate", "max_pool", "mean_pool")
#: Environment of every measured process: one thread for numpy's BLAS and OpenMP.
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
#: How many times the scaling pair (2 workers, 1 worker on 2 cores) is run.
PAIRS_ENV = "EMODIST_BENCH_SCALING_PAIRS"


# --- inputs ------------------------------------------------------------------


def _emotify_paths(root: Path, n: int, skip: int = 0) -> list[Path]:
    """Emotify tracks in genre-interleaved order: classical/1, rock/1, ..., then /2 ..."""
    paths = [root / "emotifymusic" / g / f"{i}.mp3" for i in range(1, 26) for g in GENRES]
    return [p for p in paths if p.is_file()][skip:skip + n]


def _manifest(path: Path, tracks: list[Path]) -> str:
    path.write_text("path\n" + "".join(f"{p}\n" for p in tracks))
    return str(path)


def _inputs(tmp: Path, quick: bool) -> tuple[Path, str, int]:
    """(training dataset, manifest of the tracks to recognise, segment seconds)."""
    from emodist.data.demo import make_demo_dataset

    root = os.environ.get("EMODIST_EMOTIFY_ROOT")
    if quick or not root:
        make_demo_dataset(tmp / "train", n_tracks=16, seed=3, duration_s=8.0)
        make_demo_dataset(tmp / "new", n_tracks=8 if quick else 40, seed=4,
                          duration_s=8.0 if quick else 60.0)
        tracks = sorted((tmp / "new").rglob("*.mp3"))
        return tmp / "train", _manifest(tmp / "tracks.csv", tracks), 4 if quick else 15
    root = Path(root)
    train = tmp / "train"  # 16 tracks with their labels (the first 4 of each genre)
    (train / "emotifymusic").mkdir(parents=True)
    os.symlink(root / "data.csv", train / "data.csv")
    for genre in GENRES:
        (train / "emotifymusic" / genre).mkdir()
        for n in range(1, 5):
            os.symlink(root / "emotifymusic" / genre / f"{n}.mp3",
                       train / "emotifymusic" / genre / f"{n}.mp3")
    n = int(os.environ.get("EMODIST_BENCH_TRACKS", "100"))
    return train, _manifest(tmp / "tracks.csv", _emotify_paths(root, n)), 15


def _train(tmp: Path, train: Path, seconds: float) -> Path:
    """A model on ``musicnn_msd`` of the training tracks (its folder)."""
    from distributed import Client, LocalCluster

    from emodist.engine.extract import run_extract
    from emodist.features import make_groups
    from emodist.learn.train import run_train
    from emodist.spec import ExtractionSpec, Runtime

    store = str(tmp / "train.zarr")
    spec = ExtractionSpec(groups=make_groups(["musicnn_msd"]), segment_seconds=seconds)
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        run_extract(str(train), store, spec, Runtime(client=client, progress=False))
    run_train(store, features="musicnn_msd", classifier="logistic-regression",
              out=str(tmp / "model"), folds=4, n_jobs=1, name="mood")
    return tmp / "model"


def _random_msd_model(tmp: Path) -> None:
    """Quick mode: a random-weight MusiCNN as the MSD model of this process and its children."""
    from emodist.models import musicnn

    path = musicnn.build_random_model(tmp / "musicnn_msd.onnx")
    side = Path(path + ".json")
    side.write_text(json.dumps(dict(json.loads(side.read_text()), variant="msd")))
    os.environ[musicnn.MODEL_ENV.format("MSD")] = path


# --- measured processes ---------------------------------------------------------


#: Runs argv[2:] on the cores listed in argv[1] (affinity is kept across exec and by children).
PIN = "import os, sys; os.sched_setaffinity(0, map(int, sys.argv[1].split(','))); os.execv(sys.argv[2], sys.argv[2:])"


def pinned(argv: list[str], cores: int) -> list[str]:
    """``argv`` run on the first ``cores`` cores, it and all it starts.

    ``argv`` unchanged where the platform cannot pin or has fewer cores than asked.
    """
    have = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(have) < cores:
        return list(argv)
    return [sys.executable, "-c", PIN, ",".join(map(str, have[:cores])), *map(str, argv)]


def _measured(argv: list[str], env: dict | None = None,
              cores: int = 1) -> tuple[float, float, str]:
    """Run ``argv`` on ``cores`` cores; (wall seconds, CPU seconds of it and its descendants, stdout)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(pinned(argv, cores), cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=3600, check=False)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv[:4]))} failed ({proc.returncode}):\n"
                           f"{proc.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc.stdout


def _child_env() -> dict:
    env = dict(os.environ, **ONE_THREAD)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def _last_json(stdout: str) -> dict:
    return json.loads([line for line in stdout.splitlines() if line.startswith("{")][-1])


def emodist_run(manifest: str, model: Path, store: Path, workers: int,
                cores: int | None = None) -> dict:
    """``emodist predict`` (1 thread per worker) in a fresh process on ``cores`` cores
    (default: one per worker), stamped per chunk."""
    argv = [sys.executable, "-m", "benchmarks.bench_recognise", "--emodist-child", manifest,
            str(model), str(store), str(workers)]
    wall, cpu, out = _measured(argv, _child_env(), cores=cores or workers)
    doc = _last_json(out)
    return {"wall": wall, "cpu": cpu, "streams": [doc["stamps"]], "parallel": workers,
            "cores": cores or workers,
            "segments": doc["segments"], "tracks": doc["tracks"], "first": doc["first"]}


def _emodist_child(manifest: str, model_dir: str, store: str, workers: str) -> None:
    """The measured emodist process: what ``emodist predict --store`` runs, with stamps."""
    started = time.time()
    import psutil

    from emodist.engine.predict import run_predict
    from emodist.models.trained import load_trained
    from emodist.spec import Runtime

    me = psutil.Process()

    def cpu(procs) -> float:
        total = 0.0
        for p in procs:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return total

    stamps = []

    def stamp(task, res, err):  # time, CPU of all, work, CPU of the worker processes, start
        if res is not None:
            workers, now = me.children(recursive=True), time.time()
            stamps.append([now, cpu([me, *workers]), task.stop - task.start, cpu(workers),
                           now - res["seconds"]])

    model = load_trained(model_dir)
    runtime = Runtime(n_workers=int(workers), threads_per_worker=1, progress=False)
    result = run_predict(manifest, model, store, runtime, on_result=stamp)
    if result.failures:
        raise SystemExit(f"{len(result.failures)} failures: {result.failures[:2]}")
    print(json.dumps({"started": started, "first": stamps[0][0] - started if stamps else 0.0,
                      "stamps": stamps, "segments": int(result.extract.n_segments),
                      "tracks": len(result.tracks)}))


def peer_job(store: Path) -> list[dict]:
    """The tracks and 15 s segments emodist planned (from its store), in segment order."""
    from emodist.store import layout
    from emodist.store.accessor import open_store

    ds = open_store(str(store))
    paths = layout.decode_strings(ds["path"].values)
    starts = np.asarray(ds["start_s"].values, np.float64)
    durations = np.asarray(ds["duration_s"].values, np.float64)
    tracks: dict[str, list] = {}
    for p, s, d in zip(paths, starts, durations):
        tracks.setdefault(str(p), []).append([float(s), float(d)])
    return [{"path": p, "segments": segs} for p, segs in tracks.items()]


def peer_run(python: str, tracks: list[dict], tmp: Path, processes: int,
             onednn: bool = True) -> dict:
    """musicnn's pipeline in ``processes`` parallel processes, each on a share of the tracks.

    ``onednn=False`` sets ``TF_ENABLE_ONEDNN_OPTS=0`` (TensorFlow's own kernels).
    """
    env = dict(os.environ, **ONE_THREAD)
    if not onednn:
        env["TF_ENABLE_ONEDNN_OPTS"] = "0"
    shares = [tracks[i::processes] for i in range(processes)]
    procs, outs = [], []
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    for i, share in enumerate(shares):
        job = tmp / f"peer{processes}{onednn}-{i}.json"
        job.write_text(json.dumps({"tracks": share, "model": "MSD_musicnn", "threads": 1,
                                   "batch": 5}))
        outs.append(tmp / f"peer{processes}{onednn}-{i}.npz")
        procs.append(subprocess.Popen(pinned([python, PEER_SCRIPT, job, outs[-1]], processes),
                                      env=env, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    docs = []
    for p in procs:
        out, err = p.communicate(timeout=3600)
        if p.returncode != 0:
            raise RuntimeError(f"peer failed ({p.returncode}):\n{err[-3000:]}")
        docs.append(_last_json(out))
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    values = None  # per segment in job order: kept from the one-process run
    if processes == 1:
        with np.load(outs[0]) as arrays:
            values = {k: arrays[k] for k in OUTPUTS}
    return {"wall": wall, "cpu": cpu, "parallel": processes, "tracks": len(tracks),
            "streams": [[[t, c, 1] for t, c, _ in d["stamps"]] for d in docs],
            "ready": max(d["ready"] - d["started"] for d in docs),
            "tensorflow": docs[0]["tensorflow"], "values": values,
            "patches": sum(s[2] for d in docs for s in d["stamps"])}


# --- figures -------------------------------------------------------------------


def _in_window(stamps, t0: float, t1: float) -> float:
    """Work done inside ``[t0, t1]``: each unit's share of its own time spent there."""
    work = 0.0
    for end, _, units, _, start in stamps:
        lo, hi = max(start, t0), min(end, t1)
        if hi > lo:
            work += units * (hi - lo) / (end - start)
    return work


def _units(stream: list) -> list:
    """Stamps as (end, cpu, units, worker cpu, start); a stamp without a start began at
    the stream's previous stamp (a sequential process), the first one at its own time."""
    out = []
    for i, s in enumerate(stream):
        start = s[4] if len(s) > 4 else (stream[i - 1][0] if i else s[0])
        out.append((s[0], s[1], s[2], s[3] if len(s) > 3 else s[1], start))
    return out


def steady(run: dict, per_track: float = 1.0) -> tuple[float, float]:
    """(tracks per wall second, tracks per CPU-second) in the steady state of ``run``.

    Wall: the window from the k-th to the (n-k+1)-th stamp of all streams
    merged in time (k: the run's parallelism); the work done inside it (each
    unit by the share of its time spent there) over its length.  CPU: per
    stream of stamps, the same over the CPU time between the window's stamps;
    the streams' work over their CPU, summed.  ``per_track``: tracks per
    unit of a stamp.
    """
    k = run["parallel"]
    streams = [_units(stream) for stream in run["streams"]]
    merged = sorted(s for stream in streams for s in stream)
    a, b = k - 1, len(merged) - k
    if b <= a:
        raise RuntimeError(f"too few stamps ({len(merged)}) for a steady state of {k} in parallel")
    t0, t1 = merged[a][0], merged[b][0]
    wall_rate = _in_window(merged, t0, t1) * per_track / (t1 - t0)
    cpu_work = cpu_time = 0.0
    for stream in streams:
        j = k if len(streams) == 1 else 1  # one stream for all workers, or one per process
        lo, hi = j - 1, len(stream) - j
        if hi <= lo:
            continue
        cpu_work += _in_window(stream, stream[lo][0], stream[hi][0]) * per_track
        cpu_time += stream[hi][1] - stream[lo][1]
    return wall_rate, cpu_work / cpu_time


def worker_rate(run: dict, per_track: float) -> float:
    """emodist: tracks per CPU-second of the worker processes alone, in the steady window."""
    stream, k = _units(run["streams"][0]), run["parallel"]
    lo, hi = k - 1, len(stream) - k
    work = _in_window(stream, stream[lo][0], stream[hi][0]) * per_track
    return work / (stream[hi][3] - stream[lo][3])


def scaling_pairs(manifest: str, model: Path, tmp: Path, n: int) -> list[tuple[dict, dict]]:
    """``n`` pairs of emodist runs (2 workers, 1 worker on 2 cores), each pair in the
    opposite order to the one before, so that a drift of the machine's speed falls on both."""
    pairs = []
    for i in range(n):
        runs = {}
        for workers in ((2, 1) if i % 2 == 0 else (1, 2)):
            runs[workers] = emodist_run(manifest, model, tmp / f"s{i}w{workers}.zarr", workers,
                                        cores=2)
            print(f"recognise: emodist, {workers} worker(s) on 2 cores, pair {i + 1}/{n}: "
                  f"{runs[workers]['wall']:.0f} s", flush=True)
        pairs.append((runs[2], runs[1]))
    return pairs


def scaling_ratios(two: dict, one: dict, per_track: float) -> tuple[float, float]:
    """(steady, whole-process) throughput of the 2-worker run over the 1-worker run."""
    return (steady(two, per_track)[0] / steady(one, per_track)[0],
            (two["tracks"] / two["wall"]) / (one["tracks"] / one["wall"]))


def agreement(store: Path, peer_values: dict) -> dict[str, float]:
    """Minimum over segments of the cosine between stored and peer values, per output."""
    from emodist.features.musicnn import OUTPUT_PREFIX
    from emodist.store import layout
    from emodist.store.accessor import open_store

    ds = open_store(str(store))
    stored = np.asarray(ds["musicnn_msd"].values, np.float64)
    columns = np.asarray(layout.decode_strings(ds[layout.feature_dim("musicnn_msd")].values))
    out = {}
    for name in OUTPUTS:
        cols = np.char.startswith(columns.astype(str), f"musicnn_msd_{OUTPUT_PREFIX[name]}_")
        a, b = stored[:, cols], np.asarray(peer_values[name], np.float64)
        cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        out[name] = float(cos.min())
    return out


def _warm_cache(manifest: str) -> None:
    for line in Path(manifest).read_text().splitlines()[1:]:
        Path(line).read_bytes()


def run(quick: bool = False) -> dict:
    peer_python = None if quick else os.environ.get(PEER_ENV)
    why_no_peer = ("quick mode (random-weight model)" if quick else
                   f"${PEER_ENV} is not set" if not peer_python else "")
    if why_no_peer:
        print(f"recognise: peer rows skipped: {why_no_peer}", flush=True)
    with tempfile.TemporaryDirectory(prefix="emodist-bench-recognise-") as tmpdir:
        tmp = Path(tmpdir)
        if quick:
            _random_msd_model(tmp)
        train, manifest, seconds = _inputs(tmp, quick)
        t0 = time.perf_counter()
        model = _train(tmp, train, seconds)
        print(f"recognise: model trained in {time.perf_counter() - t0:.0f} s", flush=True)
        _warm_cache(manifest)
        e1 = emodist_run(manifest, model, tmp / "e1.zarr", 1)
        print(f"recognise: emodist, 1 worker: {e1['wall']:.0f} s", flush=True)
        per_seg = e1["tracks"] / e1["segments"]
        p0 = p1 = p2 = None
        if peer_python:
            job = peer_job(tmp / "e1.zarr")
            p1 = peer_run(peer_python, job, tmp, 1)
            print(f"recognise: peer, 1 process: {p1['wall']:.0f} s", flush=True)
            p0 = peer_run(peer_python, job[:20], tmp, 1, onednn=False)
            print(f"recognise: peer, 1 process, oneDNN off: {p0['wall']:.0f} s", flush=True)
            p2 = peer_run(peer_python, job, tmp, 2)
            print(f"recognise: peer, 2 processes: {p2['wall']:.0f} s", flush=True)
            cosines = agreement(tmp / "e1.zarr", p1["values"])
        pairs = scaling_pairs(manifest, model, tmp, 1 if quick else int(os.environ.get(PAIRS_ENV, "3")))
        e2, e1u = pairs[0]
    n, segs = e1["tracks"], e1["segments"]
    what = f"{n} tracks, {segs} segments of {seconds} s"
    rows, fig = [], {}
    labels = {"e1": "emodist predict, 1 worker x 1 thread", "e2": "emodist predict, 2 workers x 1 thread",
              "e1u": "emodist predict, 1 worker x 1 thread, on 2 cores",
              "p1": "musicnn pipeline, 1 process", "p2": "musicnn pipeline, 2 processes",
              "p0": "musicnn pipeline, 1 process, oneDNN off"}
    for key, r, scale in (("e1", e1, per_seg), ("e2", e2, per_seg), ("e1u", e1u, per_seg),
                          ("p1", p1, 1.0),
                          ("p2", p2, 1.0), ("p0", p0, 1.0)):
        if r is None:
            continue
        wall_rate, cpu_rate = steady(r, scale)
        k, nr = r.get("cores", r["parallel"]), r["tracks"]
        fig[key] = {"steady": wall_rate / k, "steady_cpu": cpu_rate, "whole": nr / r["wall"] / k,
                    "whole_cpu": nr / r["cpu"], "startup": r["wall"] - nr / wall_rate,
                    "wall": r["wall"], "n": nr, "rate": wall_rate, "whole_rate": nr / r["wall"]}
        if key.startswith("e"):
            fig[key]["worker"] = worker_rate(r, scale)
    for key, f in fig.items():
        label = labels[key]
        rows += [
            row(f"{label}: steady tracks/s per core", f["steady"], 0.0, "tracks/s",
                f"{f['n']} tracks; work inside the window from the k-th to the (n-k+1)-th stamp over its time"),
            row(f"{label}: steady tracks per CPU-second", f["steady_cpu"], 0.0, "tracks/CPU-s",
                "CPU of every process of the run in the same window"),
            row(f"{label}: whole process tracks/s per core", f["whole"], 0.0, "tracks/s",
                f"launch to exit {f['wall']:.1f} s"),
            row(f"{label}: whole process tracks per CPU-second", f["whole_cpu"], 0.0,
                "tracks/CPU-s", "CPU of the process and all it started"),
            row(f"{label}: one-off start-up", f["startup"], 0.0, "s",
                "whole wall time minus the tracks at the steady rate"),
        ]
        if "worker" in f:
            rows.append(row(f"{label}: steady tracks per worker CPU-second", f["worker"], 0.0,
                            "tracks/CPU-s", "the worker processes alone: the driver, scheduler "
                            f"and nannies took {100 * (1 - f['steady_cpu'] / f['worker']):.0f} % "
                            "of the run's CPU in the window"))
    if p1 is not None:
        rows += [
            row("musicnn pipeline: TensorFlow import + graph + checkpoint", p1["ready"], 0.0, "s",
                f"TensorFlow {p1['tensorflow']}; part of its start-up"),
            row("emodist / peer, 1 core, steady (wall)", fig["e1"]["steady"] / fig["p1"]["steady"],
                0.0, "ratio", "target >= 2.5; same run"),
            row("emodist / peer, 1 core, steady (per CPU-second)",
                fig["e1"]["steady_cpu"] / fig["p1"]["steady_cpu"], 0.0, "ratio",
                "target >= 2.5; less sensitive to other load"),
            row("emodist / peer, 1 core, whole process (wall)",
                fig["e1"]["whole"] / fig["p1"]["whole"], 0.0, "ratio", "target >= 2"),
            row("emodist / peer, 1 core, whole process (per CPU-second)",
                fig["e1"]["whole_cpu"] / fig["p1"]["whole_cpu"], 0.0, "ratio", "target >= 2"),
            row("emodist / peer with oneDNN off, 1 core, steady (per CPU-second)",
                fig["e1"]["steady_cpu"] / fig["p0"]["steady_cpu"], 0.0, "ratio",
                "TF_ENABLE_ONEDNN_OPTS=0, as the earlier peer figure was measured"),
            row("emodist / peer with oneDNN off, 1 core, whole process (per CPU-second)",
                fig["e1"]["whole_cpu"] / fig["p0"]["whole_cpu"], 0.0, "ratio", ""),
            row("emodist / peer, 2 cores, steady (wall)", fig["e2"]["steady"] / fig["p2"]["steady"],
                0.0, "ratio", "target >= 2.5"),
            row("emodist / peer, 2 cores, whole process (wall)",
                fig["e2"]["whole"] / fig["p2"]["whole"], 0.0, "ratio", "target >= 2"),
        ]
        rows += [row(f"cosine per segment, {name}: minimum", c, 0.0, "cosine",
                     f"1 - cosine <= {max(1.0 - c, 0.0):.1e}; stored musicnn_msd vs the peer's "
                     "mean over the same patches; "
                     f"{segs} segments; target >= 0.999") for name, c in cosines.items()]
    scaling = [scaling_ratios(two, one, per_seg) for two, one in pairs]
    each = "; ".join(f"{s:.3f}" for s, _ in scaling)
    rows += [
        row("emodist 2 workers / 1 worker, steady throughput",
            *median_spread([s for s, _ in scaling]), "ratio", "target >= 1.8; the 1 worker "
            "on both cores, its driver and scheduler on the one the worker leaves free; "
            f"median of {len(pairs)} pair(s) run in alternating order: {each}"),
        row("emodist 2 workers / 1 worker, whole process",
            *median_spread([w for _, w in scaling]), "ratio", "the same pairs"),
        row("emodist 2 workers / 1 worker on 1 core, steady throughput",
            fig["e2"]["rate"] / fig["e1"]["rate"], 0.0, "ratio",
            "the 1 worker pinned to one core with its driver, scheduler and nanny"),
    ]
    summary = (f"{what}: emodist {fig['e1']['steady']:.3f} tracks/s per core steady, "
               f"{fig['e1']['whole']:.3f} as a whole process (1 worker)")
    if p1 is not None:
        summary += (f"; musicnn's pipeline {fig['p1']['steady']:.3f} and {fig['p1']['whole']:.3f}"
                    f" ({fig['e1']['steady'] / fig['p1']['steady']:.2f}x steady, "
                    f"{fig['e1']['whole'] / fig['p1']['whole']:.2f}x whole); min cosine "
                    f"{min(cosines.values()):.5f}")
    else:
        summary += f"; peer not run: {why_no_peer}"
    return {"name": "recognise", "machine": machine(), "rows": rows, "summary": summary}


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--emodist-child":
        _emodist_child(*sys.argv[2:6])
    else:
        from benchmarks.common import main

        main(run)
