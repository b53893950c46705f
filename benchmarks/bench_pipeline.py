"""The whole extraction at the machine's limit: CPU time, system time, page faults, floor.

One :func:`emodist.engine.extract.run_extract` of every feature group that
exists (handcrafted, inception_v3, and musicnn_msd / musicnn_mtt when they
are registered and their models are built) into a fresh store, on the
LocalCluster emodist itself starts (:func:`emodist.runtime.cluster.connect`,
so the workers get :data:`emodist.runtime.cluster.WORKER_ENV`), 2 workers x 1
thread, once with the fp32 Inception-v3 and once with its int8 copy
(``emodist model build --quantize int8``), side by side in one process.
When the MusiCNN groups are there, the study's pair (handcrafted +
inception_v3) is also run alone, fp32 and int8 (rows ``study ...``): int8
is Inception-v3's only, so with MusiCNN's fp32 networks in the run it
shortens a smaller share of the work.  Both run at the full Emotify's
size: a manifest lists the shared tracks :data:`FULL_REPEAT` times under
distinct track ids and groups (1592 segments, each decoded and computed as
its own track), so their system share and page faults are those of a
full-sized run, measured, not extrapolated: a worker's one-off costs (ONNX
Runtime's arena growing to its batch, the first files' reads) weigh four
times less in them than in a 398-segment run.

Per run:

- wall time of the extraction (workers started and warmed up before);
- user and system CPU seconds and minor page faults, summed over the worker
  processes and the driver (``getrusage`` deltas read on each worker with
  ``client.run`` around the run), and the system share of all CPU time;
- peak RSS of each worker;
- the compute floor: the per-stage single-thread costs measured in that run
  (thread CPU seconds of decode, each group's prepare and finish, the region
  write, returned by every chunk task) divided by the cores used, and the
  ratio wall / floor, and all CPU seconds over the stages' own (what that
  ratio would be on an idle machine, packed perfectly: load-independent);
- the wall time and page faults at the 1588 segments of the full Emotify
  (the 1592-segment run's, scaled by 1588 / 1592; the quick run's are
  extrapolated linearly from its few segments).

Input: the shared Emotify tracks (``EMODIST_EMOTIFY_ROOT``, 100 tracks, 398
segments of 15 s) with the real model; ``quick=True`` (or without them):
generated audio, 5 s segments and the tiny random model (and its int8 copy).
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_extract import _real_model, _warm_worker
from benchmarks.common import machine, row

#: Segments of the full Emotify that figures are extrapolated to.
FULL_SEGMENTS = 1588
#: Groups added by the MusiCNN converter, used when registered and built.
OPTIONAL_GROUPS = ("musicnn_msd", "musicnn_mtt")
#: Times a full-sized run goes through the shared tracks (4 x 398 = 1592 segments).
FULL_REPEAT = 4


def repeated_manifest(dataset: str, out: Path, times: int) -> str:
    """A manifest CSV listing the usable tracks of ``dataset`` ``times`` times.

    Copy ``k`` of a track gets track id and group ``r<k>-<id>`` (so grouped
    folds and the store see distinct tracks), the same label, and a symbolic
    link ``<out stem>-files/r<k>/<n><suffix>`` to the track's audio file: the
    catalog makes one track of the lines that name one file, so each copy
    needs a file name of its own (its bytes are the same file's).
    """
    import csv

    from emodist.data.catalog import load_dataset

    out = Path(out)
    tracks = load_dataset(dataset).usable()
    links = out.parent / f"{out.stem}-files"
    with open(out, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["track_id", "path", "label", "group", "genre"])
        for k in range(int(times)):
            (links / f"r{k}").mkdir(parents=True, exist_ok=True)
            for n, t in enumerate(tracks.itertuples()):
                link = links / f"r{k}" / f"{n}{Path(t.path).suffix}"
                if not link.is_symlink():
                    link.symlink_to(Path(t.path).resolve())
                w.writerow([f"r{k}-{t.track_id}", str(link), t.label, f"r{k}-{t.group}",
                            t.genre])
    return str(out)


def _usage() -> dict:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return {"user": r.ru_utime, "sys": r.ru_stime, "minflt": r.ru_minflt,
            "majflt": r.ru_majflt, "rss_mib": r.ru_maxrss / 1024.0}


def _delta(after: dict, before: dict) -> dict:
    return {k: after[k] - before[k] for k in ("user", "sys", "minflt", "majflt")}


def available_groups(model: str, optional: bool = True) -> tuple[list, list[str]]:
    """The feature groups to run with Inception model ``model``, and notes on skipped ones.

    ``optional=False`` (the quick run: tiny models, 2 s segments) leaves the
    MusiCNN groups out.
    """
    from emodist.errors import EmodistError
    from emodist.features import REGISTRY, make_group, make_groups

    groups, notes = list(make_groups(["handcrafted", "inception_v3"], {"model": model})), []
    for name in OPTIONAL_GROUPS:
        if not optional:
            notes.append(f"{name} left out of the quick run")
            continue
        if name not in REGISTRY:
            notes.append(f"{name} not registered")
            continue
        try:
            groups.append(make_group(name).resolve())
        except EmodistError as exc:
            notes.append(f"{name} skipped ({exc.message})")
    return groups, notes


def measure(dataset: str, store: str, spec, n_workers: int = 2) -> dict:
    """One extraction on a fresh emodist LocalCluster; see the module docstring."""
    from emodist.engine.extract import resolve_spec, run_extract
    from emodist.runtime.cluster import connect
    from emodist.spec import Runtime

    stages: dict[str, float] = {}

    def collect(task, res, err):
        for name, sec in (res or {}).get("stages", {}).items():
            stages[name] = stages.get(name, 0.0) + sec

    with connect(Runtime(n_workers=n_workers, threads_per_worker=1, progress=False)) as c:
        runtime = Runtime(client=c, progress=False)
        spec = resolve_spec(spec, runtime)
        warm = max(c.run(_warm_worker, spec).values())
        before, here = c.run(_usage), _usage()
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        result = run_extract(dataset, store, spec, runtime, overwrite=True, on_result=collect)
        wall = time.perf_counter() - t0
        after, here_after = c.run(_usage), _usage()  # before the cluster's shutdown
        load = max(load, os.getloadavg()[0])
    total = _delta(here_after, here)
    driver = dict(total)
    for addr in after:
        for k, v in _delta(after[addr], before[addr]).items():
            total[k] += v
    cores = min(os.cpu_count() or 1, n_workers)
    floor = sum(stages.values()) / cores
    return {"segments": result.n_done, "wall": wall, "warm": warm, "load": load,
            "cpu": total["user"] + total["sys"], "floor": floor, "stages": stages,
            "rss": sorted(a["rss_mib"] for a in after.values()),
            "driver_user": driver["user"], "driver_sys": driver["sys"], **total}


def _inputs(tmp: Path, quick: bool):
    """Dataset, fp32 and int8 model paths, description, segment length."""
    from emodist.data.demo import make_demo_dataset
    from emodist.models.build import build_tiny_model

    root = os.environ.get("EMODIST_EMOTIFY_ROOT")
    real = None if quick else _real_model()
    if real and root and (Path(root) / "data.csv").is_file():
        int8 = str(Path(real).with_name(Path(real).stem + "_int8.onnx"))
        return (root, real, int8 if Path(int8).is_file() else None,
                "shared Emotify (100 tracks, 398 x 15 s), real Inception-v3", 15.0)
    from emodist.features.calibration import synthetic_calibration_images
    from emodist.models.quantize import quantize_int8

    fp32 = build_tiny_model(str(tmp / "tiny.onnx"), seed=0)
    int8 = quantize_int8(fp32, tmp / "tiny_int8.onnx", synthetic_calibration_images(2))
    dataset = str(tmp / "gen")
    make_demo_dataset(dataset, n_tracks=4 if quick else 40, seed=0,
                      duration_s=10.0 if quick else 30.0)
    return dataset, fp32, int8, "generated audio, 5 s segments, tiny ONNX model", 5.0


def _rows(tag: str, r: dict, what: str) -> list[dict]:
    scale = FULL_SEGMENTS / max(1, r["segments"])
    how = ("measured at {n}, scaled by {f}/{n}" if r["segments"] >= FULL_SEGMENTS
           else "extrapolated linearly from {n}").format(n=r["segments"], f=FULL_SEGMENTS)
    ratio = r["wall"] / r["floor"] if r["floor"] else float("nan")
    parts = ", ".join(f"{k} {v:.1f}" for k, v in sorted(r["stages"].items()))
    return [
        row(f"{tag}: wall", r["wall"], unit="s",
            note=f"{r['segments']} segments, {what}; workers warmed up first "
                 f"({r['warm']:.1f} s); 1-min load average up to {r['load']:.1f}"),
        row(f"{tag}: user CPU", r["user"], unit="s", note="workers + driver"),
        row(f"{tag}: system CPU", r["sys"], unit="s",
            note=f"workers + driver; the driver's own {r['driver_sys']:.2f} s "
                 f"(user {r['driver_user']:.2f} s)"),
        row(f"{tag}: system share of CPU", r["sys"] / max(r["cpu"], 1e-9), unit="ratio",
            note="target <= 0.05"),
        row(f"{tag}: minor page faults", r["minflt"], unit="faults",
            note=f"{r['majflt']:.0f} major"),
        row(f"{tag}: minor page faults at {FULL_SEGMENTS} segments", r["minflt"] * scale,
            unit="faults", note=f"{how}; target <= 2 M"),
        row(f"{tag}: peak RSS per worker", max(r["rss"]), unit="MiB",
            note="all workers: " + ", ".join(f"{m:.0f}" for m in r["rss"])),
        row(f"{tag}: compute floor", r["floor"], unit="s",
            note=f"stage thread-CPU seconds / cores: {parts}"),
        row(f"{tag}: wall / floor", ratio, unit="ratio",
            note="target <= 1.2; a machine shared with other work inflates the wall time"),
        row(f"{tag}: CPU / stage CPU", r["cpu"] / max(sum(r["stages"].values()), 1e-9),
            unit="ratio", note="all CPU seconds over the stages' own: the wall / floor an "
                               "idle machine would reach with perfect packing"),
        row(f"{tag}: wall at {FULL_SEGMENTS} segments", r["wall"] * scale, unit="s",
            note=how),
    ]


def _summary(label: str, runs: dict) -> str:
    f = runs["fp32"]
    text = (f"{label}, fp32: {f['wall']:.1f} s wall for {f['segments']} segments, system "
            f"{f['sys'] / f['cpu']:.1%} of CPU, {f['minflt'] / 1e6:.2f} M minor faults, "
            f"wall/floor {f['wall'] / f['floor']:.2f}")
    if "int8" in runs:
        i = runs["int8"]
        text += (f"; int8: {i['wall']:.1f} s, wall/floor {i['wall'] / i['floor']:.2f}, "
                 f"{i['wall'] / f['wall']:.2f}x fp32")
    return text


def run(quick: bool = False) -> dict:
    """Measure fp32 and int8 side by side; see the module docstring.

    Two configurations when the MusiCNN groups are available: every group
    (rows ``fp32: ...``, ``int8: ...``) and the study's pair handcrafted +
    inception_v3 alone (rows ``study fp32: ...``), the one int8 speeds up
    throughout.
    """
    from emodist.spec import ExtractionSpec

    rows, summaries = [], []
    with tempfile.TemporaryDirectory(prefix="emodist-bench-pipeline-") as tmp:
        tmp = Path(tmp)
        dataset, fp32, int8, what, seg_s = _inputs(tmp, quick)
        notes = [] if int8 else ["int8 model not built (emodist model build --quantize int8)"]
        configs = {}
        for tag, model in (("fp32", fp32), ("int8", int8)):
            if model is None:
                continue
            groups, skipped = available_groups(model, optional=not quick)
            notes = sorted(set(notes + skipped))
            configs.setdefault("", {})[tag] = groups
            if len(groups) > 2:
                configs.setdefault("study ", {})[tag] = groups[:2]
        for prefix, by_tag in configs.items():
            runs = {}
            source, about = dataset, what
            if not quick:  # the full Emotify's size
                source = repeated_manifest(dataset, tmp / "repeated.csv", FULL_REPEAT)
                about = f"{what}, listed {FULL_REPEAT} times"
            for tag, groups in by_tag.items():
                spec = ExtractionSpec(groups=tuple(groups), segment_seconds=seg_s)
                runs[tag] = measure(source, str(tmp / f"{prefix.strip() or 'all'}-{tag}.zarr"),
                                    spec)
                names = "+".join(g.name for g in groups)
                rows += _rows(prefix + tag, runs[tag], f"{about}; groups {names}")
            if "int8" in runs:
                rows.append(row(f"{prefix}int8 / fp32 wall",
                                runs["int8"]["wall"] / runs["fp32"]["wall"], unit="ratio",
                                note="target <= 0.6; int8 applies to Inception-v3 only"))
            names = "+".join(g.name for g in by_tag["fp32"])
            summaries.append(_summary(names, runs))
    summary = "; ".join(summaries + notes)
    return {"name": "pipeline", "machine": machine(), "rows": rows, "summary": summary}


if __name__ == "__main__":
    from benchmarks.common import main

    main(run)
