"""``emodist extract``: a dataset's features into a Zarr feature store."""

from __future__ import annotations

from emodist.cli.common import add_dataset_options, add_storage_options, parse_storage_options
from emodist.spec import FEATURE_GROUPS, Config
from emodist.errors import EmodistError

DESCRIPTION = """Extract handcrafted and deep features of every segment of DATASET into a
chunked Zarr store, on a Dask cluster (a LocalCluster sized to this machine unless
--scheduler or --scheduler-file is given).  Rerunning the same command after an
interruption resumes; a complete store is left alone."""


def parse_features(text: str) -> tuple[str, ...]:
    """``"handcrafted,deep"`` -> ``("handcrafted", "deep")``, checked."""
    items = tuple(dict.fromkeys(s.strip() for s in str(text).split(",") if s.strip()))
    if not items:
        raise EmodistError("--features is empty; use handcrafted, deep or both")
    unknown = [f for f in items if f not in FEATURE_GROUPS]
    if unknown:
        raise EmodistError(
            f"unknown feature group {unknown[0]!r}; choose from {', '.join(FEATURE_GROUPS)}"
        )
    return items


def add_cluster_options(parser) -> None:
    """Options choosing the Dask cluster (shared with other commands)."""
    g = parser.add_argument_group("cluster")
    g.add_argument("--scheduler", metavar="ADDRESS", help="connect to this scheduler (tcp://HOST:8786)")
    g.add_argument("--scheduler-file", metavar="FILE", help="connect through a scheduler file")
    g.add_argument("--workers", type=int, metavar="N", help="local cluster: worker processes")
    g.add_argument("--threads-per-worker", type=int, metavar="T", help="local cluster: threads each")
    g.add_argument("--memory-limit", metavar="SIZE", help="local cluster: memory per worker (4GiB)")


EXAMPLES = """examples:
  emodist extract ../shared/data/emotify --store features.zarr
  emodist extract data/ --store features.zarr --features handcrafted --workers 2
  emodist extract s3://bucket/emotify --store s3://bucket/features.zarr \\
      --scheduler tcp://scheduler:8786 --storage-options '{"client_kwargs": {"endpoint_url": "http://minio:9000"}}'
  emodist extract data/ --store features.zarr          # rerun: resumes, or says it is complete
"""


def register(subparsers) -> None:
    """Add the ``extract`` parser."""
    import argparse

    p = subparsers.add_parser("extract", help="extract features into a Zarr store",
                              description=DESCRIPTION, epilog=EXAMPLES,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", metavar="DATASET", help="Emotify folder, manifest CSV or label folders")
    p.add_argument("--store", required=True, metavar="URL", help="output store (path or s3://...)")
    p.add_argument("--features", default=",".join(FEATURE_GROUPS),
                   help="feature groups, comma separated (default: handcrafted,deep)")
    p.add_argument("--segment-seconds", type=float, default=Config.segment_seconds)
    p.add_argument("--hop-seconds", type=float, default=None,
                   help="hop between segments (default: the segment length)")
    p.add_argument("--feature-set", default=Config.feature_set, help="handcrafted selection")
    p.add_argument("--batch-size", type=int, default=Config.batch_size, metavar="B",
                   help="images per ONNX call")
    p.add_argument("--model", metavar="PATH", help="ONNX model (default: the built model)")
    add_storage_options(p)
    add_dataset_options(p)
    p.add_argument("--chunk-segments", type=int, metavar="N",
                   help="segments per store chunk and per task (default: sized for ~2 MiB chunks)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing store")
    p.add_argument("--retry-failed", action="store_true",
                   help="also redo segments that failed in an earlier run")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_cluster_options(p)
    p.set_defaults(func=cmd_extract)


def config_from_args(args) -> Config:
    """The :class:`Config` the ``extract`` options describe."""
    if args.batch_size is not None and args.batch_size < 1:
        raise EmodistError("--batch-size must be at least 1")
    if args.chunk_segments is not None and args.chunk_segments < 1:
        raise EmodistError("--chunk-segments must be at least 1")
    hop = args.hop_seconds if args.hop_seconds is not None else args.segment_seconds
    return Config(
        segment_seconds=args.segment_seconds,
        hop_seconds=hop,
        features=parse_features(args.features),
        feature_set=args.feature_set,
        label_rule=args.label_rule,
        min_class_tracks=args.min_class_tracks,
        batch_size=args.batch_size,
    )


def cmd_extract(args) -> int:
    """Run ``emodist extract``; prints a summary and the failed tracks."""
    from emodist.engine.extract import run_extract

    config = config_from_args(args)
    result = run_extract(
        args.dataset,
        args.store,
        config,
        scheduler=args.scheduler,
        scheduler_file=args.scheduler_file,
        n_workers=args.workers,
        threads_per_worker=args.threads_per_worker,
        memory_limit=args.memory_limit,
        storage_options=parse_storage_options(args.storage_options),
        model=args.model,
        overwrite=args.overwrite,
        chunk=args.chunk_segments,
        progress=not args.no_progress,
        retry_failed=args.retry_failed,
    )
    if result.already_complete:
        print(f"{result.store} is complete: {result.n_done} of {result.n_segments} segments "
              f"done, {result.n_failed} failed; nothing to do")
    else:
        verb = "resumed" if result.resumed else "wrote"
        print(f"{verb} {result.store}: {result.n_written} segments in {result.seconds:.1f} s "
              f"({result.n_done} of {result.n_segments} done, {result.n_failed} failed)")
    if result.failures:
        print(f"{len(result.failures)} tracks failed:")
        for f in result.failures:
            print(f"  {f['track_id']}  {f['path']}: {f['error']}")
    return 0
