"""``emodist extract``: a dataset's feature groups into a Zarr feature store."""

from __future__ import annotations

from emodist.cli.common import (
    add_cluster_options,
    add_command,
    add_dataset_options,
    add_quiet,
    add_segment_options,
    add_storage_options,
    failure_line,
    runtime_from_args,
    spec_from_args,
)
from emodist.errors import EmodistError
from emodist.features import DEFAULT_GROUPS, REGISTRY
from emodist.features.handcrafted.names import FEATURE_SETS
from emodist.features.inception import IMAGE_SCALES
from emodist.features.musicnn import DEFAULT_OUTPUTS
from emodist.spec import BATCH_SIZE, PLAN_SITES

__all__ = ["DESCRIPTION", "EXAMPLES", "add_dataset_and_store", "add_extract_options",
           "add_group_options", "cmd_extract", "print_result", "register",
           "spec_and_runtime"]

DESCRIPTION = """Extract feature groups of every segment of DATASET into a chunked Zarr
store, on a Dask cluster (a LocalCluster sized to this machine unless --scheduler or
--scheduler-file is given).  On an existing store, groups it lacks are added and pending
work is resumed; a complete store is left alone."""

EXAMPLES = """examples:
  emodist extract ../shared/data/emotify --store features.zarr
  emodist extract data/ --store features.zarr --features handcrafted --workers 2
  emodist extract data/ --store features.zarr --features inception_v3   # add a group later
  emodist extract data/ --store features.zarr --features musicnn_msd musicnn_mtt \\
      --musicnn-outputs taggram penultimate     # after 'emodist model build musicnn-msd' (-mtt)
  emodist extract data/ --store features.zarr --features mymodel --model-card mymodel.toml
  emodist extract s3://bucket/emotify --store s3://bucket/features.zarr \\
      --scheduler tcp://scheduler:8786 --storage-options '{"client_kwargs": {"endpoint_url": "http://minio:9000"}}'
  emodist extract data/ --store features.zarr          # rerun: resumes, or says it is complete
  emodist extract ~/music/ --store library.zarr --unlabelled   # your own music, no labels
  emodist extract new/*.mp3 --store new.zarr --unlabelled      # a few files, each a track
"""


def add_group_options(parser) -> None:
    """``--features`` and the options of the built-in groups."""
    g = parser.add_argument_group("feature groups")
    g.add_argument("--features", nargs="+", metavar="GROUP",
                   help=f"groups to extract ({', '.join(REGISTRY)}; 'a+b' allowed; "
                   f"default: {' '.join(DEFAULT_GROUPS)})")
    g.add_argument("--feature-set", default=FEATURE_SETS[0], choices=FEATURE_SETS,
                   help=f"handcrafted selection (default {FEATURE_SETS[0]})")
    g.add_argument("--n-mfcc", type=int, default=13, metavar="N", help="handcrafted MFCCs")
    g.add_argument("--image-scale", default=IMAGE_SCALES[0], choices=IMAGE_SCALES,
                   help="Inception-v3 picture frequency axis")
    g.add_argument("--model", metavar="PATH", help="Inception-v3 ONNX model (default: the built one)")
    g.add_argument("--musicnn-outputs", nargs="+", metavar="OUT",
                   choices=DEFAULT_OUTPUTS,
                   help="MusiCNN outputs to keep, averaged over a segment's 3 s patches "
                   "(default: all four)")
    g.add_argument("--musicnn-dir", metavar="DIR",
                   help="folder holding musicnn_msd.onnx / musicnn_mtt.onnx (default: "
                   "$EMODIST_MUSICNN_<MSD|MTT>_MODEL, else the user cache folder)")
    g.add_argument("--model-card", nargs="+", default=[], metavar="TOML",
                   help="model cards of your own ONNX models: each registers a group under "
                   "its name (then list it in --features)")
    g.add_argument("--batch-size", type=int, default=BATCH_SIZE, metavar="B",
                   help=f"network inputs per ONNX call on the CPU (default {BATCH_SIZE}; "
                   "automatic on a GPU)")
    g.add_argument("--device", default="cpu", metavar="DEVICE",
                   help="where model groups run: cpu (default), cuda or cuda:N (needs "
                   "emodist[gpu], i.e. onnxruntime-gpu, on the workers running models)")


def add_extract_options(p) -> None:
    """Every option of ``extract`` (``run`` takes them too)."""
    from emodist.spec import PLAN_ON_WORKERS_TRACKS

    add_group_options(p)
    add_segment_options(p)
    add_dataset_options(p)
    add_storage_options(p)
    p.add_argument("--chunk-segments", type=int, metavar="N",
                   help="segments per store chunk and per task (default: sized for ~2 MiB chunks)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a store or group written with another spec")
    p.add_argument("--retry-failed", action="store_true",
                   help="also redo segments that failed in an earlier run")
    p.add_argument("--repair", action="store_true",
                   help="recompute the chunks that `emodist verify` finds damaged (a damaged "
                   "store is refused without it)")
    p.add_argument("--break-lock", action="store_true",
                   help="take over the store from another run that holds its lock (a stale "
                   "lock is taken over without it)")
    p.add_argument("--worker-timeout", type=float, default=120.0, metavar="S",
                   help="stop, keeping what is written, after S seconds with no worker on the "
                   "cluster (default 120)")
    add_quiet(p, help="no progress bar")
    p.add_argument("--plan-on", default=PLAN_SITES[0], choices=PLAN_SITES,
                   help="where the file headers of the segment plan are read: auto (default: "
                   "on the workers when the dataset is remote or has more than "
                   f"{PLAN_ON_WORKERS_TRACKS} tracks), driver or workers")
    add_cluster_options(p)


def register(subparsers) -> None:
    """Add the ``extract`` parser."""
    p = add_command(subparsers, "extract", help="extract feature groups into a Zarr store",
                    description=DESCRIPTION, epilog=EXAMPLES)
    add_dataset_and_store(p, files=True)
    add_extract_options(p)
    p.set_defaults(func=cmd_extract)


def add_dataset_and_store(p, *, files: bool = False) -> None:
    """DATASET, ``--unlabelled`` and ``--store`` (``extract`` and ``run``).

    ``files``: DATASET may be several audio files (with ``--unlabelled``).
    """
    if files:
        p.add_argument("dataset", metavar="DATASET", nargs="+",
                       help="Emotify folder, manifest CSV or label folders; with --unlabelled "
                       "also audio files (song.mp3, *.flac)")
    else:
        p.add_argument("dataset", metavar="DATASET",
                       help="Emotify folder, manifest CSV or label folders")
    p.add_argument("--store", required=True, metavar="URL", help="output store (path or s3://...)")
    p.add_argument("--unlabelled", action="store_true",
                   help="DATASET is music without labels: an audio file, a folder of audio "
                   "files (searched recursively) or a manifest CSV whose only required column "
                   "is path; features only (query, similar; evaluate and train need labels)")


def spec_and_runtime(args):
    """The spec and runtime that the ``extract`` options describe."""
    from emodist.features import make_groups
    from emodist.features.card import register_card

    for card in getattr(args, "model_card", None) or ():
        register_card(card)
    outputs = tuple(args.musicnn_outputs) if getattr(args, "musicnn_outputs", None) else None
    # keyed by option (the flag's dest): each group takes the options it declares
    options = {"feature_set": args.feature_set, "n_mfcc": args.n_mfcc,
               "image_scale": args.image_scale, "model": args.model,
               "musicnn_outputs": outputs, "musicnn_dir": getattr(args, "musicnn_dir", None)}
    groups = make_groups(args.features or DEFAULT_GROUPS, options)
    return spec_from_args(args, groups), runtime_from_args(args)


def print_result(result) -> None:
    """The summary lines of an extraction."""
    if result.already_complete:
        print(f"{result.store} is complete: {result.n_done} of {result.n_segments} segments "
              f"done in every group, {result.n_failed} failed; nothing to do")
    else:
        verb = "resumed" if result.resumed else "wrote"
        print(f"{verb} {result.store}: {result.n_written} segment-groups in "
              f"{result.seconds:.1f} s ({result.n_done} of {result.n_segments} segments done "
              f"in every group, {result.n_failed} failed)")
    for name in result.groups_added:
        print(f"added group {name}")
    for name in result.groups_replaced:
        print(f"replaced group {name}")
    for line in getattr(result, "repaired", ()):
        print(f"repaired {line}")
    if result.failures:
        print(f"{len(result.failures)} failures:")
        for f in result.failures:
            print(f"  {failure_line(f)}")


def cmd_extract(args) -> int:
    """Run ``emodist extract``; prints a summary and the failed tracks."""
    from emodist.engine.extract import run_extract

    if len(args.dataset) > 1 and not args.unlabelled:
        raise EmodistError("several DATASET are audio files: add --unlabelled, or give one "
                           "dataset")
    spec, runtime = spec_and_runtime(args)
    dataset, catalog = args.dataset[0], None
    if args.unlabelled:
        from emodist.data.catalog import audio_source, load_audio

        catalog = load_audio(args.dataset, storage_options=runtime.options("dataset"))
        dataset = audio_source(args.dataset)
    result = run_extract(dataset, args.store, spec, runtime, overwrite=args.overwrite,
                         retry_failed=args.retry_failed, repair=args.repair,
                         break_lock=args.break_lock, worker_timeout=args.worker_timeout,
                         catalog=catalog)
    print_result(result)
    return 0
