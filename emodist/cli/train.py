"""``emodist train``: one preset fit on a whole store, written as ONNX with its card."""

from __future__ import annotations

from emodist.cli.common import (
    add_alias,
    add_command,
    add_quiet,
    add_scheduler_options,
    add_storage_options,
    parse_storage_options,
)
from emodist.cli.evaluate import flagged, maybe_client
from emodist.errors import EmodistError
from emodist.learn.data import CONTEXTS
from emodist.learn.spec import EVALUATION_TARGETS, RANK_BY
from emodist.spec import LABEL_RULES

__all__ = ["cmd_train", "register"]

DESCRIPTION = """Fit one preset's whole pipeline (scaling, model) on every usable
segment of a store, run the same preset's grouped cross-validation to measure it
(classes: accuracy, balanced accuracy, macro-F1, track level, the confusion
matrix drawn in MODEL_DIR/confusion.png, and calibration of the out-of-fold
probabilities: ECE and a reliability diagram;
continuous targets: R², RMSE, Pearson r, Spearman rho, CCC per target; tags:
ROC-AUC and PR-AUC, macro and micro), and write MODEL_DIR/model.onnx (float32
features in, probabilities or values out; loading it runs no code) with its card
MODEL_DIR/model.json.  Show a card with `emodist model show MODEL_DIR`."""

EXAMPLES = """examples:
  emodist train features.zarr --features handcrafted+musicnn_msd \\
      --classifier soft-logistic-regression-in-fold-c --out models/emotion/
  emodist train features.zarr --features handcrafted --classifier bagged-trees \\
      --target factors --out models/factors/
  emodist train features.zarr --features musicnn_msd --target distribution \\
      --classifier soft-logistic-regression-in-fold-c --out models/distribution/
  emodist train features.zarr --features musicnn_msd --target shares --classifier ridge \\
      --out models/shares/
  emodist train features.zarr --features musicnn_msd --target tags --classifier mlp \\
      --out models/tags/
  emodist train deam.zarr --features musicnn_msd --target valence arousal \\
      --classifier gaussian-svr --out models/va/
  emodist train features.zarr --features handcrafted --target shares --context track \\
      --classifier ridge --out models/shares-context/
  emodist train --from-report report/ --rank-by balanced_accuracy --out models/best/
  emodist train features.zarr --auto --features handcrafted musicnn_msd handcrafted+musicnn_msd \\
      --out models/auto/
  emodist model show models/emotion/
"""

#: Flags of :func:`emodist.learn.train.run_train`'s parameters that ``evaluate`` lacks.
FLAGS = {"classifier": "--classifier", "out": "--out", "from_report": "--from-report",
         "features": "--features", "min_tracks": "--min-tracks", "context": "--context"}


def register(subparsers) -> None:
    """Add ``train``."""
    p = add_command(subparsers, "train", help="fit a preset on a store; write ONNX and its card",
                    description=DESCRIPTION, epilog=EXAMPLES)
    p.add_argument("store", nargs="?", metavar="STORE",
                   help="feature store (path or s3://...; default with --from-report: the report's)")
    p.add_argument("--out", required=True, metavar="MODEL_DIR",
                   help="model folder: new, empty, or a model to replace")
    p.add_argument("--features", metavar="SET", nargs="+",
                   help="one feature set: a stored group or +-joined groups (handcrafted+musicnn_msd); "
                   "with --auto, the candidate sets (default: every group alone and all joined)")
    p.add_argument("--classifier", metavar="PRESET", nargs="+",
                   help="preset key or name with an ONNX converter (a refusal lists them); with "
                   "--auto, the candidates (default: a fast preset of each family)")
    p.add_argument("--auto", action="store_true",
                   help="choose feature set and preset by nested grouped CV (ranked by --rank-by) "
                   "inside each outer fold; the outer folds' figures go into the card; the final "
                   "choice is refit on everything")
    p.add_argument("--target", nargs="+", metavar="TARGET", default=None,
                   help=f"{', '.join(EVALUATION_TARGETS)}, or continuous columns (valence "
                   "arousal: emotions' shares or numeric per-segment store variables): the "
                   "dominant emotion (default), the dominant GEMS factor, the 9-way vote "
                   "distribution, the 9 vote shares (regression presets), each track's "
                   "top-three emotions (multi-label presets)")
    p.add_argument("--context", choices=CONTEXTS, default=None,
                   help="--target shares|tags|columns: join each segment's features with its "
                   "track's mean features (track; the card records it and `emodist predict` "
                   "joins each new segment with its own track's mean), or not (none, the "
                   "default; with --from-report: the report's)")
    p.add_argument("--min-tracks", type=int, default=10, metavar="N",
                   help="--target tags: tags with fewer than N positive (or negative) tracks are "
                   "dropped and named in the card (default 10)")
    p.add_argument("--from-report", metavar="REPORT",
                   help="take features, preset, target, folds and seed from the best exportable "
                   "row of an `emodist evaluate` report (report.json or its folder)")
    p.add_argument("--rank-by", choices=RANK_BY, default="balanced_accuracy",
                   help="--from-report, --auto: the segment metric candidates are ranked by "
                   "(default balanced_accuracy)")
    p.add_argument("--folds", type=int, default=None, help="grouped folds of the CV (default 5)")
    p.add_argument("--seed", type=int, default=None, help="seed of folds and models (default 0)")
    p.add_argument("--label-rule", choices=LABEL_RULES,
                   help="recompute labels from the stored votes (default: the stored labels)")
    p.add_argument("--name", help="model name: the store variable emodist predict writes (default FEATURES_PRESET_TARGET)")
    p.add_argument("--workers", type=int, default=-1, metavar="N",
                   help="local processes for the CV fits (default: all cores)")
    add_alias(p, "--jobs", use="--workers")
    add_scheduler_options(p, " for the CV fits")
    add_quiet(p)
    add_storage_options(p, locations=())
    p.set_defaults(func=cmd_train)


def _arguments(args) -> dict:
    """run_train's arguments from the flags, or from the best row of --from-report."""
    from emodist.learn.train import best_from_report

    if args.from_report:
        given = [f for f, v in (("--features", args.features), ("--classifier", args.classifier),
                                ("--target", args.target)) if v]
        if given:
            raise EmodistError(f"{given[0]}: not with --from-report (the report's best row "
                               "chooses it)")
        with flagged(FLAGS):
            best = best_from_report(args.from_report, args.rank_by)
        store = args.store or best.pop("store")
        best.pop("store", None)
        if not store:
            raise EmodistError("give a STORE (the report names none)")
        for name in ("folds", "seed", "label_rule", "context"):
            if getattr(args, name) is not None:
                best[name] = getattr(args, name)
        return {"store": store, **best}
    if not args.store:
        raise EmodistError("give a STORE to train on (or --from-report)")
    for flag, value in (("--features", args.features), ("--classifier", args.classifier)):
        if not value:
            raise EmodistError(f"{flag}: required (or --from-report, --auto)")
        if len(value) > 1:
            raise EmodistError(f"{flag}: one value (several are candidates of --auto)")
    return {"store": args.store, "features": args.features[0], "classifier": args.classifier[0],
            "target": _target(args.target), "folds": 5 if args.folds is None else args.folds,
            "seed": 0 if args.seed is None else args.seed, "label_rule": args.label_rule,
            "min_tracks": args.min_tracks, "context": args.context or CONTEXTS[0]}


def _target(values):
    """``--target``: one named target, or continuous columns (default ``class``)."""
    if not values:
        return "class"
    return values[0] if len(values) == 1 else list(values)


def cmd_train(args) -> int:
    """Run ``emodist train``."""
    from emodist.learn.train import AUTO_PRESETS, run_auto, run_train
    from emodist.models.trained import describe_trained

    common = {"out": args.out, "name": args.name, "n_jobs": args.workers,
              "storage_options": parse_storage_options(args.storage_options)}
    if args.auto:
        if args.from_report:
            raise EmodistError("--auto: not with --from-report")
        if not args.store:
            raise EmodistError("give a STORE to train on")
        if args.target not in (None, ["class"]):
            raise EmodistError("--target: --auto predicts the dominant emotion (class) only")
        if args.context not in (None, CONTEXTS[0]):
            raise EmodistError(f"--context {args.context} is for --target shares, tags or "
                               "continuous columns; --auto predicts the dominant emotion (class)")
        with flagged(FLAGS), maybe_client(args.scheduler, args.scheduler_file) as client:
            model = run_auto(args.store, features=args.features,
                             classifiers=args.classifier or AUTO_PRESETS, rank_by=args.rank_by,
                             folds=5 if args.folds is None else args.folds,
                             seed=0 if args.seed is None else args.seed, label_rule=args.label_rule,
                             client=client, progress=not args.quiet, **common)
    else:
        kwargs = _arguments(args)
        with flagged(FLAGS), maybe_client(args.scheduler, args.scheduler_file) as client:
            model = run_train(client=client, **common, **kwargs)
    print("\n".join(describe_trained(model)))
    return 0
