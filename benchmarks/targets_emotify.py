"""Vote-share regression and top-three tags on a real Emotify feature store.

    PYTHONPATH=. python benchmarks/targets_emotify.py STORE OUT --target shares|tags
        [--features SPEC ...] [--presets KEY ...] [--profile listener|mean] [--folds 5] [--seed 0]

Runs :func:`emodist.learn.votes.evaluate_votes` (outer folds grouped by track,
hyper-parameters chosen by a grouped inner search on the training folds only)
and writes ``OUT/report.json``, ``OUT/report.md`` and, for shares, one
predicted-vs-true scatter per target under ``OUT/plots/``.  Not part of the
test-suite or the ``python -m benchmarks`` runner (it needs a real store);
the tables of ``docs/targets.md`` come from it.
"""

from __future__ import annotations

import argparse
import time

from emodist.learn.votes import evaluate_votes, write_vote_report


def main(argv=None) -> None:
    """Parse the arguments, evaluate, write the report."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store")
    ap.add_argument("out")
    ap.add_argument("--target", default="shares", nargs="+")
    ap.add_argument("--features", nargs="+", default=None)
    ap.add_argument("--presets", nargs="+", default=None)
    ap.add_argument("--profile", default="listener", choices=("listener", "mean"))
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--min-tracks", type=int, default=10)
    args = ap.parse_args(argv)
    start = time.perf_counter()
    report = evaluate_votes(args.store, target=args.target, features=args.features,
                            presets=args.presets, n_folds=args.folds, seed=args.seed,
                            profile=args.profile, min_tracks=args.min_tracks,
                            plots_dir=f"{args.out}/plots" if args.target != ["tags"] else None)
    report["seconds"] = round(time.perf_counter() - start, 1)
    for path in write_vote_report(report, args.out):
        print(path)


if __name__ == "__main__":
    main()
