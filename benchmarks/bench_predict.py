"""``emodist predict FILE --model M`` as a whole process against its own work.

What is measured
----------------
A model is trained (``run_train``) on a small store of the same feature
groups; then, side by side in the same run, for one track:

- the whole-process wall time of ``emodist predict FILE --model M`` (a fresh
  Python process: imports, reading and verifying the model, planning the
  file's segments, decoding, the groups, the head, printing), median of
  repeats;
- the work itself: :func:`emodist.engine.predict.predict_files` on the same
  file in this process after a warm-up (decode once, every group, the
  model's ONNX head), median of repeats;
- their ratio (target: at most 2).

The full run uses the first tracks of ``EMODIST_EMOTIFY_ROOT`` (one minute
each), the handcrafted and MusiCNN MSD groups (the MSD model must be built:
``emodist model build musicnn-msd``), and a soft logistic regression; quick
mode uses generated 8 s tracks and the handcrafted group.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import machine, repeat, row

GENRES = ("classical", "rock", "electronic", "pop")


def _dataset(tmp: Path, quick: bool) -> tuple[Path, Path]:
    """A training dataset and the file to recognise (not among the training tracks)."""
    from emodist.data.demo import make_demo_dataset

    root = os.environ.get("EMODIST_EMOTIFY_ROOT")
    if quick or not root:
        make_demo_dataset(tmp / "data", n_tracks=16, seed=3, duration_s=8.0)
        make_demo_dataset(tmp / "new", n_tracks=1, seed=4, duration_s=60.0 if not quick else 8.0)
        return tmp / "data", min((tmp / "new").rglob("*.mp3"))
    data = tmp / "data"
    (data / "emotifymusic").mkdir(parents=True)
    os.symlink(Path(root) / "data.csv", data / "data.csv")
    for genre in GENRES:
        (data / "emotifymusic" / genre).mkdir()
        for n in range(1, 5):
            os.symlink(Path(root) / "emotifymusic" / genre / f"{n}.mp3",
                       data / "emotifymusic" / genre / f"{n}.mp3")
    return data, Path(root) / "emotifymusic" / "rock" / "10.mp3"


def run(quick: bool = False) -> dict:
    from distributed import Client, LocalCluster

    from emodist.engine.extract import run_extract
    from emodist.engine.predict import predict_files
    from emodist.features import make_groups
    from emodist.learn.train import run_train
    from emodist.spec import ExtractionSpec, Runtime

    groups = ["handcrafted"] if quick else ["handcrafted", "musicnn_msd"]
    preset = "logistic-regression" if quick else "soft-logistic-regression"
    seconds = 4.0 if quick else 15.0
    n = 2 if quick else 5
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        data, song = _dataset(tmp, quick)
        store = str(tmp / "store.zarr")
        spec = ExtractionSpec(groups=make_groups(groups), segment_seconds=seconds)
        with LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                          dashboard_address=":0") as cluster, Client(cluster) as client:
            run_extract(str(data), store, spec, Runtime(client=client, progress=False))
        model = run_train(store, features="+".join(groups), classifier=preset,
                          out=str(tmp / "model"), folds=4, n_jobs=1, name="bench")
        work, work_spread = repeat(lambda: predict_files(str(song), model), n=n, warmup=1)
        result = predict_files(str(song), model)
        walls = []
        cmd = [sys.executable, "-m", "emodist", "predict", str(song), "--model", str(tmp / "model")]
        for _ in range(n + 1):
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True, timeout=600)
            walls.append(time.perf_counter() - t0)
        walls = walls[1:]  # the first run warms the file cache
        whole = statistics.median(walls)
    what = (f"{song.name}: {len(result.segments)} segments of {seconds:g} s, groups "
            f"{'+'.join(groups)}, {preset}")
    rows = [
        row("whole process: emodist predict FILE --model M", whole, max(walls) - min(walls), "s",
            f"{what}; a fresh process, median of {n}"),
        row("the work: decode, groups, head (in process, warm)", work, work_spread, "s",
            f"emodist.engine.predict.predict_files, median of {n} after a warm-up"),
        row("whole process / work", whole / work, 0.0, "ratio", "target <= 2"),
    ]
    return {"name": "predict", "machine": machine(), "rows": rows,
            "summary": f"emodist predict on one track: {whole:.2f} s as a process, {work:.2f} s "
                       f"of work, {whole / work:.2f}x ({what})"}


if __name__ == "__main__":
    from benchmarks.common import main

    main(run)
