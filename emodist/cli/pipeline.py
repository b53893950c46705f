"""``emodist run`` (extract, then evaluate) and ``emodist demo`` (the whole job on generated data)."""

from __future__ import annotations

import argparse

from emodist.cli.common import add_alias, add_command, add_out
from emodist.cli.evaluate import (
    add_evaluation_options,
    check_streamable,
    evaluation_kwargs,
    feature_flags,
    flagged,
    print_report,
    stream_report,
)
from emodist.cli.extract import (
    add_dataset_and_store,
    add_extract_options,
    print_result,
    spec_and_runtime,
)
from emodist.errors import EmodistError

__all__ = ["DEMO_DESCRIPTION", "DEMO_EXAMPLES", "RUN_DESCRIPTION", "RUN_EXAMPLES",
           "RUN_NOT_STREAMED", "cmd_demo", "cmd_run", "register", "run_evaluation"]

RUN_DESCRIPTION = """Extract DATASET into the store, then evaluate it (extract + evaluate
on one Dask cluster).  --features names the groups extracted and the feature sets
evaluated (a+b: both groups extracted, evaluated joined); without it the default
groups are extracted and each is evaluated alone, and all of them joined.  Every
option of `emodist evaluate` applies to the evaluation."""

DEMO_DESCRIPTION = """The whole job on generated data: write a small Emotify-layout dataset,
extract its features on a local Dask cluster, cross-validate a few classifiers and
print the ranked table.  Inception-v3 features are used only when the real network has
been built with `emodist model build`."""

RUN_EXAMPLES = """examples:
  emodist run ../shared/data/emotify --store features.zarr --out report/
  emodist run data/ --store features.zarr --out report/ --features handcrafted --classifiers quick
  emodist run data/ --store features.zarr --features handcrafted inception_v3 \\
      handcrafted+inception_v3 --balance both --rank-by balanced_accuracy --out report/
  emodist run s3://bucket/data --store s3://bucket/features.zarr --out report/ \\
      --scheduler tcp://scheduler:8786
"""

DEMO_EXAMPLES = """examples:
  emodist demo                                  # 32 generated tracks into ./emodist-demo
  emodist demo --out /tmp/demo --tracks 16 --duration 20
"""

#: Parameters that ``run --stream`` refuses (the extraction uses its cluster and label rule).
RUN_NOT_STREAMED = ("classifiers", "ceiling", "group_by")


def register(subparsers) -> None:
    """Add ``run`` and ``demo``."""
    r = add_command(subparsers, "run", help="extract a dataset, then evaluate it",
                    description=RUN_DESCRIPTION, epilog=RUN_EXAMPLES)
    add_dataset_and_store(r)
    r._option_string_actions["--unlabelled"].help = argparse.SUPPRESS  # refused: run evaluates
    add_out(r, help="report folder: report.json, report.md and figures")
    add_extract_options(r)
    add_evaluation_options(r)
    add_alias(r, "--evaluate-features", use="--features", dest="evaluate_features")
    r.set_defaults(func=cmd_run)

    d = add_command(subparsers, "demo", help="the whole job on generated demo data",
                    description=DEMO_DESCRIPTION, epilog=DEMO_EXAMPLES)
    add_out(d, default="emodist-demo", help="output folder (default ./emodist-demo)")
    d.add_argument("--tracks", type=int, default=32, metavar="N", help="generated tracks (default 32)")
    d.add_argument("--seed", type=int, default=0, help="seed of data, folds and models")
    d.add_argument("--duration", type=float, default=30.0, metavar="S",
                   help="length of each generated track in seconds (default 30)")
    d.add_argument("--workers", type=int, metavar="N", help="local Dask workers")
    d.set_defaults(func=cmd_demo)


def run_evaluation(args) -> tuple[dict, dict]:
    """The evaluation keyword arguments of ``run`` and the flags its errors name.

    The sets evaluated are ``--features`` as given (the default: every extracted
    group alone, and all joined), ``--columns`` one more; the labels are those the
    extraction stored (its ``--label-rule``).
    """
    evaluation = evaluation_kwargs(args)
    evaluation.pop("label_rule")
    flags = feature_flags(args)
    old = getattr(args, "evaluate_features", None)
    if old:
        evaluation["features"] = old
        flags = {"features": "--evaluate-features"}
    if evaluation["features"] is None:
        evaluation.pop("features")
    return evaluation, flags


def cmd_run(args) -> int:
    """Run ``emodist run``: extract, then evaluate."""
    from emodist.engine.extract import run_extract
    from emodist.engine.pipeline import run_pipeline

    if args.unlabelled:
        raise EmodistError("run evaluates, which needs labels; extract music without labels "
                           "with emodist extract --unlabelled", param="unlabelled")
    spec, runtime = spec_and_runtime(args)
    if args.stream:
        check_streamable(args, RUN_NOT_STREAMED)
        extracted = run_extract(args.dataset, args.store, spec, runtime, overwrite=args.overwrite,
                                retry_failed=args.retry_failed, repair=args.repair,
                                break_lock=args.break_lock, worker_timeout=args.worker_timeout)
        print_result(extracted)
        report = stream_report(args, storage_options=runtime.options("store"))
    else:
        evaluation, flags = run_evaluation(args)
        with flagged(flags):
            result = run_pipeline(args.dataset, args.store, args.out, spec, runtime,
                                  overwrite=args.overwrite, retry_failed=args.retry_failed,
                                  repair=args.repair, break_lock=args.break_lock,
                                  worker_timeout=args.worker_timeout, evaluation=evaluation)
        print_result(result.extract)
        report = result.report
    print_report(report, args.top)
    return 0


def cmd_demo(args) -> int:
    """Run ``emodist demo``."""
    from emodist.engine.pipeline import run_demo

    result = run_demo(args.out, n_tracks=args.tracks, seed=args.seed, duration_s=args.duration,
                      n_workers=args.workers)
    ex = result.extract
    print(f"extracted {ex.n_done} of {ex.n_segments} segments in {ex.seconds:.1f} s")
    print_report(result.report, None)
    for note in result.notes:
        print(note)
    rec = result.recognised
    if rec is not None and len(rec):
        hits = int((rec["generated_as"] == rec["recognised_as"]).sum())
        print(f"new generated tracks, never seen in training, recognised by {args.out}/model: "
              f"{hits} of {len(rec)} as the class they were generated with")
        for _, r in rec.iterrows():
            mark = "" if r["generated_as"] == r["recognised_as"] else "   <- missed"
            print(f"  track {r['track_id']:>4}  generated as {r['generated_as']:<18} recognised "
                  f"as {r['recognised_as']:<18} {r['probability']:.2f}{mark}")
    return 0
