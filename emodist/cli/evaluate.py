"""``emodist evaluate``: grouped cross-validation on a store."""

from __future__ import annotations

import contextlib

from emodist.cli.common import add_command, add_storage_options, parse_storage_options
from emodist.errors import EmodistError

EVALUATE_DESCRIPTION = """Grouped cross-validation of classifier presets on a feature store:
folds grouped by the manifest's group (else by track) and stratified by label
(the same folds for every model),
preprocessing fit on the training folds only, metrics at segment and track level,
confusion matrices as in the study.  Writes report.json, report.md and PNG figures
into --out and prints a ranked table."""

EVALUATE_EXAMPLES = """examples:
  emodist evaluate --list
  emodist evaluate features.zarr --out report/
  emodist evaluate features.zarr --features handcrafted inception_v3 handcrafted+inception_v3 \
      --classifiers "Bagged Trees" cubic-svm
  emodist evaluate features.zarr --features 'mfcc_*' tempo --balance both
  emodist evaluate features.zarr --target distribution --out dist/
  emodist evaluate features.zarr --classifiers all beyond --rank-by balanced_accuracy \
      --ceiling ../shared/data/emotify --out report/
  emodist evaluate features.zarr --target factors --classifiers beyond --out factors/
  emodist compare report/ factors/ --out comparison.md
"""

def add_evaluation_options(p, features: bool = True) -> None:
    g = p.add_argument_group("evaluation")
    if features:
        g.add_argument("--features", nargs="+", metavar="SET",
                       help="stored group names and +-joined group names (handcrafted, "
                       "handcrafted+inception_v3: one evaluation each) and/or feature names or "
                       "glob patterns (together one set, 'custom'); default: every stored group, "
                       "and all of them joined")
    g.add_argument("--classifiers", nargs="+", metavar="PRESET",
                   help="preset keys or names (see --list), or all (the study's presets and two "
                   "extras) / quick / beyond (soft labels, prior shift, balanced bagging); default all")
    g.add_argument("--folds", type=int, default=5, help="grouped folds (default 5)")
    g.add_argument("--seed", type=int, default=0, help="seed of folds and models (default 0)")
    g.add_argument("--balance", choices=("none", "weights", "both"), default="none",
                   help="class weights: none, weights, or both (each model both ways)")
    g.add_argument("--target", choices=("class", "factors", "distribution", "shares", "tags"),
                   default="class",
                   help="predict the dominant emotion, the dominant GEMS factor (sublimity, "
                   "vitality, unease), the 9-way vote distribution, the 9 vote shares "
                   "(regression) or each track's top-three emotions (tags)")
    g.add_argument("--top", type=int, metavar="N", help="print only the N best rows")


def _add_eval_cluster(p) -> None:
    g = p.add_argument_group("parallelism")
    g.add_argument("--jobs", type=int, default=-1, metavar="N",
                   help="local processes for the fits (default: all cores)")
    g.add_argument("--scheduler", metavar="ADDRESS", help="run the fits on this Dask scheduler")
    g.add_argument("--scheduler-file", metavar="FILE", help="Dask scheduler file")


def register(subparsers) -> None:
    """Add ``evaluate``."""
    p = add_command(subparsers, "evaluate", help="grouped cross-validation of classifiers on a store",
                    description=EVALUATE_DESCRIPTION, epilog=EVALUATE_EXAMPLES)
    p.add_argument("store", nargs="?", metavar="STORE", help="feature store (path or s3://...)")
    p.add_argument("--list", action="store_true", help="list the classifier presets and exit")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument("--out", metavar="DIR", help="write report.json, report.md and figures here")
    p.add_argument("--label-rule", choices=("listener", "mean"),
                   help="recompute labels from the stored votes (default: the stored labels)")
    add_evaluation_options(p)
    g = p.add_argument_group("comparison")
    g.add_argument("--rank-by", choices=("accuracy", "balanced_accuracy", "macro_f1"),
                   default="accuracy", help="segment metric the table is ranked by (default accuracy)")
    g.add_argument("--ceiling", metavar="DATA_CSV_OR_EMOTIFY_DIR",
                   help="listener responses for the human ceiling (default: the store's dataset "
                   "folder when it is an Emotify folder here; 'none' to skip)")
    _add_eval_cluster(p)
    g = p.add_argument_group("streaming (stores larger than memory)")
    g.add_argument("--stream", action="store_true",
                   help="read the features block by block and fit one streamed linear model "
                   "(logistic loss, SGD partial_fit per fold, standardised from streamed "
                   "statistics): the driver keeps a few bytes per segment")
    g.add_argument("--epochs", type=int, default=5, help="--stream: passes over the training rows (default 5)")
    g.add_argument("--block-mib", type=float, default=64.0, metavar="MIB",
                   help="--stream: uncompressed feature MiB read per block (default 64)")
    add_storage_options(p, locations=())
    p.set_defaults(func=cmd_evaluate)

def print_presets(print_fn=print) -> None:
    """Print every classifier and distribution preset with its parameters."""
    from emodist.learn.presets import DISTRIBUTION_PRESETS, describe_presets

    print_fn("classifier presets (MATLAB Classification Learner names; all standardise features):")
    for row in describe_presets():
        params = ", ".join(f"{k}={v}" for k, v in row["params"].items())
        weights = "" if row["class_weights"] else "  [no --balance weights]"
        if row["fit_params"]:
            weights += f"  [fit gets {', '.join(row['fit_params'])}]"
        note = f"  ({row['note']})" if row["note"] else ""
        print_fn(f"  {row['key']:<28} {row['name']:<28} {row['family']:<9} {params}{weights}{note}")
    print_fn("distribution models (--target distribution):")
    for p in DISTRIBUTION_PRESETS.values():
        params = ", ".join(f"{k}={v}" for k, v in p.params.items())
        print_fn(f"  {p.key:<28} {p.name:<28} {params}")


@contextlib.contextmanager
def _maybe_client(scheduler: str | None, scheduler_file: str | None):
    if not (scheduler or scheduler_file):
        yield None
        return
    from emodist.engine.cluster import connect
    from emodist.spec import Runtime

    with connect(Runtime(scheduler=scheduler, scheduler_file=scheduler_file)) as client:
        yield client


#: Command-line flag of each :func:`emodist.learn.evaluate.run_evaluate` parameter.
FLAGS = {"features": "--features", "classifiers": "--classifiers", "folds": "--folds",
         "seed": "--seed", "balance": "--balance", "label_rule": "--label-rule",
         "target": "--target", "rank_by": "--rank-by", "ceiling": "--ceiling"}
#: Extra words for a parameter's message on the command line.
HINTS = {"classifiers": " (see emodist evaluate --list)"}


@contextlib.contextmanager
def flagged(flags: dict | None = None):
    """Re-raise a :class:`~emodist.learn.params.ParameterError` with its flag in front."""
    from emodist.learn.params import ParameterError

    flags = {**FLAGS, **(flags or {})}
    try:
        yield
    except ParameterError as exc:
        flag = flags.get(exc.parameter, exc.parameter)
        raise EmodistError(f"{flag}: {exc.message}{HINTS.get(exc.parameter, '')}") from exc


def print_summary(report: dict, console=None, top: int | None = None) -> None:
    """Print the ranked table of a report, the baselines and where the files are."""
    from rich.console import Console

    from emodist.learn.report import ranked_table, summary_lines

    if console is None:
        console = Console()
        if not console.is_terminal:
            console = Console(width=140)
    console.print(ranked_table(report, top))
    for line in summary_lines(report):
        console.print(line)


def print_report(report: dict, top: int | None) -> None:
    """The ranked table of a report (the ``top`` best rows)."""
    print_summary(report, top=top)


def ceiling_arg(value: str | None):
    """``--ceiling``: a path, ``none`` (skip: False), or unset (the store's dataset: None)."""
    if value is None:
        return None
    return False if value.strip().lower() == "none" else value


def cmd_evaluate(args) -> int:
    """Run ``emodist evaluate``."""
    if args.list:
        print_presets()
        return 0
    if not args.store:
        raise EmodistError("give a STORE to evaluate (or --list)")
    if args.stream:
        return cmd_stream(args)
    if args.target in ("shares", "tags"):  # continuous and multi-label targets: docs/targets.md
        from emodist.learn.votes import run_votes, summary_lines

        with flagged():
            report = run_votes(args.store, target=args.target, out=args.out, features=args.features,
                               presets=args.classifiers, n_folds=args.folds, seed=args.seed,
                               storage_options=parse_storage_options(args.storage_options))
        print("\n".join(summary_lines(report)))
        return 0
    from emodist.learn.evaluate import run_evaluate

    with flagged(), _maybe_client(args.scheduler, args.scheduler_file) as client:
        report = run_evaluate(
            args.store, features=args.features, classifiers=args.classifiers or ["all"], folds=args.folds,
            seed=args.seed, balance=args.balance, label_rule=args.label_rule, target=args.target,
            out=args.out, client=client, n_jobs=args.jobs,
            storage_options=parse_storage_options(args.storage_options), progress=not args.quiet,
            rank_by=args.rank_by, ceiling=ceiling_arg(args.ceiling),
        )
    print_report(report, args.top)
    return 0


#: Options of the in-memory evaluation that ``--stream`` does not take, with their flags.
NOT_STREAMED = {"classifiers": "--classifiers", "label_rule": "--label-rule", "scheduler": "--scheduler",
                "scheduler_file": "--scheduler-file", "ceiling": "--ceiling"}


def cmd_stream(args) -> int:
    """``emodist evaluate --stream``: the streamed linear model over the store."""
    from emodist.learn.stream import stream_evaluate

    for name, flag in NOT_STREAMED.items():
        if getattr(args, name, None) is not None:
            raise EmodistError(f"{flag}: not with --stream (it fits one streamed linear model "
                               "on the stored labels, on this machine)")
    if args.target != "class":
        raise EmodistError("--target: --stream predicts the dominant emotion (class) only")
    with flagged({"epochs": "--epochs", "block_bytes": "--block-mib"}):
        report = stream_evaluate(
            args.store, features=args.features, folds=args.folds, seed=args.seed, balance=args.balance,
            epochs=args.epochs, block_bytes=int(args.block_mib * 2**20), out=args.out,
            storage_options=parse_storage_options(args.storage_options), progress=not args.quiet)
    print_report(report, args.top)
    return 0
