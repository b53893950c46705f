"""``emodist predict FILE --model M`` as a whole process against its own work.

What is measured
----------------
A model is trained (``run_train``) on a small store of the same feature
groups; then, side by side in the same run, for one track (not among the
training tracks):

- the whole process: the wall time (and CPU time) of ``python -m emodist
  predict FILE --model M`` in a fresh process (the interpreter, imports,
  reading and verifying the model, planning the file's segments, decoding,
  the groups, the head, printing), median of repeats after one run that
  warms the file cache;
- the work, first call: in a fresh process that has already imported
  ``emodist.engine.predict`` and read the model, the first
  :func:`emodist.engine.predict.predict_files` on the file: decode, every
  group, the model's ONNX head, *including* what a first call pays (creating
  the ONNX sessions, and librosa loading its lazily imported modules and
  their compiled numba functions on first use); median of repeats;
- the work, warm: the same call again in that process (sessions cached,
  libraries loaded): decode, groups and head alone;
- the libraries' load floor: a fresh process that imports what the work
  needs (emodist's predict path, librosa's STFT and feature modules) and
  nothing else; no command can start faster than this;
- the ratios of the whole process to both works (target: at most 2).

Each figure is measured for two files: a one-minute Emotify clip, and a
four-minute song (four consecutive clips of the same genre decoded and
written as one MP3 by libsndfile), the length of a typical song: the
start-up is the same for both, the work grows with the music.

Which ratio is "the" one: a user's process must import its libraries and
create its sessions, so the fair comparison is the whole process against
the first call (its work including session creation); the ratio to the warm
call is reported beside it, because it shows what start-up alone costs.

The full run uses the first tracks of ``EMODIST_EMOTIFY_ROOT`` (one minute
each), the handcrafted and MusiCNN MSD groups (the MSD model must be built:
``emodist model build musicnn-msd``), and a soft logistic regression; quick
mode uses generated 8 s tracks and the handcrafted group.
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

#: A fresh process timing its first and second ``predict_files`` (argv: file, model folder).
WORK = """
import json, sys, time
from emodist.engine.predict import predict_files
from emodist.models.trained import load_trained
model = load_trained(sys.argv[2])
out = {}
for name in ("first", "warm"):
    t, c = time.perf_counter(), time.process_time()
    predict_files(sys.argv[1], model)
    out[name] = [time.perf_counter() - t, time.process_time() - c]
print(json.dumps(out))
"""

#: What the work imports, and nothing else: the floor of any process that does it.
FLOOR = ("import emodist.cli.predict, emodist.engine.predict, emodist.models.trained, "
         "emodist.models.session, librosa.core.spectrum, librosa.feature")


def _timed(cmd: list[str]) -> tuple[float, float, str]:
    """Wall and CPU seconds (user + system) of a child process, and its output."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.stdout


def _dataset(tmp: Path, quick: bool) -> tuple[Path, list[Path]]:
    """A training dataset and the files to recognise (not among the training tracks)."""
    from emodist.data.demo import make_demo_dataset

    root = os.environ.get("EMODIST_EMOTIFY_ROOT")
    if quick or not root:
        make_demo_dataset(tmp / "data", n_tracks=16, seed=3, duration_s=8.0)
        make_demo_dataset(tmp / "new", n_tracks=1, seed=4, duration_s=60.0 if not quick else 8.0)
        return tmp / "data", [min((tmp / "new").rglob("*.mp3"))]
    data = tmp / "data"
    (data / "emotifymusic").mkdir(parents=True)
    os.symlink(Path(root) / "data.csv", data / "data.csv")
    for genre in GENRES:
        (data / "emotifymusic" / genre).mkdir()
        for n in range(1, 5):
            os.symlink(Path(root) / "emotifymusic" / genre / f"{n}.mp3",
                       data / "emotifymusic" / genre / f"{n}.mp3")
    clips = [Path(root) / "emotifymusic" / "rock" / f"{n}.mp3" for n in range(10, 14)]
    return data, [clips[0], _joined(clips, tmp / "song-4min.mp3")]


def _joined(clips: list[Path], out: Path) -> Path:
    """The clips decoded and written one after another as one MP3."""
    import soundfile as sf

    parts, rate = [], None
    for clip in clips:
        y, sr = sf.read(str(clip), dtype="float32", always_2d=True)
        if rate not in (None, sr):
            raise RuntimeError(f"{clip}: {sr} Hz, not {rate}")
        parts.append(y)
        rate = sr
    sf.write(str(out), np.concatenate(parts), rate, format="MP3", subtype="MPEG_LAYER_III",
             compression_level=0.5)
    return out


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
    runs: dict[str, dict[str, list]] = {}
    lengths, floor_runs = {}, []
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        data, songs = _dataset(tmp, quick)
        store = str(tmp / "store.zarr")
        spec = ExtractionSpec(groups=make_groups(groups), segment_seconds=seconds)
        with LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                          dashboard_address=":0") as cluster, Client(cluster) as client:
            run_extract(str(data), store, spec, Runtime(client=client, progress=False))
        model = run_train(store, features="+".join(groups), classifier=preset,
                          out=str(tmp / "model"), folds=4, n_jobs=1, name="bench")
        for song in songs:
            result = predict_files(str(song), model)
            lengths[song.name] = (len(result.segments), float(result.segments["start_s"].max())
                                  + seconds)
            whole_cmd = [sys.executable, "-m", "emodist", "predict", str(song), "--model",
                         str(tmp / "model")]
            got = runs[song.name] = {"whole": [], "first": [], "warm": []}
            _timed(whole_cmd)  # warms the file cache
            for _ in range(n):  # interleaved, so that a change of load hits every figure alike
                wall, cpu, _ = _timed(whole_cmd)
                got["whole"].append((wall, cpu))
                _, _, out = _timed([sys.executable, "-c", WORK, str(song), str(tmp / "model")])
                work = json.loads(out)
                got["first"].append(tuple(work["first"]))
                got["warm"].append(tuple(work["warm"]))
                wall, cpu, _ = _timed([sys.executable, "-c", FLOOR])
                floor_runs.append((wall, cpu))
    floor = median_spread([w for w, _ in floor_runs])
    floor_cpu = median_spread([c for _, c in floor_runs])
    rows, said = [], []
    for song, got in runs.items():
        wall = {k: median_spread([w for w, _ in v]) for k, v in got.items()}
        cpu = {k: median_spread([c for _, c in v]) for k, v in got.items()}
        segs, music = lengths[song]
        length = f"{music / 60:.0f} min" if music >= 60 else f"{music:.0f} s"
        what = (f"{song}: {length}, {segs} segments of {seconds:g} s, groups "
                f"{'+'.join(groups)}, {preset}")
        whole, first, warm = wall["whole"][0], wall["first"][0], wall["warm"][0]
        rows += [
            row(f"{song}: whole process, emodist predict FILE --model M", whole, wall["whole"][1],
                "s", f"{what}; a fresh process, median of {n}"),
            row(f"{song}: the work, first call (sessions created, libraries loaded)", first,
                wall["first"][1], "s", "predict_files in a fresh process after importing "
                f"emodist.engine.predict, median of {n}"),
            row(f"{song}: the work, warm (decode, groups, head)", warm, wall["warm"][1], "s",
                f"the same call again in that process, median of {n}"),
            row(f"{song}: whole process / first call", whole / first, 0.0, "ratio",
                "target <= 2"),
            row(f"{song}: whole process / warm work", whole / warm, 0.0, "ratio",
                "start-up included in the numerator only; target <= 2"),
            row(f"{song}: whole process, CPU", cpu["whole"][0], cpu["whole"][1], "s",
                "user + system CPU of the child process"),
            row(f"{song}: the work, first call, CPU", cpu["first"][0], cpu["first"][1], "s", ""),
            row(f"{song}: the work, warm, CPU", cpu["warm"][0], cpu["warm"][1], "s", ""),
        ]
        said.append(f"{length} ({song}): {whole:.2f} s as a process, {first:.2f} s "
                    f"of work on a first call ({whole / first:.2f}x), {warm:.2f} s warm "
                    f"({whole / warm:.2f}x)")
    rows += [
        row("libraries' load floor (imports of the work, no work)", floor[0], floor[1], "s",
            f"python -c '{FLOOR}', median of {n * len(songs)}"),
        row("libraries' load floor, CPU", floor_cpu[0], floor_cpu[1], "s", ""),
    ]
    return {"name": "predict", "machine": machine(), "rows": rows,
            "summary": f"emodist predict FILE ({'+'.join(groups)}, {preset}): "
                       + "; ".join(said) + f"; loading the libraries alone takes {floor[0]:.2f} s"}


if __name__ == "__main__":
    from benchmarks.common import main

    main(run)
