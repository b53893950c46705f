"""``emodist evaluate``: grouped cross-validation on a store."""

from __future__ import annotations

import argparse
import contextlib

from emodist.cli import flag_name
from emodist.cli.common import (
    add_alias,
    add_command,
    add_once,
    add_out,
    add_quiet,
    add_scheduler_options,
    add_storage_options,
    parse_storage_options,
)
from emodist.errors import EmodistError
from emodist.learn.data import CONTEXTS
from emodist.learn.dataset_targets import ANNOTATIONS
from emodist.learn.spec import (
    BALANCES,
    EVALUATION_TARGETS,
    FOLD_SOURCES,
    RANK_BY,
    TARGETS,
    EvaluationSpec,
    target_kind,
)
from emodist.spec import LABEL_RULES

__all__ = ["EVALUATE_DESCRIPTION", "EVALUATE_EXAMPLES", "HINTS", "NOT_STREAMED",
           "NOT_TRANSFERRED", "add_evaluation_options", "ceiling_arg", "check_streamable",
           "cmd_evaluate", "cmd_stream", "cmd_transfer", "cmd_votes", "evaluation_kwargs",
           "feature_flags", "feature_sets", "flagged", "folds_arg", "maybe_client", "one_group_per_recording",
           "print_presets", "print_report", "print_summary", "recording_copies", "register",
           "stream_report"]

EVALUATE_DESCRIPTION = """Grouped cross-validation of classifier presets on a feature store:
folds grouped by the manifest's group (else by track) and stratified by label
(the same folds for every model),
preprocessing fit on the training folds only, metrics at segment and track level,
confusion matrices as in the study.  Writes report.json, report.md and PNG figures
into --out and prints a ranked table."""

EVALUATE_EXAMPLES = """examples:
  emodist evaluate --list
  emodist evaluate features.zarr --out report/
  emodist evaluate features.zarr --features handcrafted inception_v3 handcrafted+inception_v3 \\
      --classifiers "Bagged Trees" cubic-svm
  emodist evaluate features.zarr --columns 'mfcc_*' tempo --balance both
  emodist evaluate features.zarr --target distribution --out dist/
  emodist evaluate features.zarr --classifiers all beyond --rank-by balanced_accuracy \\
      --ceiling ../shared/data/emotify --out report/
  emodist evaluate features.zarr --target factors --classifiers beyond --out factors/
  emodist evaluate features.zarr --group-by album --out by-album/
  emodist evaluate features.zarr --folds dataset --out published-splits/
  emodist evaluate deam.zarr --target valence arousal --out va/
  emodist evaluate pmemo.zarr --target valence arousal --annotations static --out va-static/
  emodist evaluate mtg.zarr --target tags --folds dataset --out tags/
  emodist evaluate --model models/emotion other.zarr --map gems-to-tags.csv --out transfer/
  emodist compare report/ factors/ --out comparison.md
"""


class _ListPresets(argparse.Action):
    """``--list``: print the classifier presets and exit (before any required argument)."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print_presets()
        parser.exit(0)


class _Target(argparse.Action):
    """``--target``: one name is kept as text, several as a tuple of continuous columns."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values[0] if len(values) == 1 else tuple(values))


def add_evaluation_options(p) -> None:
    """Every option of ``evaluate`` but STORE (``run`` takes them too).

    Options the parser has already (``run``'s extraction adds ``--features``,
    ``--label-rule``, ``--workers``, ``--scheduler``...) are kept as they are:
    on ``run`` they mean the same for both steps.
    """
    add_once(p, "--list", action=_ListPresets, help="list the classifier presets and exit")
    add_quiet(p)
    add_out(p, help="write report.json, report.md and figures here")
    add_once(p, "--label-rule", choices=LABEL_RULES,
             help="recompute labels from the stored votes (default: the stored labels)")
    g = p.add_argument_group("evaluation")
    add_once(g, "--features", nargs="+", metavar="GROUP",
             help="stored groups and +-joined groups to evaluate, one evaluation each "
             "(handcrafted, handcrafted+inception_v3); default: every stored group, and all of "
             "them joined")
    add_once(g, "--columns", nargs="+", metavar="PATTERN",
             help="feature names or glob patterns ('mfcc_*'), together one more feature set "
             "('custom')")
    add_once(g, "--classifiers", nargs="+", metavar="PRESET",
             help="preset keys or names (see --list), or all (the study's presets and two "
             "extras) / quick / beyond (soft labels, prior shift, balanced bagging); default all")
    add_once(g, "--folds", type=folds_arg, default=5, metavar="N|dataset",
             help="grouped folds (default 5), or 'dataset': the dataset's published splits "
             "(MTG-Jamendo's split-0..4; each split's test part scored by models fit on its "
             "training part)")
    add_once(g, "--group-by", metavar="COLUMN",
             help="group the folds by this per-track column of the store or of its dataset's "
             "catalog (artist, album, genre...); default the store's group, else the track")
    add_once(g, "--seed", type=int, default=0, help="seed of folds and models (default 0)")
    add_once(g, "--balance", choices=BALANCES, default=BALANCES[0],
             help="class weights: none, weights, or both (each model both ways)")
    add_once(g, "--target", nargs="+", action=_Target, default=EVALUATION_TARGETS[0],
             metavar="TARGET",
             help=f"{', '.join(EVALUATION_TARGETS)}, or continuous columns: the dominant "
             "emotion (default), the dominant GEMS factor (sublimity, vitality, unease), the "
             "9-way vote distribution, the 9 vote shares (regression), tags (each track's "
             "top-three emotions, or the tags of the dataset's catalog: MTG-Jamendo), or "
             "numeric columns to regress (valence arousal: emotions' shares, per-segment store "
             "variables, numeric columns of the store's dataset catalog: DEAM, PMEmo)")
    add_once(g, "--annotations", choices=ANNOTATIONS,
             help="continuous columns of the dataset's catalog: each segment's mean of the "
             "dataset's 0.5 s annotations in its span (dynamic; the default where the dataset "
             "has them: DEAM, PMEmo) or its track's static rating (static)")
    add_once(g, "--context", choices=CONTEXTS, default=CONTEXTS[0],
             help="--target shares|tags: join each segment's features with its track's mean "
             "features (track), or not (none, the default)")
    add_once(g, "--top", type=int, metavar="N", help="print only the N best rows")
    g = p.add_argument_group("comparison")
    add_once(g, "--rank-by", choices=RANK_BY, default=RANK_BY[0],
             help=f"segment metric the table is ranked by (default {RANK_BY[0]})")
    add_once(g, "--ceiling", metavar="DATA_CSV_OR_EMOTIFY_DIR",
             help="listener responses for the human ceiling (default: the store's dataset "
             "folder when it is an Emotify folder here; 'none' to skip)")
    g = p.add_argument_group("parallelism")
    add_once(g, "--workers", type=int, metavar="N",
             help="local processes for the fits (default: all cores)")
    add_alias(g, "--jobs", use="--workers")
    add_scheduler_options(g, what=": the fits run there")
    g = p.add_argument_group("streaming (stores larger than memory)")
    add_once(g, "--stream", action="store_true",
             help="read the features block by block and fit one streamed linear model "
             "(logistic loss, SGD partial_fit per fold, standardised from streamed "
             "statistics): the driver keeps a few bytes per segment")
    add_once(g, "--epochs", type=int, default=5,
             help="--stream: passes over the training rows (default 5)")
    add_once(g, "--block-mib", type=float, default=64.0, metavar="MIB",
             help="--stream: uncompressed feature MiB read per block (default 64)")
    add_storage_options(p, locations=())


def register(subparsers) -> None:
    """Add ``evaluate``."""
    p = add_command(subparsers, "evaluate", help="grouped cross-validation of classifiers on a store",
                    description=EVALUATE_DESCRIPTION, epilog=EVALUATE_EXAMPLES)
    p.add_argument("store", nargs="?", metavar="STORE", help="feature store (path or s3://...)")
    add_evaluation_options(p)
    g = p.add_argument_group("cross-dataset (a trained model on another store)")
    add_once(g, "--model", metavar="MODEL_DIR",
             help="score this model folder (made by 'emodist train') on STORE's labels: nothing "
             "is fit; the report says what the model never saw")
    add_once(g, "--map", metavar="FILE",
             help="--model: the store label each model class counts as (CSV "
             "'model_class,store_label' or YAML); default: classes match labels by name")
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
def maybe_client(scheduler: str | None, scheduler_file: str | None):
    if not (scheduler or scheduler_file):
        yield None
        return
    from emodist.runtime.cluster import connect
    from emodist.spec import Runtime

    with connect(Runtime(scheduler=scheduler, scheduler_file=scheduler_file)) as client:
        yield client


#: Extra words for a parameter's message on the command line.
HINTS = {"classifiers": " (see emodist evaluate --list)"}


@contextlib.contextmanager
def flagged(flags: dict | None = None):
    """Re-raise an :class:`EmodistError` about a parameter led by its flag, with its hint.

    The flag is :func:`emodist.cli.flag_name`'s, unless ``flags`` names the
    command's own for that parameter.
    """
    try:
        yield
    except EmodistError as exc:
        if not exc.param:
            raise
        flag = flag_name(exc.param, flags)
        raise EmodistError(f"{flag}: {exc.message}{HINTS.get(exc.param, '')}") from exc


def feature_sets(args) -> list | None:
    """The feature sets to evaluate: ``--features`` groups, then ``--columns`` as one more."""
    sets = [*(getattr(args, "features", None) or ()), *(getattr(args, "columns", None) or ())]
    return sets or None


def feature_flags(args) -> dict:
    """The flag an error about the feature sets names: ``--columns`` when only it was given."""
    if getattr(args, "columns", None) and not getattr(args, "features", None):
        return {"features": "--columns"}
    return {}


def folds_arg(value: str):
    """``--folds``: a whole number of grouped folds, or ``dataset`` (the published splits)."""
    if value.strip().lower() == FOLD_SOURCES[1]:
        return FOLD_SOURCES[1]
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"give a number of folds or '{FOLD_SOURCES[1]}', got {value!r}") from None


def evaluation_kwargs(args) -> dict:
    """Keyword arguments of :func:`emodist.learn.evaluate.run_evaluate` from the options."""
    if args.context != CONTEXTS[0]:
        raise EmodistError(f"--context {args.context} is for --target shares or tags; "
                           f"--target {args.target} takes each segment's own features")
    if getattr(args, "annotations", None) is not None:
        raise EmodistError(f"--annotations is for continuous columns of the dataset's catalog; "
                           f"--target {args.target} predicts classes")
    published = args.folds == FOLD_SOURCES[1]
    return {"features": feature_sets(args), "classifiers": args.classifiers or ["all"],
            "folds": 5 if published else args.folds, "seed": args.seed, "balance": args.balance,
            "label_rule": args.label_rule, "target": args.target, "rank_by": args.rank_by,
            "ceiling": ceiling_arg(args.ceiling), "group_by": args.group_by,
            "fold_source": FOLD_SOURCES[1] if published else FOLD_SOURCES[0]}


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


def one_group_per_recording(store: str, storage_options):
    """The store, with byte-identical audio files in one fold group (said on stderr).

    The store's URL when it has no such copies (the evaluation opens it),
    else the opened store with its ``group`` coordinate merged.
    """
    return recording_copies(store, storage_options)[0]


def recording_copies(store: str, storage_options) -> tuple:
    """:func:`one_group_per_recording`, and the track ids of every set of copies.

    The copies go to the evaluation too, which keeps each set in one group
    whatever ``--group-by`` names.
    """
    import logging

    from emodist.store import open_store
    from emodist.store.copies import copy_sets, regroup_copies

    ds = open_store(store, storage_options)
    sets = copy_sets(ds)
    merged, copies = regroup_copies(ds, sets)
    for ids in copies:
        logging.getLogger("emodist").warning(
            "tracks %s are the same audio (byte-identical files) in different groups; they "
            "are evaluated as one group", ", ".join(ids))
    return (merged if copies else store), sets


def cmd_evaluate(args) -> int:
    """Run ``emodist evaluate``."""
    if not args.store:
        raise EmodistError("give a STORE to evaluate (or --list)")
    if args.out:  # before any fit: a bad --out is refused at once, not after the work
        from emodist.store.outputs import check_folder

        check_folder(args.out, storage_options=parse_storage_options(args.storage_options))
    if args.model or args.map:
        return cmd_transfer(args)
    if args.stream:
        return cmd_stream(args)
    with flagged():
        kind = target_kind(args.target)
    if kind in ("regression", "multilabel"):  # continuous and multi-label targets: docs/targets.md
        return cmd_votes(args)
    from emodist.learn.evaluate import run_evaluate

    with flagged(feature_flags(args)):
        spec = EvaluationSpec(**evaluation_kwargs(args))
    store, copies = recording_copies(args.store, parse_storage_options(args.storage_options))
    with flagged(feature_flags(args)), maybe_client(args.scheduler, args.scheduler_file) as client:
        report = run_evaluate(
            store, spec, out=args.out, client=client,
            n_jobs=args.workers if args.workers is not None else -1,
            storage_options=parse_storage_options(args.storage_options), progress=not args.quiet,
            copies=copies)
    print_report(report, args.top)
    return 0


def cmd_votes(args) -> int:
    """``emodist evaluate --target shares|tags|COLUMN...``: regression or tag presets."""
    from emodist.learn.votes import run_votes, summary_lines

    published = args.folds == FOLD_SOURCES[1]
    opts = parse_storage_options(args.storage_options)
    store, copies = recording_copies(args.store, opts)
    with flagged(feature_flags(args)):
        report = run_votes(store, target=args.target, out=args.out, features=feature_sets(args),
                           presets=args.classifiers, n_folds=5 if published else args.folds,
                           fold_source=FOLD_SOURCES[1] if published else FOLD_SOURCES[0],
                           seed=args.seed, group_by=args.group_by, copies=copies,
                           context=args.context, annotations=args.annotations,
                           storage_options=opts)
    print("\n".join(summary_lines(report)))
    return 0


#: Options a model scored on another store does not take (it fixes features, model and classes).
NOT_TRANSFERRED = ("features", "columns", "classifiers", "label_rule", "group_by", "ceiling",
                   "scheduler", "scheduler_file", "annotations")


def cmd_transfer(args) -> int:
    """``emodist evaluate --model MODEL_DIR STORE``: a trained model scored on another store."""
    from emodist.learn.transfer import run_transfer, transfer_markdown

    if not args.model:
        raise EmodistError("--map: give the model it maps (--model MODEL_DIR)")
    for name in NOT_TRANSFERRED:
        if getattr(args, name, None) is not None:
            raise EmodistError(f"{flag_name(name)}: not with --model (the model fixes its "
                               "features, classifier and classes)")
    if args.stream or args.folds == FOLD_SOURCES[1] or args.target != TARGETS[0]:
        flag = "--stream" if args.stream else "--folds" if args.folds == FOLD_SOURCES[1] else "--target"
        raise EmodistError(f"{flag}: not with --model (nothing is fit: the whole store is scored)")
    with flagged():
        report = run_transfer(args.model, args.store, mapping=args.map, out=args.out,
                              storage_options=parse_storage_options(args.storage_options))
    print(transfer_markdown(report))
    return 0


#: Parameters of the in-memory evaluation that ``--stream`` does not take.
NOT_STREAMED = ("classifiers", "label_rule", "scheduler", "scheduler_file", "ceiling", "group_by",
                "annotations")


def check_streamable(args, refused: tuple = NOT_STREAMED) -> None:
    """Refuse the options ``--stream`` does not take (``refused``: parameters that must be unset)."""
    for name in refused:
        if getattr(args, name, None) is not None:
            raise EmodistError(f"{flag_name(name)}: not with --stream (it fits one streamed "
                               "linear model on the stored labels, on this machine)")
    if args.target != TARGETS[0]:
        raise EmodistError(f"--target: --stream predicts the dominant emotion ({TARGETS[0]}) only")
    if args.folds == FOLD_SOURCES[1]:
        raise EmodistError("--folds: --stream draws grouped folds; give a number")


def stream_report(args, *, storage_options: dict | None) -> dict:
    """The report of ``--stream``: the streamed linear model over ``args.store``.

    Parameters
    ----------
    args : argparse.Namespace
        The evaluation options (checked by :func:`check_streamable`).
    storage_options : dict or None
        fsspec options of the store.
    """
    from emodist.learn.stream import stream_evaluate

    with flagged(feature_flags(args)):
        return stream_evaluate(
            args.store, features=feature_sets(args), folds=args.folds, seed=args.seed,
            balance=args.balance, epochs=args.epochs, block_bytes=int(args.block_mib * 2**20),
            out=args.out, storage_options=storage_options, progress=not args.quiet)


def cmd_stream(args) -> int:
    """``emodist evaluate --stream``: the streamed linear model over the store."""
    check_streamable(args)
    report = stream_report(args, storage_options=parse_storage_options(args.storage_options))
    print_report(report, args.top)
    return 0
