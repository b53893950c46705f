"""``emodist run`` (extract, then evaluate) and ``emodist demo`` (the whole job on generated data)."""

from __future__ import annotations

import argparse

RUN_DESCRIPTION = """Extract DATASET into the store, then evaluate it (extract + evaluate
on one Dask cluster).  Every extracted feature group is evaluated, and both groups
together when there are two."""

DEMO_DESCRIPTION = """The whole job on generated data: write a small Emotify-layout dataset,
extract its features on a local Dask cluster, cross-validate a few classifiers and
print the ranked table.  Deep features are used only when the real network has been
built with `emodist model build`."""


DEMO_DESCRIPTION = """The whole job on generated data: write a small Emotify-layout dataset,
extract its features on a local Dask cluster, cross-validate a few classifiers and
print the ranked table.  Inception-v3 features are used only when the real network has
been built with `emodist model build`."""

RUN_EXAMPLES = """examples:
  emodist run ../shared/data/emotify --store features.zarr --out report/
  emodist run data/ --store features.zarr --out report/ --features handcrafted --classifiers quick
  emodist run s3://bucket/data --store s3://bucket/features.zarr --out report/ \\
      --scheduler tcp://scheduler:8786
"""

DEMO_EXAMPLES = """examples:
  emodist demo                                  # 32 generated tracks into ./emodist-demo
  emodist demo --out /tmp/demo --tracks 16 --duration 20
"""


DEMO_EXAMPLES = """examples:
  emodist demo                                  # 32 generated tracks into ./emodist-demo
  emodist demo --out /tmp/demo --tracks 16 --duration 20
"""


def register(subparsers) -> None:
    """Add ``run`` and ``demo``."""
    from emodist.cli.evaluate import add_evaluation_options
    from emodist.cli.extract import add_dataset_and_store, add_extract_options

    r = subparsers.add_parser("run", help="extract a dataset, then evaluate it",
                              description=RUN_DESCRIPTION, epilog=RUN_EXAMPLES,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataset_and_store(r)
    r.add_argument("--out", required=True, metavar="DIR", help="report folder")
    add_extract_options(r)
    add_evaluation_options(r, features=False)
    r.add_argument("--evaluate-features", nargs="+", metavar="SET",
                   help="feature sets to evaluate (default: every extracted group alone, and "
                   "all of them joined with +)")
    r.set_defaults(func=cmd_run)

    d = subparsers.add_parser("demo", help="the whole job on generated demo data",
                              description=DEMO_DESCRIPTION, epilog=DEMO_EXAMPLES,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    d.add_argument("--out", default="emodist-demo", metavar="DIR",
                   help="output folder (default ./emodist-demo)")
    d.add_argument("--tracks", type=int, default=32, metavar="N", help="generated tracks (default 32)")
    d.add_argument("--seed", type=int, default=0, help="seed of data, folds and models")
    d.add_argument("--duration", type=float, default=30.0, metavar="S",
                   help="length of each generated track in seconds (default 30)")
    d.add_argument("--workers", type=int, metavar="N", help="local Dask workers")
    d.set_defaults(func=cmd_demo)


def cmd_run(args) -> int:
    """Run ``emodist run``: extract, then evaluate."""
    from emodist.cli.evaluate import flagged, print_report
    from emodist.cli.extract import print_result, spec_and_runtime
    from emodist.engine.pipeline import run_pipeline

    spec, runtime = spec_and_runtime(args)
    evaluation = {"classifiers": args.classifiers or ["all"], "folds": args.folds, "seed": args.seed,
                  "balance": args.balance, "target": args.target}
    if args.evaluate_features:
        evaluation["features"] = args.evaluate_features
    with flagged({"features": "--evaluate-features"}):
        result = run_pipeline(args.dataset, args.store, args.out, spec, runtime,
                              overwrite=args.overwrite, retry_failed=args.retry_failed,
                              repair=args.repair, break_lock=args.break_lock,
                              worker_timeout=args.worker_timeout, evaluation=evaluation)
    print_result(result.extract)
    print_report(result.report, args.top)
    return 0


def cmd_demo(args) -> int:
    """Run ``emodist demo``."""
    from emodist.cli.evaluate import print_report
    from emodist.engine.pipeline import run_demo

    result = run_demo(args.out, n_tracks=args.tracks, seed=args.seed, duration_s=args.duration,
                      n_workers=args.workers)
    ex = result.extract
    print(f"extracted {ex.n_done} of {ex.n_segments} segments in {ex.seconds:.1f} s")
    print_report(result.report, None)
    for note in result.notes:
        print(note)
    return 0
