"""``emodist info``, ``emodist query`` and ``emodist similar``: read a store."""

from __future__ import annotations

import json
import sys

from emodist.cli.common import (
    LibraryChoices,
    add_alias,
    add_command,
    add_out,
    add_storage_options,
    failure_line,
    parse_storage_options,
    runtime_from_args,
)
from emodist.errors import EmodistError

__all__ = ["EMOTION_LEVELS", "FORMATS", "INFO_EXAMPLES", "METRICS", "QUERY_EXAMPLES",
           "SIMILAR_EXAMPLES", "add_feature_options", "add_output_options", "cmd_info",
           "cmd_query", "cmd_similar", "format_info", "output_format", "register", "render",
           "selected_features", "write_frame"]

#: ``similar --metric``: :data:`emodist.store.similar.METRICS` (not imported to build the parser).
METRICS = LibraryChoices("emodist.store.similar", "METRICS")
EMOTION_LEVELS = LibraryChoices("emodist.store.select", "EMOTION_LEVELS")

#: Output formats of ``emodist query`` and ``emodist similar``.
FORMATS = ("table", "csv", "parquet", "json")
_SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".json": "json",
             ".txt": "table"}

INFO_EXAMPLES = """examples:
  emodist info features.zarr
  emodist info features.zarr --json
  emodist info s3://bucket/features.zarr --storage-options '{"anon": false}'
"""

QUERY_EXAMPLES = """examples:
  emodist query features.zarr --track 17 --columns 'mfcc_*' rms_mean
  emodist query features.zarr --label calmness --features inception_v3 --out calm.parquet
  emodist query features.zarr --genre rock --format csv --out rock.csv
  emodist query predictions.zarr --emotion calmness --min 0.6   # after emodist predict
"""

SIMILAR_EXAMPLES = """examples:
  emodist similar features.zarr --segment 17:001 -k 10
  emodist similar features.zarr --segment 17:001 --features handcrafted --exclude-same-track
  emodist similar features.zarr --segment 17:001 --columns 'mfcc_*' --metric euclidean
  emodist similar features.zarr --track 17 --features musicnn_msd  # the nearest tracks
  emodist similar features.zarr --audio song.mp3                  # a file not in the store
  emodist similar predictions.zarr --audio song.mp3 --features emotion --model models/emotion
"""


#: Each command's one-line help and its description.
_ABOUT = {
    "info": ("what a feature store holds and how complete it is",
             ("Segments, tracks, classes, feature groups, config and provenance, completeness "
             "(pending and failed segments), size on disk and chunking of a store.")),
    "query": ("select stored features of tracks, classes or genres",
              ("One row per finished segment matching every filter: metadata columns, then the "
              "chosen features (--features: groups such as handcrafted, musicnn_msd, "
              "handcrafted+musicnn_msd, votes or a model's probabilities; --columns: names or "
              "glob patterns).  --emotion ranks tracks or segments by a model's predicted "
              "share.")),
    "similar": ("the segments or tracks nearest to a segment, a track or a new audio file",
                ("k nearest segments (--segment) or tracks (--track, --audio: a track is the "
                "mean of its segments) by cosine or euclidean distance; handcrafted columns are "
                "standardised. --audio computes files that are not in the store here, with the "
                "store's own plan and groups (no cluster). The store is streamed in blocks "
                "(bounded memory).")),
}


def register(subparsers) -> None:
    """Add ``info``, ``query`` and ``similar``."""
    p = _command(subparsers, "info", cmd_info, INFO_EXAMPLES)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_storage_options(p, locations=())

    q = _command(subparsers, "query", cmd_query, QUERY_EXAMPLES)
    q.add_argument("--track", nargs="+", action="extend", metavar="ID", help="track ids")
    q.add_argument("--label", nargs="+", action="extend", metavar="CLASS", help="classes")
    q.add_argument("--genre", nargs="+", action="extend", metavar="GENRE", help="genres")
    q.add_argument("--segment", nargs="+", action="extend", metavar="ID", help="segment ids")
    add_feature_options(q, "the first group")
    q.add_argument("--include-incomplete", action="store_true",
                   help="also list pending and failed segments (NaN features, status column)")
    e = q.add_argument_group("by predicted emotion (a store written by emodist predict)")
    e.add_argument("--emotion", metavar="CLASS",
                   help="tracks ranked by a model's predicted share of CLASS (calmness...): a "
                   "class, tag or emotion probability, a predicted vote share, or a "
                   "regression's value (valence)")
    e.add_argument("--min", type=float, default=0.0, metavar="P",
                   help="with --emotion: keep values of at least P (default 0; shares and "
                   "probabilities lie between 0 and 1)")
    e.add_argument("--level", choices=EMOTION_LEVELS, default=EMOTION_LEVELS[0],
                   help="with --emotion: rank tracks (mean over their segments) or segments")
    e.add_argument("--model", metavar="NAME",
                   help="with --emotion: the model's name, when the store holds several")
    add_output_options(q)
    add_storage_options(q, locations=())

    s = _command(subparsers, "similar", cmd_similar, SIMILAR_EXAMPLES)
    query = s.add_mutually_exclusive_group(required=True)
    query.add_argument("--segment", metavar="ID", help="query segment id: the nearest segments")
    query.add_argument("--track", metavar="ID", help="query track id: the nearest tracks")
    query.add_argument("--audio", nargs="+", metavar="FILE",
                       help="audio files (not necessarily in the store): the nearest tracks "
                       "to each, computed with the store's own spec")
    s.add_argument("-k", type=int, default=10, help="number of neighbours (default 10)")
    add_feature_options(s, "the last model group (a model's name compares by its predicted "
                        "probabilities)")
    add_alias(s, "--by", use="--features")
    s.add_argument("--model", metavar="DIR",
                   help="with --audio --features MODEL: the model folder that wrote MODEL")
    s.add_argument("--metric", choices=METRICS, metavar="METRIC",
                   help="distance between segments: %(choices)s (default: the first)")
    s.add_argument("--exclude-same-track", action="store_true",
                   help="with --segment: leave out the other segments of the query's track")
    s.add_argument("--label", nargs="+", action="extend", metavar="CLASS",
                   help="search only among these classes")
    s.add_argument("--genre", nargs="+", action="extend", metavar="GENRE",
                   help="search only among these genres")
    s.add_argument("--device", default="cpu", metavar="DEVICE",
                   help="with --audio: where the models run: cpu (default), cuda or cuda:N")
    add_output_options(s)
    add_storage_options(s, locations=())


def _command(subparsers, name: str, func, examples: str):
    """A sub-command parser taking a ``store`` argument and running ``func`` (:data:`_ABOUT`)."""
    help, description = _ABOUT[name]
    p = add_command(subparsers, name, help=help, description=description, epilog=examples)
    p.add_argument("store", help="store path or fsspec URL")
    p.set_defaults(func=func)
    return p


def add_feature_options(parser, default: str) -> None:
    """``--features`` (groups, ``a+b`` joined) and ``--columns`` (names or patterns)."""
    parser.add_argument("--features", nargs="+", action="extend", metavar="GROUP",
                        help="stored groups (handcrafted, musicnn_msd, musicnn_mtt, inception_v3; "
                        "a+b joined), votes, or a trained model's name; default, without "
                        f"--columns: {default}")
    parser.add_argument("--columns", nargs="+", action="extend", metavar="PATTERN",
                        help="feature names or glob patterns ('mfcc_*', rms_mean)")


def selected_features(args) -> list | None:
    """What ``--features`` and ``--columns`` select, in that order (None: the default)."""
    chosen = [*(args.features or ()), *(args.columns or ())]
    return chosen or None


def add_output_options(parser) -> None:
    """``--format`` and ``--out``."""
    parser.add_argument("--format", choices=FORMATS,
                        help="output format (default: from the --out suffix, else table)")
    add_out(parser, metavar="FILE", help="write to FILE, not stdout", aliases=("--output", "-o"))


def output_format(fmt: str | None, output: str | None) -> str:
    """The format to write: given, else from the output file's suffix, else table."""
    if fmt:
        return fmt
    if output:
        for suffix, name in _SUFFIXES.items():
            if output.lower().endswith(suffix):
                return name
    return "table"


def render(df, fmt: str, max_rows: int | None = 40, max_cols: int | None = 12) -> str:
    """Text of a table in ``table``, ``csv`` or ``json`` format."""
    if fmt == "csv":
        return df.to_csv(index=False)
    if fmt == "json":
        return df.to_json(orient="records", indent=None) + "\n"
    if fmt != "table":
        raise EmodistError(f"{fmt} output is binary; give --out FILE")
    if df.empty:  # pandas would print "Empty DataFrame" and an index
        return f"no rows (columns: {', '.join(map(str, df.columns))})\n"
    text = df.to_string(index=False, max_rows=max_rows, max_cols=max_cols)
    return f"{text}\n({len(df)} rows x {df.shape[1]} columns)\n"


def write_frame(df, fmt: str, output: str | None) -> None:
    """Write ``df`` to ``output`` (or stdout) in ``fmt``; a file appears whole."""
    from emodist.store.outputs import write_file  # here: xarray loads only when used

    if fmt == "parquet":
        if not output:
            raise EmodistError("parquet output is binary; give --out FILE")
        write_file(output, df.to_parquet(None, index=False), param="out")
        return
    full = output is not None
    text = render(df, fmt, max_rows=None if full else 40, max_cols=None if full else 12)
    if output is None:
        sys.stdout.write(text)
        return
    write_file(output, text, param="output")


def _size(n: int | None) -> str:
    if n is None:
        return "unknown"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def format_info(summary: dict) -> str:
    """Human-readable text of :func:`emodist.store.info.info`."""
    lines = [
        f"store: {summary['store'] or '(in memory)'}",
        (f"segments: {summary['segments']} from {summary['tracks']} tracks, "
         f"{summary['complete']} done in every group"),
    ]
    for name, c in summary["completeness"].items():
        lines.append(f"  {name:<20} {c['done']} done, {c['pending']} pending, {c['failed']} failed")
    fails = summary["failures"]
    for f in fails[:10]:
        where = f" [{f['group']}]" if f.get("group") else ""
        lines.append(f"  failed {f.get('track_id')}{where} {f.get('path')}: {f.get('error')}")
    if len(fails) > 10:
        lines.append(f"  ... {len(fails) - 10} more failures")
    for title, key in (("classes", "classes"), ("genres", "genres")):
        lines.append(f"{title}:")
        for name, n in summary[key].items():
            lines.append(f"  {name or '(none)':<20} {n['tracks']:>7} tracks {n['segments']:>9} segments")
    lines.append("features: " + ", ".join(f"{k} {v}" for k, v in summary["features"].items()))
    for k, v in summary["provenance"].items():
        lines.append(f"{k}: {v}")
    if summary["spec"]:
        lines.append("spec: " + json.dumps(summary["spec"], sort_keys=True))
    for name, desc in (summary["feature_groups"] or {}).items():
        lines.append(f"group {name}: " + json.dumps(desc, sort_keys=True))
    lines.append(f"size on disk: {_size(summary['size_bytes'])}")
    lines.append("chunking:")
    for name, ch in summary["chunking"].items():
        shards = f" shards {tuple(ch['shards'])}" if ch["shards"] else ""
        comp = "+".join(ch["compressors"]) or "none"
        lines.append(f"  {name:<12} {ch['dtype']:<8} shape {tuple(ch['shape'])} "
                     f"chunks {tuple(ch['chunks'])}{shards} {comp}")
    return "\n".join(lines) + "\n"


def cmd_info(args) -> int:
    """``emodist info``."""
    from emodist.store import open_store

    summary = open_store(args.store, parse_storage_options(args.storage_options)).emodist.info()
    if args.json:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    else:
        sys.stdout.write(format_info(summary))
    return 0


def _open(args):
    """The output format and the opened store of a query command."""
    from emodist.store import open_store

    fmt = output_format(args.format, args.out)
    if args.out:  # before the query runs
        from emodist.store.outputs import check_file  # here: xarray loads only when used

        check_file(args.out, param="out")
    return fmt, open_store(args.store, parse_storage_options(args.storage_options))


def _filters(args) -> dict:
    """The class and genre filters of a query command."""
    return {"labels": args.label, "genres": args.genre}


def cmd_query(args) -> int:
    """``emodist query``."""
    fmt, ds = _open(args)
    if args.emotion:
        df = ds.emodist.by_emotion(args.emotion, model=args.model, min=args.min, level=args.level)
        write_frame(df, fmt, args.out)
        if df.empty and args.min > 0:  # soft-label shares are low: say where the top is
            top = ds.emodist.by_emotion(args.emotion, model=args.model, level=args.level)
            if len(top):
                where = top["segment_id" if args.level == "segment" else "track_id"].iloc[0]
                print(f"no {args.level} reaches {args.emotion} {args.min:g}; the highest is "
                      f"{top[args.emotion].iloc[0]:.2f} ({where})", file=sys.stderr)
        if args.out:
            print(f"wrote {len(df)} rows to {args.out}", file=sys.stderr)
        return 0
    df = ds.emodist.select(tracks=args.track, segments=args.segment,
                           features=selected_features(args),
                           include_incomplete=args.include_incomplete, **_filters(args))
    write_frame(df, fmt, args.out)
    if args.out:
        print(f"wrote {len(df)} rows x {df.shape[1]} columns to {args.out}", file=sys.stderr)
    return 0


def cmd_similar(args) -> int:
    """``emodist similar``."""
    if args.model and not args.audio:
        raise EmodistError("give --model with --audio (a stored track is compared by the "
                           "probabilities already in the store)", param="model")
    if args.exclude_same_track and not args.segment:
        raise EmodistError("--exclude-same-track goes with --segment", param="exclude_same_track")
    if args.audio:  # before the store opens: a missing file is named first
        import os

        for f in args.audio:
            if "://" not in f and not os.path.exists(f):
                raise EmodistError(f"{f}: no such file or folder", param="audio")
    fmt, ds = _open(args)
    metric = {"metric": args.metric} if args.metric else {}
    common = {"k": args.k, "features": selected_features(args), **metric, **_filters(args)}
    if args.segment:
        df = ds.emodist.similar(args.segment, exclude_same_track=args.exclude_same_track,
                                **common)
    elif args.track:
        df = ds.emodist.similar_tracks(args.track, **common)
    else:
        # here: the engine (decoding, ONNX) loads only for --audio
        from emodist.engine.similar import similar_audio

        model = None
        if args.model:
            from emodist.models.trained import load_trained

            try:
                model = load_trained(args.model)
            except EmodistError as exc:
                raise EmodistError(exc.message, param="model") from None
        runtime = runtime_from_args(args, progress=False)
        df, failures = similar_audio(ds, args.audio, model=model, runtime=runtime, **common)
        for f in failures:
            print(f"  not computed: {failure_line(f)}", file=sys.stderr)
    write_frame(df, fmt, args.out)
    return 0
