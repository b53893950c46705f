"""``emodist predict``: the emotion a trained model recognises in new music."""

from __future__ import annotations

import sys

from emodist.cli.common import (
    add_cluster_options,
    add_command,
    add_out,
    add_quiet,
    add_storage_options,
    failure_line,
    runtime_from_args,
)
from emodist.errors import EmodistError
from emodist.spec import BATCH_SIZE, FILE_CHUNK_SEGMENTS

__all__ = ["BAR", "DESCRIPTION", "EXAMPLES", "cmd_predict", "print_tracks", "register",
           "write_table"]

DESCRIPTION = """Recognise the emotion of new music with a model made by `emodist train`:
class probabilities, predicted vote shares or valence/arousal values, or tag
probabilities, whichever the model's target is.
With --store, the model's feature groups and its outputs are written into that
store on a Dask cluster (groups already there are reused; rerun to resume), with
per-track results beside them.  Without --store, a few files are answered at once in
this process: per segment and for each track."""

EXAMPLES = """examples:
  emodist predict song.mp3 --model models/emotion            # here and now, no cluster
  emodist predict album/*.flac --model models/emotion        # a few files, each a track
  emodist predict my-music/ --model models/emotion --store predictions.zarr --out tracks.csv
  emodist predict s3://bucket/music/ --model models/emotion --store s3://bucket/p.zarr \\
      --scheduler tcp://scheduler:8786
  emodist query predictions.zarr --emotion calmness --min 0.6  # tracks by predicted emotion
"""

#: Width of the bars drawn in the terminal.
BAR = 24


def register(subparsers) -> None:
    """Add the ``predict`` parser."""
    p = add_command(subparsers, "predict", help="recognise the emotion of new music",
                    description=DESCRIPTION, epilog=EXAMPLES)
    p.add_argument("data", metavar="DATA", nargs="+",
                   help="audio files (song.mp3, *.flac), a folder of audio files, a manifest "
                   "CSV (column path) or a dataset; local or s3://...")
    p.add_argument("--model", required=True, metavar="DIR",
                   help="the model folder written by 'emodist train'")
    p.add_argument("--store", metavar="URL",
                   help="write groups, probabilities and per-track results into this store "
                   "(on a cluster); without it, answer here for a few files")
    add_out(p, metavar="FILE", help="write the per-track results to FILE (.csv or .parquet)")
    p.add_argument("--segments", action="store_true",
                   help="with --out: one row per segment instead of per track")
    p.add_argument("--top", type=int, default=20, metavar="N",
                   help="tracks shown in the terminal (default 20; 0: all)")
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE, metavar="B",
                   help=f"network inputs per ONNX call on the CPU (default {BATCH_SIZE})")
    p.add_argument("--device", default="cpu", metavar="DEVICE",
                   help="where the models run: cpu (default), cuda or cuda:N")
    p.add_argument("--chunk-segments", type=int, metavar="N",
                   help="segments per store chunk of a new store; without --store, segments "
                   f"computed at once (whole tracks; default {FILE_CHUNK_SEGMENTS})")
    p.add_argument("--overwrite", action="store_true",
                   help="replace groups of the store written with another spec")
    add_storage_options(p)
    add_quiet(p, help="no progress bar")
    add_cluster_options(p)
    p.set_defaults(func=cmd_predict, cluster_if=_on_a_cluster)


def _on_a_cluster(args) -> bool:
    """Only ``--store`` runs on a cluster; without it the files are answered here."""
    return bool(args.store)


def _bar(p: float) -> str:
    n = round(max(0.0, min(1.0, float(p))) * BAR)
    return "█" * n + "·" * (BAR - n)


def print_tracks(result, top: int, stream=None) -> None:
    """Each track's outputs, with bars; one segment per line for one track.

    Classes and tags: the three likeliest (with the dominant class; tags of
    probability at least 0.5 listed); the nine GEMS shares of a regression:
    the three largest predicted shares and the dominant emotion; other
    continuous targets: every target's mean value.
    """
    stream = stream or sys.stdout
    tracks = result.tracks
    shown = tracks if top <= 0 else tracks.head(top)
    classes = list(result.classes)
    kind = getattr(result, "kind", "class")
    ranked = "top3" in tracks  # probabilities or shares: the three largest, with bars
    for _, row in shown.iterrows():
        n = int(row["n_segments"])
        head = f"{row['track_id']}  ({n} segment{'' if n == 1 else 's'})"
        if not ranked:
            print(f"{head}: " + ", ".join(f"{c} {row[c]:.3f}" for c in classes), file=stream)
            continue
        if kind == "multilabel":
            tags = [c for c in classes if row[c] >= 0.5]
            print(f"{head}: tags {', '.join(tags) or '(none at 0.5)'}", file=stream)
        else:
            print(f"{head}: {row['dominant']}", file=stream)
        for p, c in sorted(((row[c], c) for c in classes), reverse=True)[:3]:
            print(f"  {c:<18} {_bar(p)} {p:.2f}", file=stream)
    if top > 0 and len(tracks) > top:
        print(f"... {len(tracks) - top} more tracks (--top 0 shows all, --out writes them)",
              file=stream)
    if len(tracks) == 1:
        print("per segment:", file=stream)
        for _, seg in result.segments.iterrows():
            if not ranked:
                print(f"  {seg['start_s']:7.1f} s  " + ", ".join(f"{c} {seg[c]:.3f}" for c in classes),
                      file=stream)
                continue
            best = max(classes, key=lambda c: seg[c])
            print(f"  {seg['start_s']:7.1f} s  {best:<18} {_bar(seg[best])} {seg[best]:.2f}",
                  file=stream)


def write_table(frame, out: str, storage_options: dict | None = None) -> None:
    """The results as CSV or Parquet (by the file's ending), written whole."""
    import fsspec

    lower = out.lower()
    if not lower.endswith((".csv", ".parquet")):
        raise EmodistError(f"{out}: write .csv or .parquet", param="out")
    tmp = f"{out}.partial"
    with fsspec.open(tmp, "wb", **(storage_options or {})) as f:
        if lower.endswith(".csv"):
            f.write(frame.to_csv(index=False).encode())
        else:
            frame.to_parquet(f, index=False)
    fs, path = fsspec.core.url_to_fs(out, **(storage_options or {}))
    fs.mv(fs._strip_protocol(tmp), path)


def cmd_predict(args) -> int:
    """Run ``emodist predict``."""
    from emodist.engine.predict import predict_files, run_predict
    from emodist.models.trained import load_trained

    if args.top < 0:
        raise EmodistError("--top must be 0 or more")
    if args.out and not args.out.lower().endswith((".csv", ".parquet")):
        raise EmodistError(f"{args.out}: write .csv or .parquet", param="out")
    if not _on_a_cluster(args):
        for param in ("scheduler", "scheduler_file", "workers"):
            if getattr(args, param, None):
                raise EmodistError("only --store runs on a cluster: add --store URL, or leave "
                                   "the option out to answer here", param=param)
    try:
        model = load_trained(args.model)
    except EmodistError as exc:
        raise EmodistError(exc.message, param="model") from None
    runtime = runtime_from_args(args)
    data = args.data[0] if len(args.data) == 1 else args.data
    if args.store:
        result = run_predict(data, model, args.store, runtime, overwrite=args.overwrite)
        ex = result.extract
        print(f"{args.store}: {model.name} for {len(result.tracks)} tracks, "
              f"{len(result.segments)} segments ({ex.n_failed} failed) in {result.seconds:.1f} s")
    else:
        result = predict_files(data, model, runtime)
    for f in result.failures:
        print(f"  not recognised: {failure_line(f)}", file=sys.stderr)
    print_tracks(result, args.top)
    if args.out:
        frame = result.segments if args.segments else result.tracks
        write_table(frame, args.out, runtime.options("store"))
        print(f"wrote {args.out} ({len(frame)} rows)")
    return 0
